"""Quality measurement: the PyTorch reference and the metrics every artifact gets.

The reference is the unquantized checkpoint run by transformers in fp32 on
the fixed evaluation text (``tiny.EVAL_TEXT``), tokenized once by the
checkpoint's own tokenizer; every artifact's runtime is fed the same token
ids and its logits are compared with the reference: perplexity of the text,
top-1 next-token agreement, and the largest absolute logit difference.

Imports numpy, torch and transformers inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phi_get.manifests.manifest import Quality, QualityCheck

from .tiny import EVAL_TEXT

__all__ = [
    "GENERATE_TOKENS",
    "PROMPT",
    "Reference",
    "load_reference",
    "runtime_quality",
    "score_logits",
    "structural_quality",
]

#: The fixed prompt every artifact must generate from before it counts as built.
PROMPT = "The registry stores each file"
GENERATE_TOKENS = 8


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """Token ids of the evaluation text and the fp32 PyTorch logits for them."""

    ids: tuple[int, ...]
    prompt_ids: tuple[int, ...]
    logits_path: Path  # .npy, shape (len(ids), vocab), float32
    text_sha256: str

    def logits(self) -> Any:
        import numpy as np

        return np.load(self.logits_path)


def _tokenize(folder: Path) -> tuple[list[int], list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    return list(tok(EVAL_TEXT)["input_ids"]), list(tok(PROMPT)["input_ids"])


def load_reference(folder: Path, work: Path) -> Reference:
    """Compute (or reuse from ``work``) the reference logits of a checkpoint."""
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    meta_path, logits_path = work / "reference.json", work / "reference.npy"
    text_sha = hashlib.sha256(EVAL_TEXT.encode()).hexdigest()
    if meta_path.is_file() and logits_path.is_file():
        meta = json.loads(meta_path.read_text("utf-8"))
        if meta.get("text_sha256") == text_sha:
            return Reference(ids=tuple(meta["ids"]), prompt_ids=tuple(meta["prompt_ids"]),
                             logits_path=logits_path, text_sha256=text_sha)
    import torch
    from transformers import AutoModelForCausalLM

    ids, prompt_ids = _tokenize(folder)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().numpy()
    tmp = logits_path.with_suffix(".tmp.npy")
    np.save(tmp, logits.astype(np.float32))
    tmp.replace(logits_path)
    meta_tmp = meta_path.with_suffix(".tmp")
    meta_tmp.write_text(json.dumps({"ids": ids, "prompt_ids": prompt_ids, "text_sha256": text_sha}), "utf-8")
    meta_tmp.replace(meta_path)
    return Reference(ids=tuple(ids), prompt_ids=tuple(prompt_ids), logits_path=logits_path, text_sha256=text_sha)


def _perplexity(logits: Any, ids: tuple[int, ...]) -> float:
    import numpy as np

    x = logits[:-1].astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    return float(math.exp(nll.mean()))


def score_logits(logits: Any, reference: Reference) -> dict[str, float]:
    """Perplexity, reference perplexity, top-1 agreement and max |logit error|."""
    import numpy as np

    ref = reference.logits()
    logits = np.asarray(logits, dtype=np.float32)
    if logits.shape != ref.shape:
        raise ValueError(f"runtime logits have shape {logits.shape}, the reference {ref.shape}")
    return {
        "perplexity": round(_perplexity(logits, reference.ids), 6),
        "reference_perplexity": round(_perplexity(ref, reference.ids), 6),
        "top1_agreement": round(float((logits.argmax(axis=1) == ref.argmax(axis=1)).mean()), 6),
        "max_abs_logit_error": float(f"{float(np.abs(logits - ref).max()):.6g}"),
    }


def runtime_quality(metrics: dict[str, float], reference: Reference, runtime: str, generated: str) -> Quality:
    """A quality record for an artifact run by its runtime on this machine."""
    return Quality(
        check=QualityCheck.RUNTIME,
        metrics=metrics,
        evaluation={
            "text_sha256": reference.text_sha256, "tokens": str(len(reference.ids)), "runtime": runtime,
            "prompt": PROMPT, "generated_tokens": str(GENERATE_TOKENS),
        },
        note=f"generated from the fixed prompt: {generated[:200]!r}",
    )


def structural_quality(runtime: str, note: str) -> Quality:
    """A quality record for an artifact whose hardware is not here: never run."""
    return Quality(check=QualityCheck.STRUCTURAL, metrics={}, evaluation={"runtime": runtime}, note=note)
