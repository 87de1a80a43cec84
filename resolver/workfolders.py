"""Work folders and leases of downloads in progress: ``partial/<hex>/``.

A download writes into a work folder of its own, ``partial/<hex>/w-<host>-
<pid>-<random>/`` (its data file and journal), so nobody else writes the file
it hashes and places; one whose owner is gone is adopted by the next run,
which resumes it.  ``partial/<hex>/lease`` (``O_EXCL``, a heartbeat every
second, stale after :data:`LEASE_STALE_S`) saves duplicate downloads of one
blob by several processes; correctness never depends on it.  What of
``partial/`` no live process uses is :func:`abandoned_downloads` (gc and the
next download clean it up).  The download pipeline itself: :mod:`.fetch`.

Imports the standard library and :mod:`phi_get.manifests.atomic`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Final

from phi_get.manifests.atomic import host_tag, owner_of, owner_tag, process_alive

__all__ = ["LEASE_STALE_S", "abandoned_downloads"]

LEASE_STALE_S: Final = 10.0
_LEASE_BEAT_S: Final = 1.0
_NO_LEASE_ENV: Final = "PHI_GET_NO_LEASE"  # tests: behave as if O_EXCL did not exclude
_WORK_PREFIX: Final = "w-"

_alive = process_alive  # the fact lives in manifests/atomic.py: temps, gc's pins and work folders need it


class _Lease:
    """``partial/<hex>/lease``: saves duplicate downloads; correctness never depends on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.work: Path | None = None  # the holder's work folder: the heartbeat shows it is in use
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
                if self.work is not None:
                    os.utime(self.work)
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


def _work_name() -> str:
    """``w-<host>-<pid>-<random>``: the owner is in the name, so adopting a folder is one rename."""
    return f"{_WORK_PREFIX}{owner_tag()}"


def _orphaned(folder: Path) -> bool:
    """True when no live process owns ``folder``.

    Owned by a process of this host: orphaned exactly when that process is
    gone (where liveness cannot be checked, as on Windows, by age as below),
    or, for this process itself, when none of its downloads is using it (a
    cancelled one, say).
    Owned by another host's process: when nothing in it (the folder, its
    data, its journal) was touched for longer than a lease lives; the
    owner's lease heartbeat touches the folder every second.  A folder that
    vanished meanwhile is not orphaned: there is nothing left to adopt.
    """
    owner = owner_of(folder.name.removeprefix(_WORK_PREFIX))
    if owner is not None and owner[0] == _host_tag():
        pid = owner[1]
        if pid == os.getpid():  # this process: orphaned unless one of its downloads is using it
            with _IN_USE_LOCK:
                return folder.name not in _IN_USE
        if not _alive(pid):
            return True
        if os.name != "nt":  # a live process here: never, however quiet its download
            return False
    try:
        touched = max(p.stat().st_mtime for p in (folder, folder / "data", folder / "journal") if p.exists())
    except (FileNotFoundError, ValueError):
        return False
    return time.time() - touched > LEASE_STALE_S


_IN_USE: set[str] = set()  # names of the work folders this process's downloads are using
_IN_USE_LOCK = threading.Lock()


_host_tag = host_tag


def _claim_work_folder(pdir: Path) -> Path:
    """This process's private work folder: an orphaned one adopted (to resume it) or a new one.

    Private, so nobody else writes the file this process hashes and places,
    even where the lease does not exclude.  Adopting is ``os.rename`` to a
    name that carries this process's pid: of two processes adopting the same
    folder, one wins and the other starts a new one.
    """
    mine = pdir / _work_name()
    with _IN_USE_LOCK:
        _IN_USE.add(mine.name)
    for candidate in sorted(pdir.glob(f"{_WORK_PREFIX}*")):
        try:
            if _orphaned(candidate):
                os.rename(candidate, mine)
                os.utime(mine)  # adopted: no longer looks abandoned
                return mine
        except OSError:  # adopted or removed by another process meanwhile
            continue
    mine.mkdir()
    return mine


def abandoned_downloads(pdir: Path, *, blob_present: bool) -> list[Path]:
    """What of ``partial/<hex>/`` no live process uses: the whole folder, or its orphaned work folders.

    All of it once the blob is in the store; nothing while its lease is
    fresh (a download is running); otherwise all of it if no work folder in
    it is live, else only the orphaned work folders.
    """
    if blob_present:
        return [pdir]
    if not _Lease(pdir / "lease").stale():  # a download is running here: leave all of it
        return []
    works = sorted(pdir.glob(f"{_WORK_PREFIX}*"))
    orphans = [w for w in works if _orphaned(w)]
    return [pdir] if len(orphans) == len(works) else orphans
