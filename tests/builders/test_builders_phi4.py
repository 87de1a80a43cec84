"""Phi-4-mini support: the tiny Phi-4-style checkpoint and what the builders make of it.

Phi-4-mini differs from Phi-3 in grouped-query attention, partial rotary
embeddings (factor 0.75), tied word embeddings, LongRoPE scaling and a
GPT-2-style byte-level BPE tokenizer (tokenizer.json, no tokenizer.model).
The tiny ``phi4`` style has all of them; one checkpoint is generated per
session through the CLI and shared by every test here.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PHI_GET = [sys.executable, "-m", "phi_get"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="session")
def tiny_phi4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Phi-4-style checkpoint, as `phi-get tiny-phi OUT --style phi4` writes it."""
    pytest.importorskip("tokenizers")
    out = tmp_path_factory.mktemp("tiny4") / "tiny-phi4"
    proc = subprocess.run([*PHI_GET, "tiny-phi", str(out), "--style", "phi4"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "wrote tiny Phi-4-style checkpoint" in proc.stdout
    return out


# -- the checkpoint -------------------------------------------------------------------------------------------


def test_phi4_checkpoint_has_phi4_mini_architecture(tiny_phi4: Path) -> None:
    config = json.loads((tiny_phi4 / "config.json").read_text())
    assert config["architectures"] == ["Phi3ForCausalLM"]
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert config["rope_parameters"]["partial_rotary_factor"] == 0.75
    assert config["tie_word_embeddings"] is True
    assert config["hidden_size"] % 256 == 0 and config["intermediate_size"] % 256 == 0
    from safetensors import safe_open

    with safe_open(str(tiny_phi4 / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        qkv = fh.get_tensor("model.layers.0.self_attn.qkv_proj.weight").shape
    assert not any(k.startswith("lm_head") for k in keys), "tied embeddings: no separate LM head is stored"
    # 4 query heads + 2 key + 2 value heads of 64.
    assert tuple(qkv) == (8 * 64, 256)


def test_phi4_checkpoint_has_a_byte_level_bpe_tokenizer(tiny_phi4: Path) -> None:
    assert not (tiny_phi4 / "tokenizer.model").exists()
    tok = json.loads((tiny_phi4 / "tokenizer.json").read_text())
    assert tok["model"]["type"] == "BPE" and tok["model"]["merges"]
    split, byte_level = tok["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and "\\p{N}{1,3}" in split["pattern"]["Regex"]
    assert byte_level == {**byte_level, "type": "ByteLevel", "use_regex": False}
    added = {t["content"]: t["id"] for t in tok["added_tokens"]}
    assert list(added) == ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool|>"]
    # The special tokens come after the learned vocabulary, and the config's
    # vocabulary is padded past them to a multiple of 64 (Phi-4-mini: 200064).
    assert min(added.values()) == len(tok["model"]["vocab"])
    config = json.loads((tiny_phi4 / "config.json").read_text())
    assert config["vocab_size"] % 64 == 0 and config["vocab_size"] > max(added.values()) + 1
    assert config["bos_token_id"] == config["eos_token_id"] == added["<|endoftext|>"]
    assert json.loads((tiny_phi4 / "tokenizer_config.json").read_text())["tokenizer_class"] == "GPT2Tokenizer"


def test_phi4_checkpoint_loads_and_generates_with_transformers(tiny_phi4: Path) -> None:
    import torch
    from phi_get.builders.tiny import EVAL_TEXT
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_phi4))
    ids = tok(EVAL_TEXT)["input_ids"]
    assert tok.decode(ids) == EVAL_TEXT and len(ids) < len(EVAL_TEXT) / 3  # merges learned, not bytes
    assert tok("<|user|>")["input_ids"] == [tok.convert_tokens_to_ids("<|user|>")]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_phi4), dtype=torch.float32).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    prompt = tok("The registry stores each file", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 8


@pytest.mark.slow
def test_phi4_checkpoint_is_deterministic(tiny_phi4: Path, tmp_path: Path) -> None:
    from phi_get.builders.tiny import TinySpec, make_tiny_phi

    again = make_tiny_phi(tmp_path / "again", TinySpec(style="phi4"))  # type: ignore[arg-type]
    assert _digests(again) == _digests(tiny_phi4)


def test_default_style_record_is_unchanged() -> None:
    # The default checkpoint must stay byte-identical: its phi-get-tiny.json
    # keeps exactly the keys it always had.
    from phi_get.builders.tiny import TinySpec, TinyStyle

    assert TinySpec().record() == {"seed": 0, "vocab_size": 512, "hidden_size": 256, "intermediate_size": 512,
                                   "layers": 2, "heads": 4, "kv_heads": 4, "max_context": 2048, "init_std": 0.06}
    assert TinySpec(style="phi4").style is TinyStyle.PHI4  # type: ignore[arg-type]


def test_default_checkpoint_is_still_phi3(tiny_phi: Path) -> None:
    record = json.loads((tiny_phi / "phi-get-tiny.json").read_text())
    assert "style" not in record and record["kv_heads"] == 4
    config = json.loads((tiny_phi / "config.json").read_text())
    assert config["rope_parameters"]["partial_rotary_factor"] == 1.0 and config["tie_word_embeddings"] is False
    assert (tiny_phi / "tokenizer.model").is_file()


def test_unknown_style_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([*PHI_GET, "tiny-phi", str(tmp_path / "x"), "--style", "phi5"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: invalid tiny checkpoint spec at style: unknown style; styles are: "
                                   "phi3, phi4 (got 'phi5')")
    assert not (tmp_path / "x").exists()
