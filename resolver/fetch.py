"""Fetching one blob: parallel byte ranges, resume, verify-before-place.

A blob (one file's bytes, named by its sha256) is downloaded into a private
work folder, ``partial/<hex>/w-<host>-<pid>-<random>/``: ``data``
preallocated to the blob's size (a full disk fails at once, before any
transfer) and ``journal`` (the byte spans already written).  The gaps still
missing are cut into parts that worker threads fetch with HTTP ``Range``
requests, in chunks (an eighth of a part, 1-4 MiB), each received into a
buffer from a small pool, handed to the hasher, and written in place by a
writer thread of the worker's own, so receiving overlaps writing.  After
each chunk the writer appends the span written to the journal, so after a
kill only the bytes in flight are fetched again: the next run adopts the
work folder of a process that is gone (by ``rename``, so one process wins
it) and continues it.  A download that fails or is cancelled (rather than
killed) cuts its file after the last span its journal covers, so no
preallocated full-size file waits for gc, and the next run still resumes;
a resumed download whose sha256 then fails is downloaded once more, whole
(the resumed bytes may be what was wrong).  A placed blob gets its verified
record (:meth:`.store.Store.vouch`) from its identity, not a second hash.

The calling thread hashes in file order.  A chunk still in its buffer is
hashed from memory, so the bytes are not read back; bytes on disk only
(resumed from a journal, or spilled, below) are read back from the file.  Because the work folder is private, the file holds
exactly what this process wrote, and what was hashed is what is placed.
Memory stays bounded (``_POOL_PER_WORKER`` chunks per worker): workers
fetching ahead of the hasher wait for a buffer while the hasher is busy
(verification is the bottleneck, so the transfer keeps its pace instead of
competing with it for the CPU), and spill chunks to disk only, to be read
back, while the hasher waits for bytes (the network is the bottleneck, so
no connection idles).  Reading spilled bytes back is being busy, not
waiting: were it waiting, each read-back would spill more, to the end.
Only when sha256 and size match is the file moved into ``blobs/`` with
``os.replace``; on a mismatch the work folder is deleted and an
:class:`IntegrityError` raised.

Writes bypass the page cache where the OS and file system allow it
(``O_DIRECT`` for 4 KiB-aligned chunks on Linux): nothing is read back, so
caching the bytes would only cost a copy and a later write-back.  Elsewhere
(or with ``PHI_GET_DIRECT_IO=0``) writes are buffered and a flusher thread
writes dirty pages back during the download, so the final ``fsync`` has
little left to do.

Positional I/O (:class:`~.blockio.PositionalFile`, re-exported here) and
direct I/O: :mod:`.blockio`.

A server that ignores ``Range`` (answers 200) is handled by falling back to
one whole-file stream.  A dropped connection is retried from where the part
got to, on the next source URL if there are several, after a short backoff
or the ``Retry-After`` a 429 or 503 asked for (:mod:`.transport`: redirects,
credentials, deadlines).  A connection below the minimum rate
(``PHI_GET_MIN_RATE`` bytes/s over ``PHI_GET_RATE_WINDOW_S``) is dropped and
its trickle counts as no progress, so a trickling source fails the part
instead of holding it for ever.  ``file://`` URLs (a static mirror on disk)
are read directly: a regular file of exactly the declared size.

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import hashlib
import http.client
import mmap
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from phi_get.manifests.manifest import FileEntry
from phi_get.manifests.urls import redact

from . import transport
from .blockio import _O_BINARY, PositionalFile, _open_direct
from .errors import DiskFullError, IntegrityError, SourceError
from .store import Identity, Store, is_disk_full
from .workfolders import (
    _IN_USE,
    _IN_USE_LOCK,
    LEASE_STALE_S,
    _claim_work_folder,
    _Lease,
    abandoned_downloads,
)

__all__ = [
    "LEASE_STALE_S",
    "FetchCancelled",
    "FetchStats",
    "NullReporter",
    "PositionalFile",
    "Reporter",
    "abandoned_downloads",
    "fetch_blob",
]

_MIB: Final = 1 << 20
_MAX_CHUNK: Final = 4 * _MIB  # a chunk: one buffer, one write, one hash update; an eighth of a part, 1-4 MiB
_HASH_READ: Final = 4 * _MIB  # read-back size for bytes that are on disk only
_POOL_PER_WORKER: Final = 2  # memory for hashing: this many chunk buffers per worker (at most 32 MiB for 4)
#: Files are opened in binary mode on Windows (no CRLF translation); 0 elsewhere.
_RETRIES: Final = 4
_FLUSH_EVERY_S: Final = 0.25
_VANISHED_TRIES: Final = 3  # downloads of one blob whose partial/ folder was removed under them, before giving up
#: A worker fetching ahead spills once the hasher has had nothing to hash for this long: long enough to
#: ride out a moment between two chunks, short enough that a connection does not idle when the network is slow.
_SPILL_AFTER_S: Final = 0.02
#: Backoff between tries of a part when the source gave no Retry-After (transport.retry_delay): short,
#: since a dropped connection is the usual cause and the next try resumes where this one stopped.
_BACKOFF_BASE_S: Final = 0.05
_BACKOFF_CAP_S: Final = 1.0


class Reporter(Protocol):
    """Progress hook: the CLI shows bars, scripts get nothing or JSON."""

    def start(self, label: str, total: int) -> None: ...
    def advance(self, label: str, n: int) -> None: ...
    def finish(self, label: str) -> None: ...
    def note(self, message: str) -> None: ...


class NullReporter:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, label: str, n: int) -> None:
        pass

    def finish(self, label: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class FetchStats:
    """What one fetch did (for --json output and the benches)."""

    downloaded: int = 0   # bytes received from sources
    resumed: int = 0      # bytes already on disk from an interrupted run
    reused: bool = False  # the blob was already in the store
    waited: bool = False  # another process downloaded it while we waited
    ranged: bool = True   # False when the source ignored Range
    read_back: int = 0    # bytes hashed from the file (resumed, or spilled ahead of the hasher), not from memory


@dataclass
class _Segment:
    start: int
    end: int
    filled: int = 0  # contiguous bytes written from start; only its worker writes it

    @property
    def done(self) -> bool:
        return self.start + self.filled >= self.end


class _RangeIgnored(Exception):
    pass


class FetchCancelled(Exception):
    """The download was cancelled from outside (``fetch_blob(cancel=...)``); its bytes stay for resuming."""


class _WriteFailed(Exception):
    """Writing a chunk failed.  Not retried: the hasher may have hashed that chunk from memory already,
    so writing other bytes there later would place what was never verified."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Job:
    """One blob's download: the segments, the buffer pool and the chunks waiting for the hasher.

    ``lock`` guards ``segments[*].filled``, ``free``, ``pending``, ``made``,
    ``first``, ``starved_since`` and the chunks' holds.  Two conditions
    share it, so a freed buffer wakes only workers and new bytes only the
    hasher.
    """

    entry: FileEntry
    urls: list[str]
    file: PositionalFile
    jfd: int
    segments: list[_Segment]
    reporter: Reporter
    label: str
    file_path: Path  # the work folder's data file (for messages)
    cancel: threading.Event  # set from outside: stop and raise FetchCancelled
    pool_size: int  # chunk buffers for hashing from memory
    chunk: int      # bytes per chunk (and per buffer)
    ranged: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = field(init=False)   # the hasher waits on it for bytes
    space: threading.Condition = field(init=False)  # workers wait on it for a buffer
    stop: threading.Event = field(default_factory=threading.Event)
    stats: FetchStats = field(default_factory=FetchStats)
    free: list[memoryview] = field(default_factory=list)
    pending: dict[int, _Chunk] = field(default_factory=dict)  # received, not yet hashed, by offset
    made: int = 0    # buffers allocated so far (at most pool_size)
    first: int = 0   # index of the first unfinished segment (the one the hasher needs next)
    starved_since: float | None = None  # since when the hasher has taken no buffer; None while it hashes them

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)
        self.space = threading.Condition(self.lock)


def _read_journal(path: Path, size: int) -> list[tuple[int, int]]:
    spans = []
    try:
        for line in path.read_text().splitlines():
            first, _, last = line.partition(" ")
            if first.isdigit() and last.isdigit() and int(first) < int(last) <= size:
                spans.append((int(first), int(last)))
    except FileNotFoundError:
        return []
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _plan(size: int, covered: list[tuple[int, int]], part: int) -> list[_Segment]:
    """Covered spans become filled segments; each gap is cut into parts."""
    segs: list[_Segment] = []
    pos = 0
    for a, b in [*covered, (size, size)]:
        while pos < a:
            end = min(a, pos + part)
            segs.append(_Segment(pos, end))
            pos = end
        if b > a:
            segs.append(_Segment(a, b, filled=b - a))
        pos = max(pos, b)
    return segs


def _part_size(size: int, workers: int) -> int:
    return min(64 << 20, max(8 << 20, size // (workers * 4) // _MIB * _MIB or _MIB))


def _chunk_size(part: int) -> int:
    """An eighth of a part, 1-4 MiB: big chunks cost less per byte, small ones lose less in flight at a kill."""
    return max(_MIB, min(_MAX_CHUNK, part // 8 // _MIB * _MIB))


def _worker(job: _Job, seg: _Segment) -> None:
    """Fetch ``seg``, retrying from where it got to: up to ``_RETRIES`` tries per source in a row without progress.

    An attempt that moved the segment forward resets the count, so a long
    part on a link that keeps dropping still finishes.
    """
    errors: list[str] = []
    attempt = stalled = 0
    while stalled < _RETRIES * len(job.urls):
        if seg.done or job.stop.is_set():
            return
        url = job.urls[attempt % len(job.urls)]
        attempt += 1
        before = seg.filled
        asked: float | None = None  # the source's Retry-After
        slow = False  # dropped by the minimum-rate rule: the trickle it made is no progress
        try:
            if url.startswith("file://"):
                _copy_file(job, seg, url)
            else:
                _download(job, seg, url)
        except _WriteFailed as exc:
            if is_disk_full(exc.error):
                raise DiskFullError(str(job.file_path.parent), job.entry.size) from None
            raise OSError(exc.error.errno, f"writing {job.label} failed: {exc.error.strerror}",
                          str(job.file_path)) from None
        except (OSError, http.client.HTTPException, SourceError) as exc:
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise DiskFullError(str(job.file_path.parent), job.entry.size) from None
            asked, slow = getattr(exc, "asked", None), isinstance(exc, _TooSlow)
            errors.append(str(exc) if isinstance(exc, SourceError) else f"{exc} ({redact(url)})")
        else:
            errors.append(f"the answer ended before the part did ({redact(url)})")
        if seg.done or job.stop.is_set():
            return
        stalled = 0 if seg.filled > before and not slow else stalled + 1
        # Woken early when the job stops, so a long Retry-After never holds up a cancelled or failed fetch.
        job.stop.wait(transport.retry_delay(max(stalled - 1, 0), asked, base=_BACKOFF_BASE_S, cap=_BACKOFF_CAP_S))
    if not seg.done and not job.stop.is_set():
        raise SourceError(f"download of {job.label} failed after {len(errors)} attempts; last: {errors[-1]}",
                          url=job.urls[0], hint="run the command again: the download resumes where it stopped")


def _first_open(job: _Job) -> _Segment | None:
    """The first unfinished segment (call with ``job.lock`` held)."""
    i = job.first
    while i < len(job.segments) and job.segments[i].done:
        i += 1
    job.first = i
    return job.segments[i] if i < len(job.segments) else None


@dataclass(eq=False, slots=True)
class _Chunk:
    """Up to ``job.chunk`` bytes of a blob in a buffer; the buffer goes back to ``home`` once nothing holds it.

    A chunk from the job's pool is held by its write and by the hasher,
    which hashes it from memory.  A spilled chunk (``hashable`` False) is
    held by its write only; the hasher reads its bytes back from the file.
    """

    pos: int
    buf: memoryview
    home: list[memoryview]
    hashable: bool
    n: int = 0
    refs: int = 0


def _take(job: _Job, seg: _Segment, pos: int, spill: list[memoryview]) -> _Chunk | None:
    """A buffer for ``seg``'s chunk at ``pos``, as an empty chunk; None once the job stops.

    Memory for hashing is the job's pool, of which fetching ahead (any
    segment but the first unfinished one, whose bytes the hasher needs next)
    may use half.  Beyond that a worker waits while the hasher is busy (the
    hasher is the bottleneck, so waiting costs no time and leaves it the
    CPU), and spills once the hasher has waited for bytes for
    ``_SPILL_AFTER_S`` (the network is the bottleneck, so no connection may
    idle): a spilled chunk goes from the worker's own ``spill`` buffers to
    disk only, to be read back.
    """
    with job.lock:
        while not job.stop.is_set():
            first = _first_open(job)
            ahead = seg is not first
            spare = len(job.free) + job.pool_size - job.made  # pool buffers not in use
            if not ahead or spare > job.pool_size // 2:
                if job.free:
                    return _Chunk(pos, job.free.pop(), job.free, hashable=True)
                if job.made < job.pool_size:
                    job.made += 1
                    return _Chunk(pos, _new_buffer(job.chunk), job.free, hashable=True)
            wait = 0.05
            if job.starved_since is not None and spill:
                wait = job.starved_since + _SPILL_AFTER_S - time.monotonic()
                if wait <= 0:
                    return _Chunk(pos, spill.pop(), spill, hashable=False)
            job.space.wait(wait)
    return None


def _new_buffer(size: int) -> memoryview:
    return memoryview(mmap.mmap(-1, size))  # page-aligned, as direct I/O needs


def _release(job: _Job, chunk: _Chunk) -> None:
    """Drop one hold on ``chunk`` (call with ``job.lock`` held); the last one frees its buffer."""
    chunk.refs -= 1
    if chunk.refs <= 0:
        chunk.home.append(chunk.buf)
        job.space.notify_all()


def _give_back(job: _Job, chunk: _Chunk) -> None:
    with job.lock:
        _release(job, chunk)


def _writer(job: _Job, seg: _Segment, chunks: queue.SimpleQueue[_Chunk | None]) -> None:
    """Write ``seg``'s chunks in order; after each, advance ``seg.filled`` and add a journal line."""
    while (chunk := chunks.get()) is not None:
        try:
            job.file.write(chunk.buf[: chunk.n], chunk.pos)
        except BaseException as exc:
            _give_back(job, chunk)
            if isinstance(exc, OSError):
                raise _WriteFailed(exc) from exc
            raise
        with job.lock:
            _release(job, chunk)
            seg.filled += chunk.n
            job.cond.notify()  # the hasher: more bytes on disk
            if seg.done:
                job.space.notify_all()  # the first unfinished segment moved on
        os.write(job.jfd, f"{seg.start} {seg.start + seg.filled}\n".encode())  # a kill loses only what is in flight


def _pump(job: _Job, seg: _Segment, read: Callable[[memoryview, int], int]) -> None:
    """Fill ``seg`` chunk by chunk: ``read`` into a buffer, hand it to the writer (and the hasher).

    The writer is a thread of its own, so receiving the next chunk overlaps
    writing this one.  Returns once every chunk received is written: when
    the segment is done, the job stops, or ``read`` reaches the end of its
    data early (the caller retries from ``seg.filled``).
    """
    chunks: queue.SimpleQueue[_Chunk | None] = queue.SimpleQueue()
    spill = [_new_buffer(job.chunk), _new_buffer(job.chunk)]  # untouched pages cost no memory
    failure: list[BaseException] = []

    def write_all() -> None:
        try:
            _writer(job, seg, chunks)
        except BaseException as exc:  # noqa: BLE001 - handed to the worker, which raises it
            failure.append(exc)
            with job.lock:
                job.space.notify_all()
            while (chunk := chunks.get()) is not None:  # drain, so the pool gets its buffers back
                _give_back(job, chunk)

    writer = threading.Thread(target=write_all, name="phi-get-write", daemon=True)
    writer.start()
    pos = seg.start + seg.filled
    try:
        while pos < seg.end and not job.stop.is_set() and not failure:
            want = min(job.chunk - pos % job.chunk, seg.end - pos)  # chunks end on chunk boundaries: aligned writes
            chunk = _take(job, seg, pos, spill)
            if chunk is None:
                return
            try:
                while chunk.n < want and (k := read(chunk.buf[chunk.n:want], pos + chunk.n)):
                    chunk.n += k
            except BaseException:
                _give_back(job, chunk)
                raise
            if not chunk.n:
                _give_back(job, chunk)
                return
            with job.lock:
                chunk.refs = 2 if chunk.hashable else 1
                if chunk.hashable:
                    job.pending[pos] = chunk
                    job.cond.notify()  # the hasher: bytes in memory
                job.stats.downloaded += chunk.n
            chunks.put(chunk)
            job.reporter.advance(job.label, chunk.n)
            pos += chunk.n
            if chunk.n < want:
                return
    finally:
        chunks.put(None)
        writer.join()
        if failure:
            raise failure[0]


class _TooSlow(SourceError):
    """A blob connection fell below the minimum rate (transport.Limits): dropped; what it trickled is no progress."""


class _Busy(SourceError):
    """The source answered a status worth another try (429, 503, ...); ``asked``: its Retry-After in seconds."""

    def __init__(self, message: str, *, url: str, asked: float | None) -> None:
        super().__init__(message, url=url)
        self.asked = asked


def _copy_file(job: _Job, seg: _Segment, url: str) -> None:
    """Copy ``seg`` from a ``file://`` mirror: a regular file of exactly the declared size, read no further."""
    src = transport.open_file(url)
    if src is None:
        raise SourceError("blob not found in the mirror", url=url)
    try:
        size = os.fstat(src).st_size
        if size != job.entry.size:
            raise SourceError(f"blob in the mirror is {size} bytes, not the {job.entry.size} the manifest declares",
                              url=url)
        _pump(job, seg, PositionalFile(src, native=job.file.native).readinto)
        if not seg.done and not job.stop.is_set():
            raise SourceError(f"blob in the mirror is shorter than {job.entry.size} bytes", url=url)
    finally:
        os.close(src)


def _download(job: _Job, seg: _Segment, url: str) -> None:
    """One try at ``seg`` over http(s) (transport: redirects, credentials to their origin only).

    The answer's head must come within the document deadline; its body at
    the minimum rate (:func:`_reader`).  A declared length or range other
    than the one asked for is refused before any byte is used.
    """
    pos = seg.start + seg.filled
    whole = pos == 0 and seg.end == job.entry.size
    headers = {"Range": f"bytes={pos}-{seg.end - 1}"} if job.ranged else {}
    lim = transport.limits()
    opened = transport.open_get(url, headers, deadline=time.monotonic() + lim.doc_timeout_s,
                                seconds=lim.doc_timeout_s)
    resp, where = opened.resp, opened.shown
    try:
        opened.release_deadline()
        if resp.status == 404:
            raise SourceError("blob not found", url=where)
        if resp.status in transport.RETRY_STATUSES:
            raise _Busy(f"the source answered HTTP {resp.status}", url=where,
                        asked=transport.retry_after(resp.getheader("Retry-After")))
        if resp.status == 200 and job.ranged and not whole:
            raise _RangeIgnored()
        if resp.status == 206:
            asked = f"bytes {pos}-{seg.end - 1}/"
            crange = resp.getheader("Content-Range", "")
            if not crange.startswith(asked) or crange[len(asked):] not in (str(job.entry.size), "*"):
                raise SourceError(f"the source answered the wrong range {crange!r} for bytes={pos}-{seg.end - 1} "
                                  f"of a {job.entry.size}-byte blob", url=where)
            expect, first = seg.end - pos, pos
        elif resp.status != 200:
            raise SourceError(f"the source answered HTTP {resp.status}", url=where)
        else:
            expect, first = job.entry.size, 0
        if resp.length is not None and resp.length != expect:
            raise SourceError(f"the source declared Content-Length {resp.length} for {expect} bytes", url=where)
        read = _reader(opened, lim, where)
        if pos and not first:  # a whole-file answer, but the bytes before pos are written: skip them
            _skip(read, pos, where)
        _pump(job, seg, read)
        if not seg.done and not job.stop.is_set():
            got = seg.start + seg.filled - first
            raise SourceError(f"the answer ended after {got} of the {expect} bytes it declared", url=where)
    finally:
        opened.close()


def _reader(opened: transport.Opened, lim: transport.Limits, where: str) -> Callable[[memoryview, int], int]:
    """``read(view, pos)`` for an answer's body: what one receive brings, at the minimum rate.

    Each call is one receive (``readinto1``), so a trickle cannot hide in a
    chunk that takes hours to fill.  Only time spent receiving counts (not
    waiting for a buffer while the hasher is busy): a connection that brings
    fewer than ``lim.min_bytes`` in ``lim.window_s`` seconds of receiving,
    or nothing for a whole window, is dropped.  Per receive this costs two
    clock reads and a comparison.
    """
    resp = opened.resp
    need, window = lim.min_bytes, lim.window_s
    if need and opened.conn.sock is not None:
        opened.conn.sock.settimeout(min(transport.TIMEOUT_S, window))
    pull: Callable[[memoryview], int]
    if resp.chunked or resp.fp is None:
        def pull(view: memoryview) -> int:
            data = resp.read1(len(view))
            view[: len(data)] = data
            return len(data)
    else:
        pull = resp.fp.readinto1
    spent, got = 0.0, 0

    def too_slow() -> _TooSlow:
        return _TooSlow(f"the source sent {got} bytes in {window:g} s, below the minimum rate of "
                        f"{lim.min_rate:g} bytes/s ({transport.MIN_RATE_ENV}, {transport.RATE_WINDOW_ENV})",
                        url=where)

    def read(view: memoryview, _pos: int) -> int:
        nonlocal spent, got
        start = time.monotonic()
        try:
            n = pull(view)
        except TimeoutError:
            if need:
                raise too_slow() from None
            raise
        if need:
            spent += time.monotonic() - start
            got += n
            if spent >= window:
                if got < need:
                    raise too_slow()
                spent, got = 0.0, 0
        return n

    return read


def _skip(read: Callable[[memoryview, int], int], count: int, url: str) -> None:
    """Read and drop the first ``count`` bytes of an answer (through ``read``, so at the minimum rate)."""
    scratch = memoryview(bytearray(min(count, _MIB)))
    while count:
        n = read(scratch[: min(count, len(scratch))], 0)
        if not n:
            raise SourceError("the source ended the answer early", url=url)
        count -= n


def _run(job: _Job, workers: int) -> str:
    """Fetch every segment with ``workers`` threads while hashing in order here; return the hex digest."""
    h = hashlib.sha256()
    size = job.entry.size
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="phi-get-fetch")
    futures: list[Future[None]] = [pool.submit(_worker, job, s) for s in job.segments if not s.done]
    flusher = None
    if job.file.direct_fd < 0:  # buffered writes: keep the dirty pages few
        flusher = threading.Thread(target=_flush_while, args=(job,), daemon=True)
        flusher.start()
    pos = 0
    back: memoryview | None = None  # read-back buffer, for bytes that are on disk only
    try:
        while pos < size:
            item: _Chunk | None = None
            with job.cond:
                while (item := job.pending.pop(pos, None)) is None:
                    if job.cancel.is_set():
                        raise FetchCancelled(job.label)
                    first = _first_open(job)
                    front = first.start + first.filled if first is not None else size
                    if front > pos:  # written, but not in a buffer: read it back up to the next buffered chunk
                        limit = min([o for o in job.pending if o > pos], default=front)
                        limit = min(limit, front)
                        break
                    failed = [f for f in futures if f.done() and f.exception() is not None]
                    if failed:
                        raise failed[0].exception()  # type: ignore[misc]
                    if all(f.done() for f in futures):
                        raise SourceError(f"download of {job.label} stopped early", url=job.urls[0])
                    if job.starved_since is None:
                        job.starved_since = time.monotonic()
                        job.space.notify_all()  # workers fetching ahead: spill if this lasts
                    job.cond.wait(0.05)
                job.starved_since = None
            if job.cancel.is_set():
                raise FetchCancelled(job.label)
            if item is not None:
                h.update(item.buf[: item.n])  # from memory; hashlib releases the GIL on buffers this large
                pos += item.n
                _give_back(job, item)
                continue
            if back is None:
                back = memoryview(mmap.mmap(-1, _HASH_READ))  # page-aligned, for direct reads
            # Not starving: the bytes are here, the hasher is busy.  Workers fetching ahead wait for a buffer instead
            # of spilling more for it to read back (which kept it reading back and them spilling, to the end).
            while pos < limit:
                n = job.file.read_back(back, pos, min(_HASH_READ, limit - pos))
                if not n:
                    raise SourceError(f"{job.label}: the partial file is shorter than {limit} bytes", url=job.urls[0])
                h.update(back[:n])
                pos += n
                job.stats.read_back += n
        for f in futures:
            f.result()
    finally:
        job.stop.set()
        with job.lock:
            job.cond.notify_all()
            job.space.notify_all()
        pool.shutdown(wait=True, cancel_futures=True)
        if flusher is not None:
            flusher.join()
    return h.hexdigest()


def _flush_while(job: _Job) -> None:
    """Write dirty pages back while the download runs, so the final fsync has little left.

    Only for buffered writes: without it the kernel holds the whole file
    dirty until the end, and the disk write would be a third pass after
    transfer and hashing.
    """
    sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
    while not job.stop.wait(_FLUSH_EVERY_S):
        try:
            sync(job.file.fd)
        except OSError:
            return


def fetch_blob(store: Store, entry: FileEntry, urls: list[str], *, reporter: Reporter | None = None,
               workers: int = 4, label: str | None = None, cancel: threading.Event | None = None) -> FetchStats:
    """Make ``blobs/sha256/<entry.sha256>`` exist and be correct, downloading what is missing.

    A blob already stored is used only if the store vouches for it
    (:meth:`.store.Store.vouch`: its verified record, or a re-hash).
    ``cancel``: once set (say, the user pressed Ctrl-C, or another file of
    the artifact failed), the download stops within a chunk and raises
    :class:`FetchCancelled`; what was written stays for the next run.  A
    download whose ``partial/`` folder was removed under it (a gc that read
    the pins just before this install wrote its pin) starts again.
    """
    rep = reporter or NullReporter()
    label = label or entry.path
    if (stats := _reuse(store, entry, rep, label)) is not None:
        return stats
    for attempt in range(1, _VANISHED_TRIES + 1):
        lease = _Lease(store.partial(entry.sha256) / "lease")
        try:
            return _fetch_leased(store, entry, urls, rep, workers, label, lease, cancel or threading.Event())
        except FileNotFoundError:  # nothing else in a download raises it: sources answer SourceError
            if attempt == _VANISHED_TRIES:
                raise
            rep.note(f"{label}: its partial download was removed meanwhile (a concurrent gc?); starting again")
    raise AssertionError("unreachable")


def _fetch_leased(store: Store, entry: FileEntry, urls: list[str], rep: Reporter, workers: int, label: str,
                  lease: _Lease, cancel: threading.Event) -> FetchStats:
    """Wait for the lease (or for another process to place the blob), then reuse or download it."""
    blob = store.blob(entry.sha256)
    pdir = lease.path.parent
    waited = False
    while True:
        # While another process downloads it: its verified record only (that process writes it as it places
        # the blob); re-hashing, and moving a bad file aside, is for the lease holder, below.
        verdict = store.vouch(blob, entry.sha256, entry.size, within=store.home, rehash=False)
        if verdict is not None and verdict.ok:
            return FetchStats(reused=True, waited=waited)
        pdir.mkdir(parents=True, exist_ok=True)  # the last holder removes it when done
        if lease.acquire():
            break
        if not waited:
            rep.note(f"{label}: another phi-get process is downloading it; waiting")
            waited = True
        if lease.stale():
            lease.path.unlink(missing_ok=True)
        time.sleep(0.05)
    try:
        if (stats := _reuse(store, entry, rep, label)) is None:
            pdir.mkdir(parents=True, exist_ok=True)
            try:
                stats = _fetch_into(store, entry, urls, pdir, rep, workers, label, lease, cancel)
            except _ResumedMismatch:
                # The bytes resumed from an earlier run may be what was wrong (a source that served bad bytes
                # before another file's failure cancelled this one): its work folder is gone; once, from scratch.
                rep.note(f"{label}: the resumed download does not match its sha256; downloading it whole")
                stats = _fetch_into(store, entry, urls, pdir, rep, workers, label, lease, cancel)
        stats.waited = waited
        return stats
    finally:
        lease.release()


def _reuse(store: Store, entry: FileEntry, rep: Reporter, label: str) -> FetchStats | None:
    """The blob as stored, if the store vouches for it (verified record, or a re-hash); None: download it.

    A stored file that fails (changed since it was verified, a symlink, the
    wrong size) is moved out of the way, and the reporter hears why.
    """
    blob = store.blob(entry.sha256)
    verdict = store.vouch(blob, entry.sha256, entry.size, within=store.home)
    if verdict is None:
        return None
    if verdict.ok:
        return FetchStats(reused=True, read_back=verdict.hashed)
    rep.note(f"{label}: the stored copy ({blob}) cannot be trusted: {verdict.why}; moved it aside, downloading it "
             "again")
    store.discard(blob)
    return None


def _fetch_into(store: Store, entry: FileEntry, urls: list[str], pdir: Path, rep: Reporter, workers: int,
                label: str, lease: _Lease, cancel: threading.Event) -> FetchStats:
    work = _claim_work_folder(pdir)
    lease.work = work
    data, journal = work / "data", work / "journal"
    fd = dfd = jfd = -1

    def close_all() -> None:  # before removing folders: Windows cannot delete open files
        nonlocal fd, dfd, jfd
        for handle in (fd, dfd, jfd):
            if handle >= 0:
                os.close(handle)
        fd = dfd = jfd = -1

    placed = False
    try:
        fd = os.open(data, os.O_RDWR | os.O_CREAT | _O_BINARY, 0o644)
        kept = os.fstat(fd).st_size  # a failed run shrank its file to what its journal covers (_shrink)
        if kept > entry.size:
            os.ftruncate(fd, 0)
            journal.unlink(missing_ok=True)
            kept = 0
        _preallocate(fd, entry.size, str(store.home))
        dfd = _open_direct(data)
        if dfd >= 0 and hasattr(os, "posix_fadvise"):  # no read-ahead into pages not written yet
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        covered = [(a, b) for a, b in _read_journal(journal, entry.size) if b <= kept]
        jfd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_BINARY, 0o644)
        file = PositionalFile(fd, direct_fd=dfd)
        part = _part_size(entry.size, workers)
        chunk = _chunk_size(part)
        pool = max(2, min(workers * _POOL_PER_WORKER, -(-entry.size // chunk) + 1))
        job = _Job(entry=entry, urls=urls, file=file, jfd=jfd, reporter=rep, label=label, pool_size=pool,
                   file_path=data, chunk=chunk, cancel=cancel, segments=_plan(entry.size, covered, part))
        resumed = sum(b - a for a, b in covered)
        rep.start(label, entry.size)
        rep.advance(label, resumed)
        try:
            actual = _run(job, workers)
        except _RangeIgnored:
            # The source ignores Range: start over with one whole-file stream.
            rep.note(f"{label}: the source ignores Range requests; downloading in one stream")
            os.ftruncate(jfd, 0)
            job = _Job(entry=entry, urls=urls, file=file, jfd=jfd, reporter=rep, label=label, pool_size=pool,
                       file_path=data, chunk=chunk, cancel=cancel, ranged=False,
                       segments=[_Segment(0, entry.size)], stats=job.stats)
            resumed = 0
            actual = _run(job, 1)
        job.stats.resumed, job.stats.ranged = resumed, job.ranged
        if actual != entry.sha256:
            close_all()
            shutil.rmtree(work, ignore_errors=True)
            error = _ResumedMismatch if resumed else IntegrityError
            raise error(f"{label} ({entry.size} bytes)", expected=f"sha256:{entry.sha256}",
                        actual=f"sha256:{actual}", where=urls[0])
        if dfd >= 0:
            os.close(dfd)
            dfd = -1
        handle, fd = fd, -1  # _place closes it: Windows cannot rename an open file
        _place(store, entry, handle, data)
        placed = True
        rep.finish(label)
        close_all()
        lease.work = None
        shutil.rmtree(pdir, ignore_errors=True)
        return job.stats
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(str(pdir), entry.size) from None
        raise
    finally:
        close_all()
        if not placed:
            _shrink(work)
        with _IN_USE_LOCK:
            _IN_USE.discard(work.name)


class _ResumedMismatch(IntegrityError):
    """A download that resumed bytes of an earlier run does not match its sha256 (its work folder is removed)."""


def _shrink(work: Path) -> None:
    """After a failed or cancelled download: keep only the bytes its journal covers.

    The preallocated tail would otherwise hold the blob's full size on disk
    until gc.  The file is cut after the last span written, so the next run
    resumes every span (holes between spans stay allocated); with nothing
    written, the work folder goes.  A killed process runs none of this: its
    folder keeps the full size until the next run adopts it or gc (its
    owner gone) removes it.
    """
    data = work / "data"
    try:
        size = os.stat(data).st_size
    except FileNotFoundError:  # removed already (an integrity failure), or never created
        return
    covered = _read_journal(work / "journal", size)
    end = covered[-1][1] if covered else 0
    try:
        if end:
            os.truncate(data, end)
        else:
            shutil.rmtree(work, ignore_errors=True)
    except OSError:
        pass  # only space is lost, until gc


def _place(store: Store, entry: FileEntry, fd: int, data: Path) -> None:
    """fsync, make read-only, close, move the verified file into blobs/, and record it as verified.

    The record is written from the file's identity, not by reading it again:
    its bytes were hashed on the way in, and the identity (same inode, not
    written since) shows the file placed is the file that was hashed.
    """
    try:
        os.fsync(fd)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o444)
        else:  # Windows (before Python 3.13): by path
            os.chmod(data, 0o444)
        written = Identity.of(os.fstat(fd))
    finally:
        os.close(fd)
    blob = store.blob(entry.sha256)
    try:
        os.replace(data, blob)
    except FileNotFoundError:
        if not blob.exists():  # not placed by a concurrent holder either
            raise
        return
    store.record_verified(entry.sha256, blob, like=written)


def _preallocate(fd: int, size: int, where: str) -> None:
    """Reserve ``size`` bytes on disk: a full disk fails here, before any transfer."""
    if size == 0:
        return
    if not hasattr(os, "posix_fallocate"):  # macOS: extend; a full disk then fails at the first write
        os.ftruncate(fd, size)
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if is_disk_full(exc):
            os.ftruncate(fd, 0)
            raise DiskFullError(where, size) from None
        os.ftruncate(fd, size)  # file systems without fallocate: extend sparsely
