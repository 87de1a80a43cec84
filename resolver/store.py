"""The local store: content-addressed blobs, atomically placed artifacts, refs.

Where: ``PHI_GET_HOME`` (or ``--home``), default ``~/.cache/phi-get``.
Layout, version 1 (the ``LAYOUT_VERSION`` file says which)::

    HOME/
      LAYOUT_VERSION                      "1"
      blobs/sha256/<hex>                  verified file contents, read-only, shared by
                                          every artifact and version that has them
      manifests/sha256/<hex>.json         verified manifests, by digest of their bytes
      artifacts/sha256/<hex>/             an installed artifact, named by its manifest
                                          digest: manifest.json + every file at its path
                                          (hard links to blobs; copies where links fail)
      refs/<name>/<version>/<variant>     "sha256:<hex>": what is installed under a name
      partial/<hex>/                      a blob being downloaded: lease, and a private work
                                          folder per process, w-<host>-<pid>-<random>/:
                                          data (preallocated), journal (spans written)
      verified/sha256/<hex>               the verified record of a blob: one line per file whose
                                          bytes were hashed (or written and hashed from memory)
                                          and matched <hex>: "dev inode size mtime_ns ctime_ns"
      pins/<host>-<pid>-<random>          what one running install needs (its manifest digest,
                                          its blobs' sha256), one per line: gc keeps it
      tmp/                                unique temp files and folders, same file system
      cache/index/<source>/<name>.json    model indexes of http sources, with .etag

Rules (STYLE.md, habit 8):

* a blob is written under ``partial/``, hashed, and moved into ``blobs/`` with
  ``os.replace`` only when its sha256 and size match: a file in ``blobs/``
  is always complete and correct;
* an artifact folder is assembled under ``tmp/`` with ``manifest.json``
  written last, then renamed into ``artifacts/``: a half-installed folder is
  never visible; if another process placed the same digest first, ours is
  discarded (same bytes);
* refs are small files replaced atomically; ``refs`` and ``artifacts`` are
  the roots of ``gc``: a blob no installed artifact lists is garbage;
* the download lease (``partial/<hex>/lease``, created with ``O_EXCL``)
  only saves duplicate downloads.  Correctness never depends on it: a
  process that cannot get it waits for the blob, and takes over when the
  lease is stale (its holder stopped renewing it); where ``O_EXCL`` does not
  exclude, two processes download into their own work folders, each hashing
  and placing only the file it wrote (the same bytes, placed twice).

Trusting stored bytes, in one place, :meth:`Store.vouch`:

* a stored file is used as the bytes of a sha256 only if it is a regular
  file (never a symlink), reached without passing a link out of its folder
  (the store for blobs, the artifact folder for installed files), of the
  right size, and either has an identity in the blob's verified record or
  hashes to it now (then its identity is recorded);
* the identity holds ``ctime_ns``, which the kernel moves on every write,
  truncate, chmod or ``utime`` (and on every link or unlink of the inode):
  a file changed in any way since it was verified cannot pass, an editor
  writing through a hard link and a ``touch`` to hide it included.  Our own
  links move it too; :meth:`Store.place_artifact` records the new identity
  after linking, and after gc or ``remove`` unlink a shared blob's other
  names, its next reuse re-hashes it once;
* bytes change without a trace only by bit rot below the file system: that
  is what ``phi-get verify`` (a re-hash of everything) is for;
* a file that fails is moved aside and downloaded afresh, and a download
  records the file it placed without reading it again (its bytes were
  hashed from memory on the way in).

gc and running installs: an install writes its pin
(``pins/``) before it looks at any blob and removes it once the ref is set;
gc keeps what a live process's pin names, and removes nothing it cannot
put back: it moves what it means to delete aside, reads the pins and refs
again, returns what became needed meanwhile, and deletes the rest.  A blob
that vanishes or changes between its fetch and its link anyway (a gc that
read the pins before the install wrote them) is refused by
:meth:`Store.place_artifact` with :class:`BlobUnusableError`, and the
install fetches it again.

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from phi_get.manifests.artifact import MANIFEST_FILENAME
from phi_get.manifests.atomic import host_tag, owner_of, owner_tag, process_alive, write_atomic
from phi_get.manifests.manifest import Manifest, parse_manifest
from phi_get.manifests.names import check_digest

from .errors import DiskFullError, IntegrityError, NotInstalledError
from .home import HOME_ENV, default_home

__all__ = [
    "HOME_ENV",
    "LAYOUT_VERSION",
    "PIN_MAX_AGE_S",
    "BlobUnusableError",
    "Identity",
    "Installed",
    "Pin",
    "Store",
    "Verdict",
    "default_home",
    "is_disk_full",
]

LAYOUT_VERSION: Final = "1"
#: A pin of another host's process (whose liveness cannot be checked from here) is honoured this long.
PIN_MAX_AGE_S: Final = 3600
_RECORD_KEEP: Final = 8      # identities per verified record: the blob and a few copies, newest last
_HASH_CHUNK: Final = 4 << 20  # re-hash read size
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY: Final = getattr(os, "O_BINARY", 0)


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class BlobUnusableError(IntegrityError):
    """A blob an artifact needs is gone or cannot be trusted at the moment it is linked (the install fetches it again)."""

    def __init__(self, hex_: str, why: str, *, where: str) -> None:
        super().__init__(f"blob sha256:{hex_}", expected="a verified regular file in the store", actual=why,
                         where=where)
        self.hex = hex_


@dataclass(frozen=True, slots=True)
class Identity:
    """What a changed file cannot keep: ``ctime_ns`` moves on every write, chmod and ``utime`` of the inode."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def same_bytes(self, other: Identity) -> bool:
        """Same inode, not written since (a link, rename or chmod moves ``ctime_ns`` only)."""
        return (self.dev, self.ino, self.size, self.mtime_ns) == (other.dev, other.ino, other.size, other.mtime_ns)

    def line(self) -> str:
        return f"{self.dev} {self.ino} {self.size} {self.mtime_ns} {self.ctime_ns}\n"


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """Whether a stored file may be used as the bytes of a sha256; ``why`` says why not."""

    ok: bool
    why: str = ""
    hashed: int = 0  # bytes re-hashed to decide (0: the verified record vouched for it)
    ident: Identity | None = None


@dataclass(eq=False)
class Pin:
    """``pins/<host>-<pid>-<random>``: what one install needs; gc keeps it while the process lives.

    Written before the install looks at any blob, removed when its ref is
    set (a context manager).  Only the names travel: artifact digests and
    blob sha256s, in hex.
    """

    store: Store
    path: Path
    names: set[str] = field(default_factory=set)

    def add(self, *names: str) -> None:
        self.names.update(n.removeprefix("sha256:") for n in names)
        self.store.write_atomic(self.path, "".join(f"{n}\n" for n in sorted(self.names)).encode())

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


@dataclass(frozen=True, kw_only=True, slots=True)
class Installed:
    """One installed artifact: its ref and folder."""

    name: str
    version: str
    variant: str
    digest: str
    path: Path
    mtime_ns: int


class Store:
    """Paths and atomic operations over one HOME."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    # -- paths ---------------------------------------------------------------
    def blob(self, hex_: str) -> Path:
        return self.home / "blobs" / "sha256" / hex_

    def manifest_file(self, digest: str) -> Path:
        return self.home / "manifests" / "sha256" / (check_digest(digest).removeprefix("sha256:") + ".json")

    def artifact(self, digest: str) -> Path:
        return self.home / "artifacts" / "sha256" / check_digest(digest).removeprefix("sha256:")

    def partial(self, hex_: str) -> Path:
        return self.home / "partial" / hex_

    def ref(self, name: str, version: str, variant: str) -> Path:
        return self.home / "refs" / name / version / variant

    def record(self, hex_: str) -> Path:
        """The verified record of blob ``hex_``."""
        return self.home / "verified" / "sha256" / hex_

    def ensure(self) -> Store:
        try:
            for sub in ("blobs/sha256", "manifests/sha256", "artifacts/sha256", "refs", "partial", "tmp",
                        "verified/sha256", "pins"):
                (self.home / sub).mkdir(parents=True, exist_ok=True)
            marker = self.home / "LAYOUT_VERSION"
            if not marker.exists():
                self.write_atomic(marker, LAYOUT_VERSION.encode())
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(str(self.home)) from None
            raise
        return self

    def temp_path(self, suffix: str = "") -> Path:
        return self.home / "tmp" / f"{uuid.uuid4().hex}{suffix}"

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically (manifests/atomic.py); a full disk is a DiskFullError."""
        try:
            write_atomic(path, data)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(str(path), len(data)) from None
            raise

    # -- trust: the one place stored bytes are trusted ------------------------
    def vouch(self, path: Path, hex_: str, size: int, *, within: Path, rehash: bool = True) -> Verdict | None:
        """May ``path`` be used as the ``size`` bytes of sha256 ``hex_``?  None: there is no file.

        Yes for a regular file reached from ``within`` through no link, of
        that size, whose identity is in the blob's verified record or (with
        ``rehash``) whose bytes hash to ``hex_`` now; its identity is then
        recorded.  Never for a symlink or anything else.
        """
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return Verdict(ok=False, why="it is not a regular file" + (" (a symlink)" if stat.S_ISLNK(st.st_mode)
                                                                        else ""))
        if not _reached_directly(path, within):
            return Verdict(ok=False, why=f"it is reached through a link out of {within}")
        if st.st_size != size:
            return Verdict(ok=False, why=f"it has {st.st_size} bytes, not {size}")
        ident = Identity.of(st)
        if ident in self._recorded(hex_):
            return Verdict(ok=True, ident=ident)
        if not rehash:
            return Verdict(ok=False, why="it has not been verified", ident=ident)
        actual, hashed = _hash_unchanged(path, ident)
        if hashed is None:
            return Verdict(ok=False, why=actual)
        if actual != hex_:
            return Verdict(ok=False, why=f"its sha256 is {actual}", hashed=size)
        self.record_verified(hex_, path, like=hashed)
        return Verdict(ok=True, hashed=size, ident=hashed)

    def record_verified(self, hex_: str, path: Path, *, like: Identity | None) -> Identity | None:
        """Add ``path``'s identity to the verified record of ``hex_`` if it still holds the bytes of ``like``.

        Returns that identity, or None if the file is not (or no longer) the
        one ``like`` describes.  A record that cannot be written costs only a
        re-hash later.
        """
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        ident = Identity.of(st)
        if not stat.S_ISREG(st.st_mode) or like is None or not ident.same_bytes(like):
            return None
        kept = [i for i in self._recorded_list(hex_) if (i.dev, i.ino) != (ident.dev, ident.ino)]
        kept = [*kept[-(_RECORD_KEEP - 1):], ident]
        try:  # concurrent writers: the last one wins, and a lost identity only costs a re-hash
            self.write_atomic(self.record(hex_), "".join(i.line() for i in kept).encode())
        except OSError:  # a full disk, or gc removing the record of a blob it is removing
            pass
        return ident

    def _recorded_list(self, hex_: str) -> list[Identity]:
        try:
            text = self.record(hex_).read_text()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 5 and all(p.isdigit() for p in parts):
                out.append(Identity(*map(int, parts)))
        return out

    def _recorded(self, hex_: str) -> set[Identity]:
        return set(self._recorded_list(hex_))

    def discard(self, path: Path) -> None:
        """Move ``path`` (a file, link or folder) out of the way at once, then delete it."""
        doomed = self.temp_path(".discarded")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        if os.path.isdir(doomed) and not os.path.islink(doomed):
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            doomed.unlink(missing_ok=True)

    def check_artifact(self, folder: Path, manifest: Manifest, *, rehash: bool = True) -> list[str]:
        """What is wrong with the files of an installed artifact folder (empty: every file vouched for)."""
        problems = []
        for entry in manifest.files:
            verdict = self.vouch(folder / entry.path, entry.sha256, entry.size, within=folder, rehash=rehash)
            if verdict is None or not verdict.ok:
                problems.append(f"{entry.path}: {'it is missing' if verdict is None else verdict.why}")
        return problems

    # -- pins: what running installs need --------------------------------------
    def pin(self) -> Pin:
        return Pin(store=self, path=self.home / "pins" / owner_tag())

    def pinned(self, *, drop_dead: bool = False) -> tuple[set[str], list[Path]]:
        """(the names pinned by live processes, the pins of processes that are gone); ``drop_dead`` deletes those."""
        names: set[str] = set()
        dead = []
        for path in sorted((self.home / "pins").glob("*")):
            if path.name.startswith("."):
                continue  # a pin being written
            if not _pin_alive(path):
                dead.append(path)
                if drop_dead:
                    path.unlink(missing_ok=True)
                continue
            try:
                names.update(line.strip() for line in path.read_text().splitlines() if line.strip())
            except (FileNotFoundError, UnicodeDecodeError):
                continue
        return names, dead

    # -- manifests and artifacts ---------------------------------------------
    def save_manifest(self, digest: str, data: bytes) -> None:
        target = self.manifest_file(digest)
        if not target.exists():
            self.write_atomic(target, data)

    def place_artifact(self, manifest: Manifest, data: bytes) -> Path:
        """Assemble the artifact folder from vouched-for blobs in tmp/, then rename it into place.

        Each blob is vouched for (:meth:`vouch`) as it is linked, and the link
        is checked to be that same unchanged file; a blob that vanished or
        cannot be trusted raises :class:`BlobUnusableError` (the caller
        fetches it again).  If a folder is there already (another process
        placed it), it is returned as it is: the caller checks it.
        """
        digest = manifest.digest
        final = self.artifact(digest)
        if (final / MANIFEST_FILENAME).exists():
            return final
        tmp = self.temp_path(".artifact")
        try:
            for entry in manifest.files:
                dest = tmp / entry.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._link_verified(entry.sha256, entry.size, dest)
            self.write_atomic(tmp / MANIFEST_FILENAME, data)  # last: a folder with it is complete
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not (final / MANIFEST_FILENAME).exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process placed the same bytes first
        except BlobUnusableError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(exc):
                raise DiskFullError(str(self.home), manifest.size) from None
            raise
        return final

    def _link_verified(self, hex_: str, size: int, dest: Path) -> None:
        """Hard-link (or, where links fail, copy) blob ``hex_`` to ``dest``: only the file that was vouched for."""
        blob = self.blob(hex_)
        verdict = self.vouch(blob, hex_, size, within=self.home)
        if verdict is None or not verdict.ok or verdict.ident is None:
            raise BlobUnusableError(hex_, "it vanished (a concurrent gc?)" if verdict is None else verdict.why,
                                    where=str(blob))
        try:
            _hard_link(blob, dest)
        except FileNotFoundError:
            raise BlobUnusableError(hex_, "it vanished (a concurrent gc?)", where=str(blob)) from None
        except OSError as exc:
            if is_disk_full(exc):
                raise
            _copy_unchanged(blob, dest, verdict.ident, hex_)
            self.record_verified(hex_, dest, like=Identity.of(os.lstat(dest)))
            return
        if self.record_verified(hex_, dest, like=verdict.ident) is None:  # not the file vouched for, or changed
            dest.unlink(missing_ok=True)
            raise BlobUnusableError(hex_, "it changed while it was being linked", where=str(blob))

    def set_ref(self, manifest: Manifest) -> None:
        self.write_atomic(self.ref(manifest.name, str(manifest.version), manifest.variant),
                          (manifest.digest + "\n").encode())

    # -- queries -------------------------------------------------------------
    def installed(self, name: str | None = None) -> Iterator[Installed]:
        refs = self.home / "refs"
        names = [refs / name] if name else sorted(p for p in refs.glob("*") if p.is_dir())
        for model in names:
            for ref in sorted(model.glob("*/*")):
                if ref.name.startswith("."):
                    continue
                try:
                    digest, mtime_ns = ref.read_text().strip(), ref.stat().st_mtime_ns
                except FileNotFoundError:  # removed meanwhile (a concurrent remove)
                    continue
                yield Installed(name=model.name, version=ref.parent.name, variant=ref.name, digest=digest,
                                path=self.artifact(digest), mtime_ns=mtime_ns)

    def find(self, name: str, variant: str | None = None) -> Installed:
        """The most recently installed artifact of ``name`` (optionally one variant)."""
        found = [i for i in self.installed(name) if variant in (None, i.variant)]
        if not found:
            raise NotInstalledError(f"{name}{' ' + variant if variant else ''} is not installed in {self.home}",
                                    hint=f"phi-get install {name}")
        return max(found, key=lambda i: (i.mtime_ns, i.version))

    def load(self, inst: Installed) -> Manifest:
        data = (inst.path / MANIFEST_FILENAME).read_bytes()
        manifest = parse_manifest(data, document=str(inst.path / MANIFEST_FILENAME))
        if manifest.digest != inst.digest:
            raise IntegrityError("installed manifest", expected=inst.digest, actual=manifest.digest,
                                 where=str(inst.path))
        return manifest

    def remove_ref(self, inst: Installed) -> None:
        self.ref(inst.name, inst.version, inst.variant).unlink(missing_ok=True)
        still = {i.digest for i in self.installed()}
        if inst.digest not in still:
            # Rename first, so the folder disappears at once, then delete at leisure.
            doomed = self.temp_path(".removed")
            try:
                os.rename(inst.path, doomed)
            except FileNotFoundError:
                return
            shutil.rmtree(doomed, ignore_errors=True)


def _reached_directly(path: Path, within: Path) -> bool:
    """Whether ``path`` (below ``within``) is reached without passing a symlink on the way."""
    rel = os.path.relpath(path, within)
    if rel.startswith(os.pardir):
        return False
    return os.path.realpath(path) == os.path.join(os.path.realpath(within), rel)


def _hash_unchanged(path: Path, ident: Identity) -> tuple[str, Identity | None]:
    """(hex sha256, identity after hashing) of the file ``ident`` names; ("why not", None) if it changed meanwhile.

    "Changed" is judged by :meth:`Identity.same_bytes` (inode, size, mtime):
    a concurrent install hard-linking the blob moves its ``ctime_ns``
    without touching a byte, and counting that as a change moved good blobs
    aside to download them again.  A write that then restores the mtime
    still changes the bytes, which the hash itself catches.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})", None
    try:
        if not Identity.of(os.fstat(fd)).same_bytes(ident):
            return "it changed while it was being checked", None
        h = hashlib.sha256()
        buf = memoryview(bytearray(_HASH_CHUNK))
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            while n := fh.readinto(buf):
                h.update(buf[:n])
        after = Identity.of(os.fstat(fd))
    finally:
        os.close(fd)
    if not after.same_bytes(ident):
        return "it changed while it was being checked", None
    return h.hexdigest(), after


def _hard_link(src: Path, dest: Path) -> None:
    """``os.link`` of ``src`` itself, never of what a symlink there points to (the caller checks the result)."""
    try:
        os.link(src, dest, follow_symlinks=False)
    except NotImplementedError:  # platforms without linkat: the caller's identity check still catches a swap
        os.link(src, dest)


def _copy_unchanged(src: Path, dest: Path, ident: Identity, hex_: str) -> None:
    """Copy the file ``ident`` names (not a link, not a file swapped in meanwhile) to ``dest``."""
    try:
        fd = os.open(src, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
    except FileNotFoundError:
        raise BlobUnusableError(hex_, "it vanished (a concurrent gc?)", where=str(src)) from None
    except OSError as exc:
        raise BlobUnusableError(hex_, f"it cannot be read ({exc.strerror})", where=str(src)) from None
    try:
        if not Identity.of(os.fstat(fd)).same_bytes(ident):
            raise BlobUnusableError(hex_, "it changed before it could be copied", where=str(src))
        with open(fd, "rb", closefd=False) as fh, open(dest, "xb") as out:
            shutil.copyfileobj(fh, out, _HASH_CHUNK)
        if not Identity.of(os.fstat(fd)).same_bytes(ident):
            dest.unlink(missing_ok=True)
            raise BlobUnusableError(hex_, "it changed while it was being copied", where=str(src))
    finally:
        os.close(fd)


def _pin_alive(path: Path) -> bool:
    """A pin of this host counts while its process runs; another host's, for ``PIN_MAX_AGE_S`` after it was written."""
    owner = owner_of(path.name)
    if owner is not None and owner[0] == host_tag() and os.name != "nt":
        return owner[1] == os.getpid() or process_alive(owner[1])
    try:
        return time.time() - path.stat().st_mtime < PIN_MAX_AGE_S
    except FileNotFoundError:
        return False
