"""Bad input fails fast with a clear error, before any long work; plans list every variant."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from phi_get.builders.build import build_recipe
from phi_get.builders.checkpoint import open_source
from phi_get.builders.errors import CheckpointError
from phi_get.builders.plan import plan_recipe
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.recipe import load_recipe

PHI_GET = [sys.executable, "-m", "phi_get"]


@pytest.fixture()
def copy_of(tiny_phi: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "src"
    shutil.copytree(tiny_phi, dest)
    return dest


def _fails_fast(source: Path, out: Path, match: str) -> None:
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        build_recipe("tiny-phi", source, out)
    assert time.perf_counter() - start < 5, "bad input must be refused before long work"
    assert not out.exists() or not any(out.iterdir())


def test_not_a_phi3_checkpoint(copy_of: Path, tmp_path: Path) -> None:
    config = json.loads((copy_of / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (copy_of / "config.json").write_text(json.dumps(config))
    _fails_fast(copy_of, tmp_path / "out", r"not a Phi-3-family checkpoint: config.json architectures is "
                r"\['LlamaForCausalLM'\], expected \['Phi3ForCausalLM'\]")


def test_missing_tokenizer(copy_of: Path, tmp_path: Path) -> None:
    (copy_of / "tokenizer.model").unlink()
    (copy_of / "tokenizer.json").unlink()
    _fails_fast(copy_of, tmp_path / "out", r"no tokenizer in .*: expected one of tokenizer.model, tokenizer.json")


def test_truncated_safetensors(copy_of: Path, tmp_path: Path) -> None:
    path = copy_of / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    _fails_fast(copy_of, tmp_path / "out", r"corrupt safetensors file .*model.safetensors: tensors need \d+ bytes, "
                r"the file has \d+")


def test_garbage_safetensors_header(copy_of: Path, tmp_path: Path) -> None:
    (copy_of / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    _fails_fast(copy_of, tmp_path / "out", "header is not JSON")


def test_missing_folder_or_bad_repo_spec(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="neither a folder nor a Hugging Face repo"):
        open_source(tmp_path / "nope")


def test_unknown_variant_name_is_refused_before_reading_the_source(tmp_path: Path) -> None:
    # The source does not even exist: the variant filter is checked first.
    with pytest.raises(ManifestError, match=r"at --only: no variant of recipe 'tiny-phi' matches; its variants are: "
                       r"gguf-f16, .* \(got 'gguf-q3_k'\)"):
        build_recipe("tiny-phi", tmp_path / "nope", tmp_path / "out", only="gguf-q3_k")


def test_cli_bad_input_exit_code_and_message(copy_of: Path, tmp_path: Path) -> None:
    (copy_of / "config.json").write_text("{}")
    proc = subprocess.run([*PHI_GET, "build", "tiny-phi", "--source", str(copy_of), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: not a Phi-3-family checkpoint: config.json architectures is []")
    assert proc.stderr.count("error:") == 1


def test_plan_json_lists_every_variant_for_a_ci_matrix(tmp_path: Path) -> None:
    proc = subprocess.run([*PHI_GET, "build", "tiny-phi", "--plan", "--json"], capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["variant"] for e in entries] == [v.id for v in load_recipe("tiny-phi").variants]
    assert len(entries) == 20
    for e in entries:
        assert set(e) >= {"variant", "format", "toolchain", "buildable", "reason", "check", "command", "targets"}
        assert e["command"] == ["phi-get", "build", "tiny-phi", "--only", e["variant"]]
        assert e["buildable"] is (e["reason"] is None)
    checks = {e["variant"]: e["check"] for e in entries}
    assert {v for v, c in checks.items() if c == "structural"} == {
        "onnx-cuda-int4", "onnx-cuda-fp16", "onnx-dml-int4", "onnx-dml-fp16"}


def test_a_variant_the_toolchain_cannot_produce_is_reported_not_skipped(tmp_path: Path, tiny_phi: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # mlx-lm exists for macOS and Linux only: on Windows the MLX variants cannot be built.
    monkeypatch.setattr(sys, "platform", "win32")
    plan = {e.spec.id: e for e in plan_recipe(load_recipe("tiny-phi"), "tiny-phi", "mlx-*")}
    assert sorted(plan) == ["mlx-4bit", "mlx-8bit", "mlx-fp16"]
    assert plan["mlx-4bit"].reason == "mlx runs on macOS and Linux (mlx[cpu]), not win32"
    results = build_recipe("tiny-phi", tiny_phi, tmp_path / "out", only="mlx-4bit")
    assert [(r.variant, str(r.outcome), r.reason) for r in results] == [
        ("mlx-4bit", "unavailable", "mlx runs on macOS and Linux (mlx[cpu]), not win32")]
    assert not (tmp_path / "out" / "tiny-phi").exists()


def test_hub_source_that_cannot_be_fetched_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # No network here: offline mode makes the hub client refuse at once.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"cannot fetch microsoft/Phi-3.5-mini-instruct@abc123 from the Hugging Face"):
        open_source("microsoft/Phi-3.5-mini-instruct@abc123")
    assert time.perf_counter() - start < 30
