"""Fetching one blob: parallel byte ranges, resume, verify-before-place.

A blob (one file's bytes, named by its sha256) is downloaded into
``partial/<hex>/data``, preallocated to its size (a full disk fails at once,
before any transfer).  The gaps still missing are cut into parts that
worker threads fetch with HTTP ``Range`` requests and write in place with
``pwrite``; after every MiB each worker appends the span it wrote to
``partial/<hex>/journal``, so after a kill only the bytes written since a
worker's last journal line are fetched again.  Meanwhile the calling thread
hashes the file in order, following the frontier of contiguous written
bytes, so verification overlaps the transfer instead of adding a pass.
Only when sha256 and size match is the file moved into ``blobs/`` with
``os.replace``; on a mismatch the partial download is deleted and an
:class:`IntegrityError` raised.

Positional I/O (:class:`PositionalFile`): ``os.pread``/``os.pwrite`` where
the OS has them; where it does not (Windows), ``lseek`` + ``read``/``write``
under one lock per file, so the workers and the hasher never move each
other's file position between a seek and its read or write.  The hasher
reads into one reused buffer (no allocation per chunk).

A server that ignores ``Range`` (answers 200) is handled by falling back to
one whole-file stream.  A dropped connection is retried from where the part
got to, on the next source URL if there are several.  ``file://`` URLs (a
static mirror on disk) are read directly.

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from phi_get.manifests.manifest import FileEntry

from .errors import DiskFullError, IntegrityError, SourceError
from .sources import http_get
from .store import Store, is_disk_full

__all__ = [
    "LEASE_STALE_S",
    "FetchStats",
    "NullReporter",
    "PositionalFile",
    "Reporter",
    "fetch_blob",
]

_BUF: Final = 1 << 20
_HASH_READ: Final = 4 * _BUF
#: Files are opened in binary mode on Windows (no CRLF translation); 0 elsewhere.
_O_BINARY: Final = getattr(os, "O_BINARY", 0)
_JOURNAL_EVERY: Final = _BUF  # after a kill, each worker re-fetches at most this much
_RETRIES: Final = 4
_FLUSH_EVERY_S: Final = 0.25
LEASE_STALE_S: Final = 10.0
_LEASE_BEAT_S: Final = 1.0
_NO_LEASE_ENV: Final = "PHI_GET_NO_LEASE"  # tests: behave as if O_EXCL did not exclude


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


class PositionalFile:
    """Reads and writes at an offset without a shared file position: safe from many threads.

    ``native``: use ``os.pread``/``os.pwrite`` (POSIX); False (or where the OS
    lacks them, as Windows does) seeks and reads or writes under a lock.
    """

    __slots__ = ("_lock", "fd", "native")

    def __init__(self, fd: int, *, native: bool | None = None) -> None:
        self.fd = fd
        self.native = _HAS_PREAD if native is None else native
        self._lock = threading.Lock()

    def write(self, data: memoryview, pos: int) -> None:
        """Write all of ``data`` at ``pos`` (short writes continue where they stopped)."""
        while data:
            if self.native:
                n = os.pwrite(self.fd, data, pos)
            else:
                with self._lock:
                    os.lseek(self.fd, pos, os.SEEK_SET)
                    n = os.write(self.fd, data)
            data, pos = data[n:], pos + n

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


@dataclass
class _Job:
    entry: FileEntry
    urls: list[str]
    file: PositionalFile
    jfd: int
    segments: list[_Segment]
    reporter: Reporter
    label: str
    ranged: bool = True
    cond: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)
    stats: FetchStats = field(default_factory=FetchStats)


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
    return min(64 << 20, max(8 << 20, size // (workers * 4) // _BUF * _BUF or _BUF))


def _worker(job: _Job, seg: _Segment) -> None:
    errors: list[str] = []
    for attempt in range(_RETRIES * len(job.urls)):
        if seg.done or job.stop.is_set():
            return
        url = job.urls[attempt % len(job.urls)]
        try:
            if url.startswith("file://"):
                _copy_file(job, seg, url)
            else:
                _download(job, seg, url)
        except (OSError, http.client.HTTPException, SourceError) as exc:
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise DiskFullError(str(job.label), job.entry.size) from None
            errors.append(f"{url}: {exc}")
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
    if not seg.done and not job.stop.is_set():
        raise SourceError(f"download of {job.label} failed after {len(errors)} attempts; last: {errors[-1]}",
                          url=job.urls[0], hint="run the command again: the download resumes where it stopped")


def _write(job: _Job, seg: _Segment, data: memoryview, since_journal: list[int]) -> None:
    """Write ``data`` at the end of ``seg``; journal it, wake the hasher, report."""
    job.file.write(data, seg.start + seg.filled)
    n = len(data)
    seg.filled += n
    since_journal[0] += n
    if since_journal[0] >= _JOURNAL_EVERY or seg.done:
        os.write(job.jfd, f"{seg.start} {seg.start + seg.filled}\n".encode())
        since_journal[0] = 0
    with job.cond:
        job.cond.notify_all()
    job.reporter.advance(job.label, n)


def _copy_file(job: _Job, seg: _Segment, url: str) -> None:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    try:
        src = os.open(path, os.O_RDONLY | _O_BINARY)
    except FileNotFoundError:
        raise SourceError("blob not found in the mirror", url=url) from None
    try:
        reader = PositionalFile(src, native=job.file.native)
        buf = memoryview(bytearray(_BUF))
        since = [0]
        while not seg.done and not job.stop.is_set():
            pos = seg.start + seg.filled
            n = reader.readinto(buf[: min(_BUF, seg.end - pos)], pos)
            if not n:
                raise SourceError(f"blob in the mirror is shorter than {job.entry.size} bytes", url=url)
            _write(job, seg, buf[:n], since)
            job.stats.downloaded += n
    finally:
        os.close(src)


def _download(job: _Job, seg: _Segment, url: str) -> None:
    pos = seg.start + seg.filled
    whole = pos == 0 and seg.end == job.entry.size
    headers = {"Range": f"bytes={pos}-{seg.end - 1}"} if job.ranged else {}
    conn, resp = http_get(url, headers)
    try:
        if resp.status == 404:
            raise SourceError("blob not found", url=url)
        if resp.status == 200 and job.ranged and not whole:
            raise _RangeIgnored()
        if resp.status == 206:
            crange = resp.getheader("Content-Range", "")
            if not crange.startswith(f"bytes {pos}-{seg.end - 1}/"):
                raise SourceError(f"the source answered the wrong range {crange!r} for bytes={pos}-{seg.end - 1}",
                                  url=url)
        elif resp.status != 200:
            raise SourceError(f"the source answered HTTP {resp.status}", url=url)
        buf = memoryview(bytearray(_BUF))
        since = [0]
        while not seg.done and not job.stop.is_set():
            n = resp.readinto(buf[: min(_BUF, seg.end - (seg.start + seg.filled))])
            if not n:
                break
            _write(job, seg, buf[:n], since)
            job.stats.downloaded += n
        if since[0]:
            os.write(job.jfd, f"{seg.start} {seg.start + seg.filled}\n".encode())
    finally:
        conn.close()


def _frontier(segments: list[_Segment], start_index: int) -> tuple[int, int]:
    i = start_index
    while i < len(segments) and segments[i].done:
        i += 1
    if i == len(segments):
        return segments[-1].end if segments else 0, i
    return segments[i].start + segments[i].filled, i


def _run(job: _Job, workers: int) -> str:
    """Fetch every segment with ``workers`` threads while hashing in order here; return the hex digest."""
    h = hashlib.sha256()
    size = job.entry.size
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="phi-get-fetch")
    futures: list[Future[None]] = [pool.submit(_worker, job, s) for s in job.segments if not s.done]
    flusher = threading.Thread(target=_flush_while, args=(job,), daemon=True)
    flusher.start()
    pos, idx = 0, 0
    buf = memoryview(bytearray(min(_HASH_READ, size)))
    try:
        while pos < size:
            with job.cond:
                front, idx = _frontier(job.segments, idx)
                while front <= pos:
                    failed = [f for f in futures if f.done() and f.exception() is not None]
                    if failed:
                        raise failed[0].exception()  # type: ignore[misc]
                    if all(f.done() for f in futures):
                        raise SourceError(f"download of {job.label} stopped early", url=job.urls[0])
                    job.cond.wait(0.05)
                    front, idx = _frontier(job.segments, idx)
            while pos < front:  # from the page cache, into one reused buffer
                n = job.file.readinto(buf[: min(_HASH_READ, front - pos)], pos)
                if not n:
                    raise SourceError(f"{job.label}: the partial file is shorter than {front} bytes", url=job.urls[0])
                h.update(buf[:n])  # hashlib releases the GIL on buffers this large
                pos += n
        for f in futures:
            f.result()
    finally:
        job.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        flusher.join()
    return h.hexdigest()


def _flush_while(job: _Job) -> None:
    """Write dirty pages back while the download runs, so the final fsync has little left.

    Without it the kernel holds the whole file dirty until the end, and the
    disk write would be a third pass after transfer and hashing.
    """
    sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
    while not job.stop.wait(_FLUSH_EVERY_S):
        try:
            sync(job.file.fd)
        except OSError:
            return


class _Lease:
    """``partial/<hex>/lease``: saves duplicate downloads; correctness never depends on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> bool:
        if os.environ.get(_NO_LEASE_ENV):
            return True
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except (FileExistsError, FileNotFoundError):  # held, or its folder was just removed
            return False
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        os.close(fd)
        self._beat = threading.Thread(target=self._renew, daemon=True)
        self._beat.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(_LEASE_BEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def stale(self) -> bool:
        try:
            st = self.path.stat()
            host, _, pid = self.path.read_text().partition(" ")
        except (FileNotFoundError, ValueError):
            return True
        if host == socket.gethostname() and pid.strip().isdigit() and not _alive(int(pid)):
            return True
        return time.time() - st.st_mtime > LEASE_STALE_S

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows: rely on the mtime
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fetch_blob(store: Store, entry: FileEntry, urls: list[str], *, reporter: Reporter | None = None,
               workers: int = 4, label: str | None = None) -> FetchStats:
    """Make ``blobs/sha256/<entry.sha256>`` exist and be correct, downloading what is missing."""
    rep = reporter or NullReporter()
    label = label or entry.path
    blob = store.blob(entry.sha256)
    if blob.exists() and blob.stat().st_size == entry.size:
        return FetchStats(reused=True)
    pdir = store.partial(entry.sha256)
    lease = _Lease(pdir / "lease")
    waited = False
    while True:
        if blob.exists() and blob.stat().st_size == entry.size:
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
        if blob.exists() and blob.stat().st_size == entry.size:
            return FetchStats(reused=True, waited=waited)
        pdir.mkdir(parents=True, exist_ok=True)
        stats = _fetch_into(store, entry, urls, pdir, rep, workers, label)
        stats.waited = waited
        return stats
    finally:
        lease.release()


def _fetch_into(store: Store, entry: FileEntry, urls: list[str], pdir: Path, rep: Reporter, workers: int,
                label: str) -> FetchStats:
    data, journal = pdir / "data", pdir / "journal"
    fd = jfd = -1
    try:
        fd = os.open(data, os.O_RDWR | os.O_CREAT | _O_BINARY, 0o644)
        if os.fstat(fd).st_size != entry.size:
            os.ftruncate(fd, 0)
            journal.unlink(missing_ok=True)
        _preallocate(fd, entry.size, str(store.home))
        covered = _read_journal(journal, entry.size)
        jfd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_BINARY, 0o644)
        file = PositionalFile(fd)
        job = _Job(entry=entry, urls=urls, file=file, jfd=jfd, reporter=rep, label=label,
                   segments=_plan(entry.size, covered, _part_size(entry.size, workers)))
        resumed = sum(b - a for a, b in covered)
        rep.start(label, entry.size)
        rep.advance(label, resumed)
        try:
            actual = _run(job, workers)
        except _RangeIgnored:
            # The source ignores Range: start over with one whole-file stream.
            rep.note(f"{label}: the source ignores Range requests; downloading in one stream")
            os.ftruncate(jfd, 0)
            job = _Job(entry=entry, urls=urls, file=file, jfd=jfd, reporter=rep, label=label, ranged=False,
                       segments=[_Segment(0, entry.size)], stats=job.stats)
            resumed = 0
            actual = _run(job, 1)
        job.stats.resumed, job.stats.ranged = resumed, job.ranged
        if actual != entry.sha256:
            shutil.rmtree(pdir, ignore_errors=True)
            raise IntegrityError(f"{label} ({entry.size} bytes)", expected=f"sha256:{entry.sha256}",
                                 actual=f"sha256:{actual}", where=urls[0])
        handle, fd = fd, -1  # _place closes it: Windows cannot rename an open file
        _place(store, entry, handle, data)
        rep.finish(label)
        shutil.rmtree(pdir, ignore_errors=True)
        return job.stats
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(str(pdir), entry.size) from None
        raise
    finally:
        for handle in (fd, jfd):
            if handle >= 0:
                os.close(handle)


def _place(store: Store, entry: FileEntry, fd: int, data: Path) -> None:
    """fsync, make read-only, close, and move the verified file into blobs/."""
    try:
        os.fsync(fd)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o444)
        else:  # Windows (before Python 3.13): by path
            os.chmod(data, 0o444)
    finally:
        os.close(fd)
    try:
        os.replace(data, store.blob(entry.sha256))
    except FileNotFoundError:
        if not store.blob(entry.sha256).exists():  # not placed by a concurrent holder either
            raise


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
