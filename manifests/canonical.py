"""Canonical JSON: the one byte form of every document phi-get hashes.

Rules (stable; changing them changes every digest, so they are API):

* UTF-8, no byte-order mark, no insignificant whitespace;
* object keys sorted by their UTF-16 code units would be RFC 8785; we sort by
  Unicode code point, which is the same for the ASCII keys our formats use;
* non-ASCII characters written as themselves, not ``\\u`` escapes;
* integers only: floats are written with Python's shortest round-trip repr and
  NaN or infinities are refused;
* a document's digest is ``sha256:`` + the hex sha256 of these bytes.

Reading enforces a size limit before parsing and rejects duplicate keys, which
JSON parsers otherwise resolve silently (last one wins).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from typing import Any

from .errors import DocumentTooLargeError, ManifestError

__all__ = ["canonical_bytes", "digest_of", "load_json_document", "load_toml_document"]


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


def load_json_document(data: bytes | str, *, limit: int, document: str) -> Any:
    """Parse a JSON document read from outside, enforcing ``limit`` bytes."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > limit:
        raise DocumentTooLargeError(
            f"document is {len(raw)} bytes, the limit is {limit}", document=document
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8: {exc.reason} at byte {exc.start}", document=document) from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ManifestError as exc:
        raise exc.in_document(document) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", document=document
        ) from None
    except RecursionError:
        raise ManifestError("nested too deeply", document=document) from None


def load_toml_document(data: bytes | str, *, limit: int, document: str) -> Any:
    """Parse a TOML document read from outside (recipe, phi.toml, phi.lock),
    enforcing ``limit`` bytes before parsing."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > limit:
        raise DocumentTooLargeError(f"document is {len(raw)} bytes, the limit is {limit}", document=document)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not TOML: {exc}", document=document) from None
