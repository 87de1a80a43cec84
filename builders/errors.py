"""Errors of the builders."""

from __future__ import annotations

from phi_get.manifests.errors import ExitCode, PhiGetError

__all__ = ["BuildError", "HubError", "OutputExistsError", "SourceError"]


class BuildError(PhiGetError, RuntimeError):
    """A build could not be done; nothing that looks finished was left behind."""


class SourceError(BuildError, ValueError):
    """The source checkpoint is unusable (not Phi-3, no tokenizer, corrupt files)."""

    exit_code = ExitCode.BAD_INPUT


class HubError(SourceError, ConnectionError):
    """The Hugging Face Hub cannot be reached or does not serve the recipe's repo at that revision."""

    exit_code = ExitCode.UNAVAILABLE
    hint = "no Hub access here? build from a local checkpoint folder: --source DIR"


class OutputExistsError(BuildError, FileExistsError):
    """The output folder holds something already (pass --force to replace it)."""

    exit_code = ExitCode.CONFLICT
