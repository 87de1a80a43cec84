"""Store maintenance: ``verify`` (re-hash, report, repair) and ``gc`` (drop what nothing references).

Verification re-hashes every file of every installed artifact against its
manifest (which is itself checked against the digest its folder is named
by).  Repair moves a damaged artifact and its damaged blobs out of the way
and installs the same digest again from the sources.  Garbage collection
keeps what refs reach: artifacts named by a ref, the blobs and manifests
they list, and partial downloads a live process is working on; everything
else goes (a download whose process is gone, too: it would only have been
resumed), as do temp files older than an hour.  Reports are values, not exceptions
(like huggingface_hub's ``scan_cache_dir``).

Imports the standard library, :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.artifact import ArtifactFolderError, load_artifact_folder, sha256_file
from phi_get.manifests.errors import ManifestError

from .errors import ResolverError
from .fetch import Reporter, abandoned_downloads
from .install import install_digest
from .sources import Sources
from .store import Installed, Store

__all__ = ["TMP_MAX_AGE_S", "GcReport", "Problem", "gc_store", "repair", "verify_store"]

TMP_MAX_AGE_S: Final = 3600


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    installed: Installed
    what: str

    def to_json(self) -> dict[str, Any]:
        i = self.installed
        return {"name": i.name, "version": i.version, "variant": i.variant, "digest": i.digest,
                "path": str(i.path), "problem": self.what}


@dataclass(kw_only=True, slots=True)
class GcReport:
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "freed_bytes": self.freed_bytes}


def verify_store(store: Store, name: str | None = None) -> tuple[list[Installed], list[Problem]]:
    """Re-hash installed artifacts: (everything checked, the problems found)."""
    checked, problems = [], []
    for inst in store.installed(name):
        checked.append(inst)
        try:
            store.load(inst)
            load_artifact_folder(inst.path, verify=True)
        except (ManifestError, OSError) as exc:
            problems.append(Problem(installed=inst, what=str(exc)))
        except ResolverError as exc:  # IntegrityError from store.load
            problems.append(Problem(installed=inst, what=str(exc)))
    return checked, problems


def repair(store: Store, sources: Sources, problem: Problem, *, reporter: Reporter | None = None) -> Path:
    """Move the damaged artifact and its bad blobs aside, then install the same digest again."""
    inst = problem.installed
    manifest_path = store.manifest_file(inst.digest)
    for entry in _listed_files(inst.path):
        blob = store.blob(entry[1])
        if blob.exists() and (blob.stat().st_size != entry[2] or sha256_file(blob) != entry[1]):
            blob.unlink()
    doomed = store.temp_path(".damaged")
    if inst.path.exists():
        os.rename(inst.path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    manifest_path.unlink(missing_ok=True)
    return install_digest(store, sources, inst.digest, reporter=reporter).path


def _listed_files(folder: Path) -> list[tuple[str, str, int]]:
    try:
        m = load_artifact_folder(folder, verify=False)
    except (ArtifactFolderError, ManifestError, OSError):
        return []
    return [(f.path, f.sha256, f.size) for f in m.files]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    return path.stat().st_size if path.exists() else 0


def gc_store(store: Store, *, dry_run: bool = False) -> GcReport:
    report = GcReport()
    live_digests = {i.digest.removeprefix("sha256:") for i in store.installed()}
    live_blobs: set[str] = set()
    for hex_ in live_digests:
        live_blobs |= {f[1] for f in _listed_files(store.home / "artifacts" / "sha256" / hex_)}

    def drop(path: Path) -> None:
        if dry_run:
            report.removed.append(str(path.relative_to(store.home)))
            with contextlib.suppress(FileNotFoundError):  # --dry-run reports what gc would free
                report.freed_bytes += _size(path) if path.is_dir() else path.stat().st_size
            return
        try:
            size = _size(path) if path.is_dir() else path.stat().st_size
            if path.is_dir():
                doomed = store.temp_path(".gc")
                os.rename(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                path.unlink()
        except FileNotFoundError:  # gone meanwhile (a download adopted or finished it): not ours to report
            return
        report.removed.append(str(path.relative_to(store.home)))
        report.freed_bytes += size

    for pdir in sorted((store.home / "partial").glob("*")):
        for path in abandoned_downloads(pdir, blob_present=store.blob(pdir.name).exists()):
            drop(path)
    for folder in sorted((store.home / "artifacts" / "sha256").glob("*")):
        if folder.name not in live_digests:
            drop(folder)
    for blob in sorted((store.home / "blobs" / "sha256").glob("*")):
        if blob.name not in live_blobs:
            drop(blob)
    for mfile in sorted((store.home / "manifests" / "sha256").glob("*.json")):
        if mfile.stem not in live_digests:
            drop(mfile)
    now = time.time()
    for tmp in sorted((store.home / "tmp").glob("*")):
        if now - tmp.stat().st_mtime > TMP_MAX_AGE_S:
            drop(tmp)
    return report
