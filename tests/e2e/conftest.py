"""Fixtures for the end-to-end tests: the registry as a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Registry:
    url: str
    db: str
    storage: Path
    token: str


def phi_get(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    assert proc.returncode == 0, f"phi-get {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Registry]:
    """`phi-get registry serve` on a free loopback port, with a publish token."""
    storage = tmp_path / "registry"
    db = f"sqlite:///{storage / 'catalog.db'}"
    token = phi_get("registry", "token", "create", "--db", db, "--storage", str(storage),
                    "--scope", "publish:*").stdout.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "registry.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "phi_get", "registry", "serve", "--db", db, "--storage",
                             str(storage), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "registry did not start"
            time.sleep(0.2)
    try:
        yield Registry(url=f"http://127.0.0.1:{port}", db=db, storage=storage, token=token)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHI_GET_")}
    env.update(extra)
    return env


@pytest.fixture()
def cli():  # type: ignore[no-untyped-def]
    """Run `phi-get ARGS...` as a subprocess, asserting success."""
    return phi_get
