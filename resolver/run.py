"""Running an installed artifact with its runtime: the smoke test on the device.

One loader per format, each importing its runtime inside the function (the
CLI's other commands never import them): llama_cpp for GGUF,
onnxruntime_genai for ONNX, transformers for safetensors, openvino_genai
for OpenVINO IR, mlx_lm for MLX.  A missing runtime is a
:class:`RuntimeMissingError` naming the package to install.  Generation is
greedy, so the same artifact and prompt give the same text.

Imports the standard library, :mod:`phi_get.manifests` and sibling modules;
the runtimes only inside the loaders.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.manifest import Format, Manifest

from .errors import RuntimeMissingError

__all__ = ["RUNTIMES", "Generation", "generate"]

#: format -> (import name, distribution that provides it)
RUNTIMES: Final = {
    Format.GGUF: ("llama_cpp", "llama-cpp-python"),
    Format.ONNX: ("onnxruntime_genai", "onnxruntime-genai"),
    Format.SAFETENSORS: ("transformers", "transformers"),
    Format.OPENVINO: ("openvino_genai", "openvino-genai"),
    Format.MLX: ("mlx_lm", "mlx-lm"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Generation:
    """What a runtime made of the prompt: the new text only, and how many tokens it generated.

    ``new_tokens`` is at most ``max_tokens``; fewer when the model ended the
    sequence.  That final end-of-sequence token is counted by onnxruntime-genai,
    transformers, openvino-genai and mlx-lm, not by llama-cpp-python.
    """

    text: str
    runtime: str
    new_tokens: int


def _gguf(folder: Path, m: Manifest, prompt: str, max_tokens: int) -> Generation:
    from llama_cpp import Llama

    model_file = next(folder / f.path for f in m.files if f.path.endswith(".gguf"))
    llm = Llama(model_path=str(model_file), n_ctx=min(m.memory.max_context, 2048), verbose=False, seed=0)
    out: Any = llm(prompt, max_tokens=max_tokens, temperature=0.0)
    return Generation(text=str(out["choices"][0]["text"]), runtime="llama-cpp-python",
                      new_tokens=int(out["usage"]["completion_tokens"]))


def _onnx(folder: Path, m: Manifest, prompt: str, max_tokens: int) -> Generation:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    tok = og.Tokenizer(model)
    params = og.GeneratorParams(model)
    ids = tok.encode(prompt)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    new: list[int] = []
    while not gen.is_done() and len(new) < max_tokens:
        gen.generate_next_token()
        new.append(int(gen.get_next_tokens()[0]))
    return Generation(text=tok.decode(new), runtime="onnxruntime-genai", new_tokens=len(new))


def _safetensors(folder: Path, m: Manifest, prompt: str, max_tokens: int) -> Generation:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model: Any = AutoModelForCausalLM.from_pretrained(str(folder))
    model.eval()
    inputs = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    new = out[0][inputs["input_ids"].shape[1]:]
    return Generation(text=str(tok.decode(new, skip_special_tokens=True)), runtime="transformers",
                      new_tokens=len(new))


def _openvino(folder: Path, m: Manifest, prompt: str, max_tokens: int) -> Generation:
    import openvino_genai

    pipe = openvino_genai.LLMPipeline(str(folder), "CPU")
    config = pipe.get_generation_config()  # the artifact's generation_config.json (its end-of-sequence ids)
    config.max_new_tokens = max_tokens
    config.do_sample = False  # greedy
    config.num_beams = 1
    config.apply_chat_template = False  # the prompt is text to continue, as for the other runtimes
    out: Any = pipe.generate([prompt], config)  # a list in, DecodedResults out (a str in gives only the text)
    return Generation(text=str(out.texts[0]), runtime="openvino-genai",
                      new_tokens=int(out.perf_metrics.get_num_generated_tokens()))


def _mlx(folder: Path, m: Manifest, prompt: str, max_tokens: int) -> Generation:
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tok = load(str(folder))
    text, new_tokens = "", 0
    for step in stream_generate(model, tok, prompt, max_tokens=max_tokens, sampler=make_sampler(temp=0.0)):
        text += step.text
        new_tokens = int(step.generation_tokens)  # counts a final end-of-sequence token, as the others do
    return Generation(text=text, runtime="mlx-lm", new_tokens=new_tokens)


_LOADERS: Final[dict[Format, Callable[[Path, Manifest, str, int], Generation]]] = {
    Format.GGUF: _gguf, Format.ONNX: _onnx, Format.SAFETENSORS: _safetensors,
    Format.OPENVINO: _openvino, Format.MLX: _mlx,
}


def generate(folder: Path, manifest: Manifest, prompt: str, *, max_tokens: int = 32) -> Generation:
    """Load the artifact in ``folder`` with its runtime and generate greedily from ``prompt``."""
    module, dist = RUNTIMES[manifest.format]
    if importlib.util.find_spec(module) is None:
        raise RuntimeMissingError(manifest.runtime.distribution or dist, module,
                                  artifact=f"{manifest.name} {manifest.version} {manifest.variant}")
    return _LOADERS[manifest.format](folder, manifest, prompt, max_tokens)
