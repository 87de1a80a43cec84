"""ONNX for onnxruntime-genai: its model builder, then its runtime (or a structural check).

``python -m onnxruntime_genai.models.builder -i SRC -o DEST -p PRECISION -e EP``
writes the graph, its external weights, ``genai_config.json`` and the
tokenizer.  CPU variants are then loaded by onnxruntime-genai here, scored
against the PyTorch logits and made to generate.  CUDA and DirectML variants
cannot run on this machine: they pass onnx's checker, their genai_config
must name the right execution provider, and their manifest says they were
not run (quality.check = structural).

onnxruntime-genai 0.18's builder reads a LongRoPE checkpoint's
``rope_parameters["type"]``, the legacy key transformers 4 wrote; a config
made by transformers 5 names it ``rope_type`` only (``KeyError: 'type'``).
The builder then reads a staged copy of the source
(``staged.stage_config``: files linked, ``config.json`` with ``type`` added
beside ``rope_type``), recorded as ``phi-get-onnx-rope-fixup: rope-parameters-type``.

Imports onnx and onnxruntime_genai inside functions only; the builder runs
in a subprocess (it is a script with global state and heavy imports).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.recipe import VariantSpec

from .base import BuildContext, Produced, runs_here
from .errors import BuildError
from .evaluate import GENERATE_TOKENS, runtime_quality, score_logits, structural_quality
from .staged import stage_config
from .steplog import log_path, run_step

__all__ = ["EXECUTION_PROVIDERS", "ROPE_FIXUP", "OnnxBackend", "builder_command", "legacy_rope_type"]

#: Recipe provider -> the builder's -e value and genai_config's provider name.
EXECUTION_PROVIDERS: Final = {"cpu": ("cpu", None), "cuda": ("cuda", "cuda"), "dml": ("dml", "dml")}
_PRECISIONS: Final = {"int4": "int4", "fp32": "fp32", "fp16": "fp16"}
_ONNX_TO_BYTES: Final = {1: 4, 10: 2, 16: 2, 11: 8}  # TensorProto FLOAT, FLOAT16, BFLOAT16, DOUBLE
_TOOL_DISTS: Final = ("onnxruntime-genai", "onnxruntime", "onnx", "onnx-ir", "transformers", "torch")
#: What provenance.tools records when the builder read a staged config.json (legacy_rope_type).
ROPE_FIXUP: Final = {"phi-get-onnx-rope-fixup": "rope-parameters-type"}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def builder_command(src: Path, dest: Path, cache: Path, spec: VariantSpec) -> list[str]:
    ep, _ = EXECUTION_PROVIDERS[spec.runtime.provider]
    return [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(dest),
            "-p", _PRECISIONS[str(spec.precision)], "-e", ep, "-c", str(cache)]


def legacy_rope_type(config: dict[str, Any]) -> dict[str, Any]:
    """config.json keys to change so the genai builder finds ``rope_parameters["type"]``; {} when it does.

    Only a scaled rope needs it (the builder reads ``type`` for LongRoPE's
    magnitude-scaling policy); it gets the value of ``rope_type``.
    """
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or "type" in params or params.get("rope_type", "default") == "default":
        return {}
    return {"rope_parameters": {**params, "type": params["rope_type"]}}


def _run_builder(cmd: list[str], cwd: Path, log: Path) -> None:
    # ``python -m`` puts the working directory first on sys.path, and the
    # genai builder imports its own top-level ``builders`` package: run it
    # away from phi-get's source tree (whose root has a ``builders`` folder).
    # The builder stamps ``git rev-parse HEAD`` of the folder five levels above
    # its own file into the graph's producer_version: with a virtualenv inside
    # a git checkout (phi-get's .venv) that is phi-get's commit, so every
    # commit would change model.onnx.  Without git metadata it stamps its own
    # packaged commit, which is right and reproducible.
    env = {**os.environ, "GIT_DIR": os.devnull}
    run_step(cmd, "onnxruntime-genai's model builder", log, cwd=cwd, env=env)


def fix_lm_head_input(model_path: Path) -> bool:
    """Feed the LM head from the final norm; True when the builder had wired it elsewhere.

    onnxruntime-genai 0.18's builder, run beside transformers 5, wires
    ``/lm_head/MatMul`` to the first layer's post-attention norm instead of the
    final norm (found by the fp32 logits check: max error 5 vs 0.00001 per
    layer).  The graph is otherwise right, so phi-get rewires that one input
    and records the fix in provenance.  The weights (external data) are untouched.
    """
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    heads = [n for n in model.graph.node if n.name.startswith("/lm_head/MatMul")]
    finals = [n for n in model.graph.node if "final_norm_layernorm" in n.name]
    if len(heads) != 1 or len(finals) != 1:
        raise BuildError(f"{model_path}: expected one /lm_head/MatMul* and one final norm node, found "
                         f"{len(heads)} and {len(finals)}")
    head, final_out = heads[0], finals[0].output[0]
    if head.input[0] == final_out:
        return False
    head.input[0] = final_out
    _topological_sort(model.graph)
    tmp = model_path.with_name(model_path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(model_path)
    return True


def _topological_sort(graph: Any) -> None:
    """Reorder nodes so each comes after the producers of its inputs (stable)."""
    produced = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in produced for i in n.input)]
        if not ready:
            raise BuildError("the ONNX graph has a cycle or an input no node produces")
        for node in ready:
            produced.update(node.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _kv_element_bytes(model_path: Path) -> int:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    for value in graph.input:
        if value.name.startswith("past_key_values"):
            return _ONNX_TO_BYTES[value.type.tensor_type.elem_type]
    raise BuildError(f"{model_path} has no past_key_values input: not a genai decoder")


def _register_ort_schemas() -> None:
    """Teach onnx's checker onnxruntime's one contrib op in the default domain.

    The genai builder emits ``SimplifiedLayerNormalization`` (RMSNorm) in the
    default ONNX domain; onnxruntime defines it, the ONNX standard does not.
    Its real signature is registered so the checker validates those nodes
    instead of rejecting them; every other op must be a standard or a
    ``com.microsoft`` op.
    """
    from onnx import defs

    if defs.has("SimplifiedLayerNormalization"):
        return
    param = defs.OpSchema.FormalParameter
    optional = defs.OpSchema.FormalParameterOption.Optional
    attr, kind = defs.OpSchema.Attribute, defs.OpSchema.AttrType
    schema = defs.OpSchema(
        "SimplifiedLayerNormalization", "", 1,
        "onnxruntime's RMSNorm (onnxruntime/core/graph/contrib_ops)",
        inputs=[param("X", "T"), param("scale", "V")],
        outputs=[param("Y", "V"), param("inv_std_var", "U", param_option=optional)],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"], ""),
                          ("U", ["tensor(float)", "tensor(double)"], ""),
                          ("V", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"], "")],
        attributes=[attr("axis", kind.INT, "", required=False), attr("epsilon", kind.FLOAT, "", required=False),
                    attr("stash_type", kind.INT, "", required=False)],
    )
    defs.register_schema(schema)


def check_structure(dest: Path, provider: str) -> None:
    """onnx's checker on the graph, and genai_config naming the execution provider."""
    import onnx

    _register_ort_schemas()
    onnx.checker.check_model(str(dest / "model.onnx"), full_check=False)
    config = json.loads((dest / "genai_config.json").read_text("utf-8"))
    options = config["model"]["decoder"]["session_options"].get("provider_options", [])
    named = {key for entry in options for key in entry}
    _, expected = EXECUTION_PROVIDERS[provider]
    if expected is not None and expected not in named:
        raise BuildError(f"genai_config.json names providers {sorted(named)}, expected {expected!r}")
    if expected is None and named:
        raise BuildError(f"genai_config.json of a CPU model names providers {sorted(named)}")


def run_genai(dest: Path, ctx: BuildContext) -> tuple[Any, str]:
    """Load with onnxruntime-genai: logits of the evaluation ids, and a greedy generation."""
    import numpy as np
    import onnxruntime_genai as og

    model = og.Model(str(dest))
    ids = list(ctx.reference.ids)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 1, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    logits = np.asarray(gen.get_output("logits"), dtype=np.float32)[0]
    del gen
    prompt = list(ctx.reference.prompt_ids)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + GENERATE_TOKENS, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(prompt)
    new: list[int] = []
    while not gen.is_done() and len(new) < GENERATE_TOKENS:
        gen.generate_next_token()
        new.append(int(gen.get_next_tokens()[0]))
    if not new:
        raise BuildError(f"onnxruntime-genai generated no token from {dest}")
    return logits, og.Tokenizer(model).decode(np.asarray(new, dtype=np.int32))


class OnnxBackend:
    toolchain = "onnxruntime-genai"

    def unavailable(self, spec: VariantSpec) -> str | None:
        if spec.runtime.provider not in EXECUTION_PROVIDERS:
            return f"onnxruntime-genai's builder has no execution provider {spec.runtime.provider!r}"
        if str(spec.precision) not in _PRECISIONS:
            return f"onnxruntime-genai's builder has no precision {spec.precision}"
        for dist in ("onnxruntime-genai", "onnx", "onnx-ir"):
            if _version(dist) == "absent":
                return f"{dist} is not installed (pip install 'phi-get[build]')"
        return None

    def tools(self, spec: VariantSpec) -> dict[str, str]:
        # The backend's own revision: bumped when phi-get changes what it does to the bytes.
        return {**{d: _version(d) for d in _TOOL_DISTS}, "phi-get-onnx-backend": "2"}

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="genai-cache-", dir=ctx.work.parent) as cache:
            staging, source = Path(cache) / "out", Path(cache) / "source"
            config = json.loads((ctx.checkpoint.folder / "config.json").read_text("utf-8"))
            rope_fixed = stage_config(ctx.checkpoint.folder, source, legacy_rope_type(config))
            src = source if rope_fixed else ctx.checkpoint.folder
            _run_builder(builder_command(src, staging, Path(cache) / "hf", spec), Path(cache),
                         log_path(ctx.work, spec.id, "genai-builder"))
            for item in sorted(staging.iterdir()):
                shutil.move(str(item), dest / item.name)
        fixed = fix_lm_head_input(dest / "model.onnx")
        toolchain = time.perf_counter() - start
        tools = {**({"phi-get-onnx-fixup": "lm-head-input"} if fixed else {}), **(ROPE_FIXUP if rope_fixed else {})}
        check_structure(dest, spec.runtime.provider)
        weights = sum(p.stat().st_size for p in dest.iterdir() if p.name.startswith("model.onnx"))
        kv_bytes = _kv_element_bytes(dest / "model.onnx")
        runtime = f"onnxruntime-genai {_version('onnxruntime-genai')} {spec.runtime.provider}"
        if not runs_here(spec):
            note = (f"built for the {spec.runtime.provider} execution provider, which this machine lacks: "
                    "validated structurally (onnx.checker passed, genai_config names the provider), never run")
            return Produced(weights_bytes=weights, kv_element_bytes=kv_bytes, quality=structural_quality(runtime, note),
                            tools=tools, toolchain_seconds=toolchain)
        logits, text = run_genai(dest, ctx)
        metrics = score_logits(logits, ctx.reference)
        return Produced(weights_bytes=weights, kv_element_bytes=kv_bytes,
                        quality=runtime_quality(metrics, ctx.reference, runtime, text), tools=tools,
                        toolchain_seconds=toolchain)
