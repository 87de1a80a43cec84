"""Air-gapped bundles: what ``phi.lock`` pins, as an OCI image layout on disk.

:func:`export_bundle` installs (or finds in the store) every artifact the
lock pins, for every device class, each checked against the lock's file
list, and writes an OCI image layout (:mod:`phi_get.manifests.oci`):

    DIR/oci-layout
    DIR/index.json             one descriptor per variant, with the index entry and a ref.name
    DIR/blobs/sha256/HEX       the files, phi-get's manifests, ModelPack configs, OCI manifests,
                               and the publisher signatures (model.sig layers)

Nothing else goes in: a bundle holds exactly what the lock pins, the
publisher signature of each artifact whose signed source vouches for one
(verified at export against the publisher keys its TUF metadata lists; the
signature is one more layer of the variant's image manifest, with the
publisher's public key on it: :mod:`phi_get.manifests.oci`), and, for each
TUF-signed source it came from, that source's metadata:

    DIR/tuf/<key>/source       the source's URL (<key>: as in the client's trust store)
    DIR/tuf/<key>/v1/tuf/      N.root.json (the chain from 1), timestamp.json, N.snapshot.json,
                               N.targets.json and the bins, as the registry serves them

Each blob is written to a temporary name, checked against its digest (the
store's copy is trusted no more than a download) and renamed into place,
and ``index.json`` is written last, so a bundle cut short is never taken
for a complete one.  ``ref.name`` is ``NAME_VERSION-VARIANT`` (the tag, with the
model's name in front), which ``skopeo copy oci:DIR:REF docker://...``
takes, so a bundle can be moved into any registry and back (images only:
skopeo does not carry ``tuf/``).

``phi-get sync --locked --from DIR`` (or ``--registry DIR``) reads the
folder as a source with no network (:class:`.oci.OciLayoutSource`), which
:func:`bundle_sources` gives the lock source's TUF verifier over the
bundle's copy of its metadata when this client pins that source's root:
TUF's update workflow runs as for a live registry or a mirror (the same
:class:`.trust.Verifier`), and the manifest and publisher signature must be
its signed targets.  A bundle without that metadata is refused where the
root is pinned, and used unsigned only where the lock's source (or the
bundle) is accepted unsigned, with a warning.  Before anything is placed,
:func:`check_bundle_signature` demands the publisher signature of an
artifact that ``phi.lock`` records as signed (``publisher-key``) or whose
verified metadata lists publisher keys, and refuses one that is missing, or
signed by another key (named).  The keys it verifies with: the verified
metadata's (so a key revoked since is refused), else, unsigned, the key the
bundle carries, used only when its key id is the one the lock records.

Imports the standard library, :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from phi_get.manifests.canonical import digest_of
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import IndexEntry, index_path, manifest_path
from phi_get.manifests.lockfile import LockedArtifact, parse_lock
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
from phi_get.manifests.signing import (
    PUBLISHERS_TARGET,
    TUF_PREFIX,
    key_id_of_pem,
    parse_signature_bundle,
    signature_path,
)

from . import transport
from .errors import IntegrityError
from .fetch import Reporter
from .install import install_digest
from .oci import OciLayoutSource
from .sources import Sources, publisher_signature, signed_files, sources_from
from .store import Store
from .trust import TrustError, Verifier, trust_dir, verify_bundle
from .trust_store import UNSIGNED_ENV, is_pinned, unsigned_listed

__all__ = ["BundleReport", "bundle_sources", "check_bundle_signature", "export_bundle", "tuf_folder"]

@dataclass(frozen=True, kw_only=True, slots=True)
class BundleReport:
    folder: Path
    variants: int
    blobs: int
    bytes: int
    signatures: int = 0
    #: The signed sources whose TUF metadata the bundle carries (their stored URLs).
    signed_sources: tuple[str, ...] = ()


def tuf_folder(bundle: Path, stored: str) -> Path:
    """Where a bundle keeps the TUF metadata of its source ``stored``: ``tuf/<key>/``, read as that source's base.

    ``<key>`` is the one the client's trust store uses (:func:`.trust_store.trust_dir`), and the
    metadata lies under ``v1/tuf/`` below it, as a registry serves it, so the one TUF client reads it.
    """
    return bundle / "tuf" / trust_dir(bundle, stored).name


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
    total = signed = 0
    tuf: dict[str, tuple[Verifier, set[str]]] = {}  # stored URL -> its verifier, the paths the bundle needs
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
        signature = publisher_signature(sources, manifest, data)
        _check_locked_signer(art, signature.key_id if signature else None, sources, lock_path)
        config = model_config(manifest)
        for doc in (data, config, *((signature.bundle,) if signature else ())):
            _put(out, doc)
        signed += signature is not None
        for src in sources.sources:
            if src.trust is not None:
                rels = tuf.setdefault(src.stored, (src.trust, set()))[1]
                rels.update((PUBLISHERS_TARGET, index_path(art.model), manifest_path(art.manifest),
                             *((signature_path(art.manifest),) if signature else ())))
        oci = image_manifest(manifest, data, config, signature=signature.bundle if signature else None,
                             publisher_pem=signature.pem if signature else "")
        digest = _put(out, oci)
        variants[digest] = Variant(name=manifest.name, entry=IndexEntry.from_manifest(manifest, art.manifest),
                                   digest=digest, size=len(oci))
        ref_names[digest] = f"{manifest.name}_{variant_tag(str(manifest.version), manifest.variant)}"
    for stored, (verifier, rels) in tuf.items():
        folder = tuf_folder(out, stored)
        verifier.write_metadata(folder / TUF_PREFIX, sorted(rels))
        (folder / "source").write_text(stored + "\n")
    (out / LAYOUT_FILE).write_bytes(LAYOUT_VERSION)
    index = image_index(variants.values(), ref_names)
    tmp = out / f".index.json.{os.getpid()}.tmp"
    tmp.write_bytes(index)
    os.replace(tmp, out / "index.json")
    return BundleReport(folder=out, variants=len(variants), blobs=len(blobs), bytes=total, signatures=signed,
                        signed_sources=tuple(sorted(tuf)))


def _check_locked_signer(art: LockedArtifact, signer: str | None, sources: Sources, lock_path: Path) -> None:
    """A bundle of an artifact locked as signed holds that key's signature, or is not written."""
    if not art.publisher_key or signer == art.publisher_key:
        return
    got = f"they now give one by key {signer}" if signer else "they vouch for no publisher signature of it"
    raise TrustError(f"{lock_path}: {art.model} {art.version} {art.variant} was signed by publisher key "
                     f"{art.publisher_key} when locked, but {got}",
                     source=", ".join(s.stored for s in sources.sources),
                     hint="export from the lock's own signed sources (drop --registry)")


def bundle_sources(sources: Sources, art: LockedArtifact, home: Path,
                   warn: Callable[[str], None] | None = None) -> Sources:
    """The sources of a locked install, a bundle among them verified as the lock's signed source would be.

    A bundle (an OCI layout) carrying the TUF metadata of a lock source whose
    root this client pins is read with that source's :class:`.trust.Verifier`
    over the bundle's copy (TUF's update workflow against the pinned root:
    rollback, expiry, thresholds, snapshot consistency; offline), so the
    manifest and the publisher signature must be its signed targets.  A
    bundle without it is used only where the user accepts the lock source (or
    the bundle) unsigned, and ``warn`` says so; else it is refused.
    """
    out = []
    for src in sources.sources:
        if isinstance(src, OciLayoutSource) and src.trust is None:
            src = _vouched(src, art, home, warn)
        out.append(src)
    return replace(sources, sources=tuple(out))


def _first_line(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.read(4096).decode("utf-8", "replace").partition("\n")[0].strip()


def _vouched(src: OciLayoutSource, art: LockedArtifact, home: Path,
             warn: Callable[[str], None] | None) -> OciLayoutSource:
    folder = Path(transport.file_path(src.base))
    # each tuf/*/source names its source (a URL: the first line, at most 4 KiB); only a source this client
    # pins is used, and its metadata is looked up under that source's own key, not the folder found
    carried = {stored for p in (folder / "tuf").glob("*/source") if p.is_file() and not p.is_symlink()
               if (stored := _first_line(p))} if (folder / "tuf").is_dir() else set()
    for stored in (*art.sources, *sorted(carried - set(art.sources))):
        if stored in carried and is_pinned(home, stored):
            verifier = Verifier(stored=stored, fetch_base=tuf_folder(folder, stored).as_uri(),
                                folder=trust_dir(home, stored), offline=False)
            return replace(src, trust=verifier)
    what = f"{art.model} {art.version} {art.variant}"
    pinned = [s for s in art.sources if is_pinned(home, s)]
    if pinned:
        raise TrustError(f"the bundle carries no TUF metadata of {pinned[0]}, whose root this client pins, so "
                         f"{what} cannot be verified", source=src.stored,
                         hint="export the bundle again with phi-get bundle export from the signed source")
    accepted = [s for s in (*art.sources, src.stored) if unsigned_listed(home, s, os.environ)]
    if not accepted:
        lock_source = art.sources[0] if art.sources else src.stored
        hint = (f"pin the operator's root: `phi-get trust add {lock_source} root.json`" if carried else
                f"accept it unsigned: `phi-get trust allow-unsigned {lock_source}` (or {UNSIGNED_ENV}=...)")
        state = "TUF metadata, but no root of it is pinned here" if carried else "no TUF metadata"
        raise TrustError(f"the bundle carries {state}, and the lock's source "
                         f"{', '.join(art.sources) or '?'} is not accepted unsigned", source=src.stored, hint=hint)
    if warn is not None:
        warn(f"{what} from the bundle {src.stored} is installed unsigned (no TUF verification): "
             f"{accepted[0]} is accepted unsigned")
    return src


def check_bundle_signature(sources: Sources, art: LockedArtifact, home: Path) -> str | None:
    """Verify a bundle's publisher signature of ``art``, offline; returns the key id (None: nothing asks for one).

    Only for OCI layout sources (bundles, after :func:`bundle_sources`); a no-op for every other source,
    which :func:`.sources.check_publisher` covers at install.  The publisher keys: those the bundle's TUF
    metadata lists (verified), else, for a bundle accepted unsigned, the key it carries, used only when
    its key id is the one the lock records.
    """
    layouts = [s for s in sources.sources if isinstance(s, OciLayoutSource)]
    if not layouts:
        return None
    where, what, locked = layouts[0].stored, f"{art.model} {art.version} {art.variant}", art.publisher_key
    signed = next((s for s in layouts if s.trust is not None), None)
    trusted = signed.trust.publishers(art.model) if signed is not None and signed.trust is not None else None
    if not locked and trusted is None:
        return None  # nothing says it is signed: the lock's digests (and the signed manifest) bind the bytes
    anchor = signed.trust.stored if signed is not None and signed.trust is not None else ""
    why = (f"phi.lock records it signed by publisher key {locked}" if locked else
           f"the signed metadata of {anchor} lists publisher keys for {art.model}")
    found = next((f for s in layouts if (f := s.publisher_signature(art.manifest)) is not None), None)
    if found is None:
        raise TrustError(f"the bundle carries no publisher signature of {what}, but {why}", source=where,
                         hint="export the bundle again from the lock's signed source (phi-get bundle export)")
    body, layer = found
    shown = f"{where} (the signature of {what})"
    try:
        hint = parse_signature_bundle(body, document=shown).key_hint
    except ManifestError as exc:
        raise TrustError(f"the publisher signature is malformed: {exc}", source=where) from None
    if locked and hint != locked:
        raise TrustError(f"{shown} is signed by key {hint}, not by publisher key {locked}, which phi.lock records",
                         source=where)
    if trusted is not None and signed is not None:
        keys = trusted
        signed.verify(signature_path(art.manifest), body)  # the signature itself is a signed target
    elif layer.publisher_pem and key_id_of_pem(layer.publisher_pem.encode()) == locked:
        keys = {locked: layer.publisher_pem}
    else:
        raise TrustError(f"{shown}: the bundle does not carry publisher key {locked}, which phi.lock records, and "
                         f"its verified metadata lists no publisher keys for {art.model}", source=where,
                         hint="export the bundle again with phi-get bundle export")
    manifest, data = sources.manifest(art.manifest, name=art.model)
    return verify_bundle(body, files=signed_files(manifest, data), keys=keys, shown=shown, source=where)
