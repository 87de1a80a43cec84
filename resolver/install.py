"""Installing: requirement -> resolution -> verified blobs -> atomically placed artifact.

:func:`install_requirement` resolves against the first source that lists
the model, then :func:`install_digest` fetches the pinned manifest (verified
against its digest), fetches every file's blob (several files at once, each
large file in parallel byte ranges: :mod:`.fetch`), and places the artifact
folder atomically (:meth:`.store.Store.place_artifact`).  A locked sync
calls :func:`install_digest` directly: no resolution, and the digest, not
any registry answer, decides the bytes; the lock's file list is checked
against the manifest before any blob is fetched.

No byte is placed unchecked: a downloaded blob was
hashed on the way in, a stored one is vouched for by the store (its
verified record, or a re-hash), and an artifact folder that is already
there is checked the same way before it counts as installed; a damaged
one is moved aside and installed again.  The install pins what it needs
(:meth:`.store.Store.pin`) so that a concurrent gc keeps it, and fetches
again a blob that vanishes or changes before it is linked anyway (class 3).

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
from .resolution import Policy, Requirement, Resolution
from .resolve import resolve
from .sources import Source, Sources, check_publisher
from .store import BlobUnusableError, Store

__all__ = ["FILES_IN_PARALLEL", "PLACE_ATTEMPTS", "InstallResult", "install_digest", "install_requirement",
           "resolve_from"]

FILES_IN_PARALLEL: Final = 3
#: Fetch-and-place rounds before giving up on a blob that keeps vanishing or changing before it is linked.
#: Pins keep gc away, so only a gc pass already under way when the install pinned can take one: few rounds do.
PLACE_ATTEMPTS: Final = 4
#: (path, size, sha256) of every file, in manifest order: how a lock lists them.
FileList = tuple[tuple[str, int, str], ...]


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


def _check_expected(manifest: Manifest, digest: str, expect: IndexEntry | None, expect_name: str | None,
                    expect_files: FileList | None, files_where: str) -> None:
    if expect is not None and (manifest.version, manifest.variant) != (expect.version, expect.variant):
        raise IntegrityError("manifest", expected=f"{expect.version} {expect.variant}",
                             actual=f"{manifest.version} {manifest.variant}", where=digest)
    if expect_name is not None and manifest.name != expect_name:
        raise IntegrityError("manifest", expected=expect_name, actual=manifest.name, where=digest)
    if expect_files is not None:
        got = tuple((f.path, f.size, f.sha256) for f in manifest.files)
        if got != tuple(expect_files):
            wrong = next((w, g) for w, g in zip((*expect_files, None), (*got, None), strict=False) if w != g)
            raise IntegrityError(f"files of {manifest.name} {manifest.version} {manifest.variant} (manifest {digest})",
                                 expected=str(wrong[0]), actual=str(wrong[1]), where=files_where)


def _intact(store: Store, digest: str, rep: Reporter) -> tuple[Manifest, bytes] | None:
    """The installed folder of ``digest`` if it is complete and every file is vouched for; a damaged one is moved aside."""
    folder = store.artifact(digest)
    try:
        data = (folder / MANIFEST_FILENAME).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    problems = ["manifest.json does not match the digest"] if digest_of(data) != digest else []
    manifest = None
    if not problems:
        manifest = parse_manifest(data, document=str(folder / MANIFEST_FILENAME))
        problems = store.check_artifact(folder, manifest)
    if manifest is None or problems:
        rep.note(f"{folder} is damaged ({'; '.join(problems)[:300]}); moved it aside, installing it again")
        store.discard(folder)
        return None
    return manifest, data


def _fetch_all(store: Store, sources: Sources, manifest: Manifest, first: Source | None, rep: Reporter,
               workers: int) -> dict[str, FetchStats]:
    stats: dict[str, FetchStats] = {}
    unique = {e.sha256: e for e in manifest.files}  # one download per distinct blob
    cancel = threading.Event()  # Ctrl-C here, or one file failing, stops the other downloads within a chunk
    pool = ThreadPoolExecutor(max_workers=FILES_IN_PARALLEL, thread_name_prefix="phi-get-files")
    try:
        futures = {e.path: pool.submit(fetch_blob, store, e, sources.blob_urls(e.sha256, first=first,
                                                                               name=manifest.name),
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
    return stats


def install_digest(store: Store, sources: Sources, digest: str, *, first: Source | None = None,
                   expect: IndexEntry | None = None, expect_name: str | None = None,
                   expect_files: FileList | None = None, files_where: str = "the lock",
                   reporter: Reporter | None = None, workers: int = 4) -> InstallResult:
    """Install the artifact whose manifest has ``digest`` (already there and intact: just the ref).

    ``expect_files`` (a lock's file list, from ``files_where``) must be the
    manifest's, checked before any blob is fetched or placed.
    """
    rep = reporter or NullReporter()
    store.ensure()
    with store.pin() as pin:
        pin.add(digest)  # before looking at anything gc could take
        if (found := _intact(store, digest, rep)) is not None:
            manifest = found[0]
            _check_expected(manifest, digest, expect, expect_name, expect_files, files_where)
            store.set_ref(manifest)
            return InstallResult(path=store.artifact(digest), manifest=manifest, already_installed=True)
        manifest, data = _cached_manifest(store, digest) or sources.manifest(digest, first=first, name=expect_name)
        _check_expected(manifest, digest, expect, expect_name, expect_files, files_where)
        check_publisher(sources, manifest, data, first=first)  # before any blob is fetched
        store.save_manifest(digest, data)
        pin.add(*(e.sha256 for e in manifest.files))
        stats: dict[str, FetchStats] = {}
        for attempt in range(1, PLACE_ATTEMPTS + 1):
            stats.update(_fetch_all(store, sources, manifest, first, rep, workers))
            try:
                store.place_artifact(manifest, data)
            except BlobUnusableError as exc:
                if attempt == PLACE_ATTEMPTS:
                    raise
                rep.note(f"{manifest.name}: {exc.what} {exc.actual}; fetching it again")
                continue
            if _intact(store, digest, rep) is not None:  # ours, or placed first by another process: checked
                break
        else:
            raise IntegrityError(f"artifact {digest}", expected="an intact folder", actual="a damaged one each time",
                                 where=str(store.artifact(digest)))
        store.set_ref(manifest)
    return InstallResult(path=store.artifact(digest), manifest=manifest, already_installed=False, files=stats)


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
