"""Air-gapped bundles: what ``phi.lock`` pins, as an OCI image layout on disk (issue 16).

:func:`export_bundle` installs (or finds in the store) every artifact the
lock pins, for every device class, each checked against the lock's file
list, and writes an OCI image layout (:mod:`phi_get.manifests.oci`):

    DIR/oci-layout
    DIR/index.json             one descriptor per variant, with the index entry and a ref.name
    DIR/blobs/sha256/HEX       the files, phi-get's manifests, ModelPack configs, OCI manifests

Nothing else goes in: a bundle holds exactly what the lock pins.  Each
blob is written to a temporary name, checked against its digest (the
store's copy is trusted no more than a download) and renamed into place,
and ``index.json`` is written last, so a bundle cut short is never taken
for a complete one.  ``ref.name`` is ``NAME_VERSION-VARIANT`` (the tag, with the
model's name in front), which ``skopeo copy oci:DIR:REF docker://...``
takes, so a bundle can be moved into any registry and back.

``phi-get sync --locked --from DIR`` (or ``--registry DIR``) reads the
folder as a source with no network (:class:`.oci.OciLayoutSource`).

Imports the standard library, :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from phi_get.manifests.canonical import digest_of
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.lockfile import parse_lock
from phi_get.manifests.manifest import parse_manifest
from phi_get.manifests.oci import (
    LAYOUT_FILE,
    LAYOUT_VERSION,
    Variant,
    image_index,
    image_manifest,
    model_config,
    variant_tag,
)

from .errors import IntegrityError
from .fetch import Reporter
from .install import install_digest
from .sources import sources_from
from .store import Store

__all__ = ["BundleReport", "export_bundle"]

@dataclass(frozen=True, kw_only=True, slots=True)
class BundleReport:
    folder: Path
    variants: int
    blobs: int
    bytes: int


def _put(folder: Path, data: bytes) -> str:
    digest = digest_of(data)
    target = folder / "blobs" / "sha256" / digest.removeprefix("sha256:")
    if not target.exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return digest


def _copy_blob(folder: Path, source: Path, hex_: str, size: int) -> None:
    """Copy a store blob into the layout, checked against its digest before the rename."""
    target = folder / "blobs" / "sha256" / hex_
    if target.exists() and target.stat().st_size == size:
        return
    tmp = target.with_name(f".{hex_}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    with open(source, "rb") as src, open(tmp, "wb") as out:
        while chunk := src.read(1 << 22):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != hex_ or tmp.stat().st_size != size:
        tmp.unlink(missing_ok=True)
        raise IntegrityError("blob", expected=f"sha256:{hex_}", actual=f"sha256:{h.hexdigest()}", where=str(source))
    os.replace(tmp, target)


def export_bundle(lock_path: Path, out: Path, home: Path, *, registries: list[str] | None = None,
                  reporter: Reporter | None = None) -> BundleReport:
    """Write the OCI image layout of everything ``lock_path`` pins into ``out`` (a new or empty folder)."""
    if out.exists() and any(out.iterdir()) and not (out / LAYOUT_FILE).is_file():
        raise ManifestError("the bundle folder exists and is not an OCI image layout; refusing to write into it",
                            value=str(out), document="DIR")
    try:
        lock = parse_lock(lock_path.read_bytes(), document=str(lock_path))
    except FileNotFoundError:
        raise ManifestError("no such lock file", value=str(lock_path), document="--lock") from None
    (out / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (out / "index.json").unlink(missing_ok=True)  # written last: a bundle cut short has none
    store = Store(home)
    variants: dict[str, Variant] = {}
    ref_names: dict[str, str] = {}
    blobs: set[str] = set()
    total = 0
    for art in lock.artifacts:
        if art.manifest in (v.entry.manifest for v in variants.values()):
            continue
        sources = sources_from(list(registries or art.sources), home)
        want = tuple((f.path, f.size, f.sha256) for f in art.files)
        result = install_digest(store, sources, art.manifest, expect_files=want, expect_name=art.model,
                                files_where=f"{lock_path} ({art.model}, device class {art.device_class})",
                                reporter=reporter)
        data = (result.path / "manifest.json").read_bytes()
        manifest = parse_manifest(data, document=str(result.path / "manifest.json"))
        for f in manifest.files:
            if f.sha256 not in blobs:
                _copy_blob(out, result.path / f.path, f.sha256, f.size)
                blobs.add(f.sha256)
                total += f.size
        config = model_config(manifest)
        for doc in (data, config):
            _put(out, doc)
        oci = image_manifest(manifest, data, config)
        digest = _put(out, oci)
        variants[digest] = Variant(name=manifest.name, entry=IndexEntry.from_manifest(manifest, art.manifest),
                                   digest=digest, size=len(oci))
        ref_names[digest] = f"{manifest.name}_{variant_tag(str(manifest.version), manifest.variant)}"
    (out / LAYOUT_FILE).write_bytes(LAYOUT_VERSION)
    index = image_index(variants.values(), ref_names)
    tmp = out / f".index.json.{os.getpid()}.tmp"
    tmp.write_bytes(index)
    os.replace(tmp, out / "index.json")
    return BundleReport(folder=out, variants=len(variants), blobs=len(blobs), bytes=total)
