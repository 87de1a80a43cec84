"""GGUF for llama.cpp: phi-get's own HF-to-GGUF converter for Phi-3, then llama.cpp's quantizer.

llama.cpp's ``convert_hf_to_gguf.py`` ships in no wheel, so phi-get writes
the GGUF itself with the ``gguf`` package (GGUFWriter, the PHI3 tensor name
map, the metadata keys llama.cpp's phi3 loader reads, the sentencepiece
vocabulary with Phi-3's added control tokens).  The conversion is done once
per source, in fp32, under ``OUT/.work/<source>/gguf/``, and feeds every GGUF
variant: F32 is that file, the others come from llama.cpp's own quantizer
(``llama_cpp.llama_model_quantize``).  Every variant is then loaded by
llama-cpp-python, scored against the PyTorch logits, and made to generate.

Imports gguf, numpy, safetensors, torch and llama_cpp inside functions only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.recipe import VariantSpec

from .base import BuildContext, Produced
from .errors import BuildError, SourceError
from .evaluate import GENERATE_TOKENS, PROMPT, runtime_quality, score_logits
from .source import Checkpoint

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


def _sentencepiece_vocab(folder: Path, n_vocab: int) -> tuple[list[bytes], list[float], list[int]]:
    """Tokens, scores and token types as llama.cpp's 'llama' tokenizer expects them."""
    from gguf import TokenType
    from sentencepiece import SentencePieceProcessor

    model = folder / "tokenizer.model"
    if not model.is_file():
        raise SourceError(f"the GGUF converter needs a sentencepiece tokenizer.model in {folder}")
    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(model))
    if sp.vocab_size() > n_vocab:
        raise SourceError(f"tokenizer.model has {sp.vocab_size()} pieces, config.json vocab_size is {n_vocab}")
    tokens = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [int(TokenType.UNUSED)] * n_vocab
    for i in range(sp.vocab_size()):
        tokens[i], scores[i] = sp.IdToPiece(i).encode("utf-8"), sp.GetScore(i)
        types[i] = int(
            TokenType.UNKNOWN if sp.IsUnknown(i) else TokenType.CONTROL if sp.IsControl(i)
            else TokenType.UNUSED if sp.IsUnused(i) else TokenType.BYTE if sp.IsByte(i) else TokenType.NORMAL)
    # Phi-3's chat tokens are added tokens: special ones are control tokens.
    config_path = folder / "tokenizer_config.json"
    added = json.loads(config_path.read_text("utf-8")).get("added_tokens_decoder", {}) if config_path.is_file() else {}
    for key, data in added.items():
        i = int(key)
        if i >= n_vocab:
            continue
        tokens[i], scores[i] = data["content"].encode("utf-8"), -1000.0
        types[i] = int(TokenType.CONTROL if data.get("special") else TokenType.USER_DEFINED)
    return tokens, scores, types


def _rope(config: dict[str, Any]) -> tuple[float, float, dict[str, Any] | None]:
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or None
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    partial = float(params.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)))
    if scaling is None and params.get("rope_type") in ("longrope", "su"):
        scaling = params
    return theta, partial, scaling


def _write_metadata(writer: Any, ckpt: Checkpoint) -> None:
    import numpy as np

    config = ckpt.config
    theta, partial, scaling = _rope(config)
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
    writer.add_rope_dimension_count(int(ckpt.head_dim * partial))
    writer.add_rope_freq_base(theta)
    writer.add_file_type(FILE_TYPES["f32"])
    writer.add_sliding_window(int(config.get("sliding_window") or 0))
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) in ("longrope", "su"):
        scale = ckpt.max_context / orig_ctx
        attn = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig_ctx))
        writer.add_rope_scaling_attn_factors(attn)
        for which in ("long", "short"):
            factors = np.asarray(scaling[f"{which}_factor"], dtype=np.float32)
            writer.add_tensor(f"rope_factors_{which}.weight", factors)


def _write_vocab(writer: Any, ckpt: Checkpoint) -> None:
    import gguf

    tokens, scores, types = _sentencepiece_vocab(ckpt.folder, ckpt.vocab_size)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(ckpt.folder, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)


def _write_tensors(writer: Any, ckpt: Checkpoint) -> None:
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.PHI3, ckpt.layers)
    for path in sorted(ckpt.folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for key in sorted(fh.keys()):
                if key.endswith(("rotary_emb.inv_freq", ".masked_bias")):
                    continue
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise SourceError(f"tensor {key!r} in {path.name} has no GGUF name for the phi3 architecture")
                data = fh.get_tensor(key).float().numpy()
                writer.add_tensor(name, data)


def convert_to_gguf(ckpt: Checkpoint, dest: Path) -> Path:
    """Write the fp32 GGUF of ``ckpt`` to ``dest`` (atomically)."""
    import gguf

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), "phi3")
        _write_metadata(writer, ckpt)
        _write_vocab(writer, ckpt)
        _write_tensors(writer, ckpt)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
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
