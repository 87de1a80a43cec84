"""The prompt the run-memory measurement uses fills the window with tokens spread over the vocabulary.

A runtime that memory-maps its weights and reads the input embedding by row
(transformers' safetensors, onnxruntime-genai's int4 Gather) makes resident
only the pages the prompt's tokens touch: a prompt of one repeated token left
an untied embedding out of the measured peak.  ``spread_prompt`` must give
distinct tokens from the whole word range of the vocabulary, and exactly fill
the count it is asked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from phi_get.manifests.errors import PhiGetError
from phi_get.resolver.runmemory import spread_prompt


def _encode(folder: Path, text: str) -> list[int]:
    tokenizers = pytest.importorskip("tokenizers")
    ids: list[int] = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")).encode(
        text, add_special_tokens=False).ids
    return ids


def test_the_prompt_fills_the_count_with_distinct_tokens_spread_over_the_vocabulary(tiny_phi: Path) -> None:
    short, long = (_encode(tiny_phi, spread_prompt(tiny_phi, n)) for n in (40, 1000))
    assert 38 <= len(short) <= 40 and 998 <= len(long) <= 1000
    assert len(set(short)) == len(short)  # fewer than the vocabulary's words: no token twice
    every_word = set(long)  # more than the vocabulary's words: it cycles through all of them
    assert len(every_word) > len(short) and set(short) <= every_word
    # Spread, not the first 40 words: the short prompt spans most of the ids the words take.
    assert max(short) - min(short) >= 0.8 * (max(every_word) - min(every_word))


def test_a_folder_without_a_vocabulary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PhiGetError, match=r"has no tokenizer\.json and no \.gguf file: no vocabulary"):
        spread_prompt(tmp_path, 100)
