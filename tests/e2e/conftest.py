"""Fixtures for the end-to-end tests: the registry as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from phi_get.demo import StepFailed, free_port, stop_process, wait_for_port


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
    port = free_port()
    log_path = tmp_path / "registry.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "phi_get", "registry", "serve", "--db", db, "--storage",
                             str(storage), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, timeout=60)
    except StepFailed as exc:
        stop_process(proc)
        log.close()
        pytest.fail(f"{exc}\n{log_path.read_text()}")
    try:
        yield Registry(url=f"http://127.0.0.1:{port}", db=db, storage=storage, token=token)
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture()
def cli():  # type: ignore[no-untyped-def]
    """Run `phi-get ARGS...` as a subprocess, asserting success."""
    return phi_get
