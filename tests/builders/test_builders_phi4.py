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
import shutil
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
    # Phi-4-mini's Hub layout (transformers 4 era): rope keys at the top level.
    assert "rope_parameters" not in config
    assert (config["partial_rotary_factor"], config["rope_theta"], config["rope_scaling"]) == (0.75, 10000.0, None)
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


# -- GGUF -----------------------------------------------------------------------------------------------------

#: The tiny Phi-4-style checkpoint's recipe: every variant, plus the F32 GGUF reference.
RECIPE = """\
schema = "phi-get.recipe/v1"
name = "tiny-phi4"
version = "0.1.0"
description = "The tiny Phi-4-style checkpoint (phi-get tiny-phi --style phi4)"

[source]
local = true

[architecture]
class = "Phi3ForCausalLM"
layers = 2
kv_heads = 2
head_dim = 64
max_context = 2048

[matrix]
variants = "*"
extra = ["gguf-f32"]
"""

GGUF_VARIANTS = ("gguf-f32", "gguf-f16", "gguf-q8_0", "gguf-q5_k_m", "gguf-q4_k_m", "gguf-q4_0")
#: The same tolerances as tests/builders/test_builders_matrix.py (the Phi-3 tiny
#: checkpoint).  Measured here for the phi4 style: gguf-f32 0.0020, gguf-f16 0.0056.
TOLERANCE = {"gguf-f32": 1e-2, "gguf-f16": 5e-2}

#: One unquantized variant per toolchain (and two quantized), with the logit
#: tolerance it must meet.  Measured here: onnx-cpu-fp32 5.2e-6,
#: safetensors-fp16 0.0078, openvino-fp16 0.049, mlx-fp16 0.0069.
OTHER_TOLERANCE = {"onnx-cpu-fp32": 1e-4, "safetensors-fp16": 5e-2, "openvino-fp16": 0.1, "mlx-fp16": 5e-2}
OTHER_QUANTIZED = ("onnx-cpu-int4", "mlx-4bit")


@pytest.fixture(scope="session")
def phi4_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny-phi4.toml"
    path.write_text(RECIPE, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def phi4_gguf(tiny_phi4: Path, phi4_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """(OUT, results) of building every GGUF variant of the phi4 checkpoint through build_recipe."""
    pytest.importorskip("llama_cpp")
    from phi_get.builders.build import build_recipe

    out = tmp_path_factory.mktemp("phi4-gguf")
    return out, build_recipe(str(phi4_recipe), tiny_phi4, out, only="gguf-*")


def _manifest(out: Path, variant: str):  # type: ignore[no-untyped-def]
    from phi_get.manifests.artifact import load_artifact_folder

    return load_artifact_folder(out / "tiny-phi4" / "0.1.0" / variant, verify=True)


def _reference_logits(folder: Path, ids: list[int]):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _llama_logits(path: Path, ids: list[int], n_ctx: int):  # type: ignore[no-untyped-def]
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, n_threads=2, n_batch=1024, verbose=False)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


@pytest.mark.slow
def test_every_gguf_variant_builds_runs_and_is_measured(phi4_gguf: tuple[Path, list]) -> None:
    out, results = phi4_gguf
    assert {r.variant: str(r.outcome) for r in results} == dict.fromkeys(GGUF_VARIANTS, "built"), results
    for variant in GGUF_VARIANTS:
        m = _manifest(out, variant)
        metrics = m.quality.metrics
        assert m.quality.check == "runtime" and m.quality.note.startswith("generated from the fixed prompt")
        assert m.architecture["kv_heads"] == 2 and m.architecture["vocab_size"] % 64 == 0
        # llama.cpp's f16 KV cache with grouped-query attention: 2 x 2 layers x 2 kv heads x 64 x 2 bytes.
        assert m.memory.kv_bytes_per_token == 1024
        if variant in TOLERANCE:
            assert metrics["max_abs_logit_error"] <= TOLERANCE[variant], (variant, metrics)
            assert metrics["top1_agreement"] == 1.0
        else:  # quantized: measured, not assumed (q8_0 0.13 ... q4_0 1.3 here)
            assert 0.01 < metrics["max_abs_logit_error"] < 5, (variant, metrics)
            assert 0.3 < metrics["top1_agreement"] <= 1.0, (variant, metrics)
    sizes = [_manifest(out, v).memory.weights_bytes for v in GGUF_VARIANTS]
    assert sizes == sorted(sizes, reverse=True), "each smaller quantization gives a smaller file"


@pytest.mark.slow
def test_gguf_metadata_carries_the_phi4_architecture(phi4_gguf: tuple[Path, list], tiny_phi4: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(phi4_gguf[0] / "tiny-phi4" / "0.1.0" / "gguf-f32" / "model.gguf"))

    def field(key: str):  # type: ignore[no-untyped-def]
        return reader.fields[key].contents()

    assert (field("tokenizer.ggml.model"), field("tokenizer.ggml.pre")) == ("gpt2", "gpt-4o")
    assert (field("phi3.attention.head_count"), field("phi3.attention.head_count_kv")) == (4, 2)
    assert field("phi3.rope.dimension_count") == 48  # head_dim 64 x partial_rotary_factor 0.75
    names = {t.name for t in reader.tensors}
    assert "token_embd.weight" in names and "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert not any(n.startswith("rope_factors") for n in names)  # no LongRoPE in this config
    tok = json.loads((tiny_phi4 / "tokenizer.json").read_text())
    config = json.loads((tiny_phi4 / "config.json").read_text())
    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    assert len(tokens) == config["vocab_size"]
    assert field("tokenizer.ggml.merges") == [" ".join(m) for m in tok["model"]["merges"]]
    vocab = tok["model"]["vocab"]
    assert tokens[vocab["Ġpackage"]] == "Ġpackage" and types[vocab["Ġpackage"]] == gguf.TokenType.NORMAL
    for added in tok["added_tokens"]:
        assert tokens[added["id"]] == added["content"] and types[added["id"]] == gguf.TokenType.CONTROL
    assert tokens[-1] == f"[PAD{len(tokens) - 1}]" and types[-1] == gguf.TokenType.UNUSED
    eot = config["eos_token_id"]
    assert (field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")) == (eot, eot)


@pytest.mark.slow
def test_llama_cpp_tokenizes_like_the_checkpoint(phi4_gguf: tuple[Path, list], tiny_phi4: Path) -> None:
    # The pre-tokenizer name and merges are right only if llama.cpp splits and
    # merges text exactly as the checkpoint's own tokenizer does.
    from llama_cpp import Llama
    from phi_get.builders.tiny import EVAL_TEXT, corpus_text
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_phi4))
    llm = Llama(model_path=str(phi4_gguf[0] / "tiny-phi4" / "0.1.0" / "gguf-q4_0" / "model.gguf"), vocab_only=True,
                verbose=False)
    try:
        texts = [EVAL_TEXT, "<|user|>Is 12345 bytes enough?\n\n  Yes: it's   fine.<|end|><|assistant|>",
                 *corpus_text(seed=1, sentences=40).splitlines()[-40:]]
        for text in texts:
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == hf(text)["input_ids"], text
    finally:
        llm.close()


@pytest.fixture(scope="session")
def tiny_phi4_longrope(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phi4 style with Phi-4-mini's LongRoPE scaling (pretraining context 512 of 2048)."""
    pytest.importorskip("tokenizers")
    from phi_get.builders.tiny import TinySpec, make_tiny_phi

    spec = TinySpec(style="phi4", longrope_original_context=512)  # type: ignore[arg-type]
    return make_tiny_phi(tmp_path_factory.mktemp("longrope") / "tiny-phi4-longrope", spec)


@pytest.mark.slow
def test_longrope_factors_reach_llama_cpp(tiny_phi4_longrope: Path) -> None:
    # Phi-4-mini's LongRoPE: short factors up to its pretraining context, long
    # ones past it, and an attention factor.  transformers picks by sequence
    # length, llama.cpp by context size: each pair is compared where both use
    # the same factors, and once where they do not, to show the factors matter.
    pytest.importorskip("llama_cpp")
    import gguf
    from phi_get.builders.checkpoint import open_source
    from phi_get.builders.gguf import convert_to_gguf
    from phi_get.builders.tiny import EVAL_TEXT, TinySpec, corpus_text
    from transformers import AutoTokenizer

    folder = tiny_phi4_longrope
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_scaling"]["type"] == "longrope" and config["original_max_position_embeddings"] == 512
    path = convert_to_gguf(open_source(folder), folder.parent / "model.gguf")
    reader = gguf.GGUFReader(str(path))
    short, long = TinySpec(style="phi4", longrope_original_context=512).longrope_factors()  # type: ignore[arg-type]
    factors = {t.name: t.data.tolist() for t in reader.tensors if t.name.startswith("rope_factors")}
    assert factors == {"rope_factors_short.weight": pytest.approx(short), "rope_factors_long.weight": pytest.approx(long)}
    # sqrt(1 + ln(2048 / 512) / ln(512)), as transformers computes it.
    assert reader.fields["phi3.rope.scaling.attn_factor"].contents() == pytest.approx(1.1055416)

    tok = AutoTokenizer.from_pretrained(str(folder))
    few = tok(EVAL_TEXT)["input_ids"]
    many = tok(corpus_text())["input_ids"][:700]  # past the 512-token pretraining context
    assert len(few) < 256 and len(many) == 700
    ref_few, ref_many = _reference_logits(folder, few), _reference_logits(folder, many)
    assert abs(_llama_logits(path, few, n_ctx=256) - ref_few).max() <= TOLERANCE["gguf-f32"]
    assert abs(_llama_logits(path, many, n_ctx=1024) - ref_many).max() <= TOLERANCE["gguf-f32"]
    # llama.cpp with a 1024 context uses the long factors even for few tokens: far off.
    assert abs(_llama_logits(path, few, n_ctx=1024) - ref_few).max() > 0.5


@pytest.fixture(scope="session")
def longrope_others(tiny_phi4_longrope: Path, phi4_recipe: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    pytest.importorskip("onnxruntime_genai")
    if not sys.platform.startswith("linux"):
        pytest.skip("the OpenVINO and MLX environments are pinned for Linux")
    from phi_get.builders.build import build_recipe

    out = tmp_path_factory.mktemp("longrope-others")
    return out, build_recipe(str(phi4_recipe), tiny_phi4_longrope, out, only=",".join(OTHER_TOLERANCE))


@pytest.mark.slow
@pytest.mark.parametrize("variant", [
    *(v for v in OTHER_TOLERANCE if not v.startswith("mlx")),
    pytest.param("mlx-fp16", marks=pytest.mark.xfail(strict=True, reason=(
        "mlx-lm 0.32.2's SuScaledRoPE applies the long factors at every length (short_factor is ignored); "
        "transformers uses the short ones up to original_max_position_embeddings: max error 3.27 here"))),
])
def test_longrope_checkpoint_builds_with_every_toolchain(longrope_others: tuple[Path, list], variant: str) -> None:
    out, results = longrope_others
    assert {r.variant: str(r.outcome) for r in results}[variant] == "built"
    metrics = _manifest(out, variant).quality.metrics
    assert metrics["max_abs_logit_error"] <= OTHER_TOLERANCE[variant], metrics


# -- what the converter refuses -------------------------------------------------------------------------------


@pytest.fixture()
def phi4_copy(tiny_phi4: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_phi4, tmp_path / "src"))


def _edit_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _refused(folder: Path, match: str) -> None:
    from phi_get.builders.checkpoint import open_source
    from phi_get.builders.errors import CheckpointError
    from phi_get.builders.gguf import convert_to_gguf

    dest = folder.parent / "out" / "model.gguf"
    with pytest.raises(CheckpointError, match=match):
        convert_to_gguf(open_source(folder), dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_unknown_pre_tokenizer_is_refused(phi4_copy: Path) -> None:
    def edit(tok: dict) -> None:  # type: ignore[type-arg]
        tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"

    _edit_json(phi4_copy / "tokenizer.json", edit)
    _refused(phi4_copy, r"the GGUF converter does not know the pre-tokenizer of .*tokenizer.json: '\\\\s\+\|\\\\S\+'; "
             r"it knows gpt-4o, gpt2 \(llama.cpp would split text differently from the checkpoint\)")


def test_non_bpe_tokenizer_json_is_refused(phi4_copy: Path) -> None:
    _edit_json(phi4_copy / "tokenizer.json", lambda tok: tok["model"].update(type="Unigram"))
    _refused(phi4_copy, r"tokenizer.json: model.type is 'Unigram'; the GGUF converter reads BPE tokenizers")


def test_token_ids_beyond_the_config_vocabulary_are_refused(phi4_copy: Path) -> None:
    _edit_json(phi4_copy / "config.json", lambda c: c.update(vocab_size=800))
    _refused(phi4_copy, r"tokenizer.json: token .* has id 8\d\d, outside config.json's vocab_size 800")


def test_longrope_factor_count_is_checked(phi4_copy: Path) -> None:
    def edit(config: dict) -> None:  # type: ignore[type-arg]
        config["rope_scaling"] = {"type": "longrope", "short_factor": [1.0] * 32, "long_factor": [1.0] * 24}

    _edit_json(phi4_copy / "config.json", edit)
    _refused(phi4_copy, r"config.json rope scaling short_factor must list 24 numbers \(rope dimensions / 2\), got 32")


def test_unsupported_rope_scaling_is_refused(phi4_copy: Path) -> None:
    _edit_json(phi4_copy / "config.json", lambda c: c.update(rope_scaling={"rope_type": "yarn", "factor": 4.0}))
    _refused(phi4_copy, r"config.json rope scaling type 'yarn' is not supported by the GGUF converter "
             r"\(supported: longrope\)")


def test_transformers_5_config_layout_converts_to_the_same_gguf(phi4_copy: Path, tmp_path: Path) -> None:
    # A checkpoint saved by transformers 5 moves rope_theta, partial_rotary_factor
    # and the scaling into rope_parameters; the converter reads both layouts.
    import gguf
    from phi_get.builders.checkpoint import open_source
    from phi_get.builders.gguf import convert_to_gguf
    from transformers import AutoConfig

    resaved = tmp_path / "t5" / phi4_copy.name
    shutil.copytree(phi4_copy, resaved)
    AutoConfig.from_pretrained(str(phi4_copy)).save_pretrained(str(resaved))
    assert json.loads((resaved / "config.json").read_text())["rope_parameters"]["partial_rotary_factor"] == 0.75
    hub = convert_to_gguf(open_source(phi4_copy), tmp_path / "hub.gguf")
    t5 = convert_to_gguf(open_source(resaved), tmp_path / "t5.gguf")
    assert hub.read_bytes() == t5.read_bytes()
    assert gguf.GGUFReader(str(t5)).fields["phi3.rope.dimension_count"].contents() == 48


# -- the other toolchains -------------------------------------------------------------------------------------



@pytest.fixture(scope="session")
def phi4_others(tiny_phi4: Path, phi4_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    pytest.importorskip("onnxruntime_genai")
    if not sys.platform.startswith("linux"):
        pytest.skip("the OpenVINO and MLX environments are pinned for Linux")
    from phi_get.builders.build import build_recipe

    out = tmp_path_factory.mktemp("phi4-others")
    return out, build_recipe(str(phi4_recipe), tiny_phi4, out, only=",".join([*OTHER_TOLERANCE, *OTHER_QUANTIZED]))


@pytest.mark.slow
def test_every_toolchain_builds_the_phi4_checkpoint(phi4_others: tuple[Path, list]) -> None:
    out, results = phi4_others
    assert {r.variant: (str(r.outcome), r.reason) for r in results} == dict.fromkeys(
        [*OTHER_TOLERANCE, *OTHER_QUANTIZED], ("built", ""))
    for variant, tolerance in OTHER_TOLERANCE.items():
        m = _manifest(out, variant)
        assert m.quality.check == "runtime", variant
        assert m.quality.metrics["max_abs_logit_error"] <= tolerance, (variant, m.quality.metrics)
        assert m.quality.metrics["top1_agreement"] >= 0.95, (variant, m.quality.metrics)
    for variant in OTHER_QUANTIZED:
        metrics = _manifest(out, variant).quality.metrics
        assert 0.01 < metrics["max_abs_logit_error"] < 5 and metrics["top1_agreement"] > 0.3, (variant, metrics)


@pytest.mark.slow
def test_kv_cache_sizes_follow_grouped_query_attention(phi4_others: tuple[Path, list]) -> None:
    # 2 x 2 layers x 2 kv heads x 64 = 512 elements a token, times each runtime's cache element size.
    kv = {v: _manifest(phi4_others[0], v).memory.kv_bytes_per_token for v in ("onnx-cpu-fp32", "safetensors-fp16")}
    assert kv == {"onnx-cpu-fp32": 512 * 4, "safetensors-fp16": 512 * 2}
    assert _manifest(phi4_others[0], "openvino-fp16").memory.kv_bytes_per_token % 512 == 0
