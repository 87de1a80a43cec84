"""Canonical JSON: the one byte form of every document phi-get hashes, and
the one place where documents from outside (JSON and TOML) are loaded.

Rules (stable; changing them changes every digest, so they are API):

* UTF-8, no byte-order mark, no insignificant whitespace;
* object keys sorted by their UTF-16 code units would be RFC 8785; we sort by
  Unicode code point, which is the same for the ASCII keys our formats use;
* non-ASCII characters written as themselves, not ``\\u`` escapes;
* integers only: floats are written with Python's shortest round-trip repr and
  NaN or infinities are refused;
* a document's digest is ``sha256:`` + the hex sha256 of these bytes.

Loading (hostile input): a document from outside (a registry, a
mirror, a file the user names) goes through :func:`load_json_document` or
:func:`load_toml_document`, which refuse, as :class:`ManifestError` naming the
document, before or instead of any traceback:

* more bytes than the document's limit, checked before parsing;
* text that is not UTF-8, JSON or TOML; duplicate JSON keys (parsers
  otherwise keep the last one silently); NaN; lone UTF-16 surrogates;
* nesting deeper than :data:`MAX_DEPTH` arrays and objects (tables, dotted
  keys), measured *before* the parser runs: the parsers recurse once per
  level, and tomllib's memory grows with the square of a dotted key's parts;
* integers with more digits than Python converts (its int-string limit);
* TOML dates and times, which no phi-get document uses.

Numeric ranges are the readers' (:class:`~phi_get.manifests.fields.Reader`)
and :func:`check_plain_data`'s: they know the field path.

Only the standard library.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
import sys
from typing import Any, Final

from .errors import DocumentTooLargeError, ManifestError

__all__ = [
    "MAX_DEPTH",
    "MAX_PLAIN_INT",
    "canonical_bytes",
    "check_plain_data",
    "digest_of",
    "load_json_document",
    "load_toml_document",
]

#: Deepest nesting of arrays and objects accepted in a document from outside.
#: phi-get's formats need 5; 64 leaves room for free-form parts (architecture).
MAX_DEPTH: Final = 64
#: Largest magnitude of an integer in free-form data (:func:`check_plain_data`): 64 bits.
MAX_PLAIN_INT: Final = 2**63 - 1


def _check_numbers(obj: Any, path: str) -> None:
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            raise ManifestError("NaN and infinity cannot be serialized", field=path, value=obj)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            if not isinstance(key, str):
                raise ManifestError("object keys must be strings", field=path, value=key)
            _check_numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _check_numbers(item, f"{path}[{i}]")


def canonical_bytes(obj: Any) -> bytes:
    """Serialize plain JSON data (dict, list, str, int, float, bool, None)."""
    _check_numbers(obj, "")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):  # rare: find the first repeated key to name it
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise ManifestError("duplicate key in JSON object", field=key, value=key)
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise ManifestError(f"{name} is not valid JSON")


def _too_deep_message() -> str:
    return f"nested more than {MAX_DEPTH} arrays or objects deep"


def _digits_message() -> str:
    return f"an integer has more than {sys.get_int_max_str_digits()} digits"


def _raw_bytes(data: bytes | str, limit: int, document: str) -> bytes:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > limit:
        raise DocumentTooLargeError(f"document is {len(raw)} bytes, the limit is {limit}", document=document)
    return raw


# JSON nesting, measured without parsing: keep only brackets and quotes, drop
# the strings (with their escapes), then peel innermost pairs level by level.
# Every step is one C-speed pass over bytes (about 3 ms per MiB, a tenth of
# what json.loads takes; documents with at most 64 brackets skip it).  Exact for valid JSON; for invalid JSON it may count
# wrongly, and the parse that follows refuses the document anyway.
_BRACKETS: Final = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE: Final = bytes(c for c in range(256) if c not in b'[]{}"')
_STRING: Final = re.compile(rb'"[^"]*"')


def _json_too_deep(raw: bytes) -> bool:
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    if b"\\" in raw:  # an escaped backslash pairs first, then an escaped quote: as a parser reads them
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    s = raw.translate(_BRACKETS, _NOT_STRUCTURE)
    # Adjacent quotes are an empty string or two strings with nothing between:
    # dropping them leaves what lies outside strings unchanged.
    s = s.replace(b'""', b"")
    if b'"' in s:
        s = _STRING.sub(b"", s)
    for _ in range(MAX_DEPTH):
        peeled = s.replace(b"[]", b"")
        if peeled == s:
            return False
        s = peeled
    return bool(s)


def load_json_document(data: bytes | str, *, limit: int, document: str) -> Any:
    """Parse a JSON document read from outside, enforcing ``limit`` bytes, depth and integer length."""
    raw = _raw_bytes(data, limit, document)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8: {exc.reason} at byte {exc.start}", document=document) from None
    if _json_too_deep(raw):
        raise ManifestError(_too_deep_message(), document=document)
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ManifestError as exc:
        raise exc.in_document(document) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", document=document
        ) from None
    except RecursionError:  # not reached after the depth check; kept as the last line of defence
        raise ManifestError(_too_deep_message(), document=document) from None
    except ValueError:  # int("9" * 5000): Python's int-string limit (CVE-2020-10735)
        raise ManifestError(f"not JSON: {_digits_message()}", document=document) from None
    if "\\u" in text and _LONE_SURROGATE.search(text):
        _refuse_lone_surrogates(doc, document)
    return doc


_LONE_SURROGATE: Final = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _refuse_lone_surrogates(doc: Any, document: str) -> None:
    """JSON may escape half a UTF-16 pair (``"\\ud800"``); Python keeps it, and
    it cannot be written as UTF-8 later (a path, a message).  Paired halves
    were joined by the parser; any left alone are refused here."""
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError("a string holds a lone UTF-16 surrogate escape, which is not Unicode text",
                            document=document) from None


# TOML structure, scanned before tomllib runs: strings and comments skipped
# whole; brackets counted for depth; the dots of one dotted key (or table
# header) counted between the tokens that end a key.  Floats and times carry
# at most one dot after their '='.
_TOML_TOKEN: Final = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""'   # multi-line basic string
    r"|'''(?:[^']|'(?!''))*'''"        # multi-line literal string
    r'|"(?:[^"\\\n]|\\.)*"'            # basic string
    r"|'[^'\n]*'"                      # literal string
    r"|#[^\n]*"                        # comment
    r"|[\[\]{}.=,\n]",
    re.DOTALL,
)


def _toml_too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") + text.count(".") <= MAX_DEPTH:
        return False
    depth = dots = 0
    for match in _TOML_TOKEN.finditer(text):
        token = match.group()
        if token == ".":
            dots += 1
            if dots > MAX_DEPTH:
                return True
            continue
        if len(token) == 1:
            dots = 0
            if token in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return True
            elif token in "]}":
                depth -= 1
    return False


def _check_tree(doc: dict[str, Any], document: str) -> None:
    """Depth and value types of a parsed TOML document, without recursion."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = ((f"[{i}]", v) for i, v in enumerate(value))
        else:
            if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
                raise ManifestError("dates and times are not used in phi-get documents", field=path,
                                    value=str(value), document=document)
            continue
        if depth >= MAX_DEPTH:
            raise ManifestError(_too_deep_message(), field=path or "(top level)", document=document)
        for key, item in items:
            where = f"{path}{key}" if key.startswith("[") else (f"{path}.{key}" if path else key)
            stack.append((item, where, depth + 1))


def load_toml_document(data: bytes | str, *, limit: int, document: str) -> Any:
    """Parse a TOML document read from outside (recipe, phi.toml, phi.lock),
    enforcing ``limit`` bytes, depth and integer length before parsing."""
    raw = _raw_bytes(data, limit, document)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not TOML: {exc}", document=document) from None
    if _toml_too_deep(text):
        raise ManifestError(_too_deep_message(), document=document)
    import tomllib  # here: a command that reads no TOML does not pay its ~3 ms import

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"not TOML: {exc}", document=document) from None
    except RecursionError:  # not reached after the depth check; kept as the last line of defence
        raise ManifestError(_too_deep_message(), document=document) from None
    except ValueError:  # int("9" * 5000): Python's int-string limit
        raise ManifestError(f"not TOML: {_digits_message()}", document=document) from None
    _check_tree(doc, document)
    return doc


def check_plain_data(value: Any, *, field: str, document: str) -> None:
    """Free-form data kept from a document (a manifest's ``architecture``, a
    recipe entry, a lock's ``policy``) is plain JSON data that serializes:
    string keys, finite floats, integers within 64 bits, at most
    :data:`MAX_DEPTH` deep.  Checked without recursion, naming the bad field."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, (str, bool)):
            continue
        if isinstance(item, int):
            if not -MAX_PLAIN_INT - 1 <= item <= MAX_PLAIN_INT:
                raise ManifestError("integers are limited to 64 bits", field=path, value=item, document=document)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ManifestError("must be a finite number", field=path, value=item, document=document)
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ManifestError(_too_deep_message(), field=path, document=document)
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str):
                        raise ManifestError("object keys must be strings", field=path, value=key, document=document)
                    stack.append((sub, f"{path}.{key}" if path else key, depth + 1))
            else:
                stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
        else:
            raise ManifestError(f"a {type(item).__name__} is not JSON data", field=path, document=document)
