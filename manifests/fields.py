"""Typed reading of untrusted JSON/TOML data, naming the path of every bad field.

A :class:`Reader` wraps one object of a document and knows its path; each
accessor checks the type (and optional bounds) of one key and raises
:class:`~phi_get.manifests.errors.ManifestError` with that key's full path.
Unknown keys are allowed in wire formats (they grow by adding keys); a
format people write by hand (``phi.toml``, recipes) calls :meth:`Reader.only`
to refuse a key it does not know, naming the nearest known one: a typo there
would otherwise be silently ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any, TypeVar

from .errors import ManifestError, SchemaVersionError

__all__ = ["Reader", "MISSING"]

E = TypeVar("E", bound=StrEnum)

_FLOAT_MAX = sys.float_info.max
_INF = float("inf")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _type_name(value: object) -> str:
    return {
        dict: "object", list: "array", str: "string", bool: "boolean",
        int: "integer", float: "number", type(None): "null",
    }.get(type(value), type(value).__name__)


class Reader:
    """Accessors over one JSON object at ``path`` in a ``document``."""

    __slots__ = ("data", "path", "document")

    def __init__(self, data: object, path: str = "", document: str = "document") -> None:
        if not isinstance(data, dict):
            raise ManifestError(
                f"expected an object, found {_type_name(data)}",
                field=path or "(top level)", document=document,
            )
        self.data: dict[str, Any] = data
        self.path = path
        self.document = document

    def where(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | int, reason: str, value: object = MISSING) -> ManifestError:
        if value is MISSING:
            return ManifestError(reason, field=self.where(key), document=self.document)
        return ManifestError(reason, field=self.where(key), value=value, document=self.document)

    def _get(self, key: str, default: object) -> Any:
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            raise self.error(key, "required field is missing")
        return default

    def _typed(self, key: str, value: Any, kinds: tuple[type, ...], label: str) -> Any:
        # bool is an int subclass in Python; JSON keeps them apart, so do we.
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {label}, found boolean", value)
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {label}, found {_type_name(value)}", value)
        return value

    def text(self, key: str, default: Any = MISSING, *, max_len: int = 1024, allow_empty: bool = False) -> Any:
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        self._typed(key, value, (str,), "a string")
        if not value and not allow_empty:
            raise self.error(key, "must not be empty", value)
        if len(value) > max_len:
            raise self.error(key, f"longer than {max_len} characters", value)
        if "\x00" in value:
            raise self.error(key, "contains a NUL character", value)
        return value

    def integer(self, key: str, default: Any = MISSING, *, min: int = 0, max: int = 2**63 - 1) -> Any:
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        self._typed(key, value, (int,), "an integer")
        if value < min:
            raise self.error(key, f"must be at least {min}", value)
        if value > max:
            raise self.error(key, f"must be at most {max}", value)
        return value

    def schema(self, expected: str) -> None:
        """Accept ``expected``; name a newer version of the same family as such."""
        schema = self.text("schema", max_len=64)
        if schema == expected:
            return
        family = expected.rsplit("/v", 1)[0] + "/v"
        if schema.startswith(family):
            raise SchemaVersionError(
                f"this phi-get reads {expected}; a newer phi-get is needed for this document",
                field="schema", value=schema, document=self.document,
            )
        raise ManifestError(f"expected {expected!r}", field="schema", value=schema, document=self.document)

    def choice(self, key: str, enum: type[E], default: Any = MISSING) -> Any:
        """A string that must be one value of the closed set ``enum``."""
        value = self.text(key, default, max_len=64)
        if value is default and default is not MISSING:
            return value
        try:
            return enum(value)
        except ValueError:
            allowed = " | ".join(m.value for m in enum)
            raise self.error(key, f"expected one of {allowed}", value) from None

    def number(self, key: str, default: Any = MISSING, *, min: float | None = None, max: float | None = None) -> Any:
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        self._typed(key, value, (int, float), "a number")
        if value != value:  # NaN
            raise self.error(key, "must be a number, not NaN", value)
        # An integer too large for a float, or an infinity (JSON's 1e999), has no place in any field.
        if isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX or value in (_INF, -_INF):
            raise self.error(key, "must be a finite number", value)
        if min is not None and value < min:
            raise self.error(key, f"must be at least {min}", value)
        if max is not None and value > max:
            raise self.error(key, f"must be at most {max}", value)
        return float(value)

    def only(self, known: Iterable[str], table: str | None = None) -> None:
        """Refuse any key not in ``known``, naming it, its table and the nearest known key.

        ``table`` is how people name this object in their file (``[models.phi-4-mini]``);
        by default the TOML table of this reader's path.
        """
        allowed = tuple(known)
        for key in self.data:
            if key in allowed:
                continue
            import difflib  # only on this error path: it costs an import on the hot path

            where = f"in {table}" if table else f"in [{self.path}]" if self.path else "at the top level"
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            advice = f"did you mean {close[0]!r}?" if close else f"the known keys are {', '.join(sorted(allowed))}"
            raise self.error(key, f"unknown key {key!r} {where}; {advice}")

    def flag(self, key: str, default: Any = MISSING) -> Any:
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        return self._typed(key, value, (bool,), "a boolean")

    def obj(self, key: str, default: Any = MISSING) -> Any:
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        return Reader(self._typed(key, value, (dict,), "an object"), self.where(key), self.document)

    def array(self, key: str, default: Any = MISSING, *, max_items: int = 10_000) -> Any:
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        self._typed(key, value, (list,), "an array")
        if len(value) > max_items:
            raise self.error(key, f"has {len(value)} items, the limit is {max_items}")
        return value

    def objects(self, key: str, default: Any = MISSING, *, max_items: int = 10_000) -> Iterator[Reader]:
        items = self.array(key, default, max_items=max_items)
        if items is default and default is not MISSING:
            return
        base = self.where(key)
        for i, item in enumerate(items):
            yield Reader(item, f"{base}[{i}]", self.document)

    def texts(self, key: str, default: Any = MISSING, *, max_items: int = 1_000, max_len: int = 256) -> Any:
        items = self.array(key, default, max_items=max_items)
        if items is default and default is not MISSING:
            return items
        base = self.where(key)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise ManifestError(
                    "expected a non-empty string", field=f"{base}[{i}]", value=item, document=self.document
                )
            if len(item) > max_len:
                raise ManifestError(
                    f"longer than {max_len} characters", field=f"{base}[{i}]", value=item, document=self.document
                )
        return items

    def text_map(self, key: str, default: Any = MISSING, *, max_items: int = 1_000) -> Any:
        """An object whose values are all strings."""
        value = self._get(key, default)
        if value is default and default is not MISSING:
            return value
        sub = Reader(self._typed(key, value, (dict,), "an object"), self.where(key), self.document)
        if len(value) > max_items:
            raise self.error(key, f"has {len(value)} entries, the limit is {max_items}")
        return {k: sub.text(k, max_len=4096, allow_empty=True) for k in value}
