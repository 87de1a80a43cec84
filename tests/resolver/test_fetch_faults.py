"""The fetch core under faults found in review: a Range-ignoring source that also drops, a failing write,
a Windows-style undeletable folder, cancellation.  Each install is verified by sha256 before placing."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.manifest import FileEntry
from phi_get.resolver import fetch
from phi_get.resolver.errors import IntegrityError
from phi_get.resolver.store import Store

SIZE = 3 << 20 | 777


@pytest.fixture()
def source(tmp_path: Path, kit: Any) -> Iterator[tuple[Any, FileEntry, bytes]]:
    data = os.urandom(SIZE)
    entry = FileEntry(path="w.bin", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    blobs = tmp_path / "mirror" / "v1" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / entry.sha256).write_bytes(data)
    with kit.LoopbackServer(tmp_path / "mirror") as srv:
        yield srv, entry, data


def _url(srv: Any, entry: FileEntry) -> str:
    return f"{srv.url}/v1/blobs/sha256/{entry.sha256}"


def test_a_source_ignoring_range_that_also_drops_resumes_at_the_right_offset(
        source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-stream fallback retries without Range: the 200 answer starts at byte 0 again and must be skipped."""
    srv, entry, data = source
    monkeypatch.setattr(fetch, "_part_size", lambda size, workers: 1 << 20)  # parts, so the fallback is used
    srv.faults.ignore_range = True
    srv.faults.drop_after = 1536 << 10
    srv.faults.drop_count = 0

    class DropOnceInTheFallback(fetch.NullReporter):
        def note(self, message: str) -> None:
            if "ignores Range" in message:
                srv.faults.drop_count = 1

    store = Store(tmp_path / "home").ensure()
    stats = fetch.fetch_blob(store, entry, [_url(srv, entry)], reporter=DropOnceInTheFallback())
    assert not stats.ranged
    assert store.blob(entry.sha256).read_bytes() == data


def test_a_failed_write_fails_the_download_and_places_nothing(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Its chunk may already be hashed from memory: retrying would place bytes that were never verified."""
    data = os.urandom(SIZE)
    entry = FileEntry(path="w.bin", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    real_write = fetch.PositionalFile.write

    def flaky(self: fetch.PositionalFile, view: memoryview, pos: int) -> None:
        if pos == 1 << 20:
            with open(src, "r+b") as fh:  # the source serves other bytes from now on
                fh.seek(1 << 20)
                fh.write(b"\0" * 16)
            raise OSError(errno.EIO, "Input/output error")
        real_write(self, view, pos)

    monkeypatch.setattr(fetch.PositionalFile, "write", flaky)
    store = Store(tmp_path / "home").ensure()
    with pytest.raises(OSError, match=r"writing w\.bin failed: Input/output error") as exc:
        fetch.fetch_blob(store, entry, [src.as_uri()], workers=1)
    assert exc.value.errno == errno.EIO and str(store.partial(entry.sha256)) in str(exc.value.filename)
    assert not store.blob(entry.sha256).exists()


def test_a_corrupt_download_leaves_nothing_to_adopt_even_where_open_files_cannot_be_deleted(
        source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Windows: rmtree cannot remove a file this process holds open, so handles must close first."""
    srv, entry, data = source
    real_rmtree = shutil.rmtree

    def windows_rmtree(path: Any, ignore_errors: bool = False) -> None:
        held = {os.path.realpath(os.readlink(f"/proc/self/fd/{n}")) for n in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{n}")}
        if any(h.startswith(os.path.realpath(path) + os.sep) for h in held):
            return  # a sharing violation, swallowed as ignore_errors=True would
        real_rmtree(path, ignore_errors=ignore_errors)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to see this process's open files")
    monkeypatch.setattr(fetch.shutil, "rmtree", windows_rmtree)
    store = Store(tmp_path / "home").ensure()
    srv.faults.corrupt = True
    with pytest.raises(IntegrityError):
        fetch.fetch_blob(store, entry, [_url(srv, entry)])
    assert not list(store.partial(entry.sha256).glob("w-*")), "a folder with a journal claiming bad bytes is left"
    srv.faults.corrupt = False
    fetch.fetch_blob(store, entry, [_url(srv, entry)])
    assert store.blob(entry.sha256).read_bytes() == data


def test_cancel_stops_a_download_within_a_chunk_and_keeps_it_resumable(source: Any, tmp_path: Path) -> None:
    srv, entry, data = source
    srv.faults.slow = 0.02  # 64 KiB per 20 ms and connection: the whole blob would take seconds
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    store = Store(tmp_path / "home").ensure()
    with pytest.raises(fetch.FetchCancelled):
        fetch.fetch_blob(store, entry, [_url(srv, entry)], cancel=cancel)
    assert srv.stats.body_bytes < entry.size, "cancelled only after the whole blob was sent"
    assert not store.blob(entry.sha256).exists()
    assert list(store.partial(entry.sha256).glob("w-*/journal"))  # the next run resumes from here
    srv.faults.slow = 0.0
    stats = fetch.fetch_blob(store, entry, [_url(srv, entry)])
    assert stats.resumed > 0 and store.blob(entry.sha256).read_bytes() == data


def test_one_file_failing_stops_the_other_downloads(tmp_path: Path, kit: Any, home: Path) -> None:
    """An artifact whose small file is missing from the source: the install fails without fetching the big one."""
    import phi_get
    from phi_get.resolver.errors import SourceError

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 << 20))
    files: dict[str, bytes | Path] = {"weights.bin": big, "tokenizer.json": b"{}" * 100}
    m = kit.make_manifest("two-files", "1.0.0", "safetensors-fp32", files, max_context=4096)
    mirror = kit.write_mirror(tmp_path / "mirror", [(m, files)])
    missing = next(f for f in m.files if f.path == "tokenizer.json")
    (mirror / "v1" / "blobs" / "sha256" / missing.sha256).unlink()
    with kit.LoopbackServer(mirror) as srv:
        srv.faults.slow = 0.01  # the big file alone would take several seconds
        with pytest.raises(SourceError, match="blob not found"):
            phi_get.install("two-files", registry=srv.url, device="pi-board")
        assert srv.stats.body_bytes < 24 << 20, "the other download ran to the end first"


def test_a_part_that_keeps_dropping_but_advancing_still_finishes(source: Any, tmp_path: Path) -> None:
    """More drops on one part than the retry budget: each attempt made progress, so none counts against it."""
    srv, entry, data = source
    srv.faults.drop_after = 256 << 10
    srv.faults.drop_count = 3 * fetch._RETRIES
    store = Store(tmp_path / "home").ensure()
    stats = fetch.fetch_blob(store, entry, [_url(srv, entry)], workers=1)  # one worker: one part takes every drop
    assert srv.faults.drop_count == 0  # every drop happened
    assert stats.downloaded == entry.size and store.blob(entry.sha256).read_bytes() == data
