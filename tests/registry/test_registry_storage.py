"""The blob store and the Range parser: unit and property tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from phi_get.registry.blobresponse import parse_range
from phi_get.registry.errors import BadRequestError, BlobIntegrityError, TooLargeError
from phi_get.registry.storage import STORE_LAYOUT, FilesystemBlobStore


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_layout_is_recorded_and_checked(tmp_path: Path) -> None:
    FilesystemBlobStore(tmp_path / "s")
    assert (tmp_path / "s" / "LAYOUT").read_text() == STORE_LAYOUT + "\n"
    (tmp_path / "s" / "LAYOUT").write_text("phi-get.blobstore/v9\n")
    with pytest.raises(BadRequestError, match="has layout 'phi-get.blobstore/v9'; this phi-get reads"):
        FilesystemBlobStore(tmp_path / "s")


def test_upload_becomes_visible_only_on_commit(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    data = b"hello blob" * 1000
    up = store.begin_upload(_hex(data), len(data))
    up.write(data[:5000])
    assert store.size(_hex(data)) is None and len(list((tmp_path / "uploads").iterdir())) == 1
    up.write(data[5000:])
    up.commit()
    assert store.size(_hex(data)) == len(data)
    assert store.blob_file(_hex(data)) == tmp_path / "blobs" / "sha256" / _hex(data)[:2] / _hex(data)
    assert list((tmp_path / "uploads").iterdir()) == []
    with store.open(_hex(data)) as fh:
        assert fh.read() == data
    assert list(store.blobs()) == [(_hex(data), len(data))]


@pytest.mark.parametrize(("chunks", "declared", "error", "message"), [
    ([b"abc", b"def"], 5, TooLargeError, "is over its declared size of 5 bytes"),
    ([b"abc"], 6, BlobIntegrityError, "is truncated: got 3 of 6 bytes"),
    ([b"abd"], 3, BlobIntegrityError, "uploaded bytes have sha256:"),
])
def test_bad_uploads_leave_nothing(tmp_path: Path, chunks: list[bytes], declared: int,
                                   error: type[Exception], message: str) -> None:
    store = FilesystemBlobStore(tmp_path)
    target = _hex(b"abcdef"[:declared]) if declared != 3 else _hex(b"abc")
    up = store.begin_upload(target, declared)
    with pytest.raises(error, match=message):
        for c in chunks:
            up.write(c)
        up.commit()
    assert list(store.blobs()) == [] and list((tmp_path / "uploads").iterdir()) == []


def test_stale_uploads_and_stray_files(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    (tmp_path / "uploads" / "x.part").write_bytes(b"half")
    (tmp_path / "blobs" / "sha256" / "ab").mkdir()
    (tmp_path / "blobs" / "sha256" / "ab" / "not-a-blob").write_bytes(b"?")
    assert list(store.blobs()) == []
    assert store.remove_stale_uploads(3600) == 0
    assert store.remove_stale_uploads(0) == 1
    with pytest.raises(ValueError, match="expected 64 lower-case hex digits"):
        store.blob_file("../../etc/passwd")


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-9", (0, 10)), ("bytes=5-", (5, 100)), ("bytes=-10", (90, 100)), ("bytes=90-200", (90, 100)),
    ("bytes=-200", (0, 100)), ("bytes=100-", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
    ("bytes=9-3", None), ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=-", None), (None, None),
])
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 100) == expected


@given(size=st.integers(0, 10_000), a=st.integers(0, 20_000), b=st.integers(0, 20_000))
def test_parse_range_never_leaves_the_blob(size: int, a: int, b: int) -> None:
    for header in (f"bytes={a}-{b}", f"bytes={a}-", f"bytes=-{b}"):
        got = parse_range(header, size)
        if isinstance(got, tuple):
            start, end = got
            assert 0 <= start < end <= size


def test_a_store_without_local_files_is_served_and_exported(tmp_path: Path) -> None:
    """The service needs only the BlobStore protocol: a backend with no local
    files (an object store) is streamed through open() and copied on export."""
    import httpx
    from phi_get.registry.export import export_mirror
    from phi_get.registry.server import open_registry, running_server
    from phi_get.registry.testing import make_manifest
    from phi_get.registry.tokens import Principal

    class NoLocalFiles(FilesystemBlobStore):
        def local_path(self, sha256_hex: str) -> Path | None:
            return None

    registry = open_registry(f"sqlite:///{tmp_path}/catalog.sqlite3", tmp_path / "store")
    registry.store = NoLocalFiles(tmp_path / "store")
    data = b"remote bytes " * 1000
    up = registry.store.begin_upload(_hex(data), len(data))
    up.write(data)
    up.commit()
    m = make_manifest([("model.gguf", len(data), _hex(data))])
    registry.publish(Principal(token_id="t", scopes=frozenset({"admin"})), m.to_bytes())
    try:
        with running_server(registry) as url:
            r = httpx.get(f"{url}/v1/blobs/sha256/{_hex(data)}")
            assert (r.status_code, r.content, r.headers["content-length"]) == (200, data, str(len(data)))
        export_mirror(registry, tmp_path / "mirror")
        assert (tmp_path / "mirror" / "v1" / "blobs" / "sha256" / _hex(data)).read_bytes() == data
    finally:
        registry.engine.dispose()
