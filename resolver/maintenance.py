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

gc and running installs.  The rule: gc keeps whatever
the pin of a live install names (``pins/``, :meth:`.store.Store.pin`: the
manifest digest and every blob the install needs, written before the
install looks at any blob, removed once its ref is set), as if a ref
reached it.  Because an install may pin just after gc read the pins, gc
deletes in two steps: it moves every doomed artifact folder and blob aside
(into ``tmp/``, one rename each), then reads the pins and the refs again
(pins first: an install sets its ref before it drops its pin, so one of
the two always shows it) and puts back whatever became needed; only the
rest is deleted.  An install that looked at a blob in the moment it was
aside finds it gone when it links it, and fetches it again
(:class:`.store.BlobUnusableError`).  A partial download whose blob a
live install pins is left alone (read just before it is looked at: an
install pins before it takes the download's lease), and a download whose
folder is removed under it anyway starts again (:func:`.fetch.fetch_blob`).
Pins of processes that are gone are removed; verified records of blobs
that are gone, too.

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

from phi_get.manifests.artifact import ArtifactFolderError, load_artifact_folder
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
    for _path, hex_, size in _listed_files(inst.path):
        verdict = store.vouch(store.blob(hex_), hex_, size, within=store.home)
        if verdict is not None and not verdict.ok:
            store.discard(store.blob(hex_))
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


@dataclass(frozen=True, slots=True)
class _Live:
    digests: set[str]  # artifact (and manifest) digests, hex
    blobs: set[str]    # blob sha256s, hex


def _live(store: Store, pinned: set[str], folders: dict[str, Path]) -> _Live:
    """What refs and pins reach, with ``pinned`` read before the refs; ``folders``: artifacts moved aside."""
    digests = {i.digest.removeprefix("sha256:") for i in store.installed()} | pinned
    blobs = set(pinned)
    for hex_ in digests:
        folder = folders.get(hex_, store.home / "artifacts" / "sha256" / hex_)
        blobs |= {f[1] for f in _listed_files(folder)}
    return _Live(digests=digests, blobs=blobs)


def _set_aside(store: Store, path: Path) -> Path | None:
    """Move ``path`` into tmp/ (it vanishes at once, and can be put back); None if it is gone already."""
    aside = store.temp_path(".gc")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    return aside


def _put_back(aside: Path, path: Path) -> None:
    """Return what gc set aside; if something took its place meanwhile (the same bytes, fetched again), drop ours."""
    try:
        if aside.is_dir():
            os.rename(aside, path)
        else:
            os.link(aside, path)  # never over a file placed meanwhile
            aside.unlink()
        return
    except OSError:
        pass
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def gc_store(store: Store, *, dry_run: bool = False) -> GcReport:
    """Remove what neither a ref nor a live install's pin reaches (see the module docstring for the rule)."""
    report = GcReport()
    pinned, dead_pins = store.pinned(drop_dead=not dry_run)
    live = _live(store, pinned, {})

    def remove(path: Path) -> None:
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

    for pin in dead_pins:
        report.removed.append(str(pin.relative_to(store.home)))
    for pdir in sorted((store.home / "partial").glob("*")):
        if pdir.name in store.pinned()[0]:  # read afresh: an install that pinned it may be taking its lease now
            continue
        for path in abandoned_downloads(pdir, blob_present=store.blob(pdir.name).exists()):
            remove(path)
    doomed = [f for f in sorted((store.home / "artifacts" / "sha256").glob("*")) if f.name not in live.digests]
    doomed += [b for b in sorted((store.home / "blobs" / "sha256").glob("*")) if b.name not in live.blobs]
    if dry_run:
        for path in doomed:
            remove(path)
    else:
        sizes = {}
        for path in doomed:
            try:
                sizes[path] = _size(path)
            except FileNotFoundError:
                continue
        aside = {path: moved for path in sizes if (moved := _set_aside(store, path)) is not None}
        artifacts = store.home / "artifacts" / "sha256"
        live = _live(store, store.pinned()[0], {p.name: a for p, a in aside.items() if p.parent == artifacts})
        for path, moved in aside.items():
            if path.name in (live.digests if path.parent == artifacts else live.blobs):
                _put_back(moved, path)  # an install pinned it, or a ref reached it, meanwhile
                continue
            if moved.is_dir() and not moved.is_symlink():
                shutil.rmtree(moved, ignore_errors=True)
            else:
                moved.unlink(missing_ok=True)
            report.removed.append(str(path.relative_to(store.home)))
            report.freed_bytes += sizes[path]
    for mfile in sorted((store.home / "manifests" / "sha256").glob("*.json")):
        if mfile.stem not in live.digests:
            remove(mfile)
    for record in sorted((store.home / "verified" / "sha256").glob("[!.]*")):  # not one being written
        if record.name not in live.blobs and not store.blob(record.name).exists():
            if dry_run:
                continue
            record.unlink(missing_ok=True)  # bookkeeping, not reported
    now = time.time()
    for tmp in sorted((store.home / "tmp").glob("*")):
        try:
            old = now - tmp.stat().st_mtime > TMP_MAX_AGE_S
        except FileNotFoundError:
            continue
        if old:
            remove(tmp)
    return report
