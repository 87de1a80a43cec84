"""Names, versions, variant ids, digests and file paths: the small value rules.

Model names are canonicalized like Python distribution names (PEP 503):
``Phi-3.5_Mini`` and ``phi-3.5-mini`` are the same model.  Versions are PEP 440
(:class:`packaging.version.Version`).  File paths inside an artifact are
relative POSIX paths that cannot escape the artifact folder on any OS.

Names, variant ids and digests are ASCII and matched whole (``re.fullmatch``
with ``re.ASCII``: names that look alike): Python's ``$`` also
matches before a final newline, and ``[a-z]`` with ``re.IGNORECASE`` also
matches the dotless ``ı`` and the Kelvin sign, so ``tiny-phı`` and
``"tiny-phi\n"`` used to pass as model names.

File paths may be any Unicode, but only in NFC (the composed form): one
spelling per name, so the bytes a manifest hashes are the name every file
system shows (macOS and Windows compare names normalization-insensitively,
so an NFD twin of an NFC name would be the same file there).  Two paths are
the same file when their :func:`path_key` (NFC, then case-folded) agree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Final, TypeVar

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .errors import ManifestError

__all__ = [
    "MAX_FILE_SIZE",
    "check_digest",
    "check_distribution_name",
    "check_model_name",
    "check_relative_path",
    "check_specifier",
    "check_variant_id",
    "check_version",
    "hex_of",
    "normalize_distribution_name",
    "normalize_model_name",
    "path_key",
]

_T = TypeVar("_T")

#: Largest size accepted for one file of an artifact: 1 TiB.  The largest Phi
#: checkpoint in fp32 is under 20 GB; anything near this is a corrupt document.
MAX_FILE_SIZE: Final = 1 << 40

# Matched with fullmatch (never ``$``, which allows a trailing newline) and ASCII only.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?", re.IGNORECASE | re.ASCII)
_VARIANT = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,94}[a-z0-9])?", re.ASCII)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)
# Windows device names are refused as path components on every OS, so an
# artifact installs the same everywhere.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def normalize_model_name(name: str) -> str:
    """Lower case, runs of ``-`` and ``_`` become one ``-``; dots are kept.

    Unlike PEP 503 (which folds ``.`` too), ``phi-3.5-mini`` stays
    ``phi-3.5-mini``: the dot is part of how people name these models.
    """
    return re.sub(r"[-_]+", "-", name).lower()


def normalize_distribution_name(name: str) -> str:
    """PEP 503 normalization, for Python distribution names (runtimes): runs of ``-``, ``_`` and ``.``
    become one ``-``, lower case.  Written here rather than taken from ``packaging.utils``, whose import
    pulls in ``packaging.tags``, logging and sysconfig: about 5 ms on every command."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _whole_match(pattern: re.Pattern[str], value: object, why: str, field: str, document: str) -> str:
    """``value`` if it is a string ``pattern`` matches whole, else a ManifestError saying ``why``."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ManifestError(why, field=field, value=value, document=document)
    return value


def check_model_name(name: object, field: str = "name", document: str = "document") -> str:
    """Validate a model name and return its canonical form."""
    why = "a model name is 1-128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    return normalize_model_name(_whole_match(_NAME, name, why, field, document))


def check_distribution_name(name: object, field: str = "distribution", document: str = "document") -> str:
    """Validate a Python distribution name and return its PEP 503 form."""
    why = "expected a Python distribution name (letters, digits, '.', '_', '-')"
    return normalize_distribution_name(_whole_match(_NAME, name, why, field, document))


def check_variant_id(variant: object, field: str = "variant", document: str = "document") -> str:
    why = "a variant id is 1-96 lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
    return _whole_match(_VARIANT, variant, why, field, document)


def _pep440(value: object, parse: Callable[[str], _T], what: str, field: str, document: str) -> _T:
    """``parse(value)`` for a PEP 440 string, else a ManifestError naming ``what`` was expected."""
    if not isinstance(value, str):
        raise ManifestError(f"expected a PEP 440 {what} string", field=field, value=value, document=document)
    try:
        return parse(value)
    except (InvalidVersion, InvalidSpecifier):
        raise ManifestError(f"not a valid PEP 440 {what}", field=field, value=value, document=document) from None


def check_version(version: object, field: str = "version", document: str = "document") -> Version:
    return _pep440(version, Version, "version", field, document)


def check_specifier(spec: object, field: str = "specifier", document: str = "document") -> SpecifierSet:
    return _pep440(spec, SpecifierSet, "version specifier", field, document)


def check_digest(digest: object, field: str = "digest", document: str = "document") -> str:
    """A content digest, always written ``sha256:<64 lower-case hex>``."""
    return _whole_match(_DIGEST, digest, "expected 'sha256:' followed by 64 lower-case hex digits", field, document)


def hex_of(value: object, field: str = "sha256", document: str = "document") -> str:
    """A bare sha256 hex digest (64 lower-case hex digits)."""
    return _whole_match(_HEX, value, "expected 64 lower-case hex digits", field, document)


def check_relative_path(path: object, field: str = "path", document: str = "document") -> str:
    """A file path inside an artifact: relative, POSIX separators, no escape.

    Refused, whatever the OS the artifact is later installed on: absolute paths
    (``/x``), Windows drive paths (``C:\\x``, ``C:x``), UNC paths
    (``\\\\host\\share``), backslashes at all, ``.`` or ``..`` components, empty
    components (``a//b``), NUL and control characters, Windows device names,
    names ending in a dot or space, paths over 512 characters, and paths not
    in Unicode NFC (see the module docstring).
    """
    def bad(reason: str) -> ManifestError:
        return ManifestError(reason, field=field, value=path, document=document)

    if not isinstance(path, str) or not path:
        raise bad("expected a non-empty relative path")
    if len(path) > 512:
        raise bad("path is longer than 512 characters")
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise bad("path contains a control character")
    if path.startswith(("\\\\", "//")):
        raise bad("UNC and network paths are not allowed")
    if "\\" in path:
        raise bad("backslashes are not allowed; use '/' as the separator")
    if path.startswith("/"):
        raise bad("absolute paths are not allowed")
    if not path.isascii():
        categories = {unicodedata.category(c) for c in path}
        if "Cc" in categories:  # the C1 controls, U+0080-U+009F
            raise bad("path contains a control character")
        if "Cf" in categories:  # shown as nothing, or reordering what follows: a name that is not what it looks
            raise bad("path contains an invisible formatting character (a bidirectional override, a zero-width mark)")
        if unicodedata.normalize("NFC", path) != path:
            raise bad("path is not in Unicode NFC form: write it composed (NFC), as file systems show it")
    if re.match(r"[A-Za-z]:", path):
        raise bad("Windows drive paths are not allowed")
    if ":" in path:
        raise bad("':' is not allowed in a path (Windows streams and drives)")
    for part in path.split("/"):
        if part == "":
            raise bad("empty path component ('//' or a trailing '/')")
        if part in (".", ".."):
            raise bad("'.' and '..' components are not allowed")
        if part.endswith((".", " ")):
            raise bad("a path component may not end with '.' or a space")
        if part.split(".")[0].lower() in _RESERVED:
            raise bad("Windows device names are not allowed as path components")
    return path


def path_key(path: str) -> str:
    """What decides that two artifact paths name the same file on some OS: NFC,
    then case-folded (Windows and macOS compare names case-insensitively), then
    NFC again (case folding can decompose: ``"ǰ".casefold()`` is two code points)."""
    if path.isascii():
        return path.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())
