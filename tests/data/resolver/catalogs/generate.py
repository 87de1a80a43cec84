"""Write the realistic catalogs of this folder (run: python generate.py); the JSON files are the test data.

Every number is derived here, so a reader can check it:

* parameters, layers, KV heads, head dimension and maximum context come from
  each model's config.json on the Hugging Face Hub (microsoft/Phi-3-mini-4k-instruct,
  microsoft/Phi-3.5-mini-instruct, microsoft/Phi-4-mini-instruct); all three
  checkpoints are stored in bfloat16 (``torch_dtype``), recorded as
  ``source_precision``;
* KV cache bytes per token = 2 (K and V) x layers x KV heads x head dim x 2
  bytes (fp16 cache): Phi-3 / 3.5-mini 2 x 32 x 32 x 96 x 2 = 393,216;
  Phi-4-mini (grouped-query attention, 8 KV heads of 128) 2 x 32 x 8 x 128 x 2
  = 131,072;
* weights bytes = parameters x effective bits per weight / 8.  Effective bits
  per weight are llama-quantize's figures for these tensor mixes (Q4_K_M ~5.0
  because attn_v / ffn_down / output stay Q6_K; Phi-4-mini's 200K-token
  embedding, tied with the output, raises its K-quants by ~0.2), 4.5 for
  4-bit group-32/64 formats with fp16 scales (ONNX RTN block-32, MLX 4-bit),
  4.6 for AWQ block-128 plus fp16 embeddings, 8.5 for 8-bit formats with
  scales; the GGUF sizes agree with the published GGUF repositories to within
  a few percent, the ONNX / OpenVINO / MLX ones to within about 20 % (the
  published folders keep some embeddings at higher precision);
* quality figures are plausible, not measured here: mean KL divergence and
  top-1 agreement at the middle of llama.cpp's published ranges for 3-8B
  models per quantization type, ONNX / OpenVINO / MLX reported as a
  perplexity ratio (what phi-get's builder measures) plus top-1, and the QNN
  build with no measurement at all (a structural check: the build machine has
  no Hexagon NPU), so the bits fallback is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

MODELS = {
    # name: (parameters, layers, kv heads, head dim, max context, quality offset)
    "phi-3-mini-4k": (3_821_079_552, 32, 32, 96, 4096, 1.0),
    "phi-3.5-mini": (3_821_079_552, 32, 32, 96, 131072, 1.0),
    "phi-4-mini": (3_836_021_760, 32, 8, 128, 131072, 1.15),  # larger vocab: quantization costs a little more
}
GGUF = ("llama-cpp-python>=0.3", ["cuda", "rocm", "metal", "cpu-x86_64", "cpu-arm64"])
# variant: (format, precision, quantization, bits per weight, runtime, targets, provider, kl, top1, kind)
VARIANTS = [
    ("gguf-f32", "gguf", "fp32", "f32", 32.0, *GGUF, "cpu", 0.0, 1.0, "kl"),
    ("gguf-bf16", "gguf", "bf16", "bf16", 16.0, *GGUF, "cpu", 0.0, 1.0, "kl"),
    ("gguf-f16", "gguf", "fp16", "f16", 16.0, *GGUF, "cpu", 0.00003, 0.9995, "kl"),
    ("gguf-q8_0", "gguf", "int8", "q8_0", 8.5, *GGUF, "cpu", 0.0015, 0.986, "kl"),
    ("gguf-q6_k", "gguf", "int4", "q6_k", 6.56, *GGUF, "cpu", 0.0050, 0.975, "kl"),
    ("gguf-q5_k_m", "gguf", "int4", "q5_k_m", 5.9, *GGUF, "cpu", 0.0110, 0.963, "kl"),
    ("gguf-q4_k_m", "gguf", "int4", "q4_k_m", 5.0, *GGUF, "cpu", 0.0320, 0.935, "kl"),
    ("gguf-q4_0", "gguf", "int4", "q4_0", 4.55, *GGUF, "cpu", 0.0650, 0.905, "kl"),
    ("onnx-cpu-int4", "onnx", "int4", "rtn-block-32-acc-level-4", 4.5, "onnxruntime-genai>=0.5",
     ["cpu-x86_64", "cpu-arm64"], "cpu", 0.0450, 0.922, "ppl"),
    ("onnx-cuda-fp16", "onnx", "fp16", "none", 16.0, "onnxruntime-genai>=0.5", ["cuda-sm70"], "cuda",
     0.00003, 0.9995, "ppl"),
    ("onnx-cuda-int4", "onnx", "int4", "awq-block-128", 4.6, "onnxruntime-genai>=0.5", ["cuda-sm80"], "cuda",
     0.0300, 0.937, "ppl"),
    ("onnx-dml-int4", "onnx", "int4", "awq-block-128", 4.6, "onnxruntime-genai>=0.5", ["directml"], "directml",
     0.0300, 0.937, "ppl"),
    ("onnx-qnn-int4", "onnx", "int4", "w4a16", 4.9, "onnxruntime-genai>=0.7", ["qnn-npu"], "qnn",
     None, None, "none"),
    ("openvino-fp16", "openvino", "fp16", "none", 16.0, "openvino-genai>=2024.4", ["intel-gpu"], "gpu",
     0.00003, 0.9995, "ppl"),
    ("openvino-int8", "openvino", "int8", "int8-asym", 8.5, "openvino-genai>=2024.4", ["intel-gpu", "cpu-x86_64"],
     "gpu", 0.0020, 0.984, "ppl"),
    ("openvino-int4", "openvino", "int4", "int4-asym-g128-awq", 4.6, "openvino-genai>=2024.4",
     ["intel-gpu", "cpu-x86_64"], "gpu", 0.0350, 0.930, "ppl"),
    ("openvino-int4-npu", "openvino", "int4", "int4-sym-channel", 4.3, "openvino-genai>=2025.0", ["intel-npu"],
     "npu", 0.0750, 0.898, "ppl"),
    ("mlx-bf16", "mlx", "bf16", "none", 16.0, "mlx-lm>=0.20", ["metal"], "metal", 0.0, 1.0, "ppl"),
    ("mlx-8bit", "mlx", "int8", "affine-g64-8bit", 8.5, "mlx-lm>=0.20", ["metal"], "metal", 0.0015, 0.986, "ppl"),
    ("mlx-4bit", "mlx", "int4", "affine-g64-4bit", 4.5, "mlx-lm>=0.20", ["metal"], "metal", 0.0420, 0.928, "ppl"),
    ("safetensors-bf16", "safetensors", "bf16", "none", 16.0, "transformers>=4.40",
     ["cuda", "rocm", "metal", "cpu-x86_64", "cpu-arm64"], "torch", 0.0, 1.0, "ppl"),
    ("safetensors-fp32", "safetensors", "fp32", "none", 32.0, "transformers>=4.40",
     ["cuda", "rocm", "metal", "cpu-x86_64", "cpu-arm64"], "torch", 0.0, 1.0, "ppl"),
]


def entry(model: str, v: tuple) -> dict:
    params, layers, kv_heads, head_dim, max_ctx, q_scale = MODELS[model]
    vid, fmt, precision, quant, bpw, runtime, targets, provider, kl, top1, kind = v
    if model == "phi-4-mini" and quant in ("q4_k_m", "q5_k_m", "q6_k"):
        bpw += 0.2
    weights = params * bpw / 8
    out = {"version": "1.0.0", "variant": vid, "format": fmt, "precision": precision, "quantization": quant,
           "weights_gb": round(weights / 1e9, 3), "targets": targets, "runtime": runtime, "provider": provider,
           "kv": 2 * layers * kv_heads * head_dim * 2, "max_context": max_ctx}
    if kind != "none":
        kl_m = round(kl * q_scale, 5)
        top1_m = round(1 - (1 - top1) * q_scale, 4)
        metrics: dict[str, float] = {"top1_agreement": top1_m}
        if kind == "kl":
            metrics["kl_divergence"] = kl_m
        else:
            metrics["perplexity_ratio"] = round(1 + kl_m, 5)
        out["metrics"] = metrics
    return out


def main() -> None:
    here = Path(__file__).parent
    for model, facts in MODELS.items():
        variants = [entry(model, v) for v in VARIANTS if not (model == "phi-3-mini-4k" and v[0] == "onnx-qnn-int4")]
        doc = {"name": model, "source_precision": "bf16", "parameters": facts[0],
               "derivation": "tests/data/resolver/catalogs/generate.py", "variants": variants}
        text = json.dumps(doc, indent=1)
        (here / f"{model}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
