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

from enum import IntEnum

__all__ = [
    "EXIT_CODE_HELP",
    "DocumentTooLargeError",
    "ExitCode",
    "ManifestError",
    "PhiGetError",
    "SchemaVersionError",
]

_MAX_SHOWN = 80


def _show(value: object) -> str:
    """A short, safe rendering of a bad value for an error message."""
    text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


_UNSET = object()


class ExitCode(IntEnum):
    """The process exit codes of every ``phi-get`` command: the one table.

    Each error class names its code from here; ``phi-get --help`` and the
    README print :data:`EXIT_CODE_HELP`; tests assert codes by name.
    """

    OK = 0
    FAILURE = 1
    BAD_INPUT = 2
    NOT_FOUND = 3
    INTEGRITY = 4
    UNAVAILABLE = 5
    CONFLICT = 6
    INTERRUPTED = 130


_MEANING = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "anything else that failed (a build step, a full disk, a missing runtime)",
    ExitCode.BAD_INPUT: "a usage error, an invalid option value, document, URL or phi.toml key",
    ExitCode.NOT_FOUND: "nothing matches: no artifact fits; the model, registry or token is not there",
    ExitCode.INTEGRITY: "bytes do not match their digest or size",
    ExitCode.UNAVAILABLE: "a registry, mirror, the Hugging Face Hub or a port cannot be reached or used",
    ExitCode.CONFLICT: "already published differently, a lock out of date, a folder in the way",
    ExitCode.INTERRUPTED: "Ctrl-C: what was done is kept; run the same command again to resume",
}

#: The table as people read it (``phi-get --help``, the README): code, name, meaning.
EXIT_CODE_HELP = "\n".join(
    f"{int(code):>3}  {code.name.lower().replace('_', '-'):<12} {_MEANING[code]}" for code in ExitCode
)


class PhiGetError(Exception):
    """Root of every error phi-get raises on purpose."""

    #: A short hint for people, shown by the CLI under the message.
    hint: str | None = None
    #: The process exit code the CLI uses for this error (the table: :class:`ExitCode`).
    exit_code: int = ExitCode.FAILURE


class ManifestError(PhiGetError, ValueError):
    """A document read from outside (manifest, device profile, index, lock,
    recipe) is invalid.

    ``field`` is the path of the bad field in the document (``files[2].path``),
    ``value`` the bad value when there is one, ``reason`` what is wrong.
    """

    exit_code = ExitCode.BAD_INPUT

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
