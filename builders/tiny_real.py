"""Real-dimension checkpoints: a published Phi model's exact config with fewer layers and random weights.

``phi-get tiny-phi OUT --like phi-3.5-mini --layers 2`` writes what a
builder would meet in the real checkpoint, at 2 of its 32 layers: the
published ``config.json`` (every dimension, LongRoPE with its real short and
long factors, the vocabulary padded as published, tied embeddings, bf16,
the bos/eos/pad ids) with ``num_hidden_layers`` replaced, bf16 weights drawn
from a fixed seed, and a tokenizer of the real vocabulary size built here:

- Phi-3.5-mini: a sentencepiece ``tokenizer.model`` of 32000 pieces (``<unk>``,
  ``<s>``, ``</s>``, 256 byte-fallback pieces, BPE pieces trained on the
  shipped corpus, and generated letter pieces up to 32000 since the small
  corpus cannot teach that many), plus the 11 added chat and placeholder
  tokens at ids 32000-32010 (config vocabulary 32064, as published).
- Phi-4-mini: a byte-level BPE ``tokenizer.json`` of 199998 tokens (ids
  0-199997: the 256 bytes, the merges trained on the corpus, then generated
  merges, each a learned token extended by one letter) and its 12 added
  tokens at their published ids (199999, 200018-200028; config 200064).

The published numbers live once, in ``data/phi_models.json``.  Layouts
(:class:`Layout`): ``hub`` writes config.json as the Hub has it
(``rope_scaling: {type: longrope, ...}`` at the top level); ``transformers5``
writes it as transformers 5's ``save_pretrained`` does (``rope_parameters``).

Weights are written straight into ``model.safetensors``, tensor by tensor in
row chunks (no model object, no fp32 copy of the model): peak memory stays
near one chunk, whatever the layer count.  Each tensor's values come from a
generator seeded by (seed, tensor name), so layer 0 is the same at 1 or 2
layers, and the same command gives the same bytes.

May import the standard library, ``phi_get.manifests`` and ``safetensors_stream``; torch,
sentencepiece, tokenizers and transformers inside functions only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from .safetensors_stream import CHUNK_ELEMENTS, write_streaming

__all__ = ["REAL_MODELS", "Layout", "real_model", "tensor_shapes", "write_real_checkpoint"]

#: Models whose published config a real-dimension checkpoint copies (keys of data/phi_models.json).
REAL_MODELS: Final = ("phi-3.5-mini", "phi-4-mini")

_LETTERS: Final = "abcdefghijklmnopqrstuvwxyz"


class Layout(StrEnum):
    """How config.json spells the rope parameters."""

    HUB = "hub"
    TRANSFORMERS5 = "transformers5"


@cache
def _models() -> dict[str, Any]:
    text = resources.files("phi_get.builders").joinpath("data/phi_models.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def real_model(name: str) -> dict[str, Any]:
    """The published facts of ``name`` (``repo``, ``config``, ``tokenizer``); a copy."""
    if name not in REAL_MODELS:
        from phi_get.manifests.errors import ManifestError

        raise ManifestError(f"no published config for it; known models are: {', '.join(REAL_MODELS)}",
                            field="like", value=name, document="tiny checkpoint spec")
    return json.loads(json.dumps(_models()[name]))  # type: ignore[no-any-return]


def tensor_shapes(config: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of a Phi3ForCausalLM with this config, sorted by name."""
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.qkv_proj.weight": ((heads + 2 * kv) * head_dim, hidden),
            p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            p + "mlp.gate_up_proj.weight": (2 * inter, hidden), p + "mlp.down_proj.weight": (hidden, inter),
        }
    return sorted(shapes.items())


def parameter_count(config: dict[str, Any]) -> int:
    """How many parameters a Phi3ForCausalLM with this config has (tied embeddings counted once)."""
    return sum(math.prod(shape) for _name, shape in tensor_shapes(config))


def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{name}".encode()).digest()[:8], "little") >> 1


def _write_weights(path: Path, shapes: list[tuple[str, tuple[int, ...]]], seed: int, std: float) -> None:
    """A bf16 safetensors file written chunk by chunk: norms 1, matrices N(0, std) from a per-tensor generator."""
    import torch

    by_name = dict(shapes)

    def chunks(name: str) -> Iterator[bytes]:
        shape = by_name[name]
        if len(shape) == 1:
            yield torch.ones(shape, dtype=torch.bfloat16).view(torch.int16).numpy().tobytes()
            return
        gen = torch.Generator().manual_seed(_tensor_seed(seed, name))
        rows, cols = shape
        step = max(1, CHUNK_ELEMENTS // cols)
        for start in range(0, rows, step):
            chunk = torch.randn((min(step, rows - start), cols), generator=gen) * std
            yield chunk.to(torch.bfloat16).view(torch.int16).numpy().tobytes()

    write_streaming(path, [(name, "BF16", shape) for name, shape in shapes], chunks)


def _write_config(folder: Path, config: dict[str, Any], layout: Layout) -> None:
    if layout is Layout.HUB:
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return
    from transformers import Phi3Config

    # A config made in transformers 5 names its rope in rope_parameters (rope_type, no legacy
    # "type"); save_pretrained writes that, with dtype for torch_dtype.
    native = {k: v for k, v in config.items() if k not in ("rope_scaling", "rope_theta")}
    scaling = config["rope_scaling"]
    params = {"rope_type": scaling["type"], "rope_theta": config["rope_theta"],
              "short_factor": scaling["short_factor"], "long_factor": scaling["long_factor"]}
    if "partial_rotary_factor" in config:
        params["partial_rotary_factor"] = config["partial_rotary_factor"]
    Phi3Config(**native, rope_parameters=params).save_pretrained(str(folder))


# -- Phi-3.5-mini: sentencepiece ---------------------------------------------------------------------------------


def _sentencepiece_model(text: str, pieces: int) -> bytes:
    """A serialized sentencepiece BPE model of exactly ``pieces`` pieces (trained, then generated)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(text, encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "sp"), model_type="bpe", vocab_size=pieces,
            hard_vocab_limit=False, character_coverage=1.0, byte_fallback=True, split_digits=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, input_sentence_size=0,
            shuffle_input_sentence=False, minloglevel=2)
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString((Path(tmp) / "sp.model").read_bytes())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.model_prefix = ""
    proto.trainer_spec.vocab_size = pieces
    have = {p.piece for p in proto.pieces}
    score = min(p.score for p in proto.pieces if p.type == p.NORMAL) - 1.0
    for piece in _letter_pieces():
        if len(proto.pieces) >= pieces:
            break
        if piece in have:
            continue
        new = proto.pieces.add()
        new.piece, new.score, new.type = piece, score, new.NORMAL
        score -= 1e-3
    if len(proto.pieces) != pieces:
        raise RuntimeError(f"built {len(proto.pieces)} sentencepiece pieces, expected {pieces}")
    return bytes(proto.SerializeToString(deterministic=True))


def _letter_pieces() -> Any:
    """'▁ab', 'ab', '▁abc', 'abc' ... in a fixed order: filler pieces past what the corpus teaches."""
    for n in (2, 3, 4):
        for letters in itertools.product(_LETTERS, repeat=n):
            word = "".join(letters)
            yield "\u2581" + word
            yield word


def _sentencepiece_tokenizer(folder: Path, tok: dict[str, Any], text: str, max_context: int) -> int:
    """tokenizer.model, tokenizer_config.json and added_tokens.json as the Hub has them, and the
    tokenizer.json transformers converts from them; the number of ids."""
    from transformers import AutoTokenizer

    (folder / "tokenizer.model").write_bytes(_sentencepiece_model(text, tok["pieces"]))
    (folder / "added_tokens.json").write_text(
        json.dumps({t: int(i) for i, t in tok["added"].items()}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": tok["bos"], "eos_token": tok["eos"], "unk_token": tok["unk"], "pad_token": tok["pad"],
        "add_bos_token": False, "add_eos_token": False, "legacy": False, "model_max_length": max_context,
        "added_tokens_decoder": {i: {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                     "single_word": False, "special": True} for i, t in tok["added"].items()},
        "chat_template": (
            "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
    }, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    hf = AutoTokenizer.from_pretrained(str(folder))
    # Only tokenizer.json is taken from transformers' save: its tokenizer_config.json drops
    # added_tokens_decoder, which llama.cpp-style converters read the chat tokens from.
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        (folder / "tokenizer.json").write_bytes((Path(tmp) / "tokenizer.json").read_bytes())
    return len(hf)


# -- Phi-4-mini: byte-level BPE ----------------------------------------------------------------------------------


def _bpe_tokenizer_json(text: str, tokens: int, added: dict[str, str]) -> str:
    """tokenizer.json of a byte-level BPE with exactly ``tokens`` tokens (ids 0..tokens-1) and ``added``."""
    from tokenizers import Tokenizer

    from .tiny_bpe import train_bpe

    data = json.loads(Tokenizer.from_str(train_bpe(text, tokens, special=())).to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    merges: list[Any] = data["model"]["merges"]
    letters = [t for t in vocab if len(t) == 1 and t.isalpha() and t.islower() and t.isascii()]
    base = 0
    order = sorted(vocab, key=vocab.__getitem__)
    while len(vocab) < tokens:
        stem = order[base]
        base += 1
        if not all(c.isalpha() or c == "\u0120" for c in stem):
            continue
        for letter in letters:
            word = stem + letter
            if word in vocab or len(vocab) >= tokens:
                continue
            vocab[word] = len(vocab)
            merges.append([stem, letter])
            order.append(word)
    # The tokenizers library numbers added tokens consecutively after the vocabulary: ids the
    # published tokenizer leaves unnamed (Phi-4-mini: 199998, 200000-200017) get reserved tokens.
    named = {int(i): t for i, t in added.items()}
    data["added_tokens"] = [
        {"id": i, "content": named.get(i, f"<|reserved_{i}|>"), "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True} for i in range(tokens, max(named) + 1)]
    return json.dumps(data, indent=2, ensure_ascii=False)


def _bpe_tokenizer(folder: Path, tok: dict[str, Any], text: str, max_context: int) -> int:
    from .tiny_bpe import write_bpe_files

    tokenizer_json = _bpe_tokenizer_json(text, tok["pieces"], tok["added"])
    added = write_bpe_files(folder, tokenizer_json, max_context)
    return max(added.values()) + 1


def write_real_checkpoint(folder: Path, like: str, *, layers: int, seed: int, init_std: float, layout: Layout,
                          corpus: str) -> None:
    """Write the checkpoint files into ``folder`` (empty)."""
    model = real_model(like)
    config, tok = model["config"], model["tokenizer"]
    config["num_hidden_layers"] = layers
    max_context = config["max_position_embeddings"]
    if tok["kind"] == "sentencepiece":
        n_ids = _sentencepiece_tokenizer(folder, tok, corpus, max_context)
    else:
        n_ids = _bpe_tokenizer(folder, tok, corpus, max_context)
    expected = max(int(i) for i in tok["added"]) + 1
    if n_ids != expected:
        raise RuntimeError(f"the {like} tokenizer has {n_ids} ids, expected {expected}")
    _write_config(folder, config, layout)
    _write_weights(folder / "model.safetensors", tensor_shapes(config), seed, init_std)
