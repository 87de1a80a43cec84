"""Installing: requirement -> resolution -> verified blobs -> atomically placed artifact.

:func:`install_requirement` resolves against the first source that lists
the model, then :func:`install_digest` fetches the pinned manifest (verified
against its digest), fetches every file's blob (several files at once, each
large file in parallel byte ranges: :mod:`.fetch`), and places the artifact
folder atomically (:meth:`.store.Store.place_artifact`).  A locked sync
calls :func:`install_digest` directly: no resolution, and the digest, not
any registry answer, decides the bytes.

Imports the standard library, :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.artifact import MANIFEST_FILENAME
from phi_get.manifests.canonical import digest_of
from phi_get.manifests.device import DeviceProfile
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.manifest import Manifest, parse_manifest

from .errors import IntegrityError
from .explain import no_match_error
from .fetch import FetchStats, NullReporter, Reporter, fetch_blob
from .resolve import Policy, Requirement, Resolution, resolve
from .sources import Source, Sources
from .store import Store

__all__ = ["FILES_IN_PARALLEL", "InstallResult", "install_digest", "install_requirement", "resolve_from"]

FILES_IN_PARALLEL: Final = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallResult:
    path: Path
    manifest: Manifest
    already_installed: bool
    files: dict[str, FetchStats] = field(default_factory=dict)
    resolution: Resolution | None = None

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": m.name, "version": str(m.version), "variant": m.variant, "manifest": m.digest,
            "format": str(m.format), "precision": str(m.precision), "path": str(self.path),
            "target": self.resolution.chosen.target.tag if self.resolution and self.resolution.chosen
            and self.resolution.chosen.target else None,
            "already_installed": self.already_installed, "size": m.size,
            "downloaded_bytes": sum(s.downloaded for s in self.files.values()),
            "resumed_bytes": sum(s.resumed for s in self.files.values()),
            "read_back_bytes": sum(s.read_back for s in self.files.values()),
        }


def resolve_from(sources: Sources, req: Requirement, device: DeviceProfile,
                 policy: Policy) -> tuple[Source, Resolution]:
    src, index = sources.find_index(req.name)
    return src, resolve(req, device, index.entries, policy)


def _cached_manifest(store: Store, digest: str) -> tuple[Manifest, bytes] | None:
    path = store.manifest_file(digest)
    if not path.exists():
        return None
    data = path.read_bytes()
    if digest_of(data) != digest:  # a damaged cache entry is ignored, not trusted
        path.unlink(missing_ok=True)
        return None
    return parse_manifest(data, document=str(path)), data


def install_digest(store: Store, sources: Sources, digest: str, *, first: Source | None = None,
                   expect: IndexEntry | None = None, expect_name: str | None = None, reporter: Reporter | None = None,
                   workers: int = 4) -> InstallResult:
    """Install the artifact whose manifest has ``digest`` (already there: just the ref)."""
    rep = reporter or NullReporter()
    store.ensure()
    folder = store.artifact(digest)
    if (folder / MANIFEST_FILENAME).exists():
        data = (folder / MANIFEST_FILENAME).read_bytes()
        if digest_of(data) == digest:
            manifest = parse_manifest(data, document=str(folder / MANIFEST_FILENAME))
            store.set_ref(manifest)
            return InstallResult(path=folder, manifest=manifest, already_installed=True)
    got = _cached_manifest(store, digest) or sources.manifest(digest, first=first)
    manifest, data = got
    if expect is not None and (manifest.version, manifest.variant) != (expect.version, expect.variant):
        raise IntegrityError("manifest", expected=f"{expect.version} {expect.variant}",
                             actual=f"{manifest.version} {manifest.variant}", where=digest)
    if expect_name is not None and manifest.name != expect_name:
        raise IntegrityError("manifest", expected=expect_name, actual=manifest.name, where=digest)
    store.save_manifest(digest, data)
    stats: dict[str, FetchStats] = {}
    unique = {e.sha256: e for e in manifest.files}  # one download per distinct blob
    cancel = threading.Event()  # Ctrl-C here, or one file failing, stops the other downloads within a chunk
    pool = ThreadPoolExecutor(max_workers=FILES_IN_PARALLEL, thread_name_prefix="phi-get-files")
    try:
        futures = {e.path: pool.submit(fetch_blob, store, e, sources.blob_urls(e.sha256, first=first),
                                       reporter=rep, workers=workers, label=f"{manifest.name} {e.path}",
                                       cancel=cancel)
                   for e in unique.values()}
        for file_path, fut in futures.items():
            stats[file_path] = fut.result()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    folder = store.place_artifact(manifest, data)
    store.set_ref(manifest)
    return InstallResult(path=folder, manifest=manifest, already_installed=False, files=stats)


def install_requirement(store: Store, sources: Sources, req: Requirement, device: DeviceProfile,
                        policy: Policy, *, reporter: Reporter | None = None, workers: int = 4) -> InstallResult:
    src, res = resolve_from(sources, req, device, policy)
    chosen = res.chosen
    if chosen is None:
        raise no_match_error(res)
    result = install_digest(store, sources, chosen.entry.manifest, first=src, expect=chosen.entry,
                            expect_name=req.name, reporter=reporter, workers=workers)
    return InstallResult(path=result.path, manifest=result.manifest, already_installed=result.already_installed,
                         files=result.files, resolution=res)
