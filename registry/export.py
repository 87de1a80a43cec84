"""Static mirrors: ``phi-get registry export DIR``.

Writes the wire layout (manifests/index.py ``LAYOUT``) as plain files, so any
static file server, object store or a ``file://`` URL serves exactly what the
live registry serves::

    DIR/v1/models.json
    DIR/v1/models/<name>/index.json
    DIR/v1/manifests/sha256/<hex>.json
    DIR/v1/blobs/sha256/<hex>

Every file is written to a temporary name beside its target and renamed into
place; the order is blobs, then manifests, then index documents, then the
catalog, so a mirror that is being served while it is updated never lists a
manifest whose blobs are not there yet.  Exporting into an existing mirror is
incremental: a blob already there with the right size is kept (blobs are
hard-linked from the store when both sit on one filesystem, else copied).

Imports :mod:`phi_get.manifests` and the registry's own modules only.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from phi_get.manifests.atomic import write_atomic
from phi_get.manifests.index import LAYOUT, blob_path, index_path, manifest_path
from phi_get.manifests.signing import TUF_PREFIX, signature_path

from .errors import BlobIntegrityError
from .service import Registry

__all__ = ["ExportReport", "export_mirror"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportReport:
    models: int
    manifests: int
    blobs_written: int
    blobs_kept: int
    bytes_written: int


def _place_blob(registry: Registry, sha: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    source = registry.store.local_path(sha)
    try:
        try:
            if source is None:
                raise OSError("no local file")
            os.link(source, tmp)
        except OSError:  # another filesystem, links not supported, or a remote store
            with registry.store.open(sha) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def export_mirror(registry: Registry, out: str | os.PathLike[str]) -> ExportReport:
    """Write (or bring up to date) a static mirror of ``registry`` in ``out``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written = kept = nbytes = 0
    for sha, size in sorted(registry.referenced_blobs().items()):
        target = root / blob_path(sha)
        if target.is_file() and target.stat().st_size == size:
            kept += 1
            continue
        if registry.store.size(sha) != size:
            raise BlobIntegrityError(f"blob sha256:{sha} referenced by a manifest is missing from the store "
                                 f"or has the wrong size; the store is damaged")
        _place_blob(registry, sha, target)
        written += 1
        nbytes += size
    manifests = registry.manifests()
    for digest, content in manifests:
        write_atomic(root / manifest_path(digest), content)
    names = registry.model_names()
    for name in names:
        body, _etag = registry.index(name)
        write_atomic(root / index_path(name), body)
    write_atomic(root / LAYOUT["catalog"], registry.catalog_bytes())
    if registry.tuf is not None:  # signed metadata last: a mirror never signs what it does not hold yet
        for digest, _content in manifests:
            sig = registry.tuf.signature(digest)
            if sig is not None:
                write_atomic(root / signature_path(digest), sig)
        meta = [(n, b) for n, b in registry.tuf.files() if n != "timestamp.json"]
        for name, body in meta + [(n, b) for n, b in registry.tuf.files() if n == "timestamp.json"]:
            write_atomic(root / TUF_PREFIX / name, body)
    return ExportReport(models=len(names), manifests=len(manifests), blobs_written=written, blobs_kept=kept,
                        bytes_written=nbytes)
