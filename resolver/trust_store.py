"""Where the client's trust decisions live, and how they are looked up: no TUF, no network.

Per source (a URL without credentials): ``HOME/trust/<sha256(url)[:16]>/``
holds its pinned root and verified metadata (:mod:`.trust`); the file
``HOME/trust/unsigned`` lists, one per line, the sources the user accepts
without signatures (``phi-get trust allow-unsigned``), and so does the
environment variable ``PHI_GET_UNSIGNED`` (URLs separated by spaces or
commas, or ``*`` for all).

A module of its own so that resolving from a source accepted unsigned does
not load the TUF client (:mod:`.trust`, imported only for a pinned source or
to refuse one).  Imports the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from phi_get.manifests.urls import strip_credentials

__all__ = ["UNSIGNED_ENV", "is_pinned", "trust_dir", "unsigned_listed"]

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
