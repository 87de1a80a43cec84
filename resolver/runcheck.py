"""What ``phi-get run`` checks before a runtime sees an installed artifact, and how a runtime's failure reads.

A runtime is native code reading bytes from outside: a damaged artifact (a
truncated file, a file replaced by a link) or a hostile one (a GGUF whose
counts or shapes lie, published with a matching sha256) crashed it or gave a
Python traceback.  :func:`check_artifact`
makes the cheap checks first: every listed file is a regular file of its
listed size (otherwise an :class:`IntegrityError` whose hint is
``phi-get verify --repair``), and GGUF and safetensors headers are walked in
Python with every count, length, shape and offset bounded by the file size
(:mod:`phi_get.manifests.modelfiles`, a ``ModelFileError`` naming the file
and the header field).  It does not re-hash: that is ``phi-get verify``'s
work, too slow for every run of a multi-gigabyte model.

:func:`runtime_errors` turns whatever a runtime raises while loading or
generating into a :class:`RuntimeFailedError` naming the runtime, the
artifact and the folder.

Imports the standard library, :mod:`phi_get.manifests` and sibling modules.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from phi_get.manifests.errors import ExitCode, PhiGetError
from phi_get.manifests.manifest import Format, Manifest
from phi_get.manifests.modelfiles import check_gguf_file, read_safetensors_header

from .errors import IntegrityError, ResolverError

__all__ = ["RuntimeFailedError", "check_artifact", "runtime_errors"]

F = TypeVar("F", bound=Callable[..., Any])


class RuntimeFailedError(ResolverError, RuntimeError):
    """The runtime could not load or run an artifact that passed phi-get's checks."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _label(m: Manifest) -> str:
    return f"{m.name} {m.version} {m.variant}"


def check_artifact(folder: Path, manifest: Manifest) -> None:
    """Every listed file a regular file of its listed size; GGUF and safetensors headers bounded."""
    for entry in manifest.files:
        path = folder / entry.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            found = "no file"
        else:
            if not stat.S_ISREG(st.st_mode):
                found = "not a regular file"
            elif st.st_size != entry.size:
                found = f"{st.st_size} bytes"
            else:
                continue
        err = IntegrityError(f"installed file {entry.path} of {_label(manifest)}", expected=f"{entry.size} bytes",
                             actual=found, where=str(folder))
        err.hint = f"the artifact is damaged: phi-get verify {manifest.name} --repair downloads it again"
        raise err
    if manifest.format is Format.GGUF:
        ggufs = [e.path for e in manifest.files if e.path.endswith(".gguf")]
        if not ggufs:
            raise RuntimeFailedError(f"{_label(manifest)} is a GGUF artifact without a .gguf file",
                                     hint="its manifest is wrong: ask its publisher to rebuild it")
        check_gguf_file(folder / ggufs[0])  # the file the GGUF loader opens
    for entry in manifest.files:
        if entry.path.endswith(".safetensors"):
            read_safetensors_header(folder / entry.path)


def runtime_errors(generate: F) -> F:
    """Wrap ``generate(folder, manifest, ...)``: a runtime's own exception becomes a RuntimeFailedError."""

    @functools.wraps(generate)
    def wrapper(folder: Path, manifest: Manifest, *args: Any, **kwargs: Any) -> Any:
        try:
            return generate(folder, manifest, *args, **kwargs)
        except PhiGetError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a runtime raises ends the run here, named
            detail = " ".join(str(exc).split())[:300]
            raise RuntimeFailedError(
                f"{manifest.runtime.distribution} could not run {_label(manifest)} from {folder}: {type(exc).__name__}"
                + (f": {detail}" if detail else ""),
                hint=f"phi-get verify {manifest.name} checks every byte of it against its manifest") from None

    return wrapper  # type: ignore[return-value]
