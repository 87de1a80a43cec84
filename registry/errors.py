"""Errors of the registry service and of publishing.

Each error carries the HTTP status the service answers it with (``status``)
and the CLI exit code (``exit_code``, the table in
:mod:`phi_get.manifests.errors`).  The service renders them as a JSON body
``{"error": <code>, "message": <text>}``; the publish client turns such a body
back into the same class, so a refusal reads the same on both sides.

Imports only :mod:`phi_get.manifests`.
"""

from __future__ import annotations

from typing import ClassVar

from phi_get.manifests.errors import ExitCode, PhiGetError

__all__ = [
    "AuthError",
    "BadRequestError",
    "BlobIntegrityError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "RangeError",
    "RegistryError",
    "ServeError",
    "ServiceError",
    "TooLargeError",
    "error_for_code",
]


class RegistryError(PhiGetError):
    """Root of the registry's errors."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint


class BadRequestError(RegistryError, ValueError):
    """The request is malformed: a bad name, digest, manifest or parameter."""

    status = 400
    code = "bad-request"
    exit_code = ExitCode.BAD_INPUT


class AuthError(RegistryError, PermissionError):
    """No token, an unknown token, or an expired or revoked one."""

    status = 401
    code = "unauthorized"
    exit_code = ExitCode.BAD_INPUT
    hint = "pass a publish token with --token or the PHI_GET_TOKEN environment variable"


class ForbiddenError(RegistryError, PermissionError):
    """A valid token whose scopes do not cover the request."""

    status = 403
    code = "forbidden"
    exit_code = ExitCode.BAD_INPUT


class NotFoundError(RegistryError, LookupError):
    status = 404
    code = "not-found"
    exit_code = ExitCode.NOT_FOUND


class ConflictError(RegistryError):
    """Published versions are immutable: different content under a taken key."""

    status = 409
    code = "conflict"
    exit_code = ExitCode.CONFLICT


class BlobIntegrityError(RegistryError, ValueError):
    """A blob's bytes do not match their digest or declared size (an upload), or a blob is missing (an export).

    Named for the registry's blobs: the resolver's ``IntegrityError`` is
    downloaded bytes that do not match, a different failure.  The
    wire code stays ``integrity``.
    """

    status = 400
    code = "integrity"
    exit_code = ExitCode.INTEGRITY


class TooLargeError(RegistryError, ValueError):
    status = 413
    code = "too-large"
    exit_code = ExitCode.BAD_INPUT


class RangeError(RegistryError, ValueError):
    """A Range header that no byte of the blob satisfies."""

    status = 416
    code = "range-not-satisfiable"
    exit_code = ExitCode.BAD_INPUT


class ServiceError(RegistryError, ConnectionError):
    """The registry is unreachable or answered something unexpected."""

    status = 502
    code = "service"
    exit_code = ExitCode.UNAVAILABLE


class ServeError(RegistryError, OSError):
    """``registry serve`` cannot listen where it was asked to (a busy port, an address not of this machine)."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, *, hint: str | None = None, bad_input: bool = False) -> None:
        super().__init__(message, hint=hint)
        if bad_input:
            self.exit_code = ExitCode.BAD_INPUT


_BY_CODE: dict[str, type[RegistryError]] = {
    cls.code: cls
    for cls in (BadRequestError, AuthError, ForbiddenError, NotFoundError, ConflictError,
                BlobIntegrityError, TooLargeError, RangeError, ServiceError, RegistryError)
}


def error_for_code(code: str) -> type[RegistryError]:
    """The error class a service's ``{"error": code}`` body stands for."""
    return _BY_CODE.get(code, ServiceError)
