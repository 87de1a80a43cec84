"""The tiny Phi checkpoint: one command, same bytes every time, a real Phi3ForCausalLM."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_one_command_gives_the_same_bytes(tiny_phi: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    proc = subprocess.run([sys.executable, "-m", "phi_get", "tiny-phi", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote tiny Phi-3 checkpoint" in proc.stdout
    assert digests(out) == digests(tiny_phi)


def test_checkpoint_shape(tiny_phi: Path) -> None:
    config = json.loads((tiny_phi / "config.json").read_text())
    assert config["architectures"] == ["Phi3ForCausalLM"]
    assert config["hidden_size"] % 256 == 0 and config["intermediate_size"] % 256 == 0
    assert {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "model.safetensors"} <= {
        p.name for p in tiny_phi.iterdir()}
    size = sum(p.stat().st_size for p in tiny_phi.iterdir())
    assert 1e6 < size < 20e6


def test_loads_with_transformers_and_generates(tiny_phi: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_phi)
    assert len(tok) == 512
    assert tok.tokenize("The registry")[0] == "▁The"
    model = AutoModelForCausalLM.from_pretrained(tiny_phi)
    assert type(model).__name__ == "Phi3ForCausalLM"
    ids = tok("The registry stores", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                             min_new_tokens=8)
    assert out.shape[1] == ids.shape[1] + 8
    assert isinstance(tok.decode(out[0][ids.shape[1]:]), str)


def test_refuses_to_overwrite(tiny_phi: Path) -> None:
    from phi_get.builders.errors import BuildError
    from phi_get.builders.tiny import make_tiny_phi

    with pytest.raises(BuildError, match="exists and is not empty; pass --force to replace it"):
        make_tiny_phi(tiny_phi)
