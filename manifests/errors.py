"""The root of phi-get's error tree and the errors of the formats.

Every error phi-get raises on purpose derives from :class:`PhiGetError`.  Each
package adds its own subclasses, which also derive from the builtin exception
they resemble, so callers that only know Python's builtins still catch them.

Errors carry structured fields (``field``, ``value``) so that a CLI or an HTTP
service can render them without parsing the message.  Messages follow one
shape: ``<what failed> at <field path>: <why> (got <bad value>)``.

This module imports nothing of phi-get.
"""

from __future__ import annotations

__all__ = [
    "PhiGetError",
    "ManifestError",
    "SchemaVersionError",
    "DocumentTooLargeError",
]

_MAX_SHOWN = 80


def _show(value: object) -> str:
    """A short, safe rendering of a bad value for an error message."""
    text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


_UNSET = object()


class PhiGetError(Exception):
    """Root of every error phi-get raises on purpose."""

    #: A short hint for people, shown by the CLI under the message.
    hint: str | None = None
    #: The process exit code the CLI uses for this error.  The table:
    #: 1 generic failure, 2 bad input (usage, invalid document), 3 nothing
    #: matches (resolution), 4 integrity (digest or size mismatch),
    #: 5 unreachable or failing service, 6 conflict (already published
    #: differently, lock out of date).
    exit_code: int = 1


class ManifestError(PhiGetError, ValueError):
    """A document read from outside (manifest, device profile, index, lock,
    recipe) is invalid.

    ``field`` is the path of the bad field in the document (``files[2].path``),
    ``value`` the bad value when there is one, ``reason`` what is wrong.
    """

    exit_code = 2

    def __init__(
        self,
        reason: str,
        *,
        field: str = "",
        value: object = _UNSET,
        document: str = "document",
    ) -> None:
        self.reason = reason
        self.field = field
        self.value = None if value is _UNSET else value
        self._value = value
        self.document = document
        where = f" at {field}" if field else ""
        got = "" if value is _UNSET else f" (got {_show(value)})"
        super().__init__(f"invalid {document}{where}: {reason}{got}")


    def in_document(self, document: str) -> ManifestError:
        """The same error, naming the document it was found in."""
        return type(self)(self.reason, field=self.field, value=self._value, document=document)


class SchemaVersionError(ManifestError):
    """The document declares a schema this version of phi-get cannot read."""


class DocumentTooLargeError(ManifestError):
    """The document is larger than the limit for its kind."""
