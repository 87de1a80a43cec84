"""OpenVINO and MLX: built and run in their own pinned environments, versions recorded.

The environments live under <repo>/.envs/ and are created once from
builders/requirements/*.txt (minutes the first time), then reused.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from phi_get.builders.base import Outcome
from phi_get.builders.build import build_recipe
from phi_get.builders.envs import ENVS, pinned_versions
from phi_get.manifests.artifact import load_artifact_folder

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux pins")]


def test_pins_keep_the_conflicting_tools_apart() -> None:
    ov, mlx = pinned_versions("openvino"), pinned_versions("mlx")
    # optimum-intel caps transformers < 5.6 and huggingface-hub < 1.22; mlx-lm wants newer.
    assert ov["transformers"].startswith("5.5.") and ov["huggingface-hub"].startswith("1.21.")
    assert "torchvision" not in ov and "torch" not in ov  # torch comes from the CPU wheel first
    assert int(mlx["huggingface-hub"].split(".")[0]) >= 2 and "mlx-lm" in mlx


@pytest.fixture(scope="module")
def env_built(tiny_phi: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("env-out")
    results = build_recipe("tiny-phi", tiny_phi, out, only="openvino-int8,mlx-8bit")
    assert {r.variant: (r.outcome, r.reason) for r in results} == {
        "openvino-int8": (Outcome.BUILT, ""), "mlx-8bit": (Outcome.BUILT, "")}
    assert ENVS["openvino"].ready() and ENVS["mlx"].ready()
    return {r.variant: load_artifact_folder(r.folder) for r in results}


def test_openvino_artifact_ran_in_its_runtime(env_built: dict) -> None:
    m = env_built["openvino-int8"]
    assert m.quality.check == "runtime" and m.quality.evaluation["runtime"].startswith("openvino-genai 2026.")
    assert m.quality.metrics["top1_agreement"] > 0.8  # int8 weights: measured 0.95
    tools = m.provenance.tools
    assert tools["optimum-intel"] == pinned_versions("openvino")["optimum-intel"]
    assert tools["transformers"].startswith("5.5.") and tools["torch"] == "2.13.0"
    assert any(f.path == "openvino_model.xml" for f in m.files)
    # OpenVINO's CPU plugin keeps a u8 KV cache for compressed-weight models: 1 byte per element.
    assert m.memory.kv_bytes_per_token in (1024, 2048, 4096)


def test_mlx_artifact_ran_in_its_runtime(env_built: dict) -> None:
    m = env_built["mlx-8bit"]
    assert m.quality.check == "runtime" and m.quality.evaluation["runtime"].startswith("mlx-lm ")
    assert m.quality.metrics["top1_agreement"] > 0.8  # measured 0.95
    assert m.provenance.tools["mlx-lm"] == pinned_versions("mlx")["mlx-lm"]
    assert any(f.path == "model.safetensors" for f in m.files)
