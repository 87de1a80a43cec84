"""MLX for mlx-lm: ``mlx_lm convert`` in the MLX environment, checked by mlx-lm itself.

mlx-lm's pins conflict with the main environment's, so both the conversion
(``python -m mlx_lm convert``) and the check (``drivers/mlx_check.py``) run
in the pinned environment ``.envs/mlx`` (``builders/envs.py``).  On Linux it
runs through ``mlx[cpu]``: the artifacts target Apple's Metal, but they are
the same files, loaded, scored and made to generate here on the CPU.

mlx-lm 0.32.2 reads ``rope_theta``, ``partial_rotary_factor`` and
``rope_scaling`` only at the top level of ``config.json``; transformers 5
saves them under ``rope_parameters``, and such a checkpoint converts without
error into a model with the wrong rotary embedding (tiny phi4: max logit
error 3.29).  So the conversion reads a staged copy of the source
(:func:`stage_source`: the files linked, ``config.json`` rewritten with the
top-level keys), recorded as ``phi-get-mlx-fixup: rope-parameters-top-level``
in ``provenance.tools``.

Standard library at import time; numpy inside functions.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.recipe import VariantSpec

from .base import BuildContext, Produced
from .envs import ENVS
from .errors import BuildError
from .evaluate import GENERATE_TOKENS, runtime_quality, score_logits
from .staged import stage_config
from .steplog import log_path, run_step

__all__ = ["DTYPE_BYTES", "FIXUP", "MlxBackend", "convert_command", "rope_top_level", "run_in_env", "stage_source"]

DTYPE_BYTES: Final = {"float32": 4, "float16": 2, "bfloat16": 2, "f32": 4, "f16": 2, "bf16": 2, "u8": 1, "i8": 1}
_BITS: Final = {"int4": 4, "int8": 8}
#: What provenance.tools records when the source's config.json was fixed up for mlx-lm.
FIXUP: Final = {"phi-get-mlx-fixup": "rope-parameters-top-level"}


def run_in_env(cmd: list[str], what: str, log: Path, timeout: int = 3600) -> str:
    """Run a command of a backend env; its stdout, or a ToolchainError naming its full log (``log``)."""
    # Run away from phi-get's source tree, whose root folders (builders/ ...)
    # would shadow a tool's own top-level modules through sys.path[0].
    return run_step(cmd, what, log, cwd=Path(tempfile.gettempdir()), timeout=timeout)


def rope_top_level(config: dict[str, Any]) -> dict[str, Any]:
    """The top-level rope keys mlx-lm reads, derived from transformers 5's ``rope_parameters``.

    Returns only the keys to add or change ({} when the config needs no fix):
    ``rope_theta``, ``partial_rotary_factor``, and ``rope_scaling`` in the
    transformers 4 shape (``{"type": ..., factors ...}``, None for the
    default rope), as Phi-3.5-mini's and Phi-4-mini's Hub configs have them.
    """
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or "rope_theta" not in params:
        return {}  # the Hub layout, or a per-layer-type layout Phi3 does not use
    wanted: dict[str, Any] = {"rope_theta": params["rope_theta"]}
    if "partial_rotary_factor" in params:
        wanted["partial_rotary_factor"] = params["partial_rotary_factor"]
    rope_type = params.get("rope_type", params.get("type", "default"))
    scaling = {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor", "rope_type", "type")}
    wanted["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **scaling}
    return {k: v for k, v in wanted.items() if k not in config or config[k] != v}


def stage_source(src: Path, staging: Path) -> bool:
    """Make ``staging`` a copy of checkpoint ``src`` that mlx-lm reads right; True when a fix was needed.

    Every file is a symbolic link to the source's (no weights are copied)
    except ``config.json``, written with :func:`rope_top_level`'s keys added.
    Without a needed fix ``staging`` is not created and ``src`` is converted as is.
    """
    return stage_config(src, staging, rope_top_level(json.loads((src / "config.json").read_text("utf-8"))))


def driver_path(name: str) -> str:
    return str(resources.files("phi_get.builders").joinpath(f"drivers/{name}"))


def convert_command(python: Path, src: Path, dest: Path, spec: VariantSpec) -> list[str]:
    cmd = [str(python), "-m", "mlx_lm", "convert", "--hf-path", str(src), "--mlx-path", str(dest)]
    if str(spec.precision) in _BITS:
        group = spec.quantization.rsplit("-g", 1)[-1] if "-g" in spec.quantization else "64"
        cmd += ["-q", "--q-bits", str(_BITS[str(spec.precision)]), "--q-group-size", group]
    else:
        cmd += ["--dtype", "float16"]
    return cmd


def check_in_env(python: Path, driver: str, dest: Path, ctx: BuildContext, what: str,
                 variant: str) -> tuple[Any, dict[str, Any]]:
    """Run a check driver in its env: the artifact's logits and the driver's report."""
    import numpy as np

    logits_path = ctx.work / f".{dest.name}-logits.npy"
    try:
        out = run_in_env([str(python), driver_path(driver), str(dest), json.dumps(list(ctx.reference.ids)),
                          json.dumps(list(ctx.reference.prompt_ids)), str(GENERATE_TOKENS), str(logits_path)], what,
                         log_path(ctx.work, variant, what))
        report = json.loads(out.strip().splitlines()[-1])
        logits = np.load(logits_path)
    finally:
        logits_path.unlink(missing_ok=True)
    if report.get("tokens", 0) < 1:
        raise BuildError(f"{what}: the runtime generated no token from {dest}")
    return logits, report


class MlxBackend:
    toolchain = "mlx-lm"
    env = ENVS["mlx"]

    def unavailable(self, spec: VariantSpec) -> str | None:
        if str(spec.precision) not in (*_BITS, "fp16"):
            return f"the MLX builder makes 4-bit, 8-bit and fp16 variants, not {spec.precision}"
        if not sys.platform.startswith(("linux", "darwin")):
            return f"mlx runs on macOS and Linux (mlx[cpu]), not {sys.platform}"
        return None

    def tools(self, spec: VariantSpec) -> dict[str, str]:
        v = self.env.versions()
        # phi-get-mlx-backend 2: converts through stage_source (artifacts of 1 are rebuilt).
        return {**{d: v.get(d, "absent") for d in ("mlx", "mlx-lm", "transformers", "safetensors")},
                "phi-get-mlx-backend": "2"}

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        ctx.reporter(spec.id, "preparing the pinned mlx environment (first use takes minutes)")
        python = self.env.ensure()
        start = time.perf_counter()
        staging = dest.parent / f"{dest.name}-staging"  # mlx_lm refuses an existing output folder
        source = dest.parent / f"{dest.name}-source"  # the checkpoint as mlx-lm must see it
        try:
            fixed = stage_source(ctx.checkpoint.folder, source)
            src = source if fixed else ctx.checkpoint.folder
            run_in_env(convert_command(python, src, staging, spec), "mlx_lm convert",
                       log_path(ctx.work, spec.id, "mlx_lm convert"))
            for item in sorted(staging.iterdir()):
                item.rename(dest / item.name)
        finally:
            for folder in (staging, source):
                shutil.rmtree(folder, ignore_errors=True)  # removes the links, never what they point to
        toolchain = time.perf_counter() - start
        logits, report = check_in_env(python, "mlx_check.py", dest, ctx, "mlx-lm check", spec.id)
        metrics = score_logits(logits, ctx.reference)
        weights = sum(p.stat().st_size for p in dest.glob("*.safetensors"))
        quality = runtime_quality(metrics, ctx.reference, f"mlx-lm {report['mlx_lm']} cpu", report["text"])
        return Produced(weights_bytes=weights, kv_element_bytes=DTYPE_BYTES[report["kv_dtype"]], quality=quality,
                        tools=FIXUP if fixed else {}, toolchain_seconds=toolchain)
