"""Which backend builds which format, and which variants can run on this machine.

Imports the backend modules, none of which imports a model library at
import time.
"""

from __future__ import annotations

from phi_get.manifests.manifest import Format
from phi_get.manifests.recipe import VariantSpec

from .base import Backend

__all__ = ["backend_for"]


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
    return table[spec.format]

