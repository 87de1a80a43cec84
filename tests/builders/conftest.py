"""Builder fixtures: one real build of a fast subset of the tiny-phi matrix, shared by the tests.

The subset covers every backend that runs in the main environment (GGUF,
ONNX CPU and CUDA, safetensors); OpenVINO and MLX (own pinned environments)
are built in their own test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Built once per session; the tolerance tests and the manifest tests read these.
#: gguf-q8_0 (about 1 s) gives the quality figures an int8 point beside fp32, fp16 and int4.
FAST_SUBSET = "gguf-f32,gguf-f16,gguf-q8_0,gguf-q4_k_m,onnx-cpu-fp32,onnx-cuda-int4,safetensors-fp16"


@pytest.fixture(scope="session")
def built(tiny_phi: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """(OUT, results) of building FAST_SUBSET from the tiny checkpoint."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("onnxruntime_genai")
    from phi_get.builders.build import build_recipe

    out = tmp_path_factory.mktemp("build-out")
    results = build_recipe("tiny-phi", tiny_phi, out, only=FAST_SUBSET)
    return out, results


@pytest.fixture(scope="session")
def trained_phi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained tiny Phi-3 checkpoint (shipped weights, digest checked): the quality reference."""
    pytest.importorskip("torch")
    from phi_get.builders.trained import make_trained_phi

    return make_trained_phi(tmp_path_factory.mktemp("trained") / "tiny-phi-trained")
