"""The build plan's per-variant memory and disk: measured where the bench measured, else estimated.

``builders/data/build_costs.json`` holds two measured builds per model and
variant (``bench/build_real_scale.py --write-costs``); the plan draws the
line through them in the parameter count.  No build here: the figures are
data, and these tests hold the plan to them and the data to the checkpoints
it was measured on.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

PHI_GET = [sys.executable, "-m", "phi_get"]


def _plan(recipe: str, only: str, tmp_path: object) -> dict[str, dict]:
    proc = subprocess.run([*PHI_GET, "build", recipe, "--plan", "--json", "--only", only, "--source", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return {doc["variant"]: doc for doc in map(json.loads, proc.stdout.splitlines())}


def test_measured_points_are_of_the_real_dimension_checkpoints() -> None:
    """Each measured point's parameter count is that of `tiny-phi --like MODEL --layers N`."""
    from phi_get.builders.plan import build_costs
    from phi_get.builders.tiny_real import real_model, tensor_shapes

    costs = build_costs()["costs"]
    assert "phi-3.5-mini" in costs and "gguf-q4_k_m" in costs["phi-3.5-mini"]
    for model, variants in costs.items():
        for variant, m in variants.items():
            for layers, params in zip(m["layers"], m["parameters"], strict=True):
                shapes = tensor_shapes({**real_model(model)["config"], "num_hidden_layers": layers})
                assert params == sum(math.prod(s) for _n, s in shapes), (model, variant)
            assert all(v > 0 for v in (*m["memory_bytes"], *m["disk_bytes"]))


@pytest.mark.parametrize("recipe", ["phi-3.5-mini", "phi-4-mini"])
def test_plan_extrapolates_the_measurements_to_the_recipes_parameters(recipe: str, tmp_path: object) -> None:
    from phi_get.builders.plan import build_costs
    from phi_get.manifests.recipe import load_recipe

    costs = build_costs()["costs"]
    measured = sorted(set(costs.get(recipe, {})) | set(costs["phi-3.5-mini"]))
    docs = _plan(recipe, ",".join(measured), tmp_path)
    params = load_recipe(recipe).architecture["parameters"]
    for variant in measured:
        model = recipe if variant in costs.get(recipe, {}) else "phi-3.5-mini"
        m = costs[model][variant]
        (p1, p2), needs = m["parameters"], docs[variant]["needs"]
        for key in ("memory_bytes", "disk_bytes"):
            y1, y2 = m[key]
            # the line, floored at the larger measurement (Phi-4-mini's openvino-int4: 7.98 GB at 1 layer, 7.95 at 2)
            assert needs[key] == max(round(y1 + (y2 - y1) * (params - p1) / (p2 - p1)), y1, y2), (variant, key)
            assert needs[key] >= max(y1, y2)
        assert docs[variant]["needs_basis"].startswith("measured: ") and model in docs[variant]["needs_basis"]


def test_a_variant_never_measured_says_its_figures_are_estimated(tmp_path: object) -> None:
    from phi_get.builders.plan import build_costs

    assert "onnx-cuda-fp16" not in build_costs()["costs"]["phi-3.5-mini"]
    doc = _plan("phi-3.5-mini", "onnx-cuda-fp16", tmp_path)["onnx-cuda-fp16"]
    assert doc["needs_basis"].startswith("estimated: ")
    assert doc["needs"]["memory_bytes"] == 8 * 3821079552
