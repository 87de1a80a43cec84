"""Where the client's trust decisions live, and how they are looked up: no TUF, no network.

Per source (a URL without credentials): ``HOME/trust/<sha256(url)[:16]>/``
holds its pinned root and verified metadata (:mod:`.trust`); the file
``HOME/trust/unsigned`` lists, one per line, the sources the user accepts
without signatures (``phi-get trust allow-unsigned``), and so does the
environment variable ``PHI_GET_UNSIGNED`` (URLs separated by spaces or
commas, or ``*`` for all).  ``HOME/trust/<key>/publishers/<MODEL>/<key id>.pem``:
the publisher keys the user pinned for a model of a source that serves no
TUF metadata (an OCI registry; ``phi-get trust add-publisher``), which its
artifacts' publisher signatures must verify with.

A module of its own so that resolving from a source accepted unsigned does
not load the TUF client (:mod:`.trust`, imported only for a pinned source or
to refuse one).  Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from phi_get.manifests.names import check_model_name
from phi_get.manifests.signing import key_id_of_pem
from phi_get.manifests.urls import strip_credentials

__all__ = ["UNSIGNED_ENV", "is_pinned", "pin_publisher", "pinned_publishers", "trust_dir", "unsigned_listed"]

UNSIGNED_ENV: Final = "PHI_GET_UNSIGNED"


def trust_dir(home: Path, stored: str) -> Path:
    """Where the trust of the source ``stored`` (a URL without credentials) lives."""
    return home / "trust" / hashlib.sha256(stored.rstrip("/").encode()).hexdigest()[:16]


def is_pinned(home: Path, stored: str) -> bool:
    """Has the user pinned a root of trust for ``stored`` (``phi-get trust add``)?"""
    return (trust_dir(home, stored) / "metadata" / "root.json").exists()


def unsigned_listed(home: Path, stored: str, environ: Mapping[str, str]) -> bool:
    """Does the user accept ``stored`` unsigned (``PHI_GET_UNSIGNED`` or ``HOME/trust/unsigned``)?"""
    wanted = stored.rstrip("/")
    listed = environ.get(UNSIGNED_ENV, "").replace(",", " ").split()
    if "*" in listed or wanted in (strip_credentials(u).rstrip("/") for u in listed):
        return True
    path = home / "trust" / "unsigned"
    try:
        return wanted in (line.strip().rstrip("/") for line in path.read_text().splitlines())
    except OSError:
        return False


def pin_publisher(home: Path, url: str, model: str, public_pem: bytes) -> tuple[str, str]:
    """Pin ``public_pem`` as a publisher key of ``model`` at the source ``url``; returns (stored URL, key id)."""
    stored, name, key_id = strip_credentials(url).rstrip("/"), check_model_name(model, "MODEL", "phi-get trust add-publisher"), key_id_of_pem(public_pem)
    folder = trust_dir(home, stored) / "publishers" / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key_id}.{os.getpid()}.tmp"
    tmp.write_bytes(public_pem)
    os.replace(tmp, folder / f"{key_id}.pem")
    (trust_dir(home, stored) / "source").write_text(stored + "\n")
    return stored, key_id


def pinned_publishers(home: Path, stored: str) -> dict[str, dict[str, str]]:
    """The publisher keys pinned for each model of ``stored`` (model -> key id -> PEM); empty when none."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted((trust_dir(home, stored) / "publishers").glob("*/*.pem")):
        out.setdefault(path.parent.name, {})[path.stem] = path.read_text()
    return out
