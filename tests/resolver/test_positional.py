"""Positional file I/O without os.pread/os.pwrite (as on Windows): seek + read/write under a lock.

The fallback is forced by removing ``os.pread``, ``os.pwrite`` and
``os.preadv`` for the test (any use of them would raise AttributeError) and
telling the fetch module the OS lacks them; then real installs run, from a
loopback HTTP server in many parallel byte ranges and from a file:// mirror,
and every blob must verify.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import phi_get
import pytest
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.resolver import blockio, fetch, workfolders
from phi_get.resolver.fetch import PositionalFile


@pytest.fixture()
def no_pread(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pread", "pwrite", "preadv"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setattr(blockio, "_HAS_PREAD", False)
    monkeypatch.setattr(blockio, "_HAS_PREADV", False)


@pytest.mark.parametrize("native", [True, False])
def test_threads_write_and_read_at_their_own_offsets(tmp_path: Path, native: bool) -> None:
    if native and not hasattr(os, "pwrite"):
        pytest.skip("this OS has no pwrite")
    path = tmp_path / "data"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    try:
        os.ftruncate(fd, 64 * 4096)
        f = PositionalFile(fd, native=native)
        assert f.native is native

        def fill(k: int) -> None:  # 8 threads interleave 4 KiB writes and read-backs
            for block in range(k, 64, 8):
                f.write(memoryview(bytes([block]) * 4096), block * 4096)
                back = memoryview(bytearray(4096))
                assert f.readinto(back, block * 4096) == 4096 and bytes(back) == bytes([block]) * 4096

        threads = [threading.Thread(target=fill, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        end = memoryview(bytearray(10))
        assert f.readinto(end, 64 * 4096 - 4) == 4  # short read at the end of the file
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(bytes([b]) * 4096 for b in range(64))


def test_install_over_http_in_parallel_ranges_without_pread(served: Any, home: Path, no_pread: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "_part_size", lambda size, workers: 65536)  # many ranges, 4 workers at once
    path = phi_get.install("tiny-model", registry=served.url, device="pi-board")
    load_artifact_folder(path)  # every file's size and sha256 match
    assert len([r for _path, r in served.stats.requests if r]) > 8  # the weights came in many ranged parts


def test_install_from_file_mirror_without_pread(mirror: Any, home: Path, no_pread: None) -> None:
    load_artifact_folder(phi_get.install("tiny-model", registry=mirror[0].as_uri(), device="pi-board"))



def test_lease_liveness_check_never_signals_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows ``os.kill(pid, 0)`` terminates the process; the lease falls back to its mtime there."""
    def kill(pid: int, sig: int) -> None:
        raise AssertionError(f"os.kill({pid}, {sig}) called")

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "name", "nt")
    assert workfolders._alive(os.getpid() + 1_000_000) is True
