"""Publisher signatures on artifacts in the OpenSSF model-signing format.

``phi-get sign FOLDER --key publisher.pem`` (or ``phi-get publish --sign-key``)
signs an artifact folder with the ``model_signing`` library itself, key-based
and fully offline: a Sigstore bundle (``FOLDER/model.sig``) whose DSSE
envelope holds an in-toto statement listing the sha256 of every file,
``manifest.json`` included, so the signature binds the exact manifest.
``phi-get publish`` uploads ``model.sig`` beside the manifest
(``PUT /v1/signatures/sha256/<manifest hex>.sig``); the registry makes it a
signed TUF target, and clients verify it at install against the publisher
keys the offline targets key lists for the model.  The ``model_signing``
command line verifies the same folder (``model_signing verify key FOLDER
--signature FOLDER/model.sig --public_key publisher.pub``).

Imports :mod:`phi_get.manifests`; ``model_signing`` and ``cryptography`` are
imported inside the functions that need them.
"""

from __future__ import annotations

import os
from pathlib import Path

from phi_get.manifests.signing import MODEL_SIGNATURE_FILENAME, key_id_of_pem

from .errors import BadRequestError

__all__ = ["create_publisher_key", "public_pem_of", "sign_artifact"]


def create_publisher_key(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Write an ECDSA P-256 private key (PEM, 0600) and its ``.pub``; returns (public path, key id)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    target = Path(path)
    if target.exists():
        raise BadRequestError(f"{target} already exists: a key is never overwritten")
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    public = public_pem_of(target)
    pub_path = target.with_suffix(".pub")
    pub_path.write_bytes(public)
    return pub_path, key_id_of_pem(public)


def public_pem_of(private_key: str | os.PathLike[str]) -> bytes:
    """The PEM SubjectPublicKeyInfo of a private key file (what model-signing hashes into its key hint)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(Path(private_key).read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise BadRequestError(f"cannot read the publisher key {private_key}: {exc}") from None
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_artifact(folder: str | os.PathLike[str], private_key: str | os.PathLike[str]) -> tuple[Path, str]:
    """Sign the artifact ``folder`` with the model_signing library; returns (signature path, key id)."""
    from model_signing import hashing, signing
    from phi_get.manifests.artifact import load_artifact_folder

    root = Path(folder)
    load_artifact_folder(root, verify=True)  # only a complete, verified artifact is signed
    keyid = key_id_of_pem(public_pem_of(private_key))  # a missing or bad key is named before signing
    signature = root / MODEL_SIGNATURE_FILENAME
    config = hashing.Config().set_ignored_paths(paths=[MODEL_SIGNATURE_FILENAME], ignore_git_paths=True)
    try:
        (signing.Config().use_elliptic_key_signer(private_key=Path(private_key))
         .set_hashing_config(config).sign(root, signature))
    except (OSError, ValueError, TypeError) as exc:  # model_signing's refusals (an RSA key, a link, ...)
        raise BadRequestError(f"model-signing could not sign {root}: {type(exc).__name__}: {exc}") from None
    return signature, keyid
