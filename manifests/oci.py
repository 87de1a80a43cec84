"""Models as OCI artifacts: the layout phi-get pushes to, and reads from, any OCI registry.

This module is the format, written once; :mod:`phi_get.registry.oci_push`
writes it, :mod:`phi_get.resolver.oci` reads it, and the bundle writer uses
it for an OCI image layout on disk.  The layout follows the OCI image spec
(v1.1 artifacts) and the CNCF ModelPack spec, so ``skopeo``, ``oras``,
KitOps-style and ModelPack tools can copy and pull what phi-get pushed.

**Repositories.**  ``oci://HOST/NAMESPACE`` is a source; the model ``NAME``
lives in the repository ``NAMESPACE/NAME`` (:func:`parse_reference`).
``oci://`` is HTTPS, except on a loopback host (plain HTTP, as Docker treats
``127.0.0.0/8``); ``oci+http://`` forces plain HTTP.

**One variant = one image manifest** (:data:`IMAGE_MANIFEST`), with
``artifactType`` :data:`MODEL_ARTIFACT`, a ModelPack config
(:data:`MODEL_CONFIG`, :func:`model_config`), and one *uncompressed* layer
per file, so each layer digest is the file's sha256: the digest phi-get's
manifest and Hugging Face's LFS already use.  Layers carry
``org.cncf.model.filepath`` (:data:`FILEPATH`) and
``org.opencontainers.image.title``; media types are ModelPack's ``.raw``
ones (weights, weight config, docs; :func:`layer_media_type`).  phi-get's own
manifest travels as one more layer (:data:`PHI_MANIFEST`, filepath
``manifest.json``): its layer digest *is* the manifest digest the index and
``phi.lock`` pin, so it is fetched as a blob and verified like any blob, and
a ModelPack tool that unpacks the layers by filepath gets exactly a phi-get
artifact folder.  (Not the config: the config is ModelPack's, for other tools.)

**One version = one image index** (:data:`IMAGE_INDEX`) listing its
variants; each descriptor's annotations carry what resolution needs:
:data:`ENTRY` holds the whole index entry (the JSON of
:class:`~phi_get.manifests.index.IndexEntry`: format, precision, targets,
runtime, memory, size, quality), and a few keys (:data:`SHOWN`) repeat the
headline facts for people and other tools; resolution reads only
:data:`ENTRY`.  The tag :data:`INDEX_TAG` holds one index of every variant
of every version, so resolving costs one request, as with the HTTP index;
without it (a repository copied tag by tag) the version tags are listed
and read.

**Tags** (:func:`version_tag`, :func:`variant_tag`): ``VERSION`` (the
version's index; a local version's ``+`` becomes ``_``), ``VERSION-VARIANT``
(one variant's manifest) and :data:`INDEX_TAG`.  A normalized PEP 440
version never contains ``-`` or ``_``-before-``+``, so a tag splits at its
first ``-``.

**OCI image layout** (bundles): ``oci-layout``, ``index.json`` (descriptors
with ``org.opencontainers.image.ref.name`` = ``NAME:VARIANT-TAG`` and the
same :data:`ENTRY` annotations) and ``blobs/sha256/HEX``.

**Publisher signatures** (the OpenSSF model-signing bundle, the
"and its signatures") travel as *one more layer of the variant's image
manifest* (:data:`SIGNATURE_LAYER`, the Sigstore bundle media type; filepath
``model.sig``, :func:`signature_layer`), not as an OCI 1.1 referrer (an
artifact manifest whose ``subject`` is the variant).  Why a layer: ``skopeo
copy`` moves one image and never its referrers, and distribution 2.8 has no
referrers API, so a referrer would be lost on the way into a registry and
back; a layer is copied with the image, bytes and digests intact.  And a
ModelPack tool that unpacks the layers by filepath gets exactly the folder
``phi-get sign`` signed (files, ``manifest.json``, ``model.sig``), which the
``model_signing`` command line verifies as it is.  The layer's annotation
:data:`PUBLISHER_KEY` carries the publisher's public key (PEM) when the
exporter had it from TUF-signed metadata; a reader trusts that key only when
its key id is the one ``phi.lock`` records (``publisher-key``) or one its own
verified metadata lists.

**Credentials** (:func:`credentials_for`): the URL's ``user:password@``,
else ``PHI_GET_OCI_USERNAME``/``PHI_GET_OCI_PASSWORD``, else the Docker
config file (``$DOCKER_CONFIG/config.json``, default ``~/.docker/config.json``,
then ``$REGISTRY_AUTH_FILE``, the containers ``auth.json`` skopeo writes):
``auths[HOST].auth`` (base64 ``user:password``).  Credential helpers
(``credsStore``) and OAuth identity tokens are not used.

Pure functions of bytes and strings (plus :func:`credentials_for`, which
reads the environment and one config file); imports the standard library
and sibling modules only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .canonical import canonical_bytes, load_json_document
from .errors import ManifestError
from .fields import Reader
from .index import IndexEntry
from .manifest import Manifest
from .names import check_digest, check_model_name
from .signing import MODEL_SIGNATURE_FILENAME

__all__ = [
    "ENTRY",
    "FILEPATH",
    "IMAGE_INDEX",
    "IMAGE_MANIFEST",
    "INDEX_TAG",
    "LAYOUT_FILE",
    "LAYOUT_VERSION",
    "MAX_OCI_DOC",
    "MODEL_ARTIFACT",
    "MODEL_CONFIG",
    "PHI_MANIFEST",
    "PUBLISHER_KEY",
    "REF_NAME",
    "SHOWN",
    "SIGNATURE_LAYER",
    "Challenge",
    "Reference",
    "SignatureLayer",
    "Variant",
    "credentials_for",
    "descriptor",
    "dumps",
    "image_index",
    "image_manifest",
    "layer_media_type",
    "merge_index",
    "model_config",
    "parse_challenge",
    "parse_index",
    "parse_reference",
    "signature_layer",
    "variant_annotations",
    "variant_tag",
    "version_tag",
]

IMAGE_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
IMAGE_INDEX: Final = "application/vnd.oci.image.index.v1+json"
#: ModelPack (CNCF model-spec v1): the artifact type and the config's media type.
MODEL_ARTIFACT: Final = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG: Final = "application/vnd.cncf.model.config.v1+json"
_WEIGHT: Final = "application/vnd.cncf.model.weight.v1.raw"
_WEIGHT_CONFIG: Final = "application/vnd.cncf.model.weight.config.v1.raw"
_DOC: Final = "application/vnd.cncf.model.doc.v1.raw"
#: phi-get's manifest (canonical JSON), as a layer: its digest is the manifest digest.
PHI_MANIFEST: Final = "application/vnd.phi-get.manifest.v1+json"
#: The publisher's model-signing bundle, as a layer: the Sigstore bundle media type (the JSON's own mediaType).
SIGNATURE_LAYER: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: On the signature layer: the publisher's public key (PEM), as TUF-signed metadata listed it at export.
PUBLISHER_KEY: Final = "dev.phi-get.publisher-key"
FILEPATH: Final = "org.cncf.model.filepath"
_TITLE: Final = "org.opencontainers.image.title"
_VERSION: Final = "org.opencontainers.image.version"
REF_NAME: Final = "org.opencontainers.image.ref.name"
#: The index entry (JSON text) on a variant's descriptor: what resolution reads.
ENTRY: Final = "dev.phi-get.entry"
#: Headline facts repeated for people and other tools (never read back).
SHOWN: Final = ("dev.phi-get.format", "dev.phi-get.precision", "dev.phi-get.targets", "dev.phi-get.runtime")
INDEX_TAG: Final = "phi-get.index"
LAYOUT_FILE: Final = "oci-layout"
LAYOUT_VERSION: Final = b'{"imageLayoutVersion":"1.0.0"}'
#: The most bytes an OCI manifest or index may have (distribution's own limit is 4 MiB).
MAX_OCI_DOC: Final = 4 << 20
_MAX_AUTH_FILE: Final = 1 << 20  # a Docker config file; larger ones are skipped like unreadable ones
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", re.ASCII)
#: OCI distribution spec: a repository name's path components.
_REPO_PART: Final = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*", re.ASCII)
_LOOPBACK: Final = ("127.", "localhost", "::1", "[::1]")
_DOCS: Final = (".md", ".txt", ".rst", ".pdf")
_CONFIGS: Final = (".json", ".model", ".tiktoken", ".yaml", ".yml", ".jinja", ".py")
_USER_ENV: Final = "PHI_GET_OCI_USERNAME"
_PASS_ENV: Final = "PHI_GET_OCI_PASSWORD"


#: What Go's encoding/json escapes in strings (its HTML-safe default); JSON has these only inside strings.
_GO_ESCAPES: Final = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dumps(doc: Mapping[str, Any]) -> bytes:
    """The bytes phi-get writes for an OCI document: Go's ``encoding/json`` output for the image-spec types.

    Keys in the order of the image-spec's Go structs (the order the dicts
    are built in here; annotation maps sorted, as Go sorts map keys), no
    spaces, UTF-8, ``<``, ``>``, ``&`` escaped.  Tools written in Go
    (skopeo, containerd, distribution) that decode and re-encode an index
    then write the very same bytes, so its digest survives a copy.
    """
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """An ``oci://HOST/NAMESPACE`` source or push target: where its repositories live."""

    scheme: str        # "http" or "https", for the registry's /v2/ API
    host: str          # host[:port], as in the URL (the Docker config's key)
    namespace: str     # the repository prefix, may be ""
    userinfo: str = field(default="", repr=False)  # a secret: never shown

    @property
    def api(self) -> str:
        return f"{self.scheme}://{self.host}/v2"

    @property
    def shown(self) -> str:
        """The source as written for people and locks: no credentials."""
        scheme = "oci+http" if self.scheme == "http" and not _loopback(self.host) else "oci"
        return f"{scheme}://{self.host}/{self.namespace}".rstrip("/")

    def repository(self, model: str) -> str:
        """The repository of ``model`` under this namespace, checked against the distribution spec's grammar."""
        repo = f"{self.namespace}/{model.lower()}" if self.namespace else model.lower()
        for part in repo.split("/"):
            if not _REPO_PART.fullmatch(part):
                raise ManifestError("an OCI repository path component is lower-case letters and digits "
                                    "separated by '.', '_', '__' or '-'", field="repository", value=repo,
                                    document=self.shown)
        return repo


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name.startswith(_LOOPBACK)


def parse_reference(url: str) -> Reference:
    """``oci://[user:password@]HOST[:PORT][/NAMESPACE]`` (or ``oci+http://``) as a :class:`Reference`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("oci", "oci+http"):
        raise ManifestError("an OCI reference starts with oci:// or oci+http://", field="url", value=_shown(url),
                            document="OCI reference")
    userinfo, _, host = parts.netloc.rpartition("@")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
    except ValueError:
        raise ManifestError("the port must be a number in 0-65535", field="url", value=_shown(url),
                            document="OCI reference") from None
    if not parts.hostname or parts.query or parts.fragment:
        raise ManifestError("expected oci://HOST[:PORT][/NAMESPACE] (no query or fragment)", field="url",
                            value=_shown(url), document="OCI reference")
    scheme = "http" if parts.scheme == "oci+http" or _loopback(host) else "https"
    ref = Reference(scheme=scheme, host=host, namespace=parts.path.strip("/"), userinfo=userinfo)
    if ref.namespace:
        ref.repository("x")  # checks the namespace's components
    return ref


def _shown(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return url if "@" not in parts.netloc else url.replace(parts.netloc.rpartition("@")[0] + "@", "***@", 1)


def version_tag(version: str) -> str:
    """The tag of a version's image index: the normalized version, ``+`` written ``_``."""
    return _check_tag(version.replace("+", "_"))


def variant_tag(version: str, variant: str) -> str:
    """The tag of one variant's image manifest: ``VERSION-VARIANT``."""
    return _check_tag(f"{version_tag(version)}-{variant}")


def _check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise ManifestError("an OCI tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                            field="tag", value=tag, document="OCI layout")
    return tag


def layer_media_type(path: str) -> str:
    """ModelPack's media type for a file: docs, weight config (tokenizer, config.json...) or weights."""
    low = path.lower()
    name = low.rsplit("/", 1)[-1]
    if low.endswith(_DOCS) or name.startswith(("license", "readme", "notice")):
        return _DOC
    if low.endswith(_CONFIGS):
        return _WEIGHT_CONFIG
    return _WEIGHT


def model_config(manifest: Manifest) -> bytes:
    """The ModelPack config of a variant (``descriptor``, ``config``, ``modelfs``), as bytes."""
    doc = {
        "descriptor": {"name": manifest.name, "version": str(manifest.version),
                       "createdAt": manifest.provenance.created},
        "config": {"format": str(manifest.format), "precision": str(manifest.precision),
                   "quantization": manifest.quantization},
        "modelfs": {"type": "layers", "diffIds": [f"sha256:{f.sha256}" for f in manifest.files]},
    }
    return dumps(doc)


def descriptor(media_type: str, data_or_digest: bytes | str, size: int | None = None,
               annotations: Mapping[str, str] | None = None, artifact_type: str | None = None) -> dict[str, Any]:
    """An OCI content descriptor of some bytes (or of a digest and size), keys in the Go struct's order."""
    if isinstance(data_or_digest, bytes):
        digest, size = _digest(data_or_digest), len(data_or_digest)
    else:
        digest = data_or_digest
    out: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        out["annotations"] = dict(sorted(annotations.items()))
    if artifact_type:
        out["artifactType"] = artifact_type
    return out


def image_manifest(manifest: Manifest, manifest_bytes: bytes, config: bytes, *, signature: bytes | None = None,
                   publisher_pem: str = "") -> bytes:
    """The OCI image manifest of one variant: a ModelPack config, a raw layer per file, phi-get's manifest.

    ``signature``: the publisher's model-signing bundle, as a last layer (a bundle's; ``publisher_pem`` on it).
    """
    layers = [descriptor(layer_media_type(f.path), f"sha256:{f.sha256}", f.size,
                         {FILEPATH: f.path, _TITLE: f.path.rsplit("/", 1)[-1]})
              for f in manifest.files]
    layers.append(descriptor(PHI_MANIFEST, manifest_bytes, annotations={FILEPATH: "manifest.json",
                                                                        _TITLE: "manifest.json"}))
    if signature is not None:
        extra = {PUBLISHER_KEY: publisher_pem} if publisher_pem else {}
        name = MODEL_SIGNATURE_FILENAME
        layers.append(descriptor(SIGNATURE_LAYER, signature, annotations={FILEPATH: name, _TITLE: name, **extra}))
    doc = {
        "schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "artifactType": MODEL_ARTIFACT,
        "config": descriptor(MODEL_CONFIG, config), "layers": layers,
        "annotations": dict(sorted({_VERSION: str(manifest.version), _NAME_KEY: manifest.name,
                                    "dev.phi-get.variant": manifest.variant}.items())),
    }
    return dumps(doc)


_NAME_KEY: Final = "dev.phi-get.name"


@dataclass(frozen=True, kw_only=True, slots=True)
class SignatureLayer:
    """Where a variant's publisher signature lies in an image layout, and the key that came with it."""

    digest: str
    size: int
    publisher_pem: str  # "" when the exporter had no key to put there


def signature_layer(data: bytes, manifest_digest: str, *, document: str) -> SignatureLayer | None:
    """The signature layer of the image manifest ``data`` if it is the variant of ``manifest_digest``, else None.

    Any image manifest is accepted (one skopeo copied keeps phi-get's bytes); one that is not JSON, or
    whose layers are not descriptors, is refused naming the field.
    """
    doc = load_json_document(data, limit=MAX_OCI_DOC, document=document)
    if not isinstance(doc, dict):
        raise ManifestError("expected a JSON object (an OCI image manifest)", document=document)
    r = Reader(doc, document=document)
    layers = list(r.objects("layers", [], max_items=100_000))
    mine = any(item.data.get("mediaType") == PHI_MANIFEST and item.data.get("digest") == manifest_digest
               for item in layers)
    if not mine:
        return None
    for item in layers:
        if item.data.get("mediaType") != SIGNATURE_LAYER:
            continue
        ann = item.data.get("annotations")
        pem = ann.get(PUBLISHER_KEY, "") if isinstance(ann, dict) else ""
        if not isinstance(pem, str):
            raise ManifestError("expected the PEM text of a public key",
                                field=item.where(f"annotations[{PUBLISHER_KEY!r}]"), document=document)
        return SignatureLayer(digest=check_digest(item.data.get("digest"), item.where("digest"), document),
                              size=item.integer("size", max=MAX_OCI_DOC), publisher_pem=pem)
    return None


def variant_annotations(name: str, entry: IndexEntry) -> dict[str, str]:
    """What a variant's descriptor in an index carries: the entry, and the headline facts for people."""
    shown = (str(entry.format), str(entry.precision), ",".join(entry.targets), entry.runtime.distribution)
    return {ENTRY: canonical_bytes(entry.to_json()).decode(), _VERSION: str(entry.version), _NAME_KEY: name,
            "dev.phi-get.variant": entry.variant, **dict(zip(SHOWN, shown, strict=True))}


@dataclass(frozen=True, kw_only=True, slots=True)
class Variant:
    """A variant as an index lists it: the model, its entry and the OCI manifest it points to."""

    name: str
    entry: IndexEntry
    digest: str   # the OCI image manifest's digest
    size: int


def image_index(variants: Iterable[Variant], ref_names: Mapping[str, str] | None = None,
                others: Sequence[Mapping[str, Any]] = ()) -> bytes:
    """An OCI image index of variants, ordered by (version, variant) so equal sets give equal bytes.

    ``ref_names`` (OCI manifest digest -> name): the ``ref.name`` annotations of an image layout's index.
    ``others``: descriptors that are not phi-get's (another tool's), kept as they were, after ours.
    """
    ordered = sorted(variants, key=lambda v: (v.entry.version, v.entry.variant, v.digest))
    items = []
    for v in ordered:
        ann = variant_annotations(v.name, v.entry)
        if ref_names and v.digest in ref_names:
            ann[REF_NAME] = ref_names[v.digest]
        # No descriptor artifactType (the manifest itself has it): skopeo 1.9's image-spec types drop it
        # when they re-encode an index, which would change the index's digest.
        items.append(descriptor(IMAGE_MANIFEST, v.digest, v.size, ann))
    return dumps({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [*items, *others]})


def parse_index(data: bytes, *, document: str) -> tuple[Variant, ...]:
    """The variants an image index lists (descriptors without :data:`ENTRY` are someone else's: skipped)."""
    if len(data) > MAX_OCI_DOC:
        raise ManifestError(f"an OCI index is at most {MAX_OCI_DOC} bytes", value=len(data), document=document)
    doc = load_json_document(data, limit=MAX_OCI_DOC, document=document)
    if not isinstance(doc, dict):
        raise ManifestError("expected a JSON object (an OCI image index)", document=document)
    r = Reader(doc, document=document)
    if doc.get("mediaType", IMAGE_INDEX) != IMAGE_INDEX:
        raise r.error("mediaType", f"expected {IMAGE_INDEX}", doc.get("mediaType"))
    out = []
    for i, item in enumerate(r.objects("manifests", max_items=100_000)):
        ann = item.data.get("annotations")
        if not isinstance(ann, dict) or ENTRY not in ann:
            continue
        where = f"manifests[{i}].annotations[{ENTRY!r}]"
        raw = ann[ENTRY]
        try:
            parsed = load_json_document(raw, limit=MAX_OCI_DOC, document=document) if isinstance(raw, str) else None
        except ManifestError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ManifestError("expected the JSON text of an index entry", field=where, value=str(raw)[:80],
                                document=document)
        entry = IndexEntry.from_reader(Reader(parsed, where, document))
        digest = check_digest(item.data.get("digest"), item.where("digest"), document)
        size = item.integer("size", max=MAX_OCI_DOC)
        name = check_model_name(ann.get(_NAME_KEY), f"manifests[{i}].annotations[{_NAME_KEY!r}]", document)
        out.append(Variant(name=name, entry=entry, digest=digest, size=size))
    return tuple(out)


def merge_index(existing: bytes | None, new: Sequence[Variant], *, document: str) -> bytes:
    """``existing``'s variants with ``new`` ones added (a (version, variant) already there is replaced).

    Descriptors another tool put in the index (no :data:`ENTRY`) are kept, unchanged.
    """
    have = {(v.name, v.entry.version, v.entry.variant): v
            for v in (parse_index(existing, document=document) if existing else ())}
    have.update({(v.name, v.entry.version, v.entry.variant): v for v in new})
    others = []
    if existing:  # parse_index accepted it: a JSON object with a list of descriptors
        for item in load_json_document(existing, limit=MAX_OCI_DOC, document=document).get("manifests", []):
            ann = item.get("annotations") if isinstance(item, dict) else None
            if isinstance(item, dict) and not (isinstance(ann, dict) and ENTRY in ann):
                others.append(item)
    return image_index(have.values(), others=others)


@dataclass(frozen=True, kw_only=True, slots=True)
class Challenge:
    """A ``WWW-Authenticate`` challenge (RFC 9110 section 11.6.1): ``Basic`` or ``Bearer`` and its parameters."""

    scheme: str
    params: Mapping[str, str]


_PARAM: Final = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None when there is none to parse."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3) or ""
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme=scheme.lower(), params=params)


def credentials_for(ref: Reference, environ: Mapping[str, str] | None = None,
                    home: Path | None = None) -> tuple[str, str] | None:
    """(user, password) for ``ref``'s host: URL, environment, then the Docker/containers auth files."""
    env = os.environ if environ is None else environ
    if ref.userinfo:
        user, _, password = ref.userinfo.partition(":")
        return urllib.parse.unquote(user), urllib.parse.unquote(password)
    if env.get(_USER_ENV) or env.get(_PASS_ENV):
        return env.get(_USER_ENV, ""), env.get(_PASS_ENV, "")
    base = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else (home or Path.home()) / ".docker"
    files = [base / "config.json"] + ([Path(env["REGISTRY_AUTH_FILE"])] if env.get("REGISTRY_AUTH_FILE") else [])
    for path in files:
        try:
            doc = load_json_document(path.read_bytes(), limit=_MAX_AUTH_FILE, document=str(path))
        except (OSError, ManifestError):
            continue
        found = _auth_entry(doc, ref.host, str(path))
        if found is not None:
            return found
    return None


def _auth_entry(doc: object, host: str, where: str) -> tuple[str, str] | None:
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v2/", f"http://{host}/v2/"):
        item = auths.get(key)
        if not isinstance(item, dict):
            continue
        raw = item.get("auth")
        if isinstance(raw, str) and raw:
            try:
                user, sep, password = base64.b64decode(raw, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ManifestError("not base64 of user:password", field=f"auths[{key!r}].auth",
                                    document=where) from None
            if sep:
                return user, password
    return None
