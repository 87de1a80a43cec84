"""The registry's logic: publish, yank, read, count, collect garbage.

:class:`Registry` holds an engine and a :class:`~.storage.BlobStore`; the
HTTP layer (``http_api.py``), the exporter and the CLI all call it, and it knows
nothing of HTTP.  Rules it enforces:

* a manifest is committed last, in one transaction, and only when every blob
  it lists is already in the store with the listed size: a crash at any step
  leaves no half-published variant;
* published versions are immutable: the same bytes again is a no-op success,
  different bytes under the same (name, version, variant) is a ConflictError;
  the unique constraint on ``variants`` decides between concurrent publishes;
* yanking hides a version from new resolutions (the index marks it) but keeps
  its manifest and blobs served, for exact pins and lockfiles;
* gc deletes only blobs no committed manifest references, and only once they
  are older than a grace period (an upload whose manifest is not committed
  yet is not garbage), plus abandoned uploads.

Imports sqlmodel/sqlalchemy and :mod:`phi_get.manifests` only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from packaging.version import Version
from phi_get.manifests.canonical import digest_of
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.manifest import Manifest, parse_manifest
from phi_get.manifests.names import check_digest, check_model_name, check_variant_id, check_version
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlmodel import Session, col, select

from .convert import catalog_of, entry_json, latest_version, model_index_of
from .errors import BadRequestError, ConflictError, NotFoundError
from .storage import BlobStore
from .tables import BlobRefRow, ManifestRow, ModelRow, VariantRow
from .tokens import Principal

if TYPE_CHECKING:
    from .tuf_repo import TufRepository

__all__ = ["DEFAULT_MAX_BLOB_SIZE", "PublishResult", "Registry", "RegistryGcReport"]

#: Largest blob accepted by default: 64 GiB (a Phi-4-mini fp32 file is ~16 GB).
DEFAULT_MAX_BLOB_SIZE: Final = 64 << 30
DEFAULT_GC_GRACE_S: Final = 3600.0


@dataclass(frozen=True, kw_only=True, slots=True)
class PublishResult:
    digest: str
    name: str
    version: str
    variant: str
    created: bool  # False: the identical manifest was already published


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistryGcReport:
    """What ``Registry.gc`` deleted (or would): named apart from the device store's ``GcReport``
    (resolver/maintenance.py), with the same name for the same fact, ``freed_bytes``."""

    blobs_deleted: tuple[str, ...]
    freed_bytes: int
    uploads_removed: int
    blobs_kept: int


def _request_field(check: Callable[[object, str, str], str], value: str, field: str) -> str:
    """A request's ``field`` checked as the spec checks it; a bad one is the client's error (400)."""
    try:
        return check(value, field, "request")
    except ManifestError as exc:
        raise BadRequestError(str(exc)) from None


def _bump_revision(session: Session, name: str) -> None:
    """Commit a change to ``name``'s index under a new revision (what index ETags and mirrors follow)."""
    session.execute(update(ModelRow).where(col(ModelRow.name) == name).values(revision=ModelRow.revision + 1))
    session.commit()


class Registry:
    """The catalog (SQL) plus the blob store; thread-safe, no globals."""

    def __init__(self, engine: Engine, store: BlobStore, *, max_blob_size: int = DEFAULT_MAX_BLOB_SIZE) -> None:
        self.engine = engine
        self.store = store
        self.max_blob_size = max_blob_size
        #: name -> (revision, index bytes, etag, monotonic time last checked)
        self._index_cache: dict[str, tuple[int, bytes, str, float]] = {}
        self._lock = threading.Lock()
        #: The TUF repository that signs every change (registry/tuf_repo.py); None: this registry is unsigned.
        self.tuf: TufRepository | None = None

    # ---- reading -----------------------------------------------------------------

    def _variants_by_model(self, session: Session) -> dict[str, list[VariantRow]]:
        grouped: dict[str, list[VariantRow]] = defaultdict(list)
        for name in session.exec(select(ModelRow.name)).all():
            grouped[name] = []
        for row in session.exec(select(VariantRow)).all():
            grouped[row.model].append(row)
        return grouped

    def catalog_bytes(self) -> bytes:
        with Session(self.engine) as session:
            return catalog_of(self._variants_by_model(session)).to_bytes()

    def search(self, query: str = "", limit: int = 100) -> list[dict[str, object]]:
        """Models whose name contains ``query`` (case-insensitive), with their latest version."""
        needle = query.strip().lower()
        with Session(self.engine) as session:
            grouped = self._variants_by_model(session)
        hits = []
        for name, rows in sorted(grouped.items()):
            if needle and needle not in name:
                continue
            hits.append({
                "name": name, "latest": latest_version(rows),
                "versions": len({r.version for r in rows}), "variants": len(rows),
                "downloads": sum(r.downloads for r in rows),
            })
        return hits[:limit]

    def index(self, name: str, *, max_age_s: float = 0.0) -> tuple[bytes, str]:
        """The model's index document and its strong ETag.

        Built once per catalog revision of the model and cached; the revision
        is re-read from the database when the cached copy was checked more
        than ``max_age_s`` ago.  Publishing or yanking through this process
        drops the model's entry at once; another process sharing the catalog
        is seen within ``max_age_s``.
        """
        name = self.model_name(name)
        cached = self._index_cache.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[3] <= max_age_s:
            return cached[1], cached[2]
        with Session(self.engine) as session:
            revision = session.exec(select(ModelRow.revision).where(ModelRow.name == name)).first()
            if revision is None:
                raise NotFoundError(f"no model named {name!r} in this registry")
            if cached is not None and cached[0] == revision:
                self._index_cache[name] = (revision, cached[1], cached[2], now)
                return cached[1], cached[2]
            rows = session.exec(select(VariantRow).where(VariantRow.model == name)).all()
        body = model_index_of(name, rows).to_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        with self._lock:
            self._index_cache[name] = (revision, body, etag, now)
        return body, etag

    def cached_index(self, name: str) -> tuple[bytes, str, float] | None:
        """The cached index of ``name`` (canonical) and its age in seconds; no I/O."""
        cached = self._index_cache.get(name)
        if cached is None:
            return None
        return cached[1], cached[2], time.monotonic() - cached[3]

    def manifest_bytes(self, digest: str, *, count: bool = False) -> bytes:
        digest = self._digest(digest)
        with Session(self.engine) as session:
            row = session.get(ManifestRow, digest)
            if row is None:
                raise NotFoundError(f"no manifest {digest} in this registry")
            content = bytes(row.content)
            if count:
                session.execute(
                    update(VariantRow).where(col(VariantRow.manifest) == digest)
                    .values(downloads=VariantRow.downloads + 1)
                )
                session.commit()
        return content

    def stats(self, name: str) -> dict[str, object]:
        name = self.model_name(name)
        with Session(self.engine) as session:
            if session.get(ModelRow, name) is None:
                raise NotFoundError(f"no model named {name!r} in this registry")
            rows = session.exec(select(VariantRow).where(VariantRow.model == name)).all()
        ordered = sorted(rows, key=lambda r: (Version(r.version), r.variant))
        return {
            "name": name,
            "downloads": sum(r.downloads for r in rows),
            "variants": [{"version": r.version, "variant": r.variant, "downloads": r.downloads} for r in ordered],
        }

    def referenced_blobs(self) -> dict[str, int]:
        """Every blob a committed manifest references, with its size."""
        with Session(self.engine) as session:
            return {r.sha256: r.size for r in session.exec(select(BlobRefRow)).all()}

    def manifests(self) -> list[tuple[str, bytes]]:
        with Session(self.engine) as session:
            return [(r.digest, bytes(r.content)) for r in session.exec(select(ManifestRow)).all()]

    def model_names(self) -> list[str]:
        with Session(self.engine) as session:
            return sorted(session.exec(select(ModelRow.name)).all())

    # ---- publishing --------------------------------------------------------------

    def parse_publish_body(self, body: bytes) -> Manifest:
        """The manifest in a publish request: valid and in canonical form."""
        try:
            manifest = parse_manifest(body, document="published manifest")
        except ManifestError as exc:
            raise BadRequestError(str(exc)) from None
        if manifest.to_bytes() != body:
            raise BadRequestError(
                "published manifest is not in canonical form (sorted keys, no whitespace, no unknown keys): "
                "send Manifest.to_bytes(), the bytes of manifest.json as the builders write it"
            )
        return manifest

    def missing_blobs(self, manifest: Manifest) -> list[str]:
        """Listed files whose blob is absent from the store or has another size."""
        missing = []
        for f in manifest.files:
            if self.store.size(f.sha256) != f.size:
                missing.append(f.sha256)
            else:
                self.store.touch(f.sha256)  # young again: gc's grace period covers the commit
        return missing

    def publish(self, principal: Principal, body: bytes) -> PublishResult:
        manifest = self.parse_publish_body(body)
        principal.require_publish(manifest.name)
        digest = digest_of(body)
        name, version, variant = manifest.key
        result = PublishResult(digest=digest, name=name, version=version, variant=variant, created=False)
        existing = self._existing(manifest)
        if existing is not None:
            return self._same_or_conflict(existing, result)
        missing = self.missing_blobs(manifest)
        if missing:
            raise BadRequestError(
                f"cannot commit {name} {version} {variant}: {len(missing)} blob(s) not uploaded, "
                f"first sha256:{missing[0]}; upload them to /v1/uploads/sha256/<hex> first"
            )
        for attempt in range(3):
            try:
                self._commit(manifest, body, digest)
                break
            except DBIntegrityError:
                # Another publish won a race: for this very variant (then the
                # unique constraint decided), or for the model's first row
                # (then this commit is simply retried).
                existing = self._existing(manifest)
                if existing is not None:
                    return self._same_or_conflict(existing, result)
                if attempt == 2:
                    raise
        return PublishResult(digest=digest, name=name, version=version, variant=variant, created=True)

    def _existing(self, m: Manifest) -> VariantRow | None:
        name, version, variant = m.key
        with Session(self.engine) as session:
            return session.exec(select(VariantRow).where(
                VariantRow.model == name, VariantRow.version == version, VariantRow.variant == variant,
            )).first()

    @staticmethod
    def _same_or_conflict(existing: VariantRow, result: PublishResult) -> PublishResult:
        if existing.manifest == result.digest:
            return result
        raise ConflictError(
            f"{result.name} {result.version} {result.variant} is already published as {existing.manifest}; "
            f"published versions are immutable (this manifest is {result.digest})",
            hint="publish under a new version",
        )

    def _commit(self, m: Manifest, body: bytes, digest: str) -> None:
        name, version, variant = m.key
        now = time.time()
        with Session(self.engine) as session:
            if session.get(ModelRow, name) is None:
                session.add(ModelRow(name=name, revision=0, created=now))
                session.flush()
            session.add(ManifestRow(digest=digest, content=body))
            session.flush()
            for sha, size in {f.sha256: f.size for f in m.files}.items():
                session.add(BlobRefRow(manifest=digest, sha256=sha, size=size))
            session.add(VariantRow(
                model=name, version=version, variant=variant, manifest=digest,
                entry=entry_json(m, digest), size=m.size, created=now,
            ))
            _bump_revision(session, name)
        self._index_changed(name)

    def _index_changed(self, name: str) -> None:
        """After a commit that changed ``name``'s index: forget the cached one, re-sign (when signed)."""
        self._index_cache.pop(name, None)
        if self.tuf is not None:
            self.tuf.sync(self)

    def yank(self, principal: Principal, name: str, version: str, reason: str | None,
             variant: str | None = None) -> int:
        """Yank (reason) or un-yank (None) a version or one variant; returns rows changed."""
        name = self.model_name(name)
        principal.require_publish(name)
        version = str(check_version(version, "version", "yank request"))
        if variant is not None:
            variant = check_variant_id(variant, "variant", "yank request")
        if reason is not None and not (0 < len(reason) <= 1024):
            raise BadRequestError("a yank reason is 1 to 1024 characters")
        if reason is not None and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in reason):
            # Shown by every client that resolves the version: an escape sequence there
            # would rewrite the user's terminal (text that is not what it looks).
            raise BadRequestError("a yank reason may not hold control characters (newlines, escapes)")
        with Session(self.engine) as session:
            query = select(VariantRow).where(VariantRow.model == name, VariantRow.version == version)
            if variant is not None:
                query = query.where(VariantRow.variant == variant)
            rows = session.exec(query).all()
            if not rows:
                what = f"{name} {version}" + (f" {variant}" if variant else "")
                raise NotFoundError(f"nothing published as {what}")
            for row in rows:
                row.yanked = reason
                session.add(row)
            _bump_revision(session, name)
        self._index_changed(name)
        return len(rows)

    def put_signature(self, principal: Principal, digest: str, body: bytes) -> None:
        """Keep a publisher signature of a published manifest (registry/tuf_repo.py signs it as a target)."""
        if self.tuf is None:
            raise BadRequestError("this registry does not sign: `phi-get registry trust init` sets signing up")
        manifest = parse_manifest(self.manifest_bytes(digest), document=digest)
        principal.require_publish(manifest.name)
        if len(body) > 4 << 20:
            raise BadRequestError("a signature is at most 4 MiB")
        self.tuf.store_signature(self._digest(digest), body)
        self.tuf.sync(self)

    # ---- garbage collection -----------------------------------------------------

    def gc(self, *, grace_s: float = DEFAULT_GC_GRACE_S, dry_run: bool = False) -> RegistryGcReport:
        referenced = self.referenced_blobs()
        cutoff = time.time() - grace_s
        deleted: list[str] = []
        freed = 0
        kept = 0
        for sha, size in list(self.store.blobs()):
            if sha in referenced or self.store.mtime(sha) > cutoff:
                kept += 1
                continue
            if dry_run or self.store.delete(sha):
                deleted.append(sha)
                freed += size
        uploads = 0 if dry_run else self.store.remove_stale_uploads(grace_s)
        return RegistryGcReport(blobs_deleted=tuple(deleted), freed_bytes=freed, uploads_removed=uploads, blobs_kept=kept)

    # ---- helpers -------------------------------------------------------------------

    @staticmethod
    def model_name(name: str) -> str:
        return _request_field(check_model_name, name, "name")

    @staticmethod
    def _digest(digest: str) -> str:
        return _request_field(check_digest, digest, "digest")
