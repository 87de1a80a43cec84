"""The tiny Phi checkpoint: a real ``Phi3ForCausalLM`` the project makes itself.

No weights can be downloaded where phi-get is developed and tested, so tests
and the demo use a checkpoint generated here: the Phi-3 architecture at a
tiny size, random weights from a fixed seed, and a sentencepiece tokenizer
trained on text that ships with phi-get (``builders/data/corpus.txt``, plus
sentences generated from it).  Hidden and intermediate sizes are multiples of
256 so llama.cpp's K-quants (256-value super-blocks) apply to every matrix.

Two styles (:class:`TinyStyle`): ``phi3`` (the default: Phi-3-mini's
multi-head attention, full rotary embeddings, separate LM head, sentencepiece
``tokenizer.model``) and ``phi4`` (what differs in Phi-4-mini: grouped-query
attention, partial rotary factor 0.75, tied word embeddings, a byte-level BPE
``tokenizer.json`` with no ``tokenizer.model``, see ``tiny_bpe.py``, and a
config vocabulary padded past the tokenizer's to a multiple of 64).
``longrope_original_context`` adds Phi-3.5/Phi-4's LongRoPE scaling
(``rope_type = "longrope"``, short and long factors) to either style.

``TinySpec.like("phi-3.5-mini", layers=2)`` (``phi-get tiny-phi OUT --like
phi-3.5-mini --layers 2``) is another kind: the published model's exact
config and vocabulary size at fewer layers, bf16, written by
``tiny_real.py``.

The same command gives the same bytes: the seed fixes the weights, the
tokenizer is trained single-threaded on a fixed text, and files are written
in a fixed order.  Needs the ``build`` extra (torch, transformers,
sentencepiece); imported only by the command that uses it.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from phi_get.manifests.atomic import replacing

from .eval_text import EVAL_TEXT  # re-exported: the evaluation and the tests read it here
from .tiny_bpe import write_bpe_tokenizer
from .tiny_real import REAL_MODELS, Layout, write_real_checkpoint

__all__ = ["EVAL_TEXT", "Layout", "TinySpec", "TinyStyle", "corpus_text", "make_tiny_phi"]

#: Chat and control tokens, as in Phi-3's tokenizer.
SPECIAL_TOKENS = ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


class TinyStyle(StrEnum):
    """Which Phi generation the tiny checkpoint imitates."""

    PHI3 = "phi3"
    PHI4 = "phi4"


#: Per style: (tokenizer vocabulary, kv heads, partial rotary factor, tied embeddings).
_STYLE_DEFAULTS = {TinyStyle.PHI3: (512, 4, 1.0, False), TinyStyle.PHI4: (1024, 2, 0.75, True)}


@dataclass(frozen=True, kw_only=True, slots=True)
class TinySpec:
    seed: int = 0
    #: Tokenizer vocabulary to train (None: the style's, 512 for phi3, 1024 for
    #: phi4; BPE training on the small corpus may stop short of it).
    vocab_size: int | None = None
    hidden_size: int = 256
    intermediate_size: int = 512
    layers: int = 2
    heads: int = 4
    #: None: the style's (4 for phi3: multi-head; 2 for phi4: grouped-query).
    kv_heads: int | None = None
    max_context: int = 2048
    #: Standard deviation of the random weights (Phi-3 uses 0.02; larger
    #: weights give sharper next-token distributions, so quantization error
    #: shows in the agreement metrics instead of drowning in a flat one).
    init_std: float = 0.06
    style: TinyStyle = TinyStyle.PHI3
    #: Pretraining context for LongRoPE scaling (< max_context); None: plain RoPE.
    longrope_original_context: int | None = None
    #: A published model whose exact config to copy (tiny_real.REAL_MODELS); then only
    #: seed, layers, init_std and layout apply.
    like_model: str | None = None
    #: How a real-dimension checkpoint's config.json spells rope (Layout).
    layout: Layout = Layout.HUB

    @classmethod
    def like(cls, model: str, *, layers: int, seed: int = 0, layout: Layout | str = Layout.HUB,
             init_std: float = 0.06) -> TinySpec:
        """The published ``model``'s exact config (``phi-3.5-mini``, ``phi-4-mini``) at ``layers`` layers."""
        return cls(like_model=model, layers=layers, seed=seed, layout=layout, init_std=init_std)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        from phi_get.manifests.errors import ManifestError

        if self.like_model is not None and self.like_model not in REAL_MODELS:
            raise ManifestError(f"no published config for it; known models are: {', '.join(REAL_MODELS)}",
                                field="like", value=self.like_model, document="tiny checkpoint spec")
        try:
            object.__setattr__(self, "layout", Layout(self.layout))
        except ValueError:
            raise ManifestError(f"unknown layout; layouts are: {', '.join(Layout)}", field="layout",
                                value=self.layout, document="tiny checkpoint spec") from None
        if type(self.layers) is not int or not 1 <= self.layers <= 256:
            raise ManifestError("must be an integer from 1 to 256", field="layers", value=self.layers,
                                document="tiny checkpoint spec")

        try:
            object.__setattr__(self, "style", TinyStyle(self.style))
        except ValueError:
            raise ManifestError(f"unknown style; styles are: {', '.join(TinyStyle)}", field="style",
                                value=self.style, document="tiny checkpoint spec") from None
        lr = self.longrope_original_context
        if lr is not None and not 0 < lr < self.max_context:
            raise ManifestError(f"must be above 0 and below max_context {self.max_context}",
                                field="longrope_original_context", value=lr, document="tiny checkpoint spec")

    @property
    def tokenizer_vocab(self) -> int:
        return self.vocab_size if self.vocab_size is not None else _STYLE_DEFAULTS[self.style][0]

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads if self.kv_heads is not None else _STYLE_DEFAULTS[self.style][1]

    @property
    def partial_rotary_factor(self) -> float:
        return _STYLE_DEFAULTS[self.style][2]

    @property
    def tied_embeddings(self) -> bool:
        return _STYLE_DEFAULTS[self.style][3]

    def record(self) -> dict[str, Any]:
        """What phi-get-tiny.json says about the checkpoint (the phi3 default's keys are fixed)."""
        if self.like_model is not None:
            return {"like": self.like_model, "layers": self.layers, "seed": self.seed, "init_std": self.init_std,
                    "layout": str(self.layout)}
        data: dict[str, Any] = {
            "seed": self.seed, "vocab_size": self.tokenizer_vocab, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "layers": self.layers, "heads": self.heads,
            "kv_heads": self.n_kv_heads, "max_context": self.max_context, "init_std": self.init_std,
        }
        if self.style is not TinyStyle.PHI3:
            data |= {"style": str(self.style), "partial_rotary_factor": self.partial_rotary_factor,
                     "tie_word_embeddings": self.tied_embeddings}
        if self.longrope_original_context is not None:
            data["longrope_original_context"] = self.longrope_original_context
        return data

    def longrope_factors(self) -> tuple[list[float], list[float]]:
        """(short, long) LongRoPE factors, one per rotary frequency, rising with it as in Phi-4-mini."""
        half = int(self.hidden_size // self.heads * self.partial_rotary_factor) // 2
        steps = [(i / (half - 1)) ** 2 for i in range(half)]
        return [round(1.0 + 2.0 * x, 4) for x in steps], [round(1.0 + 20.0 * x, 4) for x in steps]


def corpus_text(seed: int = 0, sentences: int = 1500) -> str:
    """The shipped corpus plus sentences recombined from its clauses."""
    base = resources.files("phi_get.builders").joinpath("data/corpus.txt").read_text("utf-8")
    lines = [ln.strip() for ln in base.splitlines() if ln.strip()]
    words = sorted({w.strip(".,:;").lower() for ln in lines for w in ln.split()})
    rng = random.Random(seed)
    extra = []
    for _ in range(sentences):
        a, b = rng.sample(lines, 2)
        cut_a = a.split(",")[0].rstrip(".")
        cut_b = b.split(",")[-1].strip().rstrip(".")
        tail = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        extra.append(f"{cut_a}, and {cut_b} {tail}.")
    return "\n".join(lines * 4 + extra) + "\n"


def _train_tokenizer(folder: Path, spec: TinySpec) -> None:
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(corpus_text(spec.seed), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "tokenizer"),
            model_type="bpe",
            vocab_size=spec.tokenizer_vocab,
            character_coverage=1.0,
            byte_fallback=True,
            split_digits=True,
            user_defined_symbols=list(SPECIAL_TOKENS),
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            minloglevel=2,
        )
        # The trainer records its input and output paths in the model; blank
        # them so the bytes do not depend on where the temp folder was.
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString((Path(tmp) / "tokenizer.model").read_bytes())
        del proto.trainer_spec.input[:]
        proto.trainer_spec.model_prefix = ""
        (folder / "tokenizer.model").write_bytes(proto.SerializeToString(deterministic=True))


def _write_tokenizer_files(folder: Path) -> None:
    from transformers import LlamaTokenizer

    # transformers 5: LlamaTokenizer(vocab_file=...) silently builds a 3-token
    # vocabulary; from_pretrained on the folder reads tokenizer.model properly.
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<unk>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": False,
        "add_eos_token": False,
        "legacy": False,
        "model_max_length": 2048,
        "chat_template": (
            "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
        ),
    }, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tok = LlamaTokenizer.from_pretrained(str(folder))
    if len(tok) < 300:
        raise RuntimeError(f"tokenizer has only {len(tok)} tokens: tokenizer.model was not read")
    tok.save_pretrained(str(folder))


def _rope_parameters(spec: TinySpec) -> dict[str, Any] | None:
    """Phi3Config rope parameters: None keeps the phi3 default's config.json as it always was."""
    if spec.style is TinyStyle.PHI3 and spec.longrope_original_context is None:
        return None
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": 10000.0,
                              "partial_rotary_factor": spec.partial_rotary_factor}
    if spec.longrope_original_context is not None:
        short, long = spec.longrope_factors()
        # As in Phi-4-mini's config.json, the pretraining context is the
        # top-level original_max_position_embeddings (transformers copies it in).
        params |= {"rope_type": "longrope", "short_factor": short, "long_factor": long}
    return params


def _make_model(folder: Path, spec: TinySpec, vocab_size: int, bos_id: int, eos_id: int) -> None:
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    extra: dict[str, Any] = {"rope_scaling": None}
    if (params := _rope_parameters(spec)) is not None:
        extra = {"rope_parameters": params}
    config = Phi3Config(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.n_kv_heads,
        max_position_embeddings=spec.max_context,
        original_max_position_embeddings=spec.longrope_original_context or spec.max_context,
        initializer_range=spec.init_std,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=spec.tied_embeddings,
        sliding_window=None,
        **extra,
    )
    torch.manual_seed(spec.seed)
    model = Phi3ForCausalLM(config).to(torch.float32).eval()
    # Norm weights start at 1 and biases at 0; give every weight matrix a
    # seeded random value of the chosen spread, in a fixed order.
    gen = torch.Generator().manual_seed(spec.seed)
    with torch.no_grad():
        for _name, param in sorted(model.named_parameters()):
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * spec.init_std)
    model.generation_config.do_sample = False
    model.save_pretrained(str(folder), safe_serialization=True)
    if params is not None:
        _hub_rope_layout(folder / "config.json")


def _hub_rope_layout(path: Path) -> None:
    """Rewrite transformers 5's ``rope_parameters`` the way Phi-4-mini's config.json on the Hub has them.

    The published checkpoints (transformers 4 era) keep ``rope_theta``,
    ``partial_rotary_factor`` and ``rope_scaling`` (``"type": "longrope"``)
    at the top level, and tools read them there (mlx-lm 0.32 ignores
    ``rope_parameters`` altogether); transformers 5 still reads this layout.
    """
    config = json.loads(path.read_text("utf-8"))
    params = config.pop("rope_parameters")
    config["rope_theta"] = params["rope_theta"]
    config["partial_rotary_factor"] = params["partial_rotary_factor"]
    config["rope_scaling"] = None
    if params["rope_type"] == "longrope":
        config["rope_scaling"] = {"type": "longrope", "short_factor": params["short_factor"],
                                  "long_factor": params["long_factor"]}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _make_phi4_tokenizer_and_model(folder: Path, spec: TinySpec) -> None:
    added = write_bpe_tokenizer(folder, corpus_text(spec.seed), spec.tokenizer_vocab, spec.max_context)
    # Phi-4-mini's config vocabulary (200064) is its tokenizer's (200029)
    # padded to a multiple of 64; the padding rows exist but no token uses them.
    n_tokens = max(added.values()) + 1
    end = added["<|endoftext|>"]
    _make_model(folder, spec, vocab_size=-(-n_tokens // 64) * 64, bos_id=end, eos_id=end)


def make_tiny_phi(out: Path, spec: TinySpec = TinySpec(), *, force: bool = False) -> Path:
    """Write the tiny checkpoint to ``out`` (atomically) and return it."""
    out = Path(out)
    if out.exists() and not force and any(out.iterdir()):
        from .errors import OutputExistsError

        raise OutputExistsError(f"{out} exists and is not empty; pass --force to replace it")
    with replacing(out, folder=True) as tmp:
        if spec.like_model is not None:
            write_real_checkpoint(tmp, spec.like_model, layers=spec.layers, seed=spec.seed, init_std=spec.init_std,
                                  layout=spec.layout, corpus=corpus_text(spec.seed))
        elif spec.style is TinyStyle.PHI4:
            _make_phi4_tokenizer_and_model(tmp, spec)
        else:
            _train_tokenizer(tmp, spec)
            _write_tokenizer_files(tmp)
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(tmp))
            eos_id = tok.convert_tokens_to_ids("<|endoftext|>")
            _make_model(tmp, spec, vocab_size=len(tok), bos_id=1, eos_id=eos_id)
        (tmp / "phi-get-tiny.json").write_text(
            json.dumps({"generator": "phi-get tiny-phi", **spec.record()}, indent=2, sort_keys=True) + "\n",
            encoding="utf-8")
        for path in (tmp, *tmp.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
    return out
