"""Fetching under stress, as real processes: resume after a kill, concurrent installs, a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.artifact import load_artifact_folder

SIZE = 32 << 20  # 4 parts of 8 MiB with the default part size


@pytest.fixture()
def big(tmp_path: Path, kit: Any) -> Iterator[tuple[Any, Any]]:
    root = tmp_path / "bigmirror"
    data = tmp_path / "weights.bin"
    with open(data, "wb") as fh:
        fh.write(os.urandom(SIZE))
    files: dict[str, bytes | Path] = {"weights.bin": data}
    m = kit.make_manifest("big-model", "1.0.0", "safetensors-fp32", files, max_context=4096)
    kit.write_mirror(root, [(m, files)])
    with kit.LoopbackServer(root) as srv:
        yield srv, m


def _install(url: str, home: Path, *extra: str, max_file_size: int | None = None,
             env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    # With max_file_size, the child limits its own file size (RLIMIT_FSIZE): writes past it fail
    # with EFBIG, which is how a full disk looks to phi-get without needing a full disk.
    limit = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             f"resource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_size}, {max_file_size})); "
             "sys.argv[0] = 'phi-get'; runpy.run_module('phi_get', run_name='__main__')")
    start = [sys.executable, "-c", limit] if max_file_size else [sys.executable, "-m", "phi_get"]
    return subprocess.Popen(
        [*start, "install", "big-model", "--registry", url, "--device", "pi-board", "--quiet", *extra],
        env={**os.environ, "PHI_GET_HOME": str(home), **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.mark.slow
def test_resume_after_kill_at_half_refetches_at_most_one_part(big: Any, home: Path) -> None:
    srv, m = big
    srv.faults.slow = 0.004
    proc = _install(srv.url, home)
    pdir = home / "partial" / m.files[0].sha256
    deadline = time.time() + 60
    while time.time() < deadline:
        done = 0
        for journal in pdir.glob("w-*/journal"):  # the process's private work folder
            spans = [tuple(map(int, line.split())) for line in journal.read_text().splitlines() if line]
            done = sum(b - a for a, b in {s[0]: s for s in sorted(spans)}.values())
        if done >= SIZE // 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _finish(proc)
    first = srv.stats.body_bytes
    assert first < SIZE, "killed too late to test resume"
    srv.faults.slow = 0.0
    srv.stats.body_bytes = 0
    second = _install(srv.url, home)
    rc, err = _finish(second)
    assert rc == 0, err
    part = 8 << 20
    assert srv.stats.body_bytes <= SIZE - first + part, (first, srv.stats.body_bytes)
    load_artifact_folder(next((home / "artifacts" / "sha256").iterdir()))


@pytest.mark.slow
@pytest.mark.parametrize("lease", [True, False], ids=["with-lease", "lease-does-not-exclude"])
def test_eight_concurrent_installs(big: Any, home: Path, lease: bool) -> None:
    srv, _m = big
    srv.faults.slow = 0.001
    env = {} if lease else {"PHI_GET_NO_LEASE": "1"}
    procs = [_install(srv.url, home, env=env) for _ in range(8)]
    results = [_finish(p) for p in procs]
    assert [rc for rc, _ in results] == [0] * 8, results
    folders = list((home / "artifacts" / "sha256").iterdir())
    assert len(folders) == 1
    load_artifact_folder(folders[0])
    if lease:
        assert srv.stats.body_bytes <= 1.1 * SIZE, srv.stats.body_bytes / SIZE
    assert not list((home / "tmp").iterdir())


@pytest.mark.slow
def test_full_disk_is_a_clear_error_and_the_next_run_recovers(big: Any, home: Path) -> None:
    srv, _m = big
    proc = _install(srv.url, home, max_file_size=1 << 20)
    rc, err = _finish(proc)
    assert rc == 1, err
    assert "error: no space left on the device holding" in err and f"for {SIZE} bytes" in err, err
    assert not list((home / "artifacts" / "sha256").iterdir())
    assert not list((home / "blobs" / "sha256").iterdir())
    assert _finish(_install(srv.url, home))[0] == 0
    load_artifact_folder(next((home / "artifacts" / "sha256").iterdir()))
