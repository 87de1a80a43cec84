"""``phi-get trust``: pin a source's root of trust, or accept a source unsigned.

Where it is stored and what is checked: :mod:`.trust`.  Imports the
resolver's own modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

# .trust (TUF, the transport, http.client) is imported inside the commands: building the
# command line for any other command should not pay for it.

__all__ = ["register"]

trust_app = typer.Typer(name="trust", help="Pin a source's TUF root, or accept a source unsigned.",
                        no_args_is_help=True, rich_markup_mode=None)
_HOME = typer.Option(None, "--home", help="The store (default: PHI_GET_HOME or ~/.cache/phi-get).")
_URL = typer.Argument(..., help="The source (registry or mirror URL, or a mirror folder).")
_ROOT = typer.Argument(..., help="root.json as the operator handed it over (never from the source).")
_JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def _home(home: Path | None) -> Path:
    from .store import default_home

    return home if home is not None else default_home()


@trust_app.command("add")
def add(url: str = _URL, root: Path = _ROOT, home: Path | None = _HOME, as_json: bool = _JSON) -> None:
    """Pin ROOT as the root of trust of URL: from now on every document of URL must be signed."""
    if not url.startswith(("http://", "https://", "file://")):
        url = Path(url).resolve().as_uri()
    from .trust import TrustError

    try:
        data = root.read_bytes()
    except OSError as exc:
        raise TrustError(f"cannot read the root file {root}: {exc.strerror}", source=url) from None
    from .trust import add_root

    stored, version, digest = add_root(_home(home), url, data)
    if as_json:
        typer.echo(json.dumps({"source": stored, "root_version": version, "sha256": digest}))
    else:
        typer.echo(f"pinned root v{version} (sha256 {digest}) for {stored}; compare the sha256 with the operator's")


@trust_app.command("allow-unsigned")
def unsigned(url: str = _URL, home: Path | None = _HOME) -> None:
    """Accept URL without signatures (recorded in every lock and explanation)."""
    if not url.startswith(("http://", "https://", "file://", "oci://", "oci+http://")):
        url = Path(url).resolve().as_uri()
    from .trust import allow_unsigned

    typer.echo(f"{allow_unsigned(_home(home), url)} accepted unsigned")


@trust_app.command("add-publisher")
def add_publisher(url: str = _URL, model: str = typer.Argument(..., help="The model the key may sign."),
                  key: Path = typer.Argument(..., help="The publisher's public key (PEM), as the publisher handed "
                                             "it over (never from the source)."),
                  home: Path | None = _HOME) -> None:
    """Pin KEY as a publisher key of MODEL at URL, a source with no TUF metadata (an OCI registry): its
    artifacts of MODEL must then carry a publisher signature by a pinned key."""
    from .trust import TrustError
    from .trust_store import pin_publisher

    if not url.startswith(("oci://", "oci+http://")):
        raise TrustError("publisher keys are pinned for OCI registries only: a TUF-signed source lists its own "
                         "(signed by its offline targets key)", source=url)
    try:
        pem = key.read_bytes()
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        if not isinstance(load_pem_public_key(pem), ec.EllipticCurvePublicKey):
            raise ValueError("not an elliptic-curve key")
    except (OSError, ValueError) as exc:
        raise TrustError(f"{key} is not a readable PEM public key (EC): {exc}", source=url) from None
    stored, key_id = pin_publisher(_home(home), url, model, pem)
    typer.echo(f"pinned publisher key {key_id} for {model} at {stored}")


def register(app: typer.Typer) -> None:
    app.add_typer(trust_app)
