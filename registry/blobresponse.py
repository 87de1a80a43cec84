"""Serving a blob file over HTTP: HEAD, single byte ranges (206/416), ETag.

A raw ASGI response rather than Starlette's FileResponse, for two reasons:
reads are 1 MiB (fewer event-loop turns per gigabyte), and the range rules
are the registry's own and pinned by tests.  Rules (RFC 9110 section 14):

* ``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are served as 206 with
  ``Content-Range``; a range starting past the end is 416 with
  ``Content-Range: bytes */size``;
* a malformed or multi-range header is ignored (the whole blob, 200), which
  the RFC allows (14.2: a server MAY ignore or reject an invalid
  ranges-specifier); ``If-Range`` with another ETag also gives the whole blob;
* a position of any length is read without converting it whole (a
  5,000-digit position raised Python's int-string limit, a 500 with a
  traceback in the log, from an unauthenticated request): more than 19
  digits is past the end of any file.

Imports starlette/anyio only.
"""

from __future__ import annotations

import mmap
import os
import re
from typing import Final

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["BlobResponse", "parse_range"]

_CHUNK: Final = 4 << 20
_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII)  # fullmatch: no trailing newline
#: More digits than this is a position past the end of any file (2**63 has 19).
_MAX_DIGITS: Final = 19
_BEYOND: Final = 1 << 63


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else _BEYOND


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end-exclusive) for a satisfiable single range; None to send the
    whole blob; the string "unsatisfiable" for a 416."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = _position(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - n), size)
    start = _position(first)
    end = size - 1 if not last else min(_position(last), size - 1)
    if last and _position(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        return "unsatisfiable"
    return (start, end + 1)


class BlobResponse(Response):
    """Stream ``path`` (a complete, immutable blob) with range support."""

    def __init__(self, path: str | os.PathLike[str], *, etag: str, media_type: str = "application/octet-stream",
                 extra_headers: dict[str, str] | None = None) -> None:
        # A Response subclass so that FastAPI passes it through untouched;
        # Response.__init__ is not called: this class sends its own headers.
        self.background = None
        self.status_code = 200
        self.path = path
        self.etag = etag
        self.content_type = media_type
        self.extra = extra_headers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        fh = await anyio.to_thread.run_sync(open, self.path, "rb")
        try:
            size = os.fstat(fh.fileno()).st_size
            wanted = parse_range(headers.get("range"), size)
            if_range = headers.get("if-range")
            if isinstance(wanted, tuple) and if_range is not None and if_range != self.etag:
                wanted = None
            base = [(b"accept-ranges", b"bytes"), (b"etag", self.etag.encode()),
                    (b"cache-control", b"public, max-age=31536000, immutable")]
            base += [(k.encode(), v.encode()) for k, v in self.extra.items()]
            if wanted == "unsatisfiable":
                await send({"type": "http.response.start", "status": 416, "headers": base + [
                    (b"content-range", f"bytes */{size}".encode()), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            if isinstance(wanted, tuple):
                start, end = wanted
                status = 206
                base.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
            else:
                start, end, status = 0, size, 200
            base += [(b"content-type", self.content_type.encode()), (b"content-length", str(end - start).encode())]
            await send({"type": "http.response.start", "status": status, "headers": base})
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            await self._stream(fh, start, end, send)
        finally:
            fh.close()

    @staticmethod
    async def _stream(fh: object, start: int, end: int, send: Send) -> None:
        fd = fh.fileno()  # type: ignore[attr-defined]
        pos = start
        while pos < end:
            n = min(_CHUNK, end - pos)
            chunk = await anyio.to_thread.run_sync(_map_chunk, fd, pos, n)
            pos += n
            await send({"type": "http.response.body", "body": chunk, "more_body": pos < end})
        if start == end:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _map_chunk(fd: int, pos: int, n: int) -> memoryview | bytes:
    """Bytes [pos, pos+n) of the file, as a read-only view of a populated mapping.

    Mapping (with MAP_POPULATE, so the page tables are filled in one call)
    saves the copy a read() makes into a fresh buffer: the kernel copies
    straight from the page cache into the socket.  The mapping lives as long
    as the view (the event loop may still hold it in its write buffer) and
    is unmapped when the last reference goes.  Falls back to pread where
    mmap is unavailable.
    """
    aligned = pos - pos % mmap.ALLOCATIONGRANULARITY
    try:
        mm = mmap.mmap(fd, n + pos - aligned, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                       prot=mmap.PROT_READ, offset=aligned)
    except (OSError, ValueError, AttributeError):
        return os.pread(fd, n, pos)
    return memoryview(mm)[pos - aligned:]
