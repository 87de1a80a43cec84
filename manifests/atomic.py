"""One atomic write: a unique temp file beside the target, then ``os.replace``.

Every part writes files that a reader may open at any moment (the store's
refs and records, the index cache, a static mirror's documents, a GGUF under
construction, a tiny checkpoint), so each goes through the same steps:

1. the bytes go to a temp file in the target's folder (same filesystem, so
   the rename is atomic), named ``.<name>.<host>-<pid>-<random>.tmp``:
   hidden, unique per call, never reused, recognisably phi-get's, and naming
   its writer, so a temp left by a writer killed with ``kill -9`` (a GGUF
   conversion's 15 GB fp32 intermediate, a build's artifact folder) is
   removed by the next write of the same target (:func:`sweep_abandoned`)
   once that process is gone;
2. fsync policy: the file's data is flushed to disk (``os.fsync``) before the
   rename, so a crash after the rename never leaves a short or empty file
   under the target's name (ext4 and XFS may otherwise commit the rename
   before the data).  The folder itself is not fsynced: a crash may lose the
   rename, and the old file is then still there, whole;
3. ``os.replace`` puts it in place: a reader sees the old bytes or the new,
   never a mix;
4. on any failure (an ``OSError``, a ``KeyboardInterrupt``, a writer that
   raises) the temp file is removed and the target is left as it was.

Callers map errors to their own vocabulary (the store turns a full disk into
``DiskFullError``).  Imports only the standard library.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

__all__ = ["fresh_temp", "host_tag", "owner_of", "owner_tag", "process_alive", "replacing", "sweep_abandoned",
           "temp_beside", "write_atomic"]

_OWNER: Final = re.compile(r"(?P<host>[0-9a-f]{12})-(?P<pid>[0-9]{1,10})-[0-9a-f]{12}")


def host_tag() -> str:
    """This host, as it appears in the names of temps, work folders and pins (no host name on disk)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


def owner_tag() -> str:
    """``<host>-<pid>-<12 hex digits>``: a fresh name part saying which process of which host made the thing."""
    return f"{host_tag()}-{os.getpid()}-{os.urandom(6).hex()}"


def owner_of(tag: str) -> tuple[str, int] | None:
    """The (host tag, pid) an :func:`owner_tag` names; None for any other string."""
    owned = _OWNER.fullmatch(tag)
    return (owned["host"], int(owned["pid"])) if owned else None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (True where it cannot be told: Windows)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows: callers rely on mtimes
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_beside(path: Path) -> Path:
    """A fresh temp name in ``path``'s folder: ``.<name>.<host>-<pid>-<12 hex digits>.tmp``."""
    return path.with_name(f".{path.name}.{owner_tag()}.tmp")


def fresh_temp(path: Path, *, folder: bool = False) -> Path:
    """A fresh temp beside ``path`` (an empty folder with ``folder``), its folder made, killed writers' temps
    of ``path`` removed first (:func:`sweep_abandoned`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(path)
    tmp = temp_beside(path)
    if folder:
        tmp.mkdir()
    return tmp


def sweep_abandoned(path: Path) -> list[Path]:
    """Remove the temps beside ``path`` whose writer, a process of this host, is gone; return them.

    Only ``path``'s own temps (``.<name>.<host>-<pid>-<random>.tmp``): not
    another target's, not a live writer's (this process's included), not
    another host's (on a shared folder its liveness cannot be told).
    """
    prefix, here, removed = f".{path.name}.", host_tag(), []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    for entry in entries:
        tag = entry.name[len(prefix):].removesuffix(".tmp")
        owner = owner_of(tag) if entry.name.startswith(prefix) and entry.name.endswith(".tmp") else None
        if owner is not None and owner[0] == here and owner[1] != os.getpid() and not process_alive(owner[1]):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def replacing(path: Path, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; on a clean exit it replaces ``path``.

    For writers that need a file name (a GGUF writer, a tokenizer trainer).
    With ``folder`` the temp path is an empty folder, and an existing folder
    at ``path`` is removed just before the rename (POSIX cannot rename onto a
    non-empty folder, so a crash between the two leaves no folder, never a
    half-written one).  A file is fsynced before the rename; a folder's files
    are the writer's to sync.  On any exception the temp path is removed and
    the exception goes on.  Temps of ``path`` left by killed writers are
    removed first (:func:`sweep_abandoned`).
    """
    tmp = fresh_temp(path, folder=folder)
    try:
        yield tmp
        if folder:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
        else:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` atomically (the module's four steps); the folder is created if missing.

    ``mode`` is given when the temp file is created (less the umask), so a
    secret written with ``0o600`` is never readable by others, not even
    before the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
