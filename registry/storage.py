"""Blob storage: content-addressed, immutable, written atomically.

The service sees storage only through :class:`BlobStore` (a Protocol), so an
object-store backend can follow; :class:`FilesystemBlobStore` is the default.

Filesystem layout (version 1, recorded in ``ROOT/LAYOUT``)::

    ROOT/LAYOUT                         "phi-get.blobstore/v1"
    ROOT/blobs/sha256/<hex[:2]>/<hex>   a blob, named by the sha256 of its bytes
    ROOT/uploads/<random>.part          an upload in progress (never served)

An upload is written to ``uploads/``, hashed while it streams, capped at its
declared size, and renamed into ``blobs/`` (``os.replace``) only once its size
and sha256 match: a blob under its name is always complete and correct.  A
crash leaves at most a ``.part`` file, which ``gc`` removes.  Two uploads of
the same blob race harmlessly: both hold the same bytes, the last rename wins.

Imports only :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from phi_get.manifests.names import hex_of

from .errors import BadRequestError, BlobIntegrityError, TooLargeError

__all__ = ["STORE_LAYOUT", "BlobStore", "FilesystemBlobStore", "Upload"]

STORE_LAYOUT: Final = "phi-get.blobstore/v1"
_HEX: Final = re.compile(r"^[0-9a-f]{64}$")


class Upload(Protocol):
    """One blob being written; nothing is visible until :meth:`commit`."""

    @property
    def received(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Where blob bytes live, addressed by the hex sha256 of their content."""

    def size(self, sha256_hex: str) -> int | None:
        """The blob's size, or None when absent."""

    def open(self, sha256_hex: str) -> BinaryIO:
        """The blob for reading (FileNotFoundError when absent)."""

    def local_path(self, sha256_hex: str) -> Path | None:
        """A local file holding the blob, for zero-copy serving and hard links;
        None for backends without one (then :meth:`open` is used)."""

    def begin_upload(self, sha256_hex: str, size: int) -> Upload:
        """Start writing a blob that must be exactly ``size`` bytes with that sha256."""

    def delete(self, sha256_hex: str) -> bool:
        """Remove a blob; False when it was not there."""

    def mtime(self, sha256_hex: str) -> float:
        """When the blob was last written or touched (0.0 when absent)."""

    def touch(self, sha256_hex: str) -> None:
        """Mark the blob as just used (gc spares young blobs)."""

    def blobs(self) -> Iterator[tuple[str, int]]:
        """Every stored blob as (hex, size)."""

    def remove_stale_uploads(self, older_than_s: float) -> int:
        """Delete uploads untouched for ``older_than_s`` seconds; return how many."""


class _FileUpload:
    __slots__ = ("_fh", "_hash", "_hex", "_path", "_size", "_store", "received")

    def __init__(self, store: FilesystemBlobStore, sha256_hex: str, size: int) -> None:
        self._store = store
        self._hex = sha256_hex
        self._size = size
        self._path = store.root / "uploads" / f"{secrets.token_hex(16)}.part"
        self._fh: BinaryIO | None = open(self._path, "xb")  # noqa: SIM115 - open for the upload's lifetime
        self._hash = hashlib.sha256()
        self.received = 0

    def write(self, chunk: bytes) -> None:
        if self._fh is None:
            raise BadRequestError("upload already finished")
        self.received += len(chunk)
        if self.received > self._size:
            self.abort()
            raise TooLargeError(
                f"upload of blob sha256:{self._hex} is over its declared size of {self._size} bytes"
            )
        self._hash.update(chunk)
        self._fh.write(chunk)

    def commit(self) -> None:
        if self._fh is None:
            raise BadRequestError("upload already finished")
        if self.received != self._size:
            got = self.received
            self.abort()
            raise BlobIntegrityError(
                f"upload of blob sha256:{self._hex} is truncated: got {got} of {self._size} bytes"
            )
        actual = self._hash.hexdigest()
        if actual != self._hex:
            self.abort()
            raise BlobIntegrityError(f"uploaded bytes have sha256:{actual}, not the declared sha256:{self._hex}")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        target = self._store.blob_file(self._hex)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, target)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._path.unlink(missing_ok=True)


class FilesystemBlobStore:
    """The default :class:`BlobStore`: a folder on the local filesystem."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        marker = self.root / "LAYOUT"
        if marker.exists():
            found = marker.read_text(encoding="utf-8").strip()
            if found != STORE_LAYOUT:
                raise BadRequestError(f"blob store {self.root} has layout {found!r}; this phi-get reads {STORE_LAYOUT}")
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            tmp = self.root / f".LAYOUT.{secrets.token_hex(4)}"
            tmp.write_text(STORE_LAYOUT + "\n", encoding="utf-8")
            os.replace(tmp, marker)

    def blob_file(self, sha256_hex: str) -> Path:
        h = hex_of(sha256_hex, "digest", "blob store")
        return self.root / "blobs" / "sha256" / h[:2] / h

    def size(self, sha256_hex: str) -> int | None:
        try:
            return self.blob_file(sha256_hex).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, sha256_hex: str) -> BinaryIO:
        return open(self.blob_file(sha256_hex), "rb")

    def local_path(self, sha256_hex: str) -> Path | None:
        return self.blob_file(sha256_hex)

    def begin_upload(self, sha256_hex: str, size: int) -> Upload:
        hex_of(sha256_hex, "digest", "blob store")
        return _FileUpload(self, sha256_hex, size)

    def delete(self, sha256_hex: str) -> bool:
        try:
            self.blob_file(sha256_hex).unlink()
        except FileNotFoundError:
            return False
        return True

    def mtime(self, sha256_hex: str) -> float:
        try:
            return self.blob_file(sha256_hex).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def touch(self, sha256_hex: str) -> None:
        try:
            os.utime(self.blob_file(sha256_hex))
        except FileNotFoundError:
            pass

    def blobs(self) -> Iterator[tuple[str, int]]:
        top = self.root / "blobs" / "sha256"
        for prefix in sorted(top.iterdir()):
            if not prefix.is_dir():
                continue
            for path in sorted(prefix.iterdir()):
                if _HEX.match(path.name):  # skip anything that is not a blob
                    yield path.name, path.stat().st_size

    def uploads(self) -> list[Path]:
        return sorted((self.root / "uploads").glob("*.part"))

    def remove_stale_uploads(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.uploads():
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
