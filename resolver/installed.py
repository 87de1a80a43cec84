"""Which Python distributions are installed, and where: one listing of ``sys.path``, no imports.

``importlib.metadata.version(name)`` imports ``email``, ``zipfile`` and
``csv`` and searches every ``sys.path`` entry again for each name it is
asked about: about 50 ms for the runtimes table's names on every probed
command.  Installers name a distribution's metadata folder
``<name>-<version>.dist-info`` (the wheel format's rule; pip, uv and
installer all follow it), so one directory listing per path entry answers
every name at once.  A folder whose name carries no version (an old
``<name>.egg-info``) is read the slow way, through ``importlib.metadata``.
As ``importlib.metadata`` does, the first path entry that has a
distribution wins.

Imports the standard library and ``manifests.names`` only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from phi_get.manifests.names import normalize_distribution_name

__all__ = ["Installed", "find_installed"]

_SUFFIXES = (".dist-info", ".egg-info")


@dataclass(frozen=True, slots=True)
class Installed:
    version: str
    #: The ``.dist-info`` (or ``.egg-info``) folder.
    metadata_dir: Path


def find_installed(names: Iterable[str], path: Iterable[str] | None = None) -> dict[str, Installed]:
    """The installed version and metadata folder of each of ``names`` found on ``path`` (default ``sys.path``)."""
    wanted = {normalize_distribution_name(n): n for n in names}
    found: dict[str, Installed] = {}
    for entry in sys.path if path is None else path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:  # missing, a file (a zip on sys.path holds no installed runtime), no permission
            continue
        for item in listing:
            suffix = next((s for s in _SUFFIXES if item.endswith(s)), None)
            if suffix is None:
                continue
            name, _, version = item[: -len(suffix)].partition("-")
            name_key = normalize_distribution_name(name)
            dist = wanted.get(name_key)
            if dist is None or dist in found:
                continue
            folder = Path(entry or ".") / item
            if suffix == ".egg-info" or not version:  # egg-info names may add "-py3.11" or leave the version out
                version = _read_version(folder) or ""
            if version:
                found[dist] = Installed(version=version, metadata_dir=folder)
    return found


def _read_version(folder: Path) -> str | None:
    """The ``Version:`` of a metadata folder's ``METADATA``/``PKG-INFO`` (or of the file itself)."""
    candidates = [folder] if folder.is_file() else [folder / "METADATA", folder / "PKG-INFO"]
    for f in candidates:
        try:
            with f.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Version:"):
                        return line.partition(":")[2].strip()
                    if not line.strip():  # the headers end at the first blank line
                        break
        except OSError:
            continue
    return None
