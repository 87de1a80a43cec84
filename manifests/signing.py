"""Where signed metadata and artifact signatures live in the wire layout, and what a signature says.

Two kinds of signature sit beside the layout of :data:`.index.LAYOUT`:

* **Repository metadata** (The Update Framework, TUF): ``{base}/v1/tuf/`` holds
  ``N.root.json``, ``timestamp.json``, ``N.snapshot.json``, ``N.targets.json``
  and ``N.<bin>.json`` (consistent snapshots).  The TUF *target path* of a
  document is its layout path itself (``v1/models.json``,
  ``v1/models/<name>/index.json``, ``v1/manifests/sha256/<hex>.json``,
  ``v1/signatures/sha256/<hex>.sig``), so one signed chain covers what
  resolution reads and what install fetches.
* **Publisher signatures** on artifacts, in the OpenSSF model-signing format
  (a Sigstore bundle holding a DSSE envelope of an in-toto statement that
  lists every file's sha256, key-based): ``{base}/v1/signatures/sha256/<hex>.sig``
  where ``<hex>`` is the manifest's digest.  The publisher keys allowed to
  sign a model are listed by the TUF target :data:`PUBLISHERS_TARGET`
  (signed by the offline targets key).

This module parses and names; it verifies no cryptography (that needs a
crypto library, which ``manifests`` does not import).  Imports the standard
library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Final

from .canonical import load_json_document
from .errors import ManifestError
from .names import check_digest

__all__ = [
    "MODEL_SIGNATURE_FILENAME",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "PUBLISHERS_TARGET",
    "TUF_PREFIX",
    "SignatureBundle",
    "key_id_of_pem",
    "pae",
    "parse_signature_bundle",
    "signature_path",
]

#: Where TUF metadata lives under a source's base URL (a folder: ``{base}/v1/tuf/N.root.json``).
TUF_PREFIX: Final = "v1/tuf/"
#: The TUF target (top-level targets role, offline key) whose ``custom`` lists publisher keys per model.
PUBLISHERS_TARGET: Final = "v1/publishers.json"
#: The file name model-signing writes by default; the signature of an artifact folder.
MODEL_SIGNATURE_FILENAME: Final = "model.sig"
#: DSSE payload type and the model-signing predicate (OpenSSF model-signing v1.0).
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
PREDICATE_TYPE: Final = "https://model_signing/signature/v1.0"
_MAX_BUNDLE: Final = 4 << 20


def signature_path(manifest_digest: str) -> str:
    """The layout path of the publisher signature of the manifest ``manifest_digest``."""
    return f"v1/signatures/sha256/{check_digest(manifest_digest).removeprefix('sha256:')}.sig"


def key_id_of_pem(public_pem: bytes) -> str:
    """A publisher key's id: the sha256 of its PEM SubjectPublicKeyInfo (model-signing's key hint)."""
    return hashlib.sha256(public_pem).hexdigest()


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes a DSSE signature covers."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


@dataclass(frozen=True, kw_only=True, slots=True)
class SignatureBundle:
    """What a model-signing bundle claims: the key hint, the signature and the signed file digests."""

    key_hint: str
    signature: bytes
    payload: bytes
    #: file path (POSIX, relative to the artifact folder) -> sha256 hex
    files: dict[str, str]


def _b64(value: object, where: str, document: str) -> bytes:
    if not isinstance(value, str):
        raise ManifestError(f"{where} must be base64 text", field=where, document=document)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(f"{where} is not valid base64", field=where, document=document) from None


def _obj(data: object, where: str, document: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ManifestError(f"{where} must be an object", field=where, document=document)
    return data


def parse_signature_bundle(body: bytes, *, document: str) -> SignatureBundle:
    """Parse a key-based model-signing bundle; refuse anything else, naming the field."""
    if len(body) > _MAX_BUNDLE:
        raise ManifestError(f"a signature bundle is at most {_MAX_BUNDLE} bytes", field="(document)",
                            document=document)
    try:
        doc = _obj(load_json_document(body, limit=_MAX_BUNDLE, document=document), "(document)", document)
    except ManifestError as exc:
        if exc.field:  # _obj's own refusal
            raise
        raise ManifestError(f"a signature bundle must be JSON ({exc.reason})", field="(document)",
                            document=document) from None
    material = _obj(doc.get("verificationMaterial"), "verificationMaterial", document)
    hint = _obj(material.get("publicKey"), "verificationMaterial.publicKey", document).get("hint")
    if not isinstance(hint, str) or len(hint) != 64:
        raise ManifestError("verificationMaterial.publicKey.hint must be a key id (64 hex digits)",
                            field="verificationMaterial.publicKey.hint", document=document)
    env = _obj(doc.get("dsseEnvelope"), "dsseEnvelope", document)
    if env.get("payloadType") != PAYLOAD_TYPE:
        raise ManifestError(f"dsseEnvelope.payloadType must be {PAYLOAD_TYPE!r}", field="dsseEnvelope.payloadType",
                            document=document)
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise ManifestError("dsseEnvelope.signatures must hold exactly one signature",
                            field="dsseEnvelope.signatures", document=document)
    signature = _b64(_obj(sigs[0], "dsseEnvelope.signatures[0]", document).get("sig"),
                     "dsseEnvelope.signatures[0].sig", document)
    payload = _b64(env.get("payload"), "dsseEnvelope.payload", document)
    try:
        statement = _obj(load_json_document(payload, limit=_MAX_BUNDLE, document=document), "dsseEnvelope.payload",
                         document)
    except ManifestError as exc:
        if exc.field:
            raise
        raise ManifestError(f"dsseEnvelope.payload must be a JSON statement ({exc.reason})",
                            field="dsseEnvelope.payload", document=document) from None
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise ManifestError(f"the statement's predicateType must be {PREDICATE_TYPE!r}",
                            field="payload.predicateType", document=document)
    resources = _obj(statement.get("predicate"), "payload.predicate", document).get("resources")
    if not isinstance(resources, list):
        raise ManifestError("payload.predicate.resources must be a list", field="payload.predicate.resources",
                            document=document)
    files: dict[str, str] = {}
    for i, res in enumerate(resources):
        r = _obj(res, f"payload.predicate.resources[{i}]", document)
        name, algo, digest = r.get("name"), r.get("algorithm"), r.get("digest")
        if algo != "sha256" or not isinstance(name, str) or not isinstance(digest, str) or len(digest) != 64:
            raise ManifestError("each signed resource is a name with a sha256 digest",
                                field=f"payload.predicate.resources[{i}]", document=document)
        files[name] = digest
    return SignatureBundle(key_hint=hint, signature=signature, payload=payload, files=files)
