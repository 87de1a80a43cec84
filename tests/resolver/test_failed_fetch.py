"""What a failed download or a refused locked sync leaves behind (SECURITY.md: half-written state).

A download that fails (the source goes away, the blob is missing) keeps
only the bytes its journal covers, so it resumes, but holds no preallocated
full-size file until gc; ``sync --locked`` compares the lock's file list
with the manifest before it fetches or places anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.manifest import FileEntry
from phi_get.resolver import fetch, workfolders
from phi_get.resolver.errors import IntegrityError, SourceError
from phi_get.resolver.lock import lock_project, sync_locked
from phi_get.resolver.store import Store
from wirekit import ONE_CLASS_PROJECT

SIZE = 8 << 20 | 777  # one part, 1 MiB chunks, an unaligned tail


@pytest.fixture()
def blob(tmp_path: Path, kit: Any) -> Iterator[tuple[Any, FileEntry, bytes]]:
    data = os.urandom(SIZE)
    files: dict[str, bytes | Path] = {"weights.bin": data}
    m = kit.make_manifest("blob-model", "1.0.0", "safetensors-fp32", files, max_context=4096)
    kit.write_mirror(tmp_path / "mirror", [(m, files)])
    with kit.LoopbackServer(tmp_path / "mirror") as srv:
        yield srv, m.files[0], data


def _url(srv: Any, entry: FileEntry) -> str:
    return f"{srv.url}/v1/blobs/sha256/{entry.sha256}"


class GoDownAfter(fetch.NullReporter):
    """Switch the server to 503 once ``limit`` bytes have come in: the download fails part-way."""

    def __init__(self, srv: Any, limit: int) -> None:
        self.srv, self.limit, self.got = srv, limit, 0

    def advance(self, label: str, n: int) -> None:
        self.got += n
        if self.got >= self.limit:
            self.srv.faults.down = True


def _journal_end(work: Path) -> int:
    spans = [tuple(map(int, line.split())) for line in (work / "journal").read_text().splitlines() if line]
    return max(b for _a, b in spans)


def test_a_failed_download_keeps_only_what_its_journal_covers(blob: Any, tmp_path: Path) -> None:
    """Class 8: a download that fails part-way holds no full-size preallocated file; the next run resumes it."""
    srv, entry, data = blob
    srv.faults.slow = 0.001
    store = Store(tmp_path / "home").ensure()
    with pytest.raises(SourceError, match=r"download of weights\.bin failed after \d+ attempts"):
        fetch.fetch_blob(store, entry, [_url(srv, entry)], reporter=GoDownAfter(srv, 2 << 20), workers=1)
    works = list(store.partial(entry.sha256).glob("w-*"))
    assert len(works) == 1
    left = (works[0] / "data").stat()
    assert left.st_size == _journal_end(works[0]) < entry.size  # not the preallocated full size
    assert left.st_blocks * 512 < entry.size
    srv.faults.down = srv.faults.slow = False
    stats = fetch.fetch_blob(store, entry, [_url(srv, entry)])
    assert stats.resumed == left.st_size and stats.downloaded == entry.size - left.st_size
    assert store.blob(entry.sha256).read_bytes() == data
    assert not store.partial(entry.sha256).exists()


def test_a_download_that_got_nothing_leaves_nothing(blob: Any, tmp_path: Path) -> None:
    """Class 8: a blob the source does not have leaves no work folder (and no preallocated file) behind."""
    srv, entry, _data = blob
    store = Store(tmp_path / "home").ensure()
    missing = FileEntry(path="gone.bin", size=entry.size, sha256="e" * 64)
    with pytest.raises(SourceError, match="blob not found"):
        fetch.fetch_blob(store, missing, [_url(srv, missing)], workers=1)
    assert not list(store.partial(missing.sha256).glob("w-*"))


def test_sync_locked_checks_the_file_list_before_fetching_anything(served: Any, home: Path, mirror: Any,
                                                                   tmp_path: Path) -> None:
    """Class 8: a lock whose file list is not the manifest's is refused before any blob is fetched or placed."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "phi.toml").write_text(ONE_CLASS_PROJECT.format(url=served.url))
    lock_project(folder, home)
    new = mirror[1][1]
    weights = next(f for f in new.files if f.path == "model.bin")
    lock = folder / "phi.lock"
    text = lock.read_text()
    assert f"size = {weights.size}, sha256" in text
    lock.write_text(text.replace(f"size = {weights.size}, sha256", f"size = {weights.size + 1}, sha256"))
    before = len(served.stats.requests)
    with pytest.raises(IntegrityError, match=r"files of tiny-model 0\.2\.0 safetensors-fp32 .*phi\.lock.* does "
                                             r"not match: expected .*'model\.bin', 800001, ") as exc:
        sync_locked(folder, home, device_class="edge")
    assert not [p for p, _ in served.stats.requests[before:] if "/blobs/" in p]  # not one blob asked for
    assert exc.value.hint.startswith("nothing was installed")
    assert "(tiny-model, device class edge)" in str(exc.value)  # which entry of the lock
    assert not list((home / "blobs" / "sha256").iterdir())
    assert not list((home / "artifacts" / "sha256").iterdir())
    assert not list(Store(home).installed())


def test_a_resumed_download_that_fails_its_hash_is_downloaded_whole(blob: Any, tmp_path: Path) -> None:
    """Class 8: bytes kept from a failed run that turn out wrong (a bad source before) do not fail every next run."""
    srv, entry, data = blob
    store = Store(tmp_path / "home").ensure()
    prefix, host, _pid, rand = workfolders._work_name().split("-")
    dead = store.partial(entry.sha256) / f"{prefix}-{host}-999999999-{rand}"  # its process is gone
    dead.mkdir(parents=True)
    half = 4 << 20
    (dead / "data").write_bytes(bytes(entry.size))  # full size, as a killed run leaves it; all zeros...
    (dead / "journal").write_text(f"0 {half}\n")  # ...and the journal says the first half is the blob's
    seen: list[str] = []

    class Notes(fetch.NullReporter):
        def note(self, message: str) -> None:
            seen.append(message)

    stats = fetch.fetch_blob(store, entry, [_url(srv, entry)], reporter=Notes())
    assert store.blob(entry.sha256).read_bytes() == data
    assert stats.downloaded == entry.size and stats.resumed == 0
    assert any("downloading it whole" in n for n in seen), seen
