"""Test kit: the real ``phi-get registry serve`` as a subprocess on a free loopback port.

For the tests that drive the registry through its command line (tests/registry
and tests/resolver alike): :func:`registry_serve` starts it, waits until
``GET /v1/health`` answers 200 (failing with the server's own output when it
exits or does not come up), and terminates it afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from phi_get.demo import free_port

__all__ = ["PHI_GET", "Serving", "registry_serve"]

#: The command line under test, in the interpreter running the tests.
PHI_GET = [sys.executable, "-m", "phi_get"]


@dataclass(frozen=True)
class Serving:
    """A running ``registry serve``: its base URL and process."""

    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def registry_serve(*args: str, log: Path | None = None, env: Mapping[str, str] | None = None,
                   timeout: float = 60) -> Iterator[Serving]:
    """``phi-get registry serve ARGS --port <free>``, up and healthy, for the ``with`` block.

    The server's stdout and stderr go to ``log`` (None: discarded); ``env`` is its whole
    environment (None: this process's).
    """
    port = free_port()
    command = [*PHI_GET, "registry", "serve", *args, "--port", str(port)]
    if log is None:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    else:
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                output = log.read_text(errors="replace") if log is not None else "(output discarded)"
                raise AssertionError(f"phi-get registry serve {' '.join(args)} did not come up "
                                     f"(exit {proc.poll()}):\n{output}")
            time.sleep(0.1)
        yield Serving(url=url, process=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
