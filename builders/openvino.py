"""OpenVINO IR: optimum-intel's exporter (with nncf weight compression), checked by OpenVINO itself.

optimum-intel caps transformers and huggingface-hub below the main
environment's versions, so the export (``optimum-cli export openvino``) and
the check (``drivers/openvino_check.py``: logits through OpenVINO's runtime,
generation through ``openvino_genai.LLMPipeline``) run in the pinned
environment ``.envs/openvino`` (``builders/envs.py``).  The KV-cache bytes per
element are what the compiled CPU model reports (``KV_CACHE_PRECISION``).

Standard library at import time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

from phi_get.manifests.recipe import VariantSpec

from .base import BuildContext, Produced
from .envs import ENVS
from .evaluate import runtime_quality, score_logits
from .mlx import DTYPE_BYTES, check_in_env, run_in_env
from .steplog import log_path

__all__ = ["OpenvinoBackend", "export_command"]

#: Recipe quantization -> optimum-cli weight options.
_WEIGHTS: Final = {
    "int4-sym-g64": ["--weight-format", "int4", "--sym", "--group-size", "64", "--ratio", "1.0"],
    "int8-asym": ["--weight-format", "int8"],
    "none": ["--weight-format", "fp16"],
}


def export_command(python: Path, src: Path, dest: Path, spec: VariantSpec) -> list[str]:
    cli = python.parent / "optimum-cli"
    return [str(cli), "export", "openvino", "--model", str(src), "--task", "text-generation-with-past",
            *_WEIGHTS[spec.quantization], str(dest)]


class OpenvinoBackend:
    toolchain = "optimum-intel"
    env = ENVS["openvino"]

    def unavailable(self, spec: VariantSpec) -> str | None:
        if spec.quantization not in _WEIGHTS:
            return f"the OpenVINO builder has no weight format for quantization {spec.quantization!r}"
        return None

    def tools(self, spec: VariantSpec) -> dict[str, str]:
        v = self.env.versions()
        dists = ("optimum-intel", "optimum", "nncf", "openvino", "openvino-genai", "openvino-tokenizers",
                 "transformers", "torch")
        return {d: v.get(d, "absent") for d in dists}

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        ctx.reporter(spec.id, "preparing the pinned openvino environment (first use takes minutes)")
        python = self.env.ensure()
        start = time.perf_counter()
        run_in_env(export_command(python, ctx.checkpoint.folder, dest, spec), "optimum-cli export openvino",
                   log_path(ctx.work, spec.id, "optimum-cli export"))
        toolchain = time.perf_counter() - start
        logits, report = check_in_env(python, "openvino_check.py", dest, ctx, "openvino check", spec.id)
        metrics = score_logits(logits, ctx.reference)
        weights = sum(p.stat().st_size for p in dest.glob("openvino_model.*"))
        runtime = f"openvino-genai {report['openvino_genai']} cpu"
        return Produced(weights_bytes=weights, kv_element_bytes=DTYPE_BYTES[report["kv_dtype"]],
                        quality=runtime_quality(metrics, ctx.reference, runtime, report["text"]),
                        toolchain_seconds=toolchain)
