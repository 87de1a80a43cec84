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
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .errors import ExitCode, ManifestError
from .manifest import FileEntry, Manifest, parse_manifest
from .signing import MODEL_SIGNATURE_FILENAME

__all__ = [
    "MANIFEST_FILENAME",
    "ArtifactFolderError",
    "file_entry",
    "find_artifact_folders",
    "load_artifact_folder",
    "pickle_signature",
    "sha256_file",
]

MANIFEST_FILENAME: Final = "manifest.json"
_CHUNK: Final = 1 << 20


class ArtifactFolderError(ManifestError):
    """An artifact folder does not match its manifest."""

    exit_code = ExitCode.INTEGRITY


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


#: The third byte of a pickle of protocol 2 or 3 as Python and PyTorch write it: an opcode
#: that opens the first object (dict, list, global, mark, long1, memo, string); protocols
#: 4 and 5 start with a frame (0x95).
_PICKLE_OPENERS: Final = frozenset(b"}](cqX\x8a\x8c")


def pickle_signature(head: bytes) -> str | None:
    """What in these first bytes of a file says it is a Python pickle, or None.

    A pickle (PyTorch's legacy ``.bin``, any ``pickle.dump``) starts with the
    PROTO opcode 0x80 and a protocol of 2-5; PyTorch's zip format starts with a
    zip header (its pickle is a member, checked by :func:`_zip_pickle`).
    """
    if len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5:
        if (head[1] >= 4 and head[2] == 0x95) or (head[1] < 4 and head[2] in _PICKLE_OPENERS):
            return f"a Python pickle (protocol {head[1]})"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    return None


def _zip_pickle(path: Path) -> str | None:
    import zipfile  # only for files that start like a zip archive

    try:
        with zipfile.ZipFile(path) as zf:
            pickles = [n for n in zf.namelist() if n.endswith((".pkl", ".pickle"))]
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    return f"a zip archive holding the pickle {pickles[0]!r} (a PyTorch checkpoint)" if pickles else None


def _hash_regular(path: Path) -> tuple[str, bytes]:
    """(hex sha256, first bytes) of ``path``, opened without following a final link."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        head = fh.read(_CHUNK)
        h.update(head)
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest(), head[:16]


def _link_in_path(root: Path, relative: str) -> str | None:
    """What makes ``root/relative`` not a regular file reached through real folders, or None.

    A symbolic link anywhere below ``root`` (a folder on the way or the file
    itself) could point out of the artifact: publishing would upload, and a
    registry serve, whatever it points to.  ``lstat`` never follows links.
    """
    here = root
    parts = relative.split("/")
    for i, part in enumerate(parts):
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            return "listed file is missing"
        if stat.S_ISLNK(mode):
            return "is a symbolic link (artifact files must be regular files inside the folder)"
        last = i == len(parts) - 1
        if last and not stat.S_ISREG(mode):
            return "is not a regular file"
        if not last and not stat.S_ISDIR(mode):
            return "listed file is missing"
    return None


def file_entry(folder: Path, relative: str) -> FileEntry:
    """A manifest file entry for ``folder/relative``, hashed from disk."""
    path = folder / relative
    return FileEntry(path=relative, size=path.stat().st_size, sha256=sha256_file(path))


def load_artifact_folder(folder: str | os.PathLike[str], *, verify: bool = True) -> Manifest:
    """Read ``folder/manifest.json``; with ``verify``, check every file.

    Verification refuses a missing file, a size or sha256 mismatch, a listed
    file that is a symbolic link or sits under one (it could point out of
    the folder), any file on disk the manifest does not list (a stray file
    would be published unverified or silently dropped), and a file whose
    bytes are a Python pickle, whatever its name (loading one runs the code
    it carries).
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
        if (problem := _link_in_path(root, entry.path)) is not None:
            raise ArtifactFolderError(problem, field=f"files[{i}].path", value=entry.path, document=doc)
        size = path.stat().st_size
        if size != entry.size:
            raise ArtifactFolderError(f"file is {size} bytes, the manifest says {entry.size}",
                                      field=f"files[{i}].size", value=entry.path, document=doc)
        actual, head = _hash_regular(path)
        if actual != entry.sha256:
            raise ArtifactFolderError(f"sha256 on disk is {actual}", field=f"files[{i}].sha256",
                                      value=entry.path, document=doc)
        kind = pickle_signature(head)
        if kind == "a zip archive":
            kind = _zip_pickle(path)
        if kind is not None:
            raise ArtifactFolderError(f"file is {kind}, which runs code when loaded; artifacts carry tensors as "
                                      "data only (safetensors, GGUF, ONNX, OpenVINO IR)",
                                      field=f"files[{i}].path", value=entry.path, document=doc)
    for dirpath, dirs, files in os.walk(root):  # a link to a folder is listed in dirs, not followed
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            # model.sig: the publisher's signature of the folder (manifests/signing.py), never a listed file
            if rel not in (MANIFEST_FILENAME, MODEL_SIGNATURE_FILENAME) and rel not in listed:
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
