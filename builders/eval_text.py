"""The fixed evaluation text: what perplexity and agreement are measured on.

Data only, in its own module because three modules read it (the tiny
checkpoint's tokenizer checks, the BPE tokenizer's round trip, the
evaluation): each fact in one place, and no import cycle between the tiny
checkpoint and its tokenizer.  Imports nothing.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EVAL_TEXT"]

#: The fixed evaluation text for perplexity and agreement (not in the tiny
#: corpus verbatim, but in its vocabulary).
EVAL_TEXT: Final = (
    "A package manager checks every byte of the model it downloads. "
    "Four bit weights make the model small enough for a phone, and the memory must also hold the cache. "
    "The registry stores each file by its digest, and the lockfile records the exact artifact for every device."
)
