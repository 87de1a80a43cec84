"""Benchmark: build the whole tiny-phi matrix; phi-get's overhead against the bare toolchains.

Usage: .venv/bin/python bench/build_matrix.py [--out DIR] [--json]

In one run, on the same tiny checkpoint:

1. ``build_recipe`` builds every variant, one call per variant as a CI job
   matrix would (wall time per variant, split into toolchain / runtime check
   + quality / packaging);
2. each toolchain is called directly on the same input, the way a person
   would without phi-get (onnxruntime-genai's builder, optimum-cli, mlx_lm
   convert, llama.cpp's quantizer on the f32 GGUF, transformers
   save_pretrained), just before and just after phi-get's build of that
   variant (the mean brackets the drifting load of a shared machine);
3. the ratio phi-get (everything but the runtime check) / direct is printed
   per variant and overall (target <= 1.1x); the runtime check and quality
   measurement are work the bare toolchains do not do, so they are reported
   beside it, not hidden in it;
4. the shared HF-to-GGUF conversion is timed alone: building N GGUF variants
   converts once instead of N times, saving (N - 1) conversions;
5. every variant is rebuilt (``force``) into a second folder and its file
   digests compared: the list of bit-reproducible variants.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phi_get.builders import gguf, mlx, onnx_genai, openvino
from phi_get.builders.base import Outcome
from phi_get.builders.build import build_recipe
from phi_get.builders.checkpoint import open_source
from phi_get.builders.envs import ENVS
from phi_get.builders.tiny import make_tiny_phi
from phi_get.manifests.recipe import VariantSpec, load_recipe


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)


def direct_time(spec: VariantSpec, src: Path, f32: Path, scratch: Path) -> float:
    """Seconds for the bare toolchain to make this variant from the same input."""
    dest = scratch / spec.id
    shutil.rmtree(dest, ignore_errors=True)
    fmt = str(spec.format)
    if fmt == "gguf":
        dest.mkdir()
        if spec.quantization == "f32":
            return _timed(lambda: shutil.copyfile(f32, dest / "model.gguf"))
        return _timed(lambda: gguf.quantize_gguf(f32, dest / "model.gguf", spec.quantization))
    if fmt == "onnx":
        return _timed(lambda: _run(onnx_genai.builder_command(src, dest, scratch / "hf-cache", spec), scratch))
    if fmt == "openvino":
        return _timed(lambda: _run(openvino.export_command(ENVS["openvino"].python, src, dest, spec), scratch))
    if fmt == "mlx":
        return _timed(lambda: _run(mlx.convert_command(ENVS["mlx"].python, src, dest, spec), scratch))

    def save() -> None:
        import torch
        from transformers import AutoModelForCausalLM

        dtype = torch.float16 if str(spec.precision) == "fp16" else torch.bfloat16
        AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).to(dtype).save_pretrained(str(dest))

    return _timed(save)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the artifacts here (default: a temp folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="phi-get-bench-"))
    src = make_tiny_phi(root / "tiny-phi", force=True)
    recipe = load_recipe("tiny-phi")
    out_a, out_b, scratch = root / "a", root / "b", root / "direct"
    for folder in (out_a, out_b, scratch):
        shutil.rmtree(folder, ignore_errors=True)
    scratch.mkdir(parents=True)
    for env in ENVS.values():  # created once, outside the timings
        env.ensure()

    ckpt = open_source(src)
    conversion = _timed(lambda: gguf.convert_to_gguf(ckpt, scratch / "f32.gguf"))
    # One build_recipe call per variant (as CI runs them, one job each), with
    # the bare toolchain timed just before and just after on the same input:
    # the machine's load drifts (it is shared), so the peer brackets each build.
    results, rows = [], []
    for spec in recipe.variants:
        before = direct_time(spec, src, scratch / "f32.gguf", scratch)
        start = time.perf_counter()
        (r,) = build_recipe(recipe, src, out_a, only=spec.id)
        wall = time.perf_counter() - start
        after = direct_time(spec, src, scratch / "f32.gguf", scratch)
        results.append(r)
        direct = (before + after) / 2
        t = r.timings
        ours = wall - t.get("check", 0.0)  # everything phi-get does except the runtime check
        rows.append({"variant": r.variant, "outcome": str(r.outcome), "wall_s": round(wall, 3),
                     "toolchain_s": round(t.get("toolchain", 0.0), 3), "check_s": round(t.get("check", 0.0), 3),
                     "package_s": round(t.get("package", 0.0), 3), "ours_s": round(ours, 3),
                     "direct_s": round(direct, 3), "overhead": round(ours / direct, 3) if direct else None,
                     "reason": r.reason})
    matrix_wall = sum(row["wall_s"] for row in rows)
    start = time.perf_counter()
    rebuilt = {r.variant: r.digests for r in build_recipe(recipe, src, out_b, force=True)}
    one_call_wall = time.perf_counter() - start
    reproducible = sorted(r.variant for r in results if r.digests and r.digests == rebuilt.get(r.variant))
    differing = sorted(
        f"{r.variant} ({', '.join(k for k in r.digests if r.digests[k] != rebuilt.get(r.variant, {}).get(k))})"
        for r in results if r.digests and r.digests != rebuilt.get(r.variant))
    n_gguf = sum(1 for r in results if r.variant.startswith("gguf-") and r.outcome is Outcome.BUILT)
    built = [row for row in rows if row["direct_s"] and row["outcome"] == "built"]
    total_ours = sum(row["ours_s"] for row in built)
    total_direct = sum(row["direct_s"] for row in built)
    # Without sharing, each GGUF variant would convert on its own: one conversion per variant.
    summary = {
        "matrix_wall_s": round(matrix_wall, 2), "one_call_matrix_wall_s": round(one_call_wall, 2), "variants": rows,
        "overhead_total": round(total_ours / total_direct, 3) if total_direct else None,
        "check_total_s": round(sum(row["check_s"] for row in rows), 2),
        "gguf_conversion_s": round(conversion, 3), "gguf_variants": n_gguf,
        "gguf_conversion_saved_s": round((n_gguf - 1) * conversion, 3),
        "bit_reproducible": reproducible, "not_bit_reproducible": differing,
    }
    print(f"{'variant':18} {'outcome':9} {'wall':>7} {'tool':>7} {'check':>7} {'pkg':>6} {'ours':>7} {'direct':>7} "
          f"{'ratio':>6}")
    for row in rows:
        print(f"{row['variant']:18} {row['outcome']:9} {row['wall_s']:7.2f} {row['toolchain_s']:7.2f} "
              f"{row['check_s']:7.2f} {row['package_s']:6.2f} {row['ours_s']:7.2f} {row['direct_s'] or 0:7.2f} "
              f"{row['overhead'] or 0:6.2f}")
    print(f"matrix wall {summary['matrix_wall_s']} s as one call per variant, {summary['one_call_matrix_wall_s']} s "
          f"as one call (rebuild); phi-get without its runtime checks / direct toolchain = "
          f"{summary['overhead_total']}x (target <= 1.1x); runtime checks + quality {summary['check_total_s']} s extra")
    print(f"shared GGUF conversion {conversion:.3f} s, {n_gguf} GGUF variants: saves "
          f"{summary['gguf_conversion_saved_s']} s ({n_gguf} conversions -> 1)")
    print(f"bit-reproducible on rebuild: {', '.join(reproducible)}")
    print(f"not bit-reproducible: {', '.join(differing) or 'none'}")
    if args.json:
        print(json.dumps(summary))
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
