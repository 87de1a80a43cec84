"""Artifact folders: how a built artifact sits on disk before publication.

An artifact folder holds the manifest as ``manifest.json`` (its canonical
bytes, exactly :meth:`Manifest.to_bytes`) and every file the manifest lists,
at its relative path, and nothing else.  ``phi-get build`` writes one per
variant under ``OUT/<name>/<version>/<variant>/``; ``phi-get publish`` reads
them.  Builders write a folder under a temporary name and rename it into
place only when it is complete, so a folder with ``manifest.json`` is always
a finished artifact.

Only the standard library: hashing and directory walking, no network.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .errors import ManifestError
from .manifest import FileEntry, Manifest, parse_manifest

__all__ = [
    "MANIFEST_FILENAME",
    "ArtifactFolderError",
    "file_entry",
    "find_artifact_folders",
    "load_artifact_folder",
    "sha256_file",
]

MANIFEST_FILENAME: Final = "manifest.json"
_CHUNK: Final = 1 << 20


class ArtifactFolderError(ManifestError):
    """An artifact folder does not match its manifest."""

    exit_code = 4


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_entry(folder: Path, relative: str) -> FileEntry:
    """A manifest file entry for ``folder/relative``, hashed from disk."""
    path = folder / relative
    return FileEntry(path=relative, size=path.stat().st_size, sha256=sha256_file(path))


def load_artifact_folder(folder: str | os.PathLike[str], *, verify: bool = True) -> Manifest:
    """Read ``folder/manifest.json``; with ``verify``, check every file.

    Verification refuses a missing file, a size or sha256 mismatch, and any
    file on disk the manifest does not list (a stray file would be published
    unverified or silently dropped).
    """
    root = Path(folder)
    doc = f"{root / MANIFEST_FILENAME}"
    try:
        data = (root / MANIFEST_FILENAME).read_bytes()
    except FileNotFoundError:
        raise ArtifactFolderError(f"no {MANIFEST_FILENAME}: not an artifact folder", value=str(root),
                                  document="artifact folder") from None
    manifest = parse_manifest(data, document=doc)
    if not verify:
        return manifest
    listed = {f.path for f in manifest.files}
    for i, entry in enumerate(manifest.files):
        path = root / entry.path
        if not path.is_file():
            raise ArtifactFolderError("listed file is missing", field=f"files[{i}].path", value=entry.path, document=doc)
        size = path.stat().st_size
        if size != entry.size:
            raise ArtifactFolderError(f"file is {size} bytes, the manifest says {entry.size}",
                                      field=f"files[{i}].size", value=entry.path, document=doc)
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ArtifactFolderError(f"sha256 on disk is {actual}", field=f"files[{i}].sha256",
                                      value=entry.path, document=doc)
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel != MANIFEST_FILENAME and rel not in listed:
                raise ArtifactFolderError("file on disk is not listed in the manifest", field="files",
                                          value=rel, document=doc)
    return manifest


def find_artifact_folders(top: str | os.PathLike[str]) -> Iterator[Path]:
    """Every artifact folder at or under ``top`` (sorted, hidden folders skipped)."""
    root = Path(top)
    if (root / MANIFEST_FILENAME).is_file():
        yield root
        return
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if MANIFEST_FILENAME in files:
            dirs[:] = []
            yield Path(dirpath)
