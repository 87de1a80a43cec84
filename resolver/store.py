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

Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from phi_get.manifests.artifact import MANIFEST_FILENAME
from phi_get.manifests.manifest import Manifest, parse_manifest
from phi_get.manifests.names import check_digest

from .errors import DiskFullError, IntegrityError, NotInstalledError

__all__ = [
    "HOME_ENV",
    "LAYOUT_VERSION",
    "Installed",
    "Store",
    "default_home",
    "is_disk_full",
]

HOME_ENV: Final = "PHI_GET_HOME"
LAYOUT_VERSION: Final = "1"


def default_home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phi-get"


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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

    def ensure(self) -> Store:
        try:
            for sub in ("blobs/sha256", "manifests/sha256", "artifacts/sha256", "refs", "partial", "tmp"):
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
        """Write ``data`` to a unique temp file beside ``path``, then ``os.replace``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFullError(str(path), len(data)) from None
            raise

    # -- manifests and artifacts ---------------------------------------------
    def save_manifest(self, digest: str, data: bytes) -> None:
        target = self.manifest_file(digest)
        if not target.exists():
            self.write_atomic(target, data)

    def place_artifact(self, manifest: Manifest, data: bytes) -> Path:
        """Assemble the artifact folder from verified blobs in tmp/, then rename it into place."""
        digest = manifest.digest
        final = self.artifact(digest)
        if (final / MANIFEST_FILENAME).exists():
            return final
        tmp = self.temp_path(".artifact")
        try:
            for entry in manifest.files:
                dest = tmp / entry.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(self.blob(entry.sha256), dest)
            self.write_atomic(tmp / MANIFEST_FILENAME, data)  # last: a folder with it is complete
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not (final / MANIFEST_FILENAME).exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process placed the same bytes first
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(exc):
                raise DiskFullError(str(self.home), manifest.size) from None
            raise
        return final

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
                digest = ref.read_text().strip()
                yield Installed(name=model.name, version=ref.parent.name, variant=ref.name, digest=digest,
                                path=self.artifact(digest), mtime_ns=ref.stat().st_mtime_ns)

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


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if is_disk_full(exc):
            raise
        shutil.copyfile(src, dest)
