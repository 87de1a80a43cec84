"""The options the device-side commands share: their help texts and the default policy.

One definition for both parsers of them: ``resolve``'s own argparse parser
(:mod:`.resolve_command`, kept off typer for speed) and the typer commands
(:mod:`.cli`).  Plain constants, so that importing them costs neither
parser (``phi-get --version`` does not import argparse).

Imports only the standard library.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_PREFER", "OPTION_HELP"]

#: The default policy, for resolve and every command that resolves.
DEFAULT_PREFER: Final = "balanced"

#: Help texts of the options resolve shares with the typer commands (resolver/cli.py uses these).
OPTION_HELP: Final[dict[str, str]] = {
    "requirement": "NAME or NAME with a version specifier: 'phi-3.5-mini>=1.0'.",
    "registry": "Registry or mirror base URL (http(s):// or file://); repeatable, tried in order. "
                "Default: PHI_GET_REGISTRY.",
    "device": "Device profile file or sample name (gpu-server, apple-laptop, pi-board, intel-ai-pc, "
              "snapdragon-laptop). Default: PHI_GET_DEVICE, else probe this machine.",
    "json": "Print JSON for scripts.",
    "explain": "List every candidate with its verdict and reason.",
    "prefer": "What to favour among the artifacts that fit: balanced, quality, size or speed (default balanced).",
    "format": "Pin a format: gguf, onnx, openvino, mlx, safetensors.",
    "precision": "Pin a precision: int4, int8, fp16, bf16, fp32.",
    "context": "Context length for the memory check (default min(model maximum, 4096)).",
    "offline": "Use cached indexes only (default: PHI_GET_OFFLINE).",
    "online": "Use the sources (the opposite of --offline).",
    "home": "The store (default: PHI_GET_HOME or ~/.cache/phi-get).",
    "require_runtime": "Reject artifacts whose runtime is not installed.",
}
