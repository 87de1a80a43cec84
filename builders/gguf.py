"""GGUF for llama.cpp: phi-get's own HF-to-GGUF converter for the Phi-3 family, then llama.cpp's quantizer.

llama.cpp's ``convert_hf_to_gguf.py`` ships in no wheel, so phi-get writes
the GGUF itself with the ``gguf`` package (GGUFWriter, the PHI3 tensor name
map, the metadata keys llama.cpp's phi3 loader reads, and the vocabulary from
``gguf_vocab.py``: sentencepiece for Phi-3/3.5, byte-level BPE for Phi-4).
What Phi-4-mini adds is carried as llama.cpp expects it: grouped-query
attention (``head_count_kv``; the fused qkv tensor keeps its GQA shape),
partial rotary embeddings (``rope.dimension_count`` = head_dim x
partial_rotary_factor), tied word embeddings (no ``output.weight``: llama.cpp
then uses ``token_embd`` as the output matrix), and LongRoPE
(``rope_factors_short``/``rope_factors_long`` tensors of rope_dims/2 values
and ``rope.scaling.attn_factor``).

The conversion is done once per source, in fp32, under
``OUT/.work/<source>/gguf/``, and feeds every GGUF variant: F32 is that file,
the others come from llama.cpp's own quantizer
(``llama_cpp.llama_model_quantize``).  Every variant is then loaded by
llama-cpp-python, scored against the PyTorch logits, and made to generate.

Imports gguf, numpy, safetensors, torch and llama_cpp inside functions only.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.atomic import replacing
from phi_get.manifests.recipe import VariantSpec

from .base import BuildContext, Produced
from .checkpoint import Checkpoint
from .errors import BuildError, CheckpointError
from .evaluate import GENERATE_TOKENS, PROMPT, runtime_quality, score_logits
from .gguf_vocab import read_vocab

__all__ = ["FILE_TYPES", "MODEL_FILE", "GgufBackend", "convert_to_gguf", "quantize_gguf"]

MODEL_FILE: Final = "model.gguf"
#: Recipe quantization -> llama.cpp file type (gguf.LlamaFileType values).
FILE_TYPES: Final = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_k_m": 15, "q5_k_m": 17}
#: Bumped when the converter's output bytes change, so old conversions are redone.
CONVERTER_VERSION: Final = "1"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _rope(config: dict[str, Any]) -> tuple[float, float, dict[str, Any] | None]:
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or None
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    partial = float(params.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)))
    if scaling is None and params.get("rope_type") not in (None, "default"):
        scaling = params
    return theta, partial, scaling


def rope_dimension_count(ckpt: Checkpoint) -> int:
    """Rotary dimensions per head: head_dim x partial_rotary_factor (Phi-4-mini: 128 x 0.75 = 96)."""
    _, partial, _ = _rope(ckpt.config)
    return int(ckpt.head_dim * partial)


def _write_longrope(writer: Any, ckpt: Checkpoint, scaling: dict[str, Any], orig_ctx: int) -> None:
    """LongRoPE: the attention factor and one short and one long factor per rotary frequency."""
    import numpy as np

    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in ("longrope", "su"):
        raise CheckpointError(f"config.json rope scaling type {kind!r} is not supported by the GGUF converter "
                          "(supported: longrope)")
    half = rope_dimension_count(ckpt) // 2
    factors = {}
    for which in ("short", "long"):
        values = scaling.get(f"{which}_factor")
        if not isinstance(values, list) or len(values) != half:
            got = len(values) if isinstance(values, list) else values
            raise CheckpointError(f"config.json rope scaling {which}_factor must list {half} numbers "
                              f"(rope dimensions / 2), got {got!r}")
        factors[which] = np.asarray(values, dtype=np.float32)
    # As transformers: an explicit attention_factor wins, else sqrt(1 + ln(s) / ln(original context)).
    scale = float(scaling.get("factor") or ckpt.max_context / orig_ctx)
    attn = scaling.get("attention_factor")
    if attn is None:
        attn = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig_ctx))
    writer.add_rope_scaling_attn_factors(float(attn))
    writer.add_tensor("rope_factors_long.weight", factors["long"])
    writer.add_tensor("rope_factors_short.weight", factors["short"])


def _write_metadata(writer: Any, ckpt: Checkpoint) -> None:
    config = ckpt.config
    theta, _, scaling = _rope(config)
    if ckpt.heads * ckpt.head_dim != ckpt.hidden:
        # llama.cpp's phi3 graph slices q, k, v out of the fused qkv by hidden size.
        raise CheckpointError(f"config.json heads x head_dim = {ckpt.heads} x {ckpt.head_dim} differs from "
                          f"hidden_size {ckpt.hidden}: llama.cpp's phi3 architecture cannot run it")
    orig_ctx = int(config.get("original_max_position_embeddings") or ckpt.max_context)
    writer.add_name(ckpt.folder.name)
    writer.add_context_length(ckpt.max_context)
    writer.add_rope_scaling_orig_ctx_len(orig_ctx)
    writer.add_embedding_length(ckpt.hidden)
    writer.add_feed_forward_length(ckpt.intermediate)
    writer.add_block_count(ckpt.layers)
    writer.add_head_count(ckpt.heads)
    writer.add_head_count_kv(ckpt.kv_heads)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    writer.add_rope_dimension_count(rope_dimension_count(ckpt))
    writer.add_rope_freq_base(theta)
    writer.add_file_type(FILE_TYPES["f32"])
    writer.add_sliding_window(int(config.get("sliding_window") or 0))
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        _write_longrope(writer, ckpt, scaling, orig_ctx)


def _write_vocab(writer: Any, ckpt: Checkpoint) -> None:
    import gguf

    vocab = read_vocab(ckpt.folder, ckpt.vocab_size)
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if vocab.merges is not None:
        writer.add_token_merges(vocab.merges)
    gguf.SpecialVocab(ckpt.folder, n_vocab=len(vocab.tokens)).add_to_gguf(writer, quiet=True)


def _tensor_plan(ckpt: Checkpoint) -> list[tuple[Path, str, str, tuple[int, ...]]]:
    """(file, checkpoint key, GGUF name, shape) of every tensor, in the order they are written,
    read from the safetensors headers alone."""
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.PHI3, ckpt.layers)
    plan = []
    for path in sorted(ckpt.folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for key in sorted(fh.keys()):
                if key.endswith(("rotary_emb.inv_freq", ".masked_bias")):
                    continue
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise CheckpointError(f"tensor {key!r} in {path.name} has no GGUF name for the phi3 architecture")
                plan.append((path, key, name, tuple(fh.get_slice(key).get_shape())))
    return plan


def convert_to_gguf(ckpt: Checkpoint, dest: Path) -> Path:
    """Write the fp32 GGUF of ``ckpt`` to ``dest`` (atomically), one tensor at a time: the tensor
    infos go out first (from the headers), then each tensor is read, widened to fp32, written and
    dropped, so the peak is the largest tensor, not the model."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    plan = _tensor_plan(ckpt)
    with replacing(dest) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "phi3")
        _write_metadata(writer, ckpt)
        _write_vocab(writer, ckpt)
        for _path, _key, name, shape in plan:
            writer.add_tensor_info(name, shape, np.dtype(np.float32), 4 * math.prod(shape))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for held in [info.tensor for info in writer.tensors[0].values() if info.tensor is not None]:
            writer.write_tensor_data(held)  # the LongRoPE factors, added with their data up front
        for path, key, _name, _shape in plan:
            with safe_open(str(path), framework="pt") as fh:  # closed after each: its pages do not stay mapped
                writer.write_tensor_data(fh.get_tensor(key).float().numpy())
        writer.close()
    return dest


def quantize_gguf(src: Path, dest: Path, quantization: str, threads: int = 2) -> None:
    """llama.cpp's quantizer: ``src`` (f32 GGUF) to ``dest`` in ``quantization``.

    llama.cpp logs every tensor to the process's stderr (fd 2); that log is
    captured and shown only when quantization fails.
    """
    import ctypes
    import tempfile

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[quantization]
    params.nthread = threads
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dest).encode(), ctypes.byref(params))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if rc != 0 or not dest.is_file():
            log.seek(0)
            tail = log.read().decode("utf-8", "replace")[-1500:]
            raise BuildError(f"llama.cpp could not quantize {src} to {quantization} (return code {rc}): {tail}")


def run_gguf(path: Path, ctx: BuildContext) -> tuple[Any, str]:
    """Load with llama-cpp-python: logits of the evaluation ids, and a greedy generation."""
    import numpy as np
    from llama_cpp import Llama

    ids = list(ctx.reference.ids)
    llm = Llama(model_path=str(path), n_ctx=max(256, len(ids) + 16), logits_all=True, n_threads=2,
                n_batch=512, verbose=False, seed=0)
    try:
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
        llm.reset()
        out = llm.create_completion(PROMPT, max_tokens=GENERATE_TOKENS, temperature=0.0, top_k=1)
    finally:
        llm.close()
    if out["usage"]["completion_tokens"] < 1:
        raise BuildError(f"llama.cpp generated no token from {path}")
    return logits, out["choices"][0]["text"]


class GgufBackend:
    toolchain = "llama.cpp"

    def unavailable(self, spec: VariantSpec) -> str | None:
        if spec.quantization not in FILE_TYPES:
            return f"phi-get's GGUF builder has no llama.cpp file type for quantization {spec.quantization!r}"
        for dist in ("gguf", "llama-cpp-python"):
            if _version(dist) == "absent":
                return f"{dist} is not installed (pip install 'phi-get[build]')"
        return None

    def tools(self, spec: VariantSpec | None = None) -> dict[str, str]:
        return {"gguf": _version("gguf"), "llama-cpp-python": _version("llama-cpp-python"),
                "safetensors": _version("safetensors"), "torch": _version("torch"),
                "phi-get-gguf-converter": CONVERTER_VERSION}

    def shared_f32(self, ctx: BuildContext) -> Path:
        """The one fp32 conversion every GGUF variant of this source starts from."""
        stamp = "-".join(f"{k}{v}" for k, v in sorted(self.tools().items()))
        path = ctx.work / "gguf" / f"model-f32-{_short(stamp)}.gguf"
        if not path.is_file():
            start = time.perf_counter()
            convert_to_gguf(ctx.checkpoint, path)
            ctx.reporter("gguf", f"converted to {path.name} in {time.perf_counter() - start:.2f}s (shared)")
        return path

    def build(self, spec: VariantSpec, ctx: BuildContext, dest: Path) -> Produced:
        start = time.perf_counter()
        f32 = self.shared_f32(ctx)
        out = dest / MODEL_FILE
        if spec.quantization == "f32":
            shutil.copyfile(f32, out)
        else:
            quantize_gguf(f32, out, spec.quantization)
        toolchain = time.perf_counter() - start
        logits, text = run_gguf(out, ctx)
        metrics = score_logits(logits, ctx.reference)
        quality = runtime_quality(metrics, ctx.reference, f"llama-cpp-python {_version('llama-cpp-python')} cpu", text)
        # llama.cpp's KV cache is f16 by default.
        return Produced(weights_bytes=out.stat().st_size, kv_element_bytes=2, quality=quality,
                        toolchain_seconds=toolchain)


def _short(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]
