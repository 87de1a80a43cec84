"""The memory a manifest claims is the memory its runtime takes.

A one-layer checkpoint of Phi-3.5-mini's real dimensions (hidden 3072,
intermediate 8192, 32 heads, vocabulary 32,064: about 0.6 GB in bf16) is
built, and each artifact is run by its own runtime in a fresh process
(``resolver/runmemory.py``: peak RSS above the interpreter with the runtime
imported) at two contexts, prompt filling the window but for 4 generated
tokens.  The manifest's ``memory.total_bytes(context)``, the resolver's
formula, must be within 15 % above and 5 % below the measured peak.

No allowance: the prompt is distinct words spread over the vocabulary
(``runmemory.spread_prompt``), so the rows of an untied input embedding a
memory-mapping runtime reads (transformers' safetensors: Phi-3.5-mini's
197 MB table) are resident as a real prompt makes them, and the measurement
is held to the bound as it is.

What this test covers: **every variant of the recipe with a CPU target**
(12 of Phi-3.5-mini's 19: gguf-f16/q8_0/q5_k_m/q4_k_m/q4_0, onnx-cpu-int4/fp32,
openvino-int4/int8/fp16, safetensors-fp16/bf16), built with the quality gate
off for this build only: on random weights the int4 variants miss the
gate's top-1 floor and bf16 its logit tolerance (a quality fact, held by
the gate's own tests), while the memory a runtime takes does not depend on
the weights' values.  Phi-4-mini's 200,064-token vocabulary is measured by
``bench/runtime_memory.py`` (its table is in builders/README.md, "Quality and
memory").  MLX is not run here: its builds target Metal only.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

MODEL = "phi-3.5-mini"


def _cpu_variants() -> tuple[str, ...]:
    from phi_get.manifests.recipe import load_recipe

    return tuple(v.id for v in load_recipe(MODEL).variants if any(t.startswith("cpu-") for t in v.targets))


VARIANTS = _cpu_variants()
CONTEXTS = (512, 2048)


def test_every_cpu_runnable_variant_of_the_recipe_is_held_to_the_bound() -> None:
    """The list comes from the recipe's targets; a recipe change that drops one shows here."""
    assert len(VARIANTS) == 12 and {"gguf-q5_k_m", "onnx-cpu-int4", "openvino-fp16", "safetensors-bf16"} <= set(VARIANTS)


@pytest.fixture(scope="module")
def real_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one-layer checkpoint and its 12 builds (about 7 GB), removed when this module is done."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("tokenizers")
    from phi_get.builders import build
    from phi_get.builders.tiny import TinySpec, make_tiny_phi

    root = tmp_path_factory.mktemp("runtime-memory")
    ckpt = make_tiny_phi(root / "phi-3.5-mini-1", TinySpec.like(MODEL, layers=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "quality_gate", lambda spec, quality: None)  # random weights: see the docstring
        results = build.build_recipe(MODEL, ckpt, root / "out", only=",".join(VARIANTS))
    assert [(r.variant, str(r.outcome)) for r in results] == [(v, "built") for v in VARIANTS], results
    yield root / "out" / MODEL / "1.0.0"
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_manifest_bounds_the_runtimes_peak_at_two_contexts(real_build: Path, variant: str) -> None:
    from phi_get.builders.envs import runtime_python
    from phi_get.manifests.artifact import load_artifact_folder
    from phi_get.resolver.runmemory import OVER, UNDER, error_of, measure_run

    folder = real_build / variant
    m = load_artifact_folder(folder)
    assert m.memory.overhead_bytes + m.memory.compute_bytes_per_token > 0  # the builder wrote the runtime's terms
    for context in CONTEXTS:
        run = measure_run(folder, context, python=runtime_python(str(m.format)))
        assert run.hwm_reset
        assert context - 8 <= run.prompt_tokens + run.new_tokens <= context  # the window was filled
        claimed, measured = m.memory.total_bytes(context), run.measured_bytes
        why = (f"{variant} at {context}: claimed {claimed / 1e6:.1f} MB, measured {measured / 1e6:.1f} MB "
               f"({error_of(claimed, measured):+.1%})")
        assert error_of(claimed, measured) >= -UNDER, why
        assert error_of(claimed, measured) <= OVER, why
