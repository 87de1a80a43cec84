"""Operator commands for signing: ``phi-get registry trust ...`` and ``phi-get sign``.

The ceremony each command belongs to is in registry/README.md ("Signing").
Offline keys (root, targets) are read from ``--keys DIR`` for the one
command that needs them and never copied into the registry's storage;
online keys (snapshot, timestamp, bins) live in ``STORAGE/tuf/online``.

Imports the registry's own modules and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .cli import _open, registry_app
from .tuf_repo import SigningError, TufRepository, create_keys

__all__ = ["register"]

trust_app = typer.Typer(name="trust", help="Sign the registry's metadata (TUF): keys, rotation, re-signing, "
                        "publisher keys.", no_args_is_help=True, rich_markup_mode=None)
_KEYS = typer.Option(..., "--keys", help="Folder of the offline keys (root.pem, targets.pem, ...).")
_STORAGE = typer.Option(None, "--storage", help="The registry's storage folder (as for `registry serve`).")
_DB = typer.Option(None, "--db", help="Catalog database URL (as for `registry serve`).")
_KEYGEN_DIR = typer.Argument(..., help="Folder to create the five role keys in (0600 files).")
_NEW_KEYS = typer.Option(..., "--new-keys", help="Folder with the new root.pem.")
_ROLE = typer.Argument(..., help="snapshot, timestamp or bins")
_MODEL = typer.Argument(..., help="The model whose publisher keys are set.")
_PUB_KEYS = typer.Option([], "--key", help="A publisher public key (PEM); repeatable. None: the model needs no "
                         "publisher signature.")
_FOLDER = typer.Argument(..., help="An artifact folder (with manifest.json).")
_SIGN_KEY = typer.Option(..., "--key", help="The publisher's private key (PEM, ECDSA P-256).")
_NEW_KEY = typer.Option(False, "--new-key", help="Create the key (and KEY.pub) first.")


def _repo(storage: Path | None, db: str | None) -> tuple[TufRepository, object]:
    registry = _open(db, storage)
    if registry.tuf is None:
        raise SigningError("this registry does not sign yet", hint="`phi-get registry trust init --keys DIR`")
    return registry.tuf, registry


@trust_app.command("keygen")
def keygen(keys: Path = _KEYGEN_DIR) -> None:
    """Create root, targets (offline) and snapshot, timestamp, bins (online) ed25519 keys."""
    keys.mkdir(parents=True, exist_ok=True)
    for role, keyid in create_keys(keys).items():
        typer.echo(f"{role:10} {keyid}")


@trust_app.command("init")
def init(keys: Path = _KEYS, storage: Path | None = _STORAGE, db: str | None = _DB) -> None:
    """Sign the registry for the first time; prints the root's sha256 for clients to compare."""
    registry = _open(db, storage)
    repo = TufRepository(Path(registry.store.root) / "tuf")  # type: ignore[attr-defined]
    digest = repo.init(keys, registry)
    typer.echo(f"root.json sha256 {digest}\nclients pin it with: phi-get trust add URL root.json "
               f"(root.json: {repo.metadata / '1.root.json'})")


@trust_app.command("resign")
def resign(storage: Path | None = _STORAGE, db: str | None = _DB) -> None:
    """Re-sign every online role now (after expiry, or from a daily timer before it)."""
    repo, registry = _repo(storage, db)
    typer.echo(" ".join(repo.sync(registry, force=True)))  # type: ignore[arg-type]


@trust_app.command("rotate-root")
def rotate_root(keys: Path = _KEYS, new_keys: Path = _NEW_KEYS, storage: Path | None = _STORAGE,
                db: str | None = _DB) -> None:
    """A new root version signed by the old and the new root key; clients follow it on their next refresh."""
    repo, _ = _repo(storage, db)
    typer.echo(f"root version {repo.rotate_root(keys, new_keys)}")


@trust_app.command("rotate-key")
def rotate_key(role: str = _ROLE, keys: Path = _KEYS,
               storage: Path | None = _STORAGE, db: str | None = _DB) -> None:
    """Replace an online key (compromised, or on schedule); root or targets re-signs its delegation."""
    repo, registry = _repo(storage, db)
    typer.echo(f"{role} key {repo.rotate_online(role, keys, registry)}")  # type: ignore[arg-type]


@trust_app.command("publisher")
def publisher(model: str = _MODEL, key: list[Path] = _PUB_KEYS, keys: Path = _KEYS, storage: Path | None = _STORAGE, db: str | None = _DB) -> None:
    """Set the publisher keys of a model (revoking a key is setting the list without it)."""
    repo, registry = _repo(storage, db)
    try:
        pems = [k.read_bytes() for k in key]
    except OSError as exc:
        raise SigningError(f"cannot read the publisher key {exc.filename}: {exc.strerror}") from None
    ids = repo.set_publishers(model, pems, keys, registry)  # type: ignore[arg-type]
    typer.echo(json.dumps({"model": model, "publisher_keys": ids}))


def sign(folder: Path = _FOLDER, key: Path = _SIGN_KEY, new_key: bool = _NEW_KEY) -> None:
    """Sign an artifact folder in the OpenSSF model-signing format (FOLDER/model.sig)."""
    from .artifact_sign import create_publisher_key, sign_artifact

    if new_key:
        pub, keyid = create_publisher_key(key)
        typer.echo(f"publisher key {keyid} (public key {pub})")
    path, keyid = sign_artifact(folder, key)
    typer.echo(f"signed {folder} with key {keyid}: {path}")


def register(app: typer.Typer) -> None:
    registry_app.add_typer(trust_app)
    app.command("sign")(sign)
