"""Running an installed artifact with its runtime: the smoke test on the device.

One loader per format, each importing its runtime inside the function (the
CLI's other commands never import them): llama_cpp for GGUF,
onnxruntime_genai for ONNX, transformers for safetensors, openvino_genai
for OpenVINO IR, mlx_lm for MLX.  A missing runtime is a
:class:`RuntimeMissingError` naming the package to install.  Generation is
greedy, so the same artifact and prompt give the same text.

Each loader runs on the target the resolution chose: GGUF with
every layer offloaded on cuda/metal/rocm, ONNX Runtime GenAI with the
variant's execution provider, OpenVINO on GPU or NPU, torch on cuda or mps,
MLX on Metal.  When the installed build cannot use that accelerator it
raises :class:`AcceleratorUnavailableError` naming the build and the fix
(``manifests/runtimes.py``); it never runs on the CPU instead.  A ``cpu-*``
target (``phi-get run --target cpu``) is the explicit opt-out.  Each run
reports the device it ran on, prompt and generation tokens per second and
peak memory.

Imports the standard library, :mod:`phi_get.manifests` and sibling modules;
the runtimes only inside the loaders.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.manifest import Format, Manifest
from phi_get.manifests.runtimes import RUNTIMES as RUNTIME_TABLE
from phi_get.manifests.runtimes import fix_for
from phi_get.manifests.targets import family_of

from .errors import AcceleratorUnavailableError, RuntimeMissingError
from .runcheck import check_artifact, runtime_errors

__all__ = ["RUNTIMES", "Generation", "generate"]

#: format -> (import name, distribution that provides it), from the one runtimes table (manifests/runtimes.py)
RUNTIMES: Final = {Format(f): (r.import_name, r.distribution) for r in RUNTIME_TABLE for f in r.formats}


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
    #: Where it ran, as the runtime names it ("cuda", "metal", "GPU", "cuda:0", "cpu").
    device: str = "cpu"
    prompt_tokens: int = 0
    #: Prefill and decode speed, when the runtime lets them be told apart (None: not measured).
    prompt_tokens_per_s: float | None = None
    tokens_per_s: float | None = None
    #: Peak resident memory of this process, plus the accelerator's where the runtime reports it.
    peak_memory_bytes: int | None = None


def _peak_rss() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def _rate(tokens: int, seconds: float) -> float | None:
    return round(tokens / seconds, 2) if seconds > 0 and tokens > 0 else None


def _unavailable(m: Manifest, dist: str, family: str, why: str) -> AcceleratorUnavailableError:
    return AcceleratorUnavailableError(
        f"{m.name} {m.version} {m.variant} was resolved for {family}, but the installed {dist} build cannot "
        f"use it: {why}; phi-get does not fall back to the CPU", runtime=dist, target=family,
        fix=fix_for(dist, family))


def _gguf(folder: Path, m: Manifest, prompt: str, max_tokens: int, family: str, context: int | None) -> Generation:
    import llama_cpp
    from llama_cpp import Llama

    gpu = family in ("cuda", "metal", "rocm")
    if family != "cpu" and not gpu:
        raise _unavailable(m, "llama-cpp-python", family, "llama.cpp has no backend for this target")
    if gpu and not llama_cpp.llama_supports_gpu_offload():
        raise _unavailable(m, "llama-cpp-python", family, "this wheel was built without GPU offload")
    model_file = next(folder / f.path for f in m.files if f.path.endswith(".gguf"))
    llm = Llama(model_path=str(model_file), n_ctx=context or min(m.memory.max_context, 2048), verbose=False, seed=0,
                n_gpu_layers=-1 if gpu else 0)  # every layer on the accelerator, none on the CPU target
    start = time.perf_counter()
    out: Any = llm(prompt, max_tokens=max_tokens, temperature=0.0)
    total = time.perf_counter() - start
    new = int(out["usage"]["completion_tokens"])
    n_prompt, prompt_rate, rate = int(out["usage"]["prompt_tokens"]), None, _rate(new, total)
    try:  # llama.cpp's own counters tell prefill from decode
        perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
        prompt_rate = _rate(int(perf.n_p_eval), perf.t_p_eval_ms / 1000)
        rate = _rate(int(perf.n_eval), perf.t_eval_ms / 1000) or rate
    except Exception:  # noqa: BLE001 - counters are a report, not a result
        pass
    return Generation(text=str(out["choices"][0]["text"]), runtime="llama-cpp-python", new_tokens=new,
                      device=family if gpu else "cpu", prompt_tokens=n_prompt, prompt_tokens_per_s=prompt_rate,
                      tokens_per_s=rate, peak_memory_bytes=_peak_rss())


#: Target family -> (ONNX Runtime GenAI provider name, the check that this build has it).
_ORT_PROVIDERS: Final = {"cuda": ("cuda", "is_cuda_available"), "directml": ("dml", "is_dml_available"),
                         "qnn-npu": ("qnn", "is_qnn_available"), "webgpu": ("webgpu", "is_webgpu_available")}


def _onnx(folder: Path, m: Manifest, prompt: str, max_tokens: int, family: str, context: int | None) -> Generation:
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.clear_providers()  # the CPU unless a provider is appended
    device = "cpu"
    if family != "cpu":
        if family not in _ORT_PROVIDERS:
            raise _unavailable(m, "onnxruntime-genai", family, "ONNX Runtime GenAI has no provider for it")
        provider, check = _ORT_PROVIDERS[family]
        available = getattr(og, check, None)
        if available is None or not available():
            raise _unavailable(m, "onnxruntime-genai", family, f"{check}() is false for this build")
        config.append_provider(provider)
        device = provider
    model = og.Model(config)
    tok = og.Tokenizer(model)
    params = og.GeneratorParams(model)
    ids = tok.encode(prompt)
    # max_length sizes the KV buffer onnxruntime-genai allocates up front (past_present_share_buffer).
    params.set_search_options(max_length=context or len(ids) + max_tokens, do_sample=False)
    gen = og.Generator(model, params)
    start = time.perf_counter()
    gen.append_tokens(ids)
    prefill = time.perf_counter() - start
    new: list[int] = []
    start = time.perf_counter()
    while not gen.is_done() and len(new) < max_tokens:
        gen.generate_next_token()
        new.append(int(gen.get_next_tokens()[0]))
    decode = time.perf_counter() - start
    return Generation(text=tok.decode(new), runtime="onnxruntime-genai", new_tokens=len(new), device=device,
                      prompt_tokens=len(ids), prompt_tokens_per_s=_rate(len(ids), prefill),
                      tokens_per_s=_rate(len(new), decode), peak_memory_bytes=_peak_rss())


def _torch_device(m: Manifest, family: str) -> str:
    import torch

    if family == "cpu":
        return "cpu"
    if family in ("cuda", "rocm"):  # ROCm builds of torch answer through torch.cuda too
        if not torch.cuda.is_available():
            raise _unavailable(m, "transformers", family, f"torch {torch.__version__} sees no {family} device")
        return "cuda"
    if family == "metal":
        if not torch.backends.mps.is_available():
            raise _unavailable(m, "transformers", family, f"torch {torch.__version__} has no MPS device")
        return "mps"
    raise _unavailable(m, "transformers", family, "torch has no backend for this target")


def _safetensors(folder: Path, m: Manifest, prompt: str, max_tokens: int, family: str,
                 context: int | None) -> Generation:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = _torch_device(m, family)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model: Any = AutoModelForCausalLM.from_pretrained(str(folder))
    model = model.to(device)
    model.eval()
    inputs = tok(prompt, return_tensors="pt").to(device)
    n_prompt = int(inputs["input_ids"].shape[1])
    with torch.no_grad():
        start = time.perf_counter()
        model(**inputs)  # one prefill pass, timed on its own
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        total = time.perf_counter() - start
    new = out[0][n_prompt:]
    peak = _peak_rss()
    if device == "cuda":
        peak = int(torch.cuda.max_memory_allocated())  # the accelerator's peak, what a GPU run is bounded by
    return Generation(text=str(tok.decode(new, skip_special_tokens=True)), runtime="transformers",
                      new_tokens=len(new), device=str(model.device), prompt_tokens=n_prompt,
                      prompt_tokens_per_s=_rate(n_prompt, prefill),
                      tokens_per_s=_rate(len(new), max(total - prefill, total / 2)), peak_memory_bytes=peak)


_OPENVINO_DEVICES: Final = {"cpu": "CPU", "intel-gpu": "GPU", "intel-npu": "NPU"}


def _openvino(folder: Path, m: Manifest, prompt: str, max_tokens: int, family: str, context: int | None) -> Generation:
    import openvino_genai

    device = _OPENVINO_DEVICES.get(family)
    if device is None:
        raise _unavailable(m, "openvino-genai", family, "OpenVINO has no device for this target")
    if device != "CPU":
        import openvino

        have = openvino.Core().available_devices
        if not any(d.startswith(device) for d in have):
            raise _unavailable(m, "openvino-genai", family, f"OpenVINO sees only {', '.join(have) or 'no devices'}")
    pipe = openvino_genai.LLMPipeline(str(folder), device)
    config = pipe.get_generation_config()  # the artifact's generation_config.json (its end-of-sequence ids)
    config.max_new_tokens = max_tokens
    config.do_sample = False  # greedy
    config.num_beams = 1
    config.apply_chat_template = False  # the prompt is text to continue, as for the other runtimes
    out: Any = pipe.generate([prompt], config)  # a list in, DecodedResults out (a str in gives only the text)
    perf = out.perf_metrics
    n_prompt = int(perf.get_num_input_tokens())
    ttft = float(perf.get_ttft().mean) / 1000
    return Generation(text=str(out.texts[0]), runtime="openvino-genai",
                      new_tokens=int(perf.get_num_generated_tokens()), device=device, prompt_tokens=n_prompt,
                      prompt_tokens_per_s=_rate(n_prompt, ttft), tokens_per_s=round(float(perf.get_throughput().mean), 2),
                      peak_memory_bytes=_peak_rss())


def _mlx(folder: Path, m: Manifest, prompt: str, max_tokens: int, family: str, context: int | None) -> Generation:
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    if family not in ("metal", "cpu"):
        raise _unavailable(m, "mlx-lm", family, "MLX runs on Apple silicon only")
    if family == "metal" and not mx.metal.is_available():
        raise _unavailable(m, "mlx-lm", family, "MLX sees no Metal device")
    mx.set_default_device(mx.gpu if family == "metal" else mx.cpu)
    model, tok = load(str(folder))
    text, new_tokens, step = "", 0, None
    for step in stream_generate(model, tok, prompt, max_tokens=max_tokens, sampler=make_sampler(temp=0.0)):
        text += step.text
        new_tokens = int(step.generation_tokens)  # counts a final end-of-sequence token, as the others do
    def stat(name: str) -> float | None:  # mlx-lm's last response carries the run's speeds and peak (GB)
        value = getattr(step, name, None)
        return None if value is None else round(float(value), 2)

    peak_gb = stat("peak_memory")
    return Generation(text=text, runtime="mlx-lm", new_tokens=new_tokens, device=family,
                      prompt_tokens=int(getattr(step, "prompt_tokens", 0) or 0), prompt_tokens_per_s=stat("prompt_tps"),
                      tokens_per_s=stat("generation_tps"),
                      peak_memory_bytes=int(peak_gb * 1e9) if peak_gb is not None else _peak_rss())


_LOADERS: Final[dict[Format, Callable[[Path, Manifest, str, int, str, int | None], Generation]]] = {
    Format.GGUF: _gguf, Format.ONNX: _onnx, Format.SAFETENSORS: _safetensors,
    Format.OPENVINO: _openvino, Format.MLX: _mlx,
}


@runtime_errors  # a runtime's own exception is a RuntimeFailedError naming it and the artifact
def generate(folder: Path, manifest: Manifest, prompt: str, *, max_tokens: int = 32,
             target: str | None = None, context: int | None = None) -> Generation:
    """Load the artifact in ``folder`` with its runtime on ``target`` and generate greedily from ``prompt``.

    ``target`` is the tag the resolution chose (``cuda-sm80``, ``metal``,
    ``cpu-x86_64``); None or a ``cpu`` tag runs on the CPU.  An accelerator
    the installed build cannot use raises :class:`AcceleratorUnavailableError`.
    ``context`` is the window the runtime is opened with where it sizes one up
    front (llama.cpp's ``n_ctx``, onnxruntime-genai's ``max_length``); None: 2048
    (or the model's maximum) for llama.cpp, prompt + ``max_tokens`` for
    onnxruntime-genai.  The other runtimes grow their cache as they go.
    """
    module, dist = RUNTIMES[manifest.format]
    if importlib.util.find_spec(module) is None:
        raise RuntimeMissingError(manifest.runtime.distribution or dist, module,
                                  artifact=f"{manifest.name} {manifest.version} {manifest.variant}")
    check_artifact(folder, manifest)  # sizes and headers, before any native code reads the files
    family = "cpu" if target is None else family_of(target)
    return _LOADERS[manifest.format](folder, manifest, prompt, max_tokens, family, context)
