"""The GGUF vocabulary: a checkpoint's tokenizer as llama.cpp's tokenizers read it.

Two kinds, chosen from the checkpoint's files as llama.cpp's own converter
does (``tokenizer_config.json``'s ``tokenizer_class``, then what exists):

- ``llama`` (sentencepiece): Phi-3-mini and Phi-3.5-mini's ``tokenizer.model``
  pieces with their scores and types, Phi-3's chat tokens as control tokens.
- ``gpt2`` (byte-level BPE): Phi-4-mini's ``tokenizer.json``.  Tokens are
  stored in their byte-level spelling (``Ġthe``), added tokens as their
  plain text (CONTROL when special or shaped like ``<|...|>``, else
  USER_DEFINED), ids the tokenizer does not use (Phi-4-mini pads its
  vocabulary to 200064) as ``[PADn]`` UNUSED, the merges as ``"a b"``
  strings in rank order, and ``tokenizer.ggml.pre`` names the pre-tokenizer
  llama.cpp must apply.  That name is read from the ``pre_tokenizer``
  structure itself (:data:`PRE_TOKENIZERS`), not guessed: Phi-4-mini's
  o200k split followed by a regex-free ByteLevel is llama.cpp's ``gpt-4o``.
  An unknown pre-tokenizer is refused, since llama.cpp would otherwise split
  text differently from the checkpoint's tokenizer.

Imports gguf and sentencepiece inside functions only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import CheckpointError

__all__ = ["PRE_TOKENIZERS", "GgufVocab", "read_vocab"]

#: The o200k split (Phi-4-mini, gpt-4o), exactly as in tokenizer.json.
_O200K: Final = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Split regex before a regex-free ByteLevel -> llama.cpp's tokenizer.ggml.pre
#: (llama-vocab.cpp applies the same expression for that name).  None: a
#: plain ByteLevel with GPT-2's built-in regex.
PRE_TOKENIZERS: Final[dict[str | None, str]] = {_O200K: "gpt-4o", None: "gpt2"}


@dataclass(frozen=True, kw_only=True, slots=True)
class GgufVocab:
    """Everything the GGUF file says about the tokenizer (but the special ids, read by gguf.SpecialVocab)."""

    model: str  # tokenizer.ggml.model: "llama" or "gpt2"
    pre: str  # tokenizer.ggml.pre
    tokens: list[bytes]
    types: list[int]
    scores: list[float] | None = None  # sentencepiece only
    merges: list[str] | None = None  # BPE only


def read_vocab(folder: Path, n_vocab: int) -> GgufVocab:
    """The checkpoint's vocabulary, padded to the config's ``n_vocab`` rows."""
    config_path = folder / "tokenizer_config.json"
    tok_config = _json(config_path) if config_path.is_file() else {}
    if tok_config.get("tokenizer_class") == "GPT2Tokenizer" or not (folder / "tokenizer.model").is_file():
        return _bpe_vocab(folder, n_vocab)
    return _sentencepiece_vocab(folder, n_vocab, tok_config)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data


def _sentencepiece_vocab(folder: Path, n_vocab: int, tok_config: dict[str, Any]) -> GgufVocab:
    """Tokens, scores and token types as llama.cpp's 'llama' tokenizer expects them."""
    from gguf import TokenType
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(folder / "tokenizer.model"))
    if sp.vocab_size() > n_vocab:
        raise CheckpointError(f"tokenizer.model has {sp.vocab_size()} pieces, config.json vocab_size is {n_vocab}")
    tokens = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [int(TokenType.UNUSED)] * n_vocab
    for i in range(sp.vocab_size()):
        tokens[i], scores[i] = sp.IdToPiece(i).encode("utf-8"), sp.GetScore(i)
        types[i] = int(
            TokenType.UNKNOWN if sp.IsUnknown(i) else TokenType.CONTROL if sp.IsControl(i)
            else TokenType.UNUSED if sp.IsUnused(i) else TokenType.BYTE if sp.IsByte(i) else TokenType.NORMAL)
    # Phi-3's chat tokens are added tokens: special ones are control tokens.
    for key, data in tok_config.get("added_tokens_decoder", {}).items():
        i = int(key)
        if i >= n_vocab:
            continue
        tokens[i], scores[i] = data["content"].encode("utf-8"), -1000.0
        types[i] = int(TokenType.CONTROL if data.get("special") else TokenType.USER_DEFINED)
    return GgufVocab(model="llama", pre="default", tokens=tokens, types=types, scores=scores)


def _pre_tokenizer(pre: Any, where: Path) -> str:
    """llama.cpp's name for a byte-level pre-tokenizer, or a CheckpointError naming what it is."""
    steps = pre.get("pretokenizers", []) if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") if isinstance(s, dict) else None for s in steps]
    regex: str | None = None
    if kinds == ["Split", "ByteLevel"] and steps[1].get("use_regex") is False:
        split = steps[0]
        if split.get("behavior") == "Isolated" and not split.get("invert"):
            regex = (split.get("pattern") or {}).get("Regex")
            if regex in PRE_TOKENIZERS:
                return PRE_TOKENIZERS[regex]
    elif kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return PRE_TOKENIZERS[None]
    shown = regex if regex is not None else json.dumps(pre)[:300]
    raise CheckpointError(
        f"the GGUF converter does not know the pre-tokenizer of {where}: {shown!r}; it knows "
        f"{', '.join(PRE_TOKENIZERS.values())} (llama.cpp would split text differently from the checkpoint)")


def _looks_special(text: str) -> bool:
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<pad>", "<mask>")


def _merges(model: dict[str, Any], where: Path) -> list[str]:
    merges = model.get("merges")
    if not isinstance(merges, list) or not merges:
        raise CheckpointError(f"{where} has no BPE merges")
    out = []
    for i, merge in enumerate(merges):
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p and " " not in p
                                                                  for p in pair)):
            raise CheckpointError(f"{where}: model.merges[{i}] is not a pair of space-free byte-level tokens: {merge!r}")
        out.append(f"{pair[0]} {pair[1]}")
    return out


def _bpe_vocab(folder: Path, n_vocab: int) -> GgufVocab:
    """A GPT-2-style byte-level BPE tokenizer.json as llama.cpp's 'gpt2' tokenizer expects it."""
    from gguf import TokenType

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"the GGUF converter needs a sentencepiece tokenizer.model or a BPE tokenizer.json in "
                          f"{folder}")
    data = _json(path)
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise CheckpointError(f"{path}: model.type is {model.get('type')!r}; the GGUF converter reads BPE tokenizers")
    pre = _pre_tokenizer(data.get("pre_tokenizer"), path)
    tokens = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    types = [int(TokenType.UNUSED)] * n_vocab
    entries = [(int(i), str(t), None) for t, i in model["vocab"].items()]
    entries += [(int(a["id"]), str(a["content"]), a) for a in data.get("added_tokens", [])]
    for i, text, added in entries:
        if not 0 <= i < n_vocab:
            raise CheckpointError(f"{path}: token {text!r} has id {i}, outside config.json's vocab_size {n_vocab}")
        tokens[i] = text.encode("utf-8")
        if added is None:
            types[i] = int(TokenType.NORMAL)
        elif added.get("special") or _looks_special(text):
            types[i] = int(TokenType.CONTROL)
        else:
            types[i] = int(TokenType.USER_DEFINED)
    return GgufVocab(model="gpt2", pre=pre, tokens=tokens, types=types, merges=_merges(model, path))
