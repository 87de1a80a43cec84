"""`phi-get run`: install the tiny Phi checkpoint as a safetensors artifact, load it with transformers, generate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import phi_get
import pytest
from phi_get.resolver.errors import RuntimeMissingError
from phi_get.resolver.run import generate
from phi_get.resolver.store import Store


@pytest.mark.slow
def test_run_generates_with_transformers(tiny_phi: Path, tmp_path: Path, home: Path, kit: Any) -> None:
    files: dict[str, bytes | Path] = {p.name: p for p in sorted(tiny_phi.iterdir()) if p.is_file()}
    m = kit.make_manifest("tiny-phi", "0.1.0", "safetensors-fp32", files, runtime=("transformers", ">=4.40"))
    mirror = kit.write_mirror(tmp_path / "mirror", [(m, files)])
    phi_get.install("tiny-phi", registry=mirror.as_uri(), device="pi-board")
    env = {**os.environ, "PHI_GET_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "phi_get", "run", "tiny-phi", "--prompt", "The cat", "--max-tokens",
                          "8", "--json"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["runtime"] == "transformers" and doc["new_tokens"] == 8 and doc["text"]
    again = subprocess.run([sys.executable, "-m", "phi_get", "run", "tiny-phi", "--prompt", "The cat",
                            "--max-tokens", "8", "--json"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert json.loads(again.stdout)["text"] == doc["text"]  # greedy: deterministic


def test_missing_runtime_names_the_package(tmp_path: Path, home: Path, kit: Any) -> None:
    files: dict[str, bytes | Path] = {"weights.safetensors": b"x" * 100, "config.json": b"{}"}
    m = kit.make_manifest("mlx-model", "1.0.0", "mlx-4bit", files, format="mlx", precision="int4",
                          targets=("metal",), runtime=("mlx-lm", ">=0.20"))
    mirror = kit.write_mirror(tmp_path / "mirror", [(m, files)])
    path = phi_get.install("mlx-model", registry=mirror.as_uri(), device="apple-laptop")
    store = Store(home)
    with pytest.raises(RuntimeMissingError, match=r"mlx-model 1\.0\.0 mlx-4bit needs the runtime 'mlx-lm' "
                                                  r"\(module 'mlx_lm'\), which is not installed") as exc:
        generate(path, store.load(store.find("mlx-model")), "hi")
    assert exc.value.hint == "pip install mlx-lm"


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "runtime", "module"), [
    ("gguf-q4_k_m", "llama-cpp-python", "llama_cpp"), ("onnx-cpu-int4", "onnxruntime-genai", "onnxruntime_genai")])
def test_run_builders_artifacts(variant: str, runtime: str, module: str, tiny_phi: Path, tmp_path: Path,
                                home: Path, kit: Any) -> None:
    """Real GGUF and ONNX artifacts from `phi-get build`, installed from a mirror and run by their runtimes."""
    import importlib.util

    from phi_get.manifests.artifact import find_artifact_folders, load_artifact_folder

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{runtime} is not installed")
    built = subprocess.run([sys.executable, "-m", "phi_get", "build", "tiny-phi", "--source", str(tiny_phi),
                            "--out", str(tmp_path / "out"), "--only", variant], capture_output=True, text=True,
                           timeout=600, check=False)
    if built.returncode != 0 and "No such command 'build'" in built.stderr:
        pytest.skip("the builders part is not installed")
    assert built.returncode == 0, built.stderr[-2000:]
    arts = []
    for folder in find_artifact_folders(tmp_path / "out"):
        m = load_artifact_folder(folder)
        arts.append((m, {f.path: folder / f.path for f in m.files}))
    mirror = kit.write_mirror(tmp_path / "mirror", arts)
    phi_get.install("tiny-phi", registry=mirror.as_uri(), device="gpu-server")
    out = subprocess.run([sys.executable, "-m", "phi_get", "run", "tiny-phi", "--prompt", "The cat", "--max-tokens",
                          "6", "--json"], capture_output=True, text=True, env={**os.environ, "PHI_GET_HOME": str(home)},
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    # The tiny model does not end "The cat" within 6 tokens (greedy), so every runtime must count exactly 6.
    assert doc["variant"] == variant and doc["runtime"] == runtime and doc["new_tokens"] == 6 and doc["text"]
