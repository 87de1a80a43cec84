"""Which backend builds which format, and which variants can run on this machine.

Every backend is handed out wrapped (:class:`_Logged`): an exception its
build raises inside phi-get's process (not a phi-get error, which already
says what failed) becomes a ``steplog.ToolchainError`` whose traceback is
kept in the source's work folder and whose message names the failing frame.
Imports the backend modules, none of which imports a model library at
import time.
"""

from __future__ import annotations

from pathlib import Path

from phi_get.manifests.errors import PhiGetError
from phi_get.manifests.manifest import Format
from phi_get.manifests.recipe import VariantSpec

from .base import Backend, BuildContext, Produced
from .steplog import in_process_failure, log_path

__all__ = ["backend_for"]


class _Logged:
    """A backend whose build failures keep their traceback (see the module docstring)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.toolchain = inner.toolchain

    def unavailable(self, spec: VariantSpec) -> str | None:
        return self.inner.unavailable(spec)

    def tools(self, spec: VariantSpec) -> dict[str, str]:
        return self.inner.tools(spec)

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        try:
            return self.inner.build(spec, ctx, dest)
        except PhiGetError:
            raise
        except Exception as exc:  # noqa: BLE001 - kept with its traceback, re-raised as a ToolchainError
            what = f"the {self.toolchain} build of {spec.id}"
            raise in_process_failure(exc, what, log_path(ctx.work, spec.id, "build")) from exc


def backend_for(spec: VariantSpec) -> Backend:
    from .gguf import GgufBackend
    from .mlx import MlxBackend
    from .onnx_genai import OnnxBackend
    from .openvino import OpenvinoBackend
    from .pytorch import PytorchBackend

    table: dict[Format, Backend] = {
        Format.GGUF: GgufBackend(), Format.ONNX: OnnxBackend(), Format.OPENVINO: OpenvinoBackend(),
        Format.MLX: MlxBackend(), Format.SAFETENSORS: PytorchBackend(),
    }
    return _Logged(table[spec.format])
