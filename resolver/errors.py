"""The resolver's errors: each subclasses PhiGetError and the builtin it resembles.

Exit codes follow the table in :mod:`phi_get.manifests.errors`: 3 nothing
matches, 4 integrity, 5 unreachable source, 6 conflict (lock out of date).

Imports only :mod:`phi_get.manifests`.
"""

from __future__ import annotations

from phi_get.manifests.errors import ExitCode, PhiGetError
from phi_get.manifests.urls import redact_text

__all__ = [
    "AcceleratorUnavailableError",
    "DeviceProfileError",
    "DiskFullError",
    "IntegrityError",
    "LockMismatchError",
    "NoMatchError",
    "NoRegistryError",
    "NotInstalledError",
    "ProjectExistsError",
    "ResolverError",
    "RuntimeMissingError",
    "SourceError",
    "SourceURLError",
]


class ResolverError(PhiGetError):
    """Base of the device side's errors."""


class NoMatchError(ResolverError, LookupError):
    """No artifact satisfies the requirement on this device."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class NotInstalledError(ResolverError, LookupError):
    """The model is not installed in this store."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class IntegrityError(ResolverError, ValueError):
    """Bytes do not match the digest or size that was promised for them."""

    exit_code = ExitCode.INTEGRITY

    def __init__(self, what: str, *, expected: str, actual: str, where: str) -> None:
        where = redact_text(where)  # a source URL's credentials never reach a message
        self.what, self.expected, self.actual, self.where = what, expected, actual, where
        super().__init__(f"{what} from {where} does not match: expected {expected}, got {actual}")
        self.hint = "nothing was installed; run the command again to download it afresh"


class SourceError(ResolverError, ConnectionError):
    """A registry or mirror could not be reached or answered badly."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, *, url: str, hint: str | None = None) -> None:
        self.url = redact_text(url)  # a source URL's credentials never reach a message
        super().__init__(redact_text(f"{message} ({url})"))
        self.hint = hint


class SourceURLError(SourceError, ValueError):
    """A registry or mirror URL that is malformed (bad input, not an unreachable service)."""

    exit_code = ExitCode.BAD_INPUT


class NoRegistryError(ResolverError, ValueError):
    """No registry or mirror is configured: a usage error (exit 2), not an unreachable one."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class DiskFullError(ResolverError, OSError):
    """The store's disk has no room (or a file size limit was reached)."""

    exit_code = ExitCode.FAILURE

    def __init__(self, path: str, needed: int | None = None) -> None:
        self.path, self.needed = path, needed
        need = f" for {needed} bytes" if needed is not None else ""
        super().__init__(f"no space left on the device holding {path}{need}")
        self.hint = "free some space (phi-get gc removes unused blobs) and run again: the download resumes"


class LockMismatchError(ResolverError, ValueError):
    """phi.lock no longer matches phi.toml, or does not cover what was asked."""

    exit_code = ExitCode.CONFLICT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ProjectExistsError(ResolverError, FileExistsError):
    """``phi-get init`` would overwrite a phi.toml (pass --force)."""

    exit_code = ExitCode.CONFLICT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class RuntimeMissingError(ResolverError, ModuleNotFoundError):
    """The artifact's runtime package is not installed."""

    exit_code = ExitCode.FAILURE

    def __init__(self, distribution: str, module: str, *, artifact: str) -> None:
        self.distribution = distribution
        super().__init__(f"{artifact} needs the runtime {distribution!r} (module {module!r}), which is not installed")
        self.name = module
        self.hint = f"pip install {distribution}"


class AcceleratorUnavailableError(ResolverError, RuntimeError):
    """The resolved accelerator cannot be used by the installed runtime build: never run on the CPU instead."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, runtime: str, target: str, fix: str) -> None:
        super().__init__(message)
        self.runtime, self.target = runtime, target
        self.hint = f"{fix}; or run on the CPU explicitly with --target cpu"


class DeviceProfileError(ResolverError, ValueError):
    """A device profile named by --device or PHI_GET_DEVICE cannot be found."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
