"""The fp32 reference forward pass with the weights read one module at a time.

transformers builds the model on the ``meta`` device (shapes, no storage);
a hook before each top-level piece (the embedding, each decoder layer, the
final norm, the output head) reads that piece's tensors from the
checkpoint's safetensors files in fp32, and a hook after it gives the
storage back.  The model's own ``forward`` runs unchanged, so the logits are
transformers' fp32 logits, while the resident weights are one piece at a
time: the peak is the largest piece (for Phi, the embedding or the output
head), not the model.  Only the activations of the evaluation text (a few
hundred tokens) and the logits stay for the whole pass.

Imports torch, safetensors and transformers inside functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import BuildError

__all__ = ["streamed_logits"]

#: Tensors a checkpoint may carry that the model computes itself.
_COMPUTED = ("rotary_emb.inv_freq", ".masked_bias")


def streamed_logits(folder: Path, ids: list[int]) -> Any:
    """transformers' fp32 logits (a ``(len(ids), vocab)`` float32 array) for ``ids``."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    _real_buffers(model, config)
    pieces = _pieces(model)
    where: dict[str, Path] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            where.update((key, path) for key in fh.keys() if not key.endswith(_COMPUTED))
    wanted = {f"{prefix}.{name}" for prefix, module in pieces for name, _ in module.named_parameters()}
    tied = getattr(config, "tie_word_embeddings", False)
    aliases = {"lm_head.weight": "model.embed_tokens.weight"} if tied and "lm_head.weight" not in where else {}
    missing = sorted(k for k in wanted if aliases.get(k, k) not in where)
    unused = sorted(set(where) - {aliases.get(k, k) for k in wanted})
    if missing or unused:
        raise BuildError(f"the checkpoint in {folder} does not match its config.json: "
                         f"missing {missing[:3]}, not in the model {unused[:3]}")
    for prefix, module in pieces:
        module.register_forward_pre_hook(_loader(prefix, where, aliases))
        module.register_forward_hook(_unloader)
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]
    return logits.float().numpy()


def _pieces(model: Any) -> list[tuple[str, Any]]:
    """(name prefix, module) of what is loaded at once: every direct child of the decoder that
    holds parameters (decoder layers one by one), and the output head."""
    import torch

    out: list[tuple[str, Any]] = []
    base_name, base = next((n, m) for n, m in model.named_children() if n != "lm_head")
    for name, child in base.named_children():
        if isinstance(child, torch.nn.ModuleList):
            out.extend((f"{base_name}.{name}.{i}", layer) for i, layer in enumerate(child))
        elif any(True for _ in child.parameters()):
            out.append((f"{base_name}.{name}", child))
    out.append(("lm_head", model.lm_head))
    return out


def _real_buffers(model: Any, config: Any) -> None:
    """Buffers the model computes at construction (the rotary frequencies) were made on meta:
    make those modules again on the CPU."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if any(b.is_meta for b in child.buffers(recurse=False)) and not any(True for _ in child.parameters()):
                setattr(parent, name, type(child)(config=config))


def _loader(prefix: str, where: dict[str, Path], aliases: dict[str, str]) -> Any:
    """Read a piece's tensors in fp32; each file is opened for the piece and closed after it,
    so its mapped pages do not stay resident for the rest of the pass."""
    def load(module: Any, _args: Any) -> None:
        from safetensors import safe_open

        keys = {name: aliases.get(f"{prefix}.{name}", f"{prefix}.{name}") for name, _ in module.named_parameters()}
        state = {}
        for path in sorted({where[key] for key in keys.values()}):
            with safe_open(str(path), framework="pt") as fh:
                state.update((name, fh.get_tensor(key).float()) for name, key in keys.items() if where[key] == path)
        module.load_state_dict(state, strict=True, assign=True)

    return load


def _unloader(module: Any, _args: Any, _output: Any) -> None:
    module.to("meta")
