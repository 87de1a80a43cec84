"""safetensors for PyTorch/transformers: the checkpoint cast to fp16 or bf16.

The model is loaded in fp32, cast, and saved with ``save_pretrained`` beside
the source's tokenizer files; the result is loaded back by transformers in
its own dtype on this CPU, scored against the fp32 reference and made to
generate before it counts as built.

Imports torch and transformers inside functions only.
"""

from __future__ import annotations

import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from phi_get.manifests.recipe import VariantSpec

from .base import BuildContext, Produced
from .errors import BuildError
from .evaluate import GENERATE_TOKENS, PROMPT, Reference, runtime_quality, score_logits

__all__ = ["TOKENIZER_FILES", "PytorchBackend", "run_safetensors"]

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja")
_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def copy_tokenizer(src: Path, dest: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)


def run_safetensors(folder: Path, precision: str, reference: Reference | None) -> tuple[Any, str, str]:
    """transformers loads ``folder`` in ``precision``'s dtype: the reference ids' logits (None without a
    reference), a greedy generation from the fixed prompt, and the runtime's name."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if precision not in _DTYPES:
        raise BuildError(f"transformers runs safetensors artifacts in fp16 or bf16 here, not {precision}")
    dtype = getattr(torch, _DTYPES[precision])
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    if next(loaded.parameters()).dtype != dtype:
        raise BuildError(f"{folder} loaded as {next(loaded.parameters()).dtype}, expected {dtype}")
    tok = AutoTokenizer.from_pretrained(str(folder))
    prompt_ids = list(reference.prompt_ids) if reference is not None else list(tok(PROMPT)["input_ids"])
    with torch.no_grad():
        logits = (loaded(torch.tensor([list(reference.ids)])).logits[0].float().numpy()
                  if reference is not None else None)
        prompt = torch.tensor([prompt_ids])
        out = loaded.generate(prompt, max_new_tokens=GENERATE_TOKENS, do_sample=False,
                              attention_mask=torch.ones_like(prompt))
    new = out[0, prompt.shape[1]:]
    if len(new) < 1:
        raise BuildError(f"transformers generated no token from {folder}")
    return logits, tok.decode(new), f"transformers {_version('transformers')} cpu {precision}"


class PytorchBackend:
    toolchain = "transformers"

    def unavailable(self, spec: VariantSpec) -> str | None:
        if str(spec.precision) not in _DTYPES:
            return f"the safetensors builder casts to fp16 or bf16, not {spec.precision}"
        for dist in ("torch", "transformers", "safetensors"):
            if _version(dist) == "absent":
                return f"{dist} is not installed (pip install 'phi-get[build]')"
        return None

    def tools(self, spec: VariantSpec) -> dict[str, str]:
        return {d: _version(d) for d in ("torch", "transformers", "safetensors")}

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        import torch
        from transformers import AutoModelForCausalLM

        dtype = getattr(torch, _DTYPES[str(spec.precision)])
        src = ctx.checkpoint.folder
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
        model.to(dtype).save_pretrained(str(dest), safe_serialization=True)
        copy_tokenizer(src, dest)
        toolchain = time.perf_counter() - start
        del model
        # The runtime check: transformers loads the artifact itself, in its dtype.
        logits, text, runtime = run_safetensors(dest, str(spec.precision), ctx.reference)
        metrics = score_logits(logits, ctx.reference)
        weights = sum(p.stat().st_size for p in dest.glob("*.safetensors"))
        quality = runtime_quality(metrics, ctx.reference, runtime, text)
        return Produced(weights_bytes=weights, kv_element_bytes=2, quality=quality, toolchain_seconds=toolchain)
