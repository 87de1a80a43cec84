"""Real-dimension checkpoints: `phi-get tiny-phi OUT --like MODEL --layers N [--layout ...]`.

One layer of each model in each layout (Phi-3.5-mini about 0.6 GB, Phi-4-mini
1.4 GB in bf16), generated once for this module and removed after it.  The hub layouts come from the
CLI in a subprocess, the transformers5 ones from the Python API in this
process: every file but config.json must be byte-identical between the two,
which is the determinism check (two processes, the same bytes).
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PHI_GET = [sys.executable, "-m", "phi_get"]

#: The published numbers, written out here on purpose (a second, independent copy of
#: builders/data/phi_models.json): hidden, intermediate, heads, kv heads, head dim,
#: partial rotary, vocab, tied, bos, eos, pad.
PUBLISHED = {
    "phi-3.5-mini": (3072, 8192, 32, 32, 96, 1.0, 32064, False, 1, 32000, 32000),
    "phi-4-mini": (3072, 8192, 24, 8, 128, 0.75, 200064, True, 199999, 199999, 199999),
}
#: Tokenizer ids (pieces + added tokens) and the first long factor, per model.
TOKENIZER_IDS = {"phi-3.5-mini": 32011, "phi-4-mini": 200029}
FIRST_LONG_FACTOR = {"phi-3.5-mini": 1.0800000429153442, "phi-4-mini": 1}


@pytest.fixture(scope="module")
def real_dims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Path]]:
    """The four checkpoints (about 4 GB), removed when this module's tests are done."""
    pytest.importorskip("torch")
    pytest.importorskip("tokenizers")
    from phi_get.builders.tiny import TinySpec, make_tiny_phi

    root = tmp_path_factory.mktemp("real-dims")
    out: dict[tuple[str, str], Path] = {}
    for model in PUBLISHED:
        hub = root / f"{model}-hub"
        proc = subprocess.run([*PHI_GET, "tiny-phi", str(hub), "--like", model, "--layers", "1", "--json"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["layout"] == "hub"
        out[model, "hub"] = hub
        out[model, "transformers5"] = make_tiny_phi(root / f"{model}-t5",
                                                    TinySpec.like(model, layers=1, layout="transformers5"))
    yield out
    shutil.rmtree(root, ignore_errors=True)


def _config(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "config.json").read_text())
    return data


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_hub_config_is_the_published_one_field_by_field(real_dims: dict, model: str) -> None:
    from phi_get.builders.tiny_real import real_model

    config = _config(real_dims[model, "hub"])
    published = real_model(model)["config"]
    assert config == {**published, "num_hidden_layers": 1}
    hidden, inter, heads, kv, head_dim, rotary, vocab, tied, bos, eos, pad = PUBLISHED[model]
    assert (config["hidden_size"], config["intermediate_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["hidden_size"] // config["num_attention_heads"],
            config.get("partial_rotary_factor", 1.0), config["vocab_size"], config["tie_word_embeddings"],
            config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == PUBLISHED[model]
    assert (config["max_position_embeddings"], config["original_max_position_embeddings"]) == (131072, 4096)
    assert (config["rms_norm_eps"], config["rope_theta"], config["torch_dtype"]) == (1e-05, 10000.0, "bfloat16")
    scaling = config["rope_scaling"]
    assert scaling["type"] == "longrope" and scaling["long_factor"][0] == FIRST_LONG_FACTOR[model]
    assert len(scaling["short_factor"]) == len(scaling["long_factor"]) == int(head_dim * rotary) // 2


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_the_full_model_has_the_recipes_parameter_count(model: str) -> None:
    """At 32 layers the tensors of the published config add up to the recipe's parameter count."""
    from phi_get.builders.tiny_real import parameter_count, real_model
    from phi_get.manifests.recipe import load_recipe

    config, recipe = real_model(model)["config"], load_recipe(model)
    assert parameter_count(config) == recipe.architecture["parameters"]
    assert config["num_hidden_layers"] == recipe.architecture["layers"]


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_transformers5_layout_has_rope_parameters_and_the_same_numbers(real_dims: dict, model: str) -> None:
    hub, t5 = _config(real_dims[model, "hub"]), _config(real_dims[model, "transformers5"])
    assert "rope_scaling" not in t5 and "rope_parameters" in t5
    params = t5["rope_parameters"]
    assert params["rope_type"] == "longrope" and "type" not in params
    assert (params["short_factor"], params["long_factor"]) == (hub["rope_scaling"]["short_factor"],
                                                              hub["rope_scaling"]["long_factor"])
    assert t5["dtype"] == "bfloat16"
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "vocab_size",
                "tie_word_embeddings", "max_position_embeddings", "original_max_position_embeddings",
                "bos_token_id", "eos_token_id", "pad_token_id", "num_hidden_layers"):
        assert t5[key] == hub[key], key


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_same_bytes_from_two_processes(real_dims: dict, model: str) -> None:
    hub, t5 = real_dims[model, "hub"], real_dims[model, "transformers5"]
    names = sorted(p.name for p in hub.iterdir() if p.name not in ("config.json", "phi-get-tiny.json"))
    assert names == sorted(p.name for p in t5.iterdir() if p.name not in ("config.json", "phi-get-tiny.json"))
    for name in names:
        assert (hub / name).read_bytes() == (t5 / name).read_bytes(), name


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_tokenizer_has_the_real_vocabulary_size(real_dims: dict, model: str) -> None:
    from transformers import AutoTokenizer

    folder = real_dims[model, "hub"]
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert len(tok) == TOKENIZER_IDS[model]
    from phi_get.builders.tiny_real import real_model

    added = real_model(model)["tokenizer"]["added"]
    assert tok.convert_tokens_to_ids(list(added.values())) == [int(i) for i in added]
    ids = tok("<|user|>Hello world<|end|>")["input_ids"]
    assert ids[0] == int(next(i for i, t in added.items() if t == "<|user|>"))
    if model == "phi-3.5-mini":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        sp.LoadFromFile(str(folder / "tokenizer.model"))
        assert sp.vocab_size() == 32000
        assert [sp.IdToPiece(i) for i in (0, 1, 2, 3, 258)] == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
    else:
        data = json.loads((folder / "tokenizer.json").read_text())
        assert len(data["model"]["vocab"]) == 199998 and len(data["model"]["merges"]) == 199998 - 256


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_both_layouts_load_in_transformers_and_compute_the_same_logits(real_dims: dict, model: str) -> None:
    """bf16, one layer: the same weights read through either config layout give the same logits."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 450, 4996, 17354, 1701]])
    logits = []
    for layout in ("hub", "transformers5"):
        m = AutoModelForCausalLM.from_pretrained(str(real_dims[model, layout]), dtype=torch.bfloat16)
        assert (m.config.num_hidden_layers, m.config.vocab_size) == (1, PUBLISHED[model][6])
        assert m.config.rope_parameters["rope_type"] == "longrope"
        with torch.no_grad():
            logits.append(m(ids).logits)
        del m
        gc.collect()
    assert logits[0].shape == (1, 5, PUBLISHED[model][6])
    assert torch.isfinite(logits[0]).all()
    assert torch.equal(logits[0], logits[1])


def test_bad_like_and_layout_are_refused_by_name(tmp_path: Path) -> None:
    proc = subprocess.run([*PHI_GET, "tiny-phi", str(tmp_path / "x"), "--like", "phi-9"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0 and "phi-3.5-mini, phi-4-mini" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*PHI_GET, "tiny-phi", str(tmp_path / "y"), "--like", "phi-4-mini", "--layout", "t4"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "hub, transformers5" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


#: Each of phi-get's own steps, run alone in a fresh process after its imports, and the peer:
#: the whole model loaded in fp32, as the steps did before they streamed; the peak is runmemory's
#: (VmHWM reset after the imports: ru_maxrss would read pytest's, inherited across exec).
STEP_SCRIPT = r"""
import json, sys
from pathlib import Path
import torch, transformers, gguf, safetensors
from phi_get.builders.checkpoint import open_source
from phi_get.builders.gguf import convert_to_gguf
from phi_get.builders.safetensors_stream import cast_safetensors
from phi_get.builders.streamed_forward import streamed_logits
from phi_get.resolver.runmemory import peak_bytes, start_peak

step, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ckpt = open_source(src)
ids = list(range(1, 200))
before, reset = start_peak()  # the imports' own peak is not the step's
assert reset
if step == "whole-model-fp32":
    model = transformers.AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
elif step == "reference-logits":
    streamed_logits(src, ids)
elif step == "gguf-conversion":
    convert_to_gguf(ckpt, out / "model.gguf")
elif step == "safetensors-cast":
    cast_safetensors(sorted(src.glob("*.safetensors")), out / "model.safetensors", "F16")
print(json.dumps({"growth": peak_bytes() - before}))
"""


def _growth(step: str, src: Path, out: Path) -> int:
    proc = subprocess.run([sys.executable, "-c", STEP_SCRIPT, step, str(src), str(out)], capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth: int = json.loads(proc.stdout.strip().splitlines()[-1])["growth"]
    return growth


def test_phi_gets_own_steps_stream_tensor_by_tensor(real_dims: dict, tmp_path: Path) -> None:
    """The fp32 reference pass, the GGUF conversion and the safetensors cast each loaded the whole
    model (about 16 GB in fp32 at 32 layers): each now grows by a fraction of what loading the
    whole model in fp32 takes, measured in the same run on one Phi-3.5-mini layer (fp32: the
    embedding and the output head 394 MB each, the layer 453 MB, 1.24 GB in all)."""
    src = real_dims["phi-3.5-mini", "hub"]
    whole = _growth("whole-model-fp32", src, tmp_path)
    assert whole > 1.2e9, whole  # the peer holds the model: 1.24 GB of fp32 weights
    for step in ("reference-logits", "gguf-conversion", "safetensors-cast"):
        growth = _growth(step, src, tmp_path)
        assert growth < 0.6 * whole, (step, growth, whole)
