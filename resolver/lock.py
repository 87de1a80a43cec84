"""Locking and locked syncs: ``phi.toml`` -> ``phi.lock`` -> exactly those bytes.

:func:`lock_project` resolves every model of ``phi.toml`` for every device
class (each class is a device profile, so a CI machine locks for devices it
is not) and writes ``phi.lock`` (:mod:`phi_get.manifests.lockfile`)
atomically; the same inputs give byte-identical output.  An artifact whose
signed source requires a publisher signature has it verified at lock time,
and its key id is recorded (``publisher-key``), so that a locked install from
a bundle, with no network, demands that signature (:mod:`.bundle`).

:func:`sync_locked` installs what the lock pins for one device class:
nothing is resolved again, the manifest is fetched by its pinned digest and
verified against it, and the files it lists must be the locked ones
(checked before any blob is fetched: a mismatch installs nothing).  It
refuses a lock whose recorded inputs no longer match ``phi.toml`` and the
device profiles.  Sources may be overridden (``--registry file:///mirror``):
the bytes are content-addressed, so any mirror serves the same ones; a
bundle folder (an OCI layout) is verified with the TUF metadata it carries
against the lock source's pinned root, or used only where that source is
accepted unsigned (:func:`.bundle.bundle_sources`), and its publisher
signatures are checked before anything is placed.

Imports the standard library, :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from phi_get.manifests.canonical import canonical_bytes, digest_of
from phi_get.manifests.device import DeviceProfile, parse_device_profile
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import blob_path
from phi_get.manifests.lockfile import Lock, LockedArtifact, LockedDeviceClass, LockedFile, lock_bytes, parse_lock
from phi_get.manifests.project import DeviceClass, ModelSpec, Project, parse_project
from phi_get.manifests.targets import supported_targets
from phi_get.manifests.urls import strip_credentials

from .bundle import bundle_sources, check_bundle_signature
from .detect import load_device, sample_profiles
from .errors import DeviceProfileError, LockMismatchError
from .explain import no_match_error
from .fetch import Reporter
from .install import InstallResult, install_digest, resolve_from
from .resolve import make_policy, parse_requirement
from .sources import Sources, check_publisher, sources_from
from .store import Store

__all__ = ["LOCK_NAME", "PROJECT_NAME", "LoadedProject", "load_project", "lock_project", "sync_locked"]

PROJECT_NAME: Final = "phi.toml"
LOCK_NAME: Final = "phi.lock"


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadedProject:
    folder: Path
    project: Project
    #: device class name -> (profile bytes' sha256, parsed profile)
    profiles: dict[str, tuple[str, DeviceProfile]]

    @property
    def inputs_digest(self) -> str:
        inputs = {**self.project.inputs(), "profiles": {k: v[0] for k, v in sorted(self.profiles.items())}}
        return digest_of(canonical_bytes(inputs))


def _profile_bytes(folder: Path, dc: DeviceClass) -> tuple[bytes, str]:
    path = folder / dc.profile
    if path.is_file():
        return path.read_bytes(), str(path)
    samples = sample_profiles()
    if dc.profile in samples:
        return samples[dc.profile].read_bytes(), f"sample profile {dc.profile!r}"
    raise DeviceProfileError(f"device class {dc.name!r}: profile {dc.profile!r} is neither a file next to "
                             f"{PROJECT_NAME} nor a sample profile", hint="samples: " + ", ".join(samples))


def load_project(folder: Path) -> LoadedProject:
    path = folder / PROJECT_NAME
    try:
        project = parse_project(path.read_bytes(), document=str(path))
    except FileNotFoundError:
        raise ManifestError(f"no {PROJECT_NAME} here", value=str(folder), document=PROJECT_NAME) from None
    profiles = {}
    for dc in project.device_classes:
        data, where = _profile_bytes(folder, dc)
        profiles[dc.name] = (hashlib.sha256(data).hexdigest(), parse_device_profile(data, document=where))
    return LoadedProject(folder=folder, project=project, profiles=profiles)


def _lock_one(sources: Sources, spec: ModelSpec, dc_name: str, device: DeviceProfile) -> LockedArtifact:
    policy = make_policy(prefer=spec.prefer, format=spec.format or None, precision=spec.precision or None,
                         context=spec.context or None, max_kl=spec.max_kl, min_top1=spec.min_top1)
    src, res = resolve_from(sources, parse_requirement(spec.requirement), device, policy)
    chosen = res.chosen
    if chosen is None or chosen.target is None:
        err = no_match_error(res)
        raise type(err)(f"device class {dc_name!r}: {err}", hint=err.hint)
    manifest, data = sources.manifest(chosen.entry.manifest, first=src, name=spec.name)
    # Signed at lock time: the key id goes in the lock, so a bundle install demands it.
    signer = check_publisher(sources, manifest, data, first=src)
    # phi.lock is committed: its URLs carry no credentials (sources_from lends them back from PHI_GET_REGISTRY).
    files = tuple(LockedFile(path=f.path, size=f.size, sha256=f.sha256,
                             url=strip_credentials(src.url(blob_path(f.sha256), name=manifest.name)))
                  for f in manifest.files)
    return LockedArtifact(
        model=spec.name, device_class=dc_name, requirement=spec.requirement, version=str(manifest.version),
        variant=manifest.variant, manifest=chosen.entry.manifest, format=str(manifest.format),
        precision=str(manifest.precision), target=chosen.target.tag, size=manifest.size,
        sources=tuple(s.stored for s in sources.sources),
        unsigned_sources=tuple(s.stored for s in sources.sources if not s.signed), publisher_key=signer or "",
        policy={"prefer": spec.prefer, "format": spec.format, "precision": spec.precision,
                "context": chosen.context,
                # The quality budget, as Policy.to_json writes it (repr strings: a lock holds no floats).
                **{k: repr(v) for k, v in (("max_kl", spec.max_kl), ("min_top1", spec.min_top1)) if v is not None}},
        files=files,
    )


def lock_project(folder: Path, home: Path, *, registries: Sequence[str] | None = None,
                 created_by: str = "phi-get") -> tuple[Path, Lock]:
    """Resolve every model for every device class and write ``phi.lock`` next to ``phi.toml``."""
    loaded = load_project(folder)
    sources = sources_from(list(registries or loaded.project.registries) or None, home)
    classes, artifacts = [], []
    for dc in loaded.project.device_classes:
        sha, device = loaded.profiles[dc.name]
        classes.append(LockedDeviceClass(name=dc.name, profile=dc.profile, profile_sha256=sha,
                                         targets=tuple(t.tag for t in supported_targets(device))))
        artifacts += [_lock_one(sources, spec, dc.name, device) for spec in loaded.project.models]
    lock = Lock(created_by=created_by, inputs=loaded.inputs_digest, device_classes=tuple(classes),
                artifacts=tuple(artifacts))
    path = folder / LOCK_NAME
    Store(home).write_atomic(path, lock_bytes(lock))
    return path, lock


def _pick_class(lock: Lock, wanted: str | None, device: str | None) -> str:
    names = [c.name for c in lock.device_classes]
    if wanted is not None:
        if wanted not in names:
            raise LockMismatchError(f"phi.lock has no device class {wanted!r}", hint="classes: " + ", ".join(names))
        return wanted
    if len(names) == 1:
        return names[0]
    here = {t.tag for t in supported_targets(load_device(device))}
    for name in names:
        if all(a.target in here for a in lock.for_class(name)):
            return name
    raise LockMismatchError("no device class of phi.lock runs on this device",
                            hint="pass --device-class NAME; classes: " + ", ".join(names))


def sync_locked(folder: Path, home: Path, *, device_class: str | None = None,
                registries: Sequence[str] | None = None, device: str | None = None,
                offline: bool | None = None, reporter: Reporter | None = None,
                warn: Callable[[str], None] | None = None) -> list[InstallResult]:
    """Install exactly what ``phi.lock`` pins for one device class (``warn`` hears about newer locks)."""
    loaded = load_project(folder)
    lock_path = folder / LOCK_NAME
    try:
        lock = parse_lock(lock_path.read_bytes(), document=str(lock_path))
    except FileNotFoundError:
        raise LockMismatchError(f"no {LOCK_NAME} in {folder}", hint="run phi-get lock first") from None
    if lock.newer_minor and warn is not None:
        warn(f"{lock_path} was written by a newer phi-get ({lock.created_by}, lock-version "
             f"{lock.version[0]}.{lock.version[1]}); reading the fields this version knows")
    if lock.inputs != loaded.inputs_digest:
        raise LockMismatchError(f"{lock_path} no longer matches {PROJECT_NAME} and its device profiles "
                                f"(locked inputs {lock.inputs}, now {loaded.inputs_digest})",
                                hint="run phi-get lock, review the diff, commit it")
    name = _pick_class(lock, device_class, device)
    store = Store(home)
    results = []
    for art in lock.for_class(name):
        bases = list(registries or art.sources)
        # A bundle is verified with the TUF metadata it carries, against the lock source's pinned root,
        # or used unsigned where the user accepts that; its publisher signature is checked
        # before anything is placed.
        sources = bundle_sources(sources_from(bases, home, offline=offline, locked=True), art, home, warn)
        check_bundle_signature(sources, art, home)
        # The locked file list is checked against the manifest before any blob is fetched or placed.
        want = tuple((f.path, f.size, f.sha256) for f in art.files)
        results.append(install_digest(store, sources, art.manifest, expect_files=want, expect_name=art.model,
                                      files_where=f"{lock_path} ({art.model}, device class {name})",
                                      reporter=reporter))
    return results
