"""safetensors for PyTorch/transformers: the checkpoint cast to fp16 or bf16.

The checkpoint's tensors are cast a block of rows at a time into one
``model.safetensors`` (``safetensors_stream``: no model object, the peak is
one block, not the model), beside its config.json with the new dtype, its
generation config and its tokenizer files; the result is loaded back by transformers in
its own dtype on this CPU, scored against the fp32 reference and made to
generate before it counts as built.

Imports torch and transformers inside functions only.
"""

from __future__ import annotations

import json
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from phi_get.manifests.recipe import VariantSpec

from .base import BuildContext, Produced
from .errors import BuildError
from .evaluate import GENERATE_TOKENS, PROMPT, Reference, runtime_quality, score_logits
from .safetensors_stream import TORCH_DTYPES, cast_safetensors

__all__ = ["TOKENIZER_FILES", "PytorchBackend", "run_safetensors"]

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja")
_SAFETENSORS_DTYPES = {"fp16": "F16", "bf16": "BF16"}
#: Precision -> the torch dtype transformers loads the artifact in.
_DTYPES = {precision: TORCH_DTYPES[name] for precision, name in _SAFETENSORS_DTYPES.items()}
#: Bumped when the cast's output bytes change.
CAST_VERSION = "1"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def copy_tokenizer(src: Path, dest: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)


def cast_checkpoint(src: Path, dest: Path, precision: str) -> None:
    """``src``'s weights in ``precision`` as ``dest/model.safetensors``, with its configs and tokenizer."""
    cast_safetensors(sorted(src.glob("*.safetensors")), dest / "model.safetensors", _SAFETENSORS_DTYPES[precision])
    config = json.loads((src / "config.json").read_text("utf-8"))
    for key in ("torch_dtype", "dtype"):  # transformers 4 reads the first, 5 writes the second
        if key == "torch_dtype" or key in config:
            config[key] = _DTYPES[precision]
    (dest / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", "utf-8")
    if (src / "generation_config.json").is_file():
        shutil.copyfile(src / "generation_config.json", dest / "generation_config.json")
    copy_tokenizer(src, dest)


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
        return {**{d: _version(d) for d in ("torch", "transformers", "safetensors")},
                "phi-get-safetensors-cast": CAST_VERSION}

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        start = time.perf_counter()
        cast_checkpoint(ctx.checkpoint.folder, dest, str(spec.precision))
        toolchain = time.perf_counter() - start
        # The runtime check: transformers loads the artifact itself, in its dtype.
        logits, text, runtime = run_safetensors(dest, str(spec.precision), ctx.reference)
        metrics = score_logits(logits, ctx.reference)
        weights = sum(p.stat().st_size for p in dest.glob("*.safetensors"))
        quality = runtime_quality(metrics, ctx.reference, runtime, text)
        return Produced(weights_bytes=weights, kv_element_bytes=2, quality=quality, toolchain_seconds=toolchain)
