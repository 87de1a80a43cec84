"""Block I/O for downloads: positional reads and writes, direct I/O where the file system takes it.

Positional I/O (:class:`PositionalFile`): ``os.pread``/``os.pwrite`` where
the OS has them; where it does not (Windows), ``lseek`` + ``read``/``write``
under one lock per file, so the workers and the hasher never move each
other's file position between a seek and its read or write.  Direct I/O
(``O_DIRECT``, Linux; off with ``PHI_GET_DIRECT_IO=0``): block-aligned
writes bypass the page cache; a file system that refuses it is written
buffered.  The download pipeline that uses these: :mod:`.fetch`.

Imports the standard library only.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Final

__all__ = ["PositionalFile"]

_ALIGN: Final = 4096         # direct I/O needs offsets and lengths in whole blocks of this
_O_BINARY: Final = getattr(os, "O_BINARY", 0)
_O_DIRECT: Final = getattr(os, "O_DIRECT", 0)  # Linux; 0 where the OS has no direct I/O
_DIRECT_ENV: Final = "PHI_GET_DIRECT_IO"       # "0": buffered writes only


class PositionalFile:
    """Reads and writes at an offset without a shared file position: safe from many threads.

    ``native``: use ``os.pread``/``os.pwrite`` (POSIX); False (or where the OS
    lacks them, as Windows does) seeks and reads or writes under a lock.
    ``direct_fd``: a second descriptor of the same file opened with
    ``O_DIRECT``; block-aligned writes go through it, bypassing the page
    cache, the rest through ``fd``.  If the file system refuses a direct
    write (``EINVAL``), it is retried buffered and direct I/O is dropped.
    """

    __slots__ = ("_lock", "direct_fd", "fd", "native")

    def __init__(self, fd: int, *, native: bool | None = None, direct_fd: int = -1) -> None:
        self.fd = fd
        self.native = _HAS_PREAD if native is None else native
        self.direct_fd = direct_fd if self.native else -1
        self._lock = threading.Lock()

    def write(self, data: memoryview, pos: int) -> None:
        """Write all of ``data`` at ``pos`` (short writes continue where they stopped)."""
        while data:
            dfd = self.direct_fd  # once: another thread may drop direct I/O meanwhile
            if dfd >= 0 and not pos % _ALIGN and not len(data) % _ALIGN:
                try:
                    n = os.pwrite(dfd, data, pos)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self.direct_fd = -1  # this file system takes no direct I/O (or not with this alignment)
                    continue
            elif self.native:
                n = os.pwrite(self.fd, data, pos)
            else:
                with self._lock:
                    os.lseek(self.fd, pos, os.SEEK_SET)
                    n = os.write(self.fd, data)
            data, pos = data[n:], pos + n

    def read_back(self, buf: memoryview, pos: int, want: int) -> int:
        """Read up to ``want`` bytes at ``pos`` into ``buf`` (page-aligned, ``want`` rounded up to a block).

        Through the direct descriptor where one is in use: bytes written
        around the page cache are read the same way, never from a page the
        kernel cached before they were written.  0 at the end of the file.
        """
        dfd = self.direct_fd
        if dfd >= 0 and not pos % _ALIGN:
            ask = -(-want // _ALIGN) * _ALIGN
            try:
                return min(want, os.preadv(dfd, [buf[:ask]], pos))
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct_fd = -1
        return self.readinto(buf[:want], pos)

    def readinto(self, buf: memoryview, pos: int) -> int:
        """Read up to ``len(buf)`` bytes at ``pos`` into ``buf``; 0 at the end of the file."""
        if self.native and _HAS_PREADV:
            return os.preadv(self.fd, [buf], pos)
        if self.native:
            chunk = os.pread(self.fd, len(buf), pos)
        else:
            with self._lock:
                os.lseek(self.fd, pos, os.SEEK_SET)
                chunk = os.read(self.fd, len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)


_HAS_PREAD: Final = hasattr(os, "pread") and hasattr(os, "pwrite")
_HAS_PREADV: Final = hasattr(os, "preadv")


def _open_direct(path: Path) -> int:
    """An ``O_DIRECT`` descriptor of ``path``, or -1 (no direct I/O on this OS or file system)."""
    if not _O_DIRECT or os.environ.get(_DIRECT_ENV, "1") == "0":
        return -1
    try:
        dfd = os.open(path, os.O_RDWR | _O_DIRECT)
    except OSError:  # tmpfs, for one, refuses O_DIRECT
        return -1
    return dfd
