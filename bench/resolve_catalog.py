"""Bench: resolution over a catalog of 100,000 variants (target: p50 <= 50 ms).

Builds one model index of N variants (versions x variants x targets drawn
from a fixed seed), parses it once and prepares it (grouped by version:
``IndexView``, as a loaded index is), then times the pure ``resolve()`` call
for five device profiles and the three policies.  Also timed in the same
run: preparing the view, resolving from the raw entries (view built inside
the call), and materializing every candidate's verdict (what ``--explain``
pays).  The peer is parsing the index document.  The target is printed as
a ratio (target / p50: >= 1.0 meets it).

    .venv/bin/python bench/resolve_catalog.py [--variants 100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "kit"))

from phi_get.manifests.canonical import canonical_bytes
from phi_get.manifests.index import parse_model_index
from phi_get.resolver.detect import load_device
from phi_get.resolver.resolve import IndexView, Policy, Prefer, parse_requirement, resolve
from wirekit import compact_entry

TARGET_MS = 50.0
FORMATS = [("gguf", "llama-cpp-python>=0.3", ["cuda", "metal", "cpu-x86_64", "cpu-arm64"]),
           ("onnx", "onnxruntime-genai>=0.5", ["cuda-sm80", "directml", "qnn-npu", "cpu-x86_64"]),
           ("openvino", "openvino-genai>=2024.4", ["intel-gpu", "intel-npu", "cpu-x86_64"]),
           ("mlx", "mlx-lm>=0.20", ["metal"]),
           ("safetensors", "transformers>=4.40", ["cpu-x86_64", "cpu-arm64", "cuda"])]
PRECISIONS = [("int4", 2.3), ("int8", 4.1), ("fp16", 7.6), ("bf16", 7.6), ("fp32", 15.3)]


def catalog(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    variants = []
    per_version = len(FORMATS) * len(PRECISIONS) * 4
    for i in range(n):
        version = f"{i // per_version // 100}.{i // per_version % 100}.0"
        fmt, runtime, targets = FORMATS[i % len(FORMATS)]
        precision, gb = PRECISIONS[(i // len(FORMATS)) % len(PRECISIONS)]
        k = i // (len(FORMATS) * len(PRECISIONS)) % 4
        d = {"version": version, "variant": f"{fmt}-{precision}-v{k}", "format": fmt, "precision": precision,
             "weights_gb": gb * (1 + 0.01 * k), "targets": rng.sample(targets, k=min(len(targets), 1 + k % 3)),
             "runtime": runtime, "metrics": {"top1_agreement": round(rng.random(), 3)}}
        if rng.random() < 0.02:
            d["yanked"] = "bad build"
        variants.append(compact_entry(d))
    return canonical_bytes({"schema": "phi-get.index/v1", "name": "phi-3.5-mini", "variants": variants})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    data = catalog(args.variants)
    parse_times = []
    for _ in range(3):
        t = time.perf_counter()
        index = parse_model_index(data)
        parse_times.append(time.perf_counter() - t)
    print(f"catalog: {len(index.entries)} variants, {len(data) / 1e6:.1f} MB; parse (peer) p50 "
          f"{statistics.median(parse_times) * 1000:.0f} ms")
    req = parse_requirement("phi-3.5-mini")
    t = time.perf_counter()
    view = IndexView(index.entries)
    prepare_ms = (time.perf_counter() - t) * 1000
    print(f"prepare IndexView once: {prepare_ms:.0f} ms")
    worst, worst_raw, explain_ms = 0.0, 0.0, 0.0
    for name in ("gpu-server", "apple-laptop", "pi-board", "intel-ai-pc", "snapdragon-laptop"):
        device = load_device(name, environ={})
        times, raw = [], []
        for i in range(args.repeat):
            pol = Policy(prefer=list(Prefer)[i % 3], context=2048)
            t = time.perf_counter()
            res = resolve(req, device, view, pol)
            times.append(time.perf_counter() - t)
            if i < 3:
                t = time.perf_counter()
                resolve(req, device, index.entries, pol)
                raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert res.candidates[0] == res.chosen and len(res.candidates) == len(index.entries)
        explain_ms = max(explain_ms, (time.perf_counter() - t) * 1000)
        p50, raw50 = statistics.median(times) * 1000, statistics.median(raw) * 1000
        worst, worst_raw = max(worst, p50), max(worst_raw, raw50)
        chosen = res.chosen.label if res.chosen else "none"
        print(f"{name:<18} resolve p50 {p50:6.2f} ms (from raw entries {raw50:6.1f} ms)  chosen {chosen}")
    print(f"all {len(index.entries)} verdicts materialized (--explain): {explain_ms:.0f} ms")
    print(json.dumps({"variants": len(index.entries), "worst_p50_ms": round(worst, 2),
                      "worst_p50_raw_entries_ms": round(worst_raw, 1), "prepare_ms": round(prepare_ms, 1),
                      "all_verdicts_ms": round(explain_ms), "target_ms": TARGET_MS,
                      "ratio_target_over_p50": round(TARGET_MS / worst, 1),
                      "ratio_target_over_raw_p50": round(TARGET_MS / worst_raw, 2),
                      "parse_ms_peer": round(statistics.median(parse_times) * 1000)}))

if __name__ == "__main__":
    main()
