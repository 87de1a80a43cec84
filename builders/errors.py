"""Errors of the builders."""

from __future__ import annotations

from phi_get.manifests.errors import ExitCode, PhiGetError

__all__ = ["BuildError", "CheckpointError", "HubError", "HubIntegrityError", "HubNotFoundError", "OutputExistsError"]


class BuildError(PhiGetError, RuntimeError):
    """A build could not be done; nothing that looks finished was left behind."""


class CheckpointError(BuildError, ValueError):
    """The source checkpoint is unusable (not Phi-3, no tokenizer, corrupt files).

    Named for the checkpoint, not "source": the resolver's ``SourceError`` is
    a registry that cannot be reached, a different failure.
    """

    exit_code = ExitCode.BAD_INPUT


class HubError(CheckpointError, ConnectionError):
    """The Hugging Face Hub cannot be reached or does not serve the recipe's repo at that revision."""

    exit_code = ExitCode.UNAVAILABLE
    hint = "no Hub access here? build from a local checkpoint folder: --source DIR"


class HubNotFoundError(HubError, LookupError):
    """The Hub answered: no such repo (or gated, or private), revision or file; the message names which."""

    exit_code = ExitCode.NOT_FOUND
    hint = None


class HubIntegrityError(HubError):
    """A file fetched from the Hub does not match the size or digest its repo's git tree records."""

    exit_code = ExitCode.INTEGRITY
    hint = None


class OutputExistsError(BuildError, FileExistsError):
    """The output folder holds something already (pass --force to replace it)."""

    exit_code = ExitCode.CONFLICT
