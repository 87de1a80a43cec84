"""Helpers shared by the benchmark scripts (run as `python bench/NAME.py`,
so this folder is on sys.path): ports, waiting for a server, the loopback server in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from phi_get.demo import free_port  # the one free loopback port; re-exported for the benches

__all__ = ["PHI_GET", "accept_unsigned", "baseline_tree", "free_port", "loopback_server_process", "wait_http"]

PHI_GET = [sys.executable, "-m", "phi_get"]


def accept_unsigned(url: str) -> None:
    """Accept the bench's own unsigned server, as a user would with ``PHI_GET_UNSIGNED``:
    for this process and the ``phi-get`` processes it starts."""
    listed = os.environ.get("PHI_GET_UNSIGNED", "")
    os.environ["PHI_GET_UNSIGNED"] = f"{listed} {url}".strip()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Return once ``url`` answers below 500; exit if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server for {url} did not start (exit {proc.poll()})")
        time.sleep(0.1)


@contextmanager
def loopback_server_process(root: Path) -> Iterator[str]:
    """The test kit's loopback server (sendfile, Range) serving ``root`` from a process of its own; yields its URL.

    A registry never runs inside the installer's process: in another
    process its threads do not share the installer's interpreter lock.
    """
    kit = Path(__file__).parents[1] / "tests" / "kit" / "wirekit.py"
    proc = subprocess.Popen([sys.executable, str(kit), str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise SystemExit(f"loopback server for {root} did not start (exit {proc.poll()})")
        accept_unsigned(url)  # a plain wire-layout tree: no TUF metadata
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


def baseline_tree(rev: str, tmp: Path) -> Path:
    """A folder whose ``phi_get`` is the repository at ``rev`` (for PYTHONPATH)."""
    repo = Path(__file__).parents[1]
    tree = tmp / "baseline" / "phi_get"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree.parent
