"""Errors of the builders."""

from __future__ import annotations

from phi_get.manifests.errors import PhiGetError

__all__ = ["BuildError", "SourceError"]


class BuildError(PhiGetError, RuntimeError):
    """A build could not be done; nothing that looks finished was left behind."""


class SourceError(BuildError, ValueError):
    """The source checkpoint is unusable (not Phi-3, no tokenizer, corrupt files)."""

    exit_code = 2
