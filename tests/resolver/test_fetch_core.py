"""The fetch core in one process: private work folders, direct I/O, hashing from memory, spilling.

These drive :func:`phi_get.resolver.fetch.fetch_blob` against the loopback
server with a multi-MiB blob, and check the buffer policy of ``_take`` on
a job built by hand.  Every install here is verified by sha256 before it
is placed, so a chunk written or hashed at the wrong offset fails the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.manifest import FileEntry
from phi_get.resolver import fetch, workfolders
from phi_get.resolver.fetch import fetch_blob
from phi_get.resolver.store import Store

SIZE = 24 << 20 | 12345  # three 8 MiB parts and an unaligned tail


@pytest.fixture()
def blob(tmp_path: Path, kit: Any) -> Iterator[tuple[Any, FileEntry]]:
    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(SIZE))
    files: dict[str, bytes | Path] = {"weights.bin": data}
    m = kit.make_manifest("blob-model", "1.0.0", "safetensors-fp32", files, max_context=4096)
    kit.write_mirror(tmp_path / "mirror", [(m, files)])
    with kit.LoopbackServer(tmp_path / "mirror") as srv:
        yield srv, m.files[0]


def _url(srv: Any, entry: FileEntry) -> str:
    return f"{srv.url}/v1/blobs/sha256/{entry.sha256}"


def _placed(store: Store, entry: FileEntry) -> bytes:
    path = store.blob(entry.sha256)
    assert path.stat().st_size == entry.size
    return path.read_bytes()


def _direct_io_works(folder: Path) -> bool:
    if not getattr(os, "O_DIRECT", 0):
        return False
    probe = folder / "direct-probe"
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


@pytest.mark.parametrize("direct", ["1", "0"], ids=["direct-io", "buffered"])
def test_both_write_paths_place_the_exact_bytes(blob: Any, tmp_path: Path, direct: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    srv, entry = blob
    monkeypatch.setenv("PHI_GET_DIRECT_IO", direct)
    store = Store(tmp_path / "home").ensure()
    opened: list[int] = []
    real_open = fetch._open_direct
    monkeypatch.setattr(fetch, "_open_direct", lambda path: opened.append(fd := real_open(path)) or fd)
    stats = fetch_blob(store, entry, [_url(srv, entry)])
    assert stats.downloaded == entry.size and not stats.resumed
    assert _placed(store, entry) == (tmp_path / "weights.bin").read_bytes()
    if direct == "1" and _direct_io_works(tmp_path):
        assert opened and opened[0] >= 0, "direct I/O was available but not used"
    if direct == "0":
        assert opened == [-1]
    assert not list((store.home / "partial").iterdir())


def test_a_slow_source_keeps_every_connection_busy_and_spills(blob: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """When the network is the bottleneck, workers fetching ahead of the hasher spill to disk instead of idling."""
    srv, entry = blob
    srv.faults.slow = 0.002  # every 64 KiB: the hasher waits for bytes most of the time
    monkeypatch.setattr(fetch, "_part_size", lambda size, workers: 4 << 20)
    monkeypatch.setattr(fetch, "_POOL_PER_WORKER", 1)  # 4 buffers: fetching ahead soon runs out of memory
    store = Store(tmp_path / "home").ensure()
    stats = fetch_blob(store, entry, [_url(srv, entry)])
    assert stats.read_back > 0, "no chunk was spilled: workers ahead of the hasher must have waited"
    assert stats.read_back < entry.size
    assert _placed(store, entry) == (tmp_path / "weights.bin").read_bytes()


@pytest.mark.skipif(os.name == "nt", reason="liveness of another pid is not checked on Windows")
def test_a_live_process_work_folder_is_never_adopted(blob: Any, tmp_path: Path, other_process: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the lease does not exclude, another live download's file is not shared: a bad journal there is harmless.

    The folder below claims every byte is written but holds zeros.  Had this
    install adopted it (or shared one file, as a single ``partial/<hex>/data``
    would), it would hash zeros and fail; it starts its own folder instead.
    """
    srv, entry = blob
    monkeypatch.setenv("PHI_GET_NO_LEASE", "1")
    store = Store(tmp_path / "home").ensure()
    pdir = store.partial(entry.sha256)
    live = pdir / _name_for_pid(other_process.pid)  # another process of this host, alive
    live.mkdir(parents=True)
    (live / "data").write_bytes(bytes(entry.size))
    (live / "journal").write_text(f"0 {entry.size}\n")
    stats = fetch_blob(store, entry, [_url(srv, entry)])
    assert stats.resumed == 0 and stats.downloaded == entry.size
    assert _placed(store, entry) == (tmp_path / "weights.bin").read_bytes()


def test_a_dead_process_work_folder_is_adopted_and_resumed(blob: Any, tmp_path: Path) -> None:
    srv, entry = blob
    store = Store(tmp_path / "home").ensure()
    pdir = store.partial(entry.sha256)
    dead = pdir / _name_for_pid(999999999)  # same host, a pid that cannot exist
    dead.mkdir(parents=True)
    src = (tmp_path / "weights.bin").read_bytes()
    half = 12 << 20
    (dead / "data").write_bytes(src[:half] + bytes(entry.size - half))
    (dead / "journal").write_text(f"0 {half}\n")
    stats = fetch_blob(store, entry, [_url(srv, entry)])
    assert stats.resumed == half and stats.downloaded == entry.size - half
    assert stats.read_back >= half  # what was on disk is hashed from disk
    assert _placed(store, entry) == src


def _name_for_pid(pid: int) -> str:
    prefix, host, _pid, rand = workfolders._work_name().split("-")
    return "-".join([prefix, host, str(pid), rand])


@pytest.fixture()
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_orphaned_means_owner_gone_or_silent(tmp_path: Path, other_process: Any) -> None:
    live = tmp_path / _name_for_pid(other_process.pid)
    live.mkdir()
    (live / "data").write_bytes(b"x")
    old = time.time() - fetch.LEASE_STALE_S - 5
    for path in (live, live / "data"):
        os.utime(path, (old, old))
    if os.name != "nt":
        assert not workfolders._orphaned(live)  # a live process of this host, however quiet: never
    mine = tmp_path / workfolders._work_name()
    mine.mkdir()
    assert workfolders._orphaned(mine)  # this process, but no download of it uses the folder (cancelled, say)
    dead = tmp_path / _name_for_pid(999999999)
    dead.mkdir()
    assert workfolders._orphaned(dead)  # this host, a pid that is gone
    other = tmp_path / "w-0123456789ab-1-abcdef"  # another host's pid 1: judged by age only
    other.mkdir()
    (other / "journal").write_text("0 1\n")
    assert not workfolders._orphaned(other)
    for path in (other, other / "journal"):
        os.utime(path, (old, old))
    assert workfolders._orphaned(other)
    assert not workfolders._orphaned(tmp_path / "w-0123456789ab-2-vanished")  # gone meanwhile: nothing to adopt


def test_gc_leaves_a_download_with_a_fresh_lease_alone(tmp_path: Path) -> None:
    """A download whose source has stalled for a while still holds a fresh lease: gc must not take its folder."""
    store = Store(tmp_path / "home").ensure()
    pdir = store.partial("d" * 64)
    quiet = pdir / "w-0123456789ab-1-abcdef"  # looks silent by age...
    quiet.mkdir(parents=True)
    old = time.time() - fetch.LEASE_STALE_S - 5
    os.utime(quiet, (old, old))
    (pdir / "lease").write_text(f"{socket.gethostname()} {os.getpid()}\n")  # ...but its lease is alive
    assert fetch.abandoned_downloads(pdir, blob_present=False) == []
    (pdir / "lease").unlink()
    assert fetch.abandoned_downloads(pdir, blob_present=False) == [pdir]


def _job(pool_size: int, *, segments: int = 3) -> Any:
    entry = FileEntry(path="w.bin", size=segments << 20, sha256="0" * 64)
    segs = [fetch._Segment(i << 20, (i + 1) << 20) for i in range(segments)]
    return fetch._Job(entry=entry, urls=["http://127.0.0.1:9/x"], file=fetch.PositionalFile(-1), jfd=-1,
                      segments=segs, reporter=fetch.NullReporter(), label="w.bin", pool_size=pool_size,
                      chunk=1 << 20, file_path=Path("w.bin"), cancel=threading.Event())


def _take_within(job: Any, seg: Any, spill: list[memoryview], seconds: float = 0.3) -> Any:
    """``_take`` in a thread: its chunk, or "waiting" if it did not return in time (then the job is stopped)."""
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(fetch._take(job, seg, seg.start, spill)))
    t.start()
    t.join(seconds)
    if t.is_alive():
        job.stop.set()
        t.join()
        return "waiting"
    return got[0]


def test_fetching_ahead_waits_for_a_busy_hasher_and_spills_for_a_waiting_one() -> None:
    job = _job(pool_size=4)
    first, ahead = job.segments[0], job.segments[1]
    spill = [fetch._new_buffer(1 << 20)]
    taken = [fetch._take(job, ahead, ahead.start, spill) for _ in range(2)]  # half the pool may fetch ahead
    assert all(c.hashable for c in taken)
    assert _take_within(job, ahead, spill) == "waiting"  # hasher busy: wait, leave it the CPU
    job.stop.clear()
    job.starved_since = 0.0
    chunk = _take_within(job, ahead, spill)  # hasher starved: spill, keep the connection busy
    assert chunk != "waiting" and not chunk.hashable and not spill
    job.starved_since = None
    for _ in range(2):  # the hasher's next bytes always get memory, up to the whole pool
        got = fetch._take(job, first, first.start, spill)
        assert got.hashable


def test_gc_removes_abandoned_downloads_and_keeps_live_ones(tmp_path: Path, other_process: Any) -> None:
    from phi_get.resolver.maintenance import gc_store

    store = Store(tmp_path / "home").ensure()
    dead_name = _name_for_pid(999999999)

    gone = store.partial("a" * 64) / dead_name  # its process is gone, no lease: the whole download goes
    gone.mkdir(parents=True)
    (gone / "data").write_bytes(b"x" * 1000)
    live = store.partial("b" * 64) / _name_for_pid(other_process.pid)  # a live process, working: stays
    live.mkdir(parents=True)
    (live / "data").write_bytes(b"y" * 10)
    beside = store.partial("b" * 64) / dead_name  # a dead one beside a live one: only it goes
    beside.mkdir()
    (beside / "data").write_bytes(b"z" * 100)
    done = store.partial("c" * 64) / workfolders._work_name()  # the blob is in the store already: moot
    done.mkdir(parents=True)
    store.blob("c" * 64).write_bytes(b"")

    report = gc_store(store)
    assert not store.partial("a" * 64).exists() and not beside.exists() and not store.partial("c" * 64).exists()
    assert (live / "data").read_bytes() == b"y" * 10
    assert f"partial/{'a' * 64}" in report.removed and f"partial/{'b' * 64}/{dead_name}" in report.removed
    assert report.freed_bytes >= 1100


def test_reading_back_spilled_bytes_does_not_make_workers_spill_more(tmp_path: Path, kit: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A moment's stall spills a little; hashing those bytes back must not keep the workers spilling to the end.

    The first part stalls once, so the workers fetching ahead spill while the
    hasher waits; the disk reads back slowly (a busy disk).  While the hasher
    reads back it is busy, not waiting: the workers wait for a buffer.  Had
    reading back counted as waiting, each read-back would spill more, and
    nearly the whole blob would go to disk and back (as it did: 864 of 1024
    MiB in one round of bench/install_throughput.py).
    """
    size = 128 << 20
    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(size))
    files: dict[str, bytes | Path] = {"weights.bin": data}
    m = kit.make_manifest("blob-model", "1.0.0", "safetensors-fp32", files, max_context=4096)
    kit.write_mirror(tmp_path / "mirror", [(m, files)])
    entry = m.files[0]
    monkeypatch.setattr(fetch, "_part_size", lambda size, workers: 4 << 20)  # 1 MiB chunks
    slow_back = fetch.PositionalFile.read_back

    def busy_disk(self: Any, buf: memoryview, pos: int, want: int) -> int:
        time.sleep(0.03)
        return slow_back(self, buf, pos, want)

    monkeypatch.setattr(fetch.PositionalFile, "read_back", busy_disk)
    with kit.LoopbackServer(tmp_path / "mirror") as srv:
        srv.faults.stall_first = 0.05
        store = Store(tmp_path / "home").ensure()
        stats = fetch_blob(store, entry, [_url(srv, entry)])
    assert stats.read_back > 0, "nothing was spilled during the stall: the case is not the one under test"
    assert stats.read_back < size // 4, f"{stats.read_back >> 20} of {size >> 20} MiB were spilled and read back"
    assert _placed(store, entry) == data.read_bytes()
