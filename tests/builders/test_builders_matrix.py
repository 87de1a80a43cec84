"""A real build of the fast subset: artifacts, manifests, tolerances, structural variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from phi_get.builders.base import Outcome
from phi_get.builders.checkpoint import local_digest
from phi_get.manifests.artifact import find_artifact_folders, load_artifact_folder
from phi_get.manifests.recipe import load_recipe

pytestmark = pytest.mark.slow

#: Logit tolerances against the fp32 PyTorch reference, in logits (the
#: tiny model's logits have a standard deviation of about 1).  Measured here:
#: gguf-f32 0.0036, gguf-f16 0.0068, onnx-cpu-fp32 0.0000064.
TOLERANCE = {"gguf-f32": 1e-2, "gguf-f16": 5e-2, "onnx-cpu-fp32": 1e-4}


def _manifests(out: Path) -> dict[str, object]:
    return {m.variant: m for m in (load_artifact_folder(f) for f in find_artifact_folders(out))}


def test_every_selected_variant_is_built(built: tuple[Path, list]) -> None:
    out, results = built
    built = ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "onnx-cpu-fp32", "onnx-cuda-int4", "safetensors-fp16", "gguf-f32")
    assert {r.variant: r.outcome for r in results} == dict.fromkeys(built, Outcome.BUILT)
    assert sorted(_manifests(out)) == sorted(r.variant for r in results)
    # No temporary or half-written folder next to the finished ones.
    assert sorted(p.name for p in (out / "tiny-phi" / "0.1.0").iterdir()) == sorted(r.variant for r in results)


@pytest.mark.parametrize("variant", sorted(TOLERANCE))
def test_unquantized_logits_match_pytorch(built: tuple[Path, list], variant: str) -> None:
    m = _manifests(built[0])[variant]
    assert m.quality.check == "runtime"
    assert m.quality.metrics["max_abs_logit_error"] <= TOLERANCE[variant]
    assert abs(m.quality.metrics["perplexity"] - m.quality.metrics["reference_perplexity"]) < 1.0


def test_quantized_variant_is_measured_not_assumed(built: tuple[Path, list]) -> None:
    m = _manifests(built[0])["gguf-q4_k_m"].quality.metrics
    # 4-bit weights move the logits: the metric shows it (measured 1.5 / 0.54).
    assert 0.1 < m["max_abs_logit_error"] < 5
    assert 0.2 < m["top1_agreement"] < 1.0


def test_manifest_fields_are_real(built: tuple[Path, list], tiny_phi: Path) -> None:
    out, _ = built
    recipe = load_recipe("tiny-phi")
    for variant, m in _manifests(out).items():
        spec = recipe.variant(variant)
        prov = m.provenance
        assert prov.source.local_sha256 == local_digest(tiny_phi)
        assert dict(prov.recipe) == spec.to_json()
        assert prov.builder == "phi-get 0.1.0" and prov.created.endswith("Z")
        assert all(v and v != "absent" for v in prov.tools.values()), prov.tools
        assert m.architecture["class"] == "Phi3ForCausalLM" and m.architecture["layers"] == 2
        assert m.memory.max_context == 2048
        if m.quality.check == "runtime":
            assert m.quality.evaluation["tokens"] == "111"
            assert {"perplexity", "reference_perplexity", "top1_agreement", "max_abs_logit_error"} <= set(
                m.quality.metrics)
    gguf = _manifests(out)["gguf-q4_k_m"]
    assert gguf.memory.weights_bytes == gguf.files[0].size
    # llama.cpp's f16 KV cache: 2 * layers 2 * kv_heads 4 * head_dim 64 * 2 bytes.
    assert gguf.memory.kv_bytes_per_token == 2048
    assert {"gguf", "llama-cpp-python"} <= set(gguf.provenance.tools)
    # ORT CPU fp32 keeps an fp32 cache (read from the graph's past_key_values inputs).
    assert _manifests(out)["onnx-cpu-fp32"].memory.kv_bytes_per_token == 4096


def test_hardware_absent_variant_is_structural(built: tuple[Path, list]) -> None:
    out, _ = built
    m = _manifests(out)["onnx-cuda-int4"]
    assert m.quality.check == "structural" and not m.quality.metrics
    assert "never run" in m.quality.note
    folder = out / "tiny-phi" / "0.1.0" / "onnx-cuda-int4"
    config = json.loads((folder / "genai_config.json").read_text())
    assert any("cuda" in entry for entry in config["model"]["decoder"]["session_options"]["provider_options"])
    assert m.memory.kv_bytes_per_token == 2048  # fp16 cache on CUDA


def test_onnx_graph_does_not_carry_the_checkout_commit(built: tuple[Path, list]) -> None:
    # onnxruntime-genai's builder stamps the git HEAD above its install folder
    # (phi-get's own checkout when .venv lives inside it): that would make
    # model.onnx change with every phi-get commit.
    import onnx
    import onnxruntime_genai

    graph = onnx.load(str(built[0] / "tiny-phi" / "0.1.0" / "onnx-cpu-fp32" / "model.onnx"), load_external_data=False)
    packaged = getattr(onnxruntime_genai, "__commit__", "") or ""
    expected = onnxruntime_genai.__version__ + (f"+{packaged[:7]}" if packaged else "")
    assert graph.producer_version == expected
