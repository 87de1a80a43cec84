"""What the real-dimension builds found, held on the cheapest inputs that show it.

- onnxruntime-genai 0.18's builder reads ``rope_parameters["type"]`` of a
  LongRoPE config, which a config made by transformers 5 does not have
  (``KeyError: 'type'``): phi-get hands it a staged config with the key.
  Shown on the tiny Phi-3 checkpoint with LongRoPE in transformers 5's layout.
- A failed toolchain step keeps its full log in the work folder and its error
  names the log and the failing frame: the same upstream KeyError, with the
  fix turned off, and an exception raised inside a backend.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def tiny_longrope_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Phi-3 checkpoint with LongRoPE, config.json as transformers 5 writes it (rope_parameters)."""
    pytest.importorskip("torch")
    from phi_get.builders import tiny

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiny, "_hub_rope_layout", lambda path: None)  # keep transformers 5's layout
        folder = tiny.make_tiny_phi(tmp_path_factory.mktemp("lr-t5") / "tiny-longrope-t5",
                                    tiny.TinySpec(longrope_original_context=1024))
    params = json.loads((folder / "config.json").read_text())["rope_parameters"]
    assert params["rope_type"] == "longrope" and "type" not in params
    return folder


def test_legacy_rope_type_is_added_only_where_the_builder_needs_it() -> None:
    from phi_get.builders.onnx_genai import legacy_rope_type

    t5 = {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4, "short_factor": [1.0], "long_factor": [2.0]}}
    assert legacy_rope_type(t5) == {"rope_parameters": {**t5["rope_parameters"], "type": "longrope"}}
    assert legacy_rope_type({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4}}) == {}
    assert legacy_rope_type({"rope_parameters": {**t5["rope_parameters"], "type": "longrope"}}) == {}
    assert legacy_rope_type({"rope_scaling": {"type": "longrope"}, "rope_theta": 1e4}) == {}  # the Hub layout


def test_onnx_builds_a_transformers5_longrope_checkpoint(tiny_longrope_t5: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime_genai")
    from phi_get.builders.build import build_recipe
    from phi_get.builders.onnx_genai import ROPE_FIXUP
    from phi_get.manifests.artifact import load_artifact_folder

    before = (tiny_longrope_t5 / "config.json").read_bytes()
    [result] = build_recipe("tiny-phi", tiny_longrope_t5, tmp_path / "out", only="onnx-cpu-fp32")
    assert result.outcome == "built", result.reason
    manifest = load_artifact_folder(result.folder)
    assert {k: manifest.provenance.tools[k] for k in ROPE_FIXUP} == ROPE_FIXUP
    # The LongRoPE graph computes transformers' logits (short factors at this length).
    assert manifest.quality.metrics["max_abs_logit_error"] < 1e-3
    assert (tiny_longrope_t5 / "config.json").read_bytes() == before  # the source is untouched


def test_a_failed_toolchain_step_keeps_its_log_and_names_the_failing_frame(
        tiny_longrope_t5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the fix, the genai builder's own KeyError: the error shows where, the log has it all."""
    pytest.importorskip("onnxruntime_genai")
    from phi_get.builders import onnx_genai
    from phi_get.builders.build import build_recipe

    monkeypatch.setattr(onnx_genai, "legacy_rope_type", lambda config: {})
    [result] = build_recipe("tiny-phi", tiny_longrope_t5, tmp_path / "out", only="onnx-cpu-fp32")
    assert result.outcome == "failed"
    m = re.fullmatch(r"onnxruntime-genai's model builder failed \(exit 1\) in make_rope_init "
                     r"\((?P<file>\S+/builders/phi\.py):(?P<line>\d+)\): KeyError: 'type'; full log: (?P<log>\S+)",
                     result.reason)
    assert m, result.reason
    log = Path(m["log"])
    assert log.parent == tmp_path / "out" / ".work" / log.parent.parent.name / "logs"
    assert log.name == "onnx-cpu-fp32.genai-builder.log"
    text = log.read_text()
    assert "exit status: 1" in text and "Traceback (most recent call last)" in text
    assert f'File "{m["file"]}", line {m["line"]}, in make_rope_init' in text
    assert "--- stdout ---" in text and "-i" in text  # the command and both streams


class _Exploding:
    toolchain = "test-toolchain"

    def unavailable(self, spec: Any) -> None:
        return None

    def tools(self, spec: Any) -> dict[str, str]:
        return {}

    def build(self, spec: Any, ctx: Any, dest: Path) -> Any:
        return [][0]  # the IndexError the mlx check raised at real dimensions, here on purpose


def test_an_exception_inside_a_backend_keeps_its_traceback(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from phi_get.builders.backends import _Logged
    from phi_get.builders.steplog import ToolchainError

    ctx = SimpleNamespace(work=tmp_path / "work")
    with pytest.raises(ToolchainError) as info:
        _Logged(_Exploding()).build(SimpleNamespace(id="mlx-4bit"), ctx, tmp_path)  # type: ignore[arg-type]
    err = info.value
    assert err.frame is not None and err.frame.function == "build" and err.frame.file == __file__
    assert str(err) == (f"the test-toolchain build of mlx-4bit failed in build ({__file__}:{err.frame.line}): "
                        f"IndexError: list index out of range; full log: {err.log}")
    assert err.log == tmp_path / "work" / "logs" / "mlx-4bit.build.log"
    assert "return [][0]" in err.log.read_text() and "Traceback (most recent call last)" in err.log.read_text()


def test_last_frame_reads_the_innermost_frame_of_the_last_traceback() -> None:
    from phi_get.builders.steplog import Frame, last_frame

    text = ('Traceback (most recent call last):\n  File "/a.py", line 3, in <module>\n    f()\n'
            '  File "/b/c.py", line 12, in f\n    x[1]\nIndexError: list index out of range\n')
    assert last_frame(text) == Frame(file="/b/c.py", line=12, function="f")
    assert str(last_frame(text)) == "f (/b/c.py:12)"
    assert last_frame("Segmentation fault") is None


# -- MLX: ids past the tokenizer's --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_padded(tiny_phi: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Phi-3 checkpoint with 64 padding rows past its tokenizer (as Phi-3.5-mini's 32064 for 32011),
    the padding rows of the LM head dominant, so greedy generation picks padding ids (as random weights do)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("padded") / "tiny-padded"
    shutil.copytree(tiny_phi, folder)
    config = json.loads((folder / "config.json").read_text())
    n = config["vocab_size"]
    config["vocab_size"] = n + 64
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tensors = load_file(str(folder / "model.safetensors"))
    gen = torch.Generator().manual_seed(0)
    embed, head = tensors["model.embed_tokens.weight"], tensors["lm_head.weight"]
    pad = torch.randn((64, embed.shape[1]), generator=gen, dtype=embed.dtype) * 0.06
    tensors["model.embed_tokens.weight"] = torch.cat([embed, pad])
    tensors["lm_head.weight"] = torch.cat([head * 0.05, pad * 4])
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the MLX environment is pinned for Linux")
def test_mlx_detokenizer_cannot_take_an_id_past_the_tokenizer(tiny_phi: Path) -> None:
    """The upstream limit (mlx-lm 0.32.2): its streaming detokenizer raises on a padding id."""
    import subprocess

    from phi_get.builders.mlx import MlxBackend

    python = MlxBackend.env.ensure()
    code = ("import sys; from pathlib import Path; from mlx_lm.tokenizer_utils import load; "
            "t = load(Path(sys.argv[1])); d = t.detokenizer; d.add_token(len(t._tokenizer))")
    proc = subprocess.run([str(python), "-c", code, str(tiny_phi)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stderr.rstrip().endswith("IndexError: list index out of range"), proc.stderr
    assert "in add_token" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the MLX environment is pinned for Linux")
def test_mlx_check_generates_from_a_config_padded_past_its_tokenizer(tiny_padded: Path, tmp_path: Path) -> None:
    from phi_get.builders.build import build_recipe
    from phi_get.manifests.artifact import load_artifact_folder

    [result] = build_recipe("tiny-phi", tiny_padded, tmp_path / "out", only="mlx-fp16")
    assert result.outcome == "built", result.reason
    manifest = load_artifact_folder(result.folder)
    # The scored logits are the model's own (padding rows included): fp16 of transformers'.
    assert manifest.quality.metrics["max_abs_logit_error"] < 0.2
