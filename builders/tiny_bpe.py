"""The tiny Phi-4-style tokenizer: a byte-level BPE ``tokenizer.json`` trained here.

Phi-4-mini ships no ``tokenizer.model``: its tokenizer is a GPT-2-style
byte-level BPE (OpenAI's o200k vocabulary) in ``tokenizer.json``, split
first by the o200k regular expression, then mapped to bytes
(``ByteLevel(use_regex=false)``), with its chat and control tokens appended
after the learned vocabulary as added special tokens, and
``tokenizer_config.json`` naming ``GPT2Tokenizer``.  This module trains the
same structure at a tiny size with the ``tokenizers`` library on the
shipped corpus, so that the converters meet what they would meet in the real
checkpoint.

Training is deterministic (one fixed text, ties broken by the trainer's
ordering); the files are written by this module, not by transformers'
``save_pretrained`` (which adds machine-specific keys).  May import the
standard library; ``tokenizers`` and ``transformers`` inside functions only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from .eval_text import EVAL_TEXT

__all__ = ["O200K_PATTERN", "PHI4_SPECIAL_TOKENS", "train_bpe", "write_bpe_files", "write_bpe_tokenizer"]

#: The o200k pre-tokenizer split, as in Phi-4-mini's (and gpt-4o's) tokenizer.json.
O200K_PATTERN: Final = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Appended after the learned vocabulary, in this order, as Phi-4-mini does
#: (its <|endoftext|> is bos, eos and pad).
PHI4_SPECIAL_TOKENS: Final = ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool|>")

_CHAT_TEMPLATE: Final = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_bpe(text: str, vocab_size: int, special: tuple[str, ...] = PHI4_SPECIAL_TOKENS) -> str:
    """tokenizer.json text of a byte-level BPE trained on ``text``, ``special`` appended as added tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(special), min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(text.splitlines(), trainer)
    if special:
        tok.add_special_tokens(list(special))
    return tok.to_str(pretty=True)


def _config(added: dict[str, int], max_context: int) -> str:
    end = "<|endoftext|>"
    return json.dumps({
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": end, "eos_token": end, "unk_token": end, "pad_token": end,
        "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_context,
        "added_tokens_decoder": {
            str(i): {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for content, i in sorted(added.items(), key=lambda kv: kv[1])
        },
        "chat_template": _CHAT_TEMPLATE,
    }, indent=2, sort_keys=True) + "\n"


def write_bpe_tokenizer(folder: Path, text: str, vocab_size: int, max_context: int) -> dict[str, int]:
    """Train on ``text`` and write tokenizer.json + tokenizer_config.json into ``folder``; the special tokens' ids."""
    return write_bpe_files(folder, train_bpe(text, vocab_size), max_context)


def write_bpe_files(folder: Path, tokenizer_json: str, max_context: int) -> dict[str, int]:
    """Write ``tokenizer_json`` and its tokenizer_config.json into ``folder``; the added tokens' ids.

    Checks that transformers loads the files and tokenizes exactly as the
    ``tokenizers`` library does.
    """
    added = {t["content"]: int(t["id"]) for t in json.loads(tokenizer_json)["added_tokens"]}
    (folder / "tokenizer.json").write_text(tokenizer_json + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(_config(added, max_context), encoding="utf-8")

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(folder))
    raw = Tokenizer.from_str(tokenizer_json)
    probe = EVAL_TEXT + "<|user|>hi<|end|>"
    if hf(probe)["input_ids"] != raw.encode(probe).ids:
        raise RuntimeError(f"transformers tokenizes the BPE tokenizer in {folder} differently from tokenizers")
    return added
