"""Benchmark: the memory each artifact's runtime takes, against what its manifest claims.

Usage:
  .venv/bin/python bench/runtime_memory.py ARTIFACTS [--contexts 512,2048] [--only GLOB] [--json]
  .venv/bin/python bench/runtime_memory.py --like phi-3.5-mini [--layers 1] [--work DIR] ...

ARTIFACTS is a build's ``OUT/<name>/<version>/`` folder (one folder per
variant); ``--like`` first writes a real-dimension checkpoint
(``phi-get tiny-phi --like MODEL --layers N``) and builds every CPU-runnable
variant of the model's recipe from it into ``--work``, with the quality gate
off (random weights; see :func:`build_like`).  Each variant is then
run by its runtime in a fresh process at each context
(:func:`phi_get.resolver.runmemory.measure_run`: peak RSS above the
interpreter with the runtime imported) and compared with its manifest's
``memory.total_bytes(context)``.  The bound held by
``tests/builders/test_builders_runtime_memory.py``: claimed within 15 % of
measured, never below it by more than 5 %.

``--fit`` also prints, per runtime, the overhead and per-token compute figures
the two contexts imply (measured - weights - KV x context, as a line in
context): how the constants of ``manifests/runtimes.py`` were fitted.

Variants run one at a time (one real-dimension model in memory at once).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

from phi_get.builders.envs import runtime_python
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.manifests.manifest import Manifest
from phi_get.resolver.runmemory import error_of, measure_run, within_bound

#: The variants whose targets include a CPU: what runs on this machine.
CPU_VARIANTS = "gguf-*,onnx-cpu-*,openvino-*,safetensors-*"
def measure_variant(folder: Path, contexts: list[int]) -> list[dict[str, object]]:
    """One row per context: measured and claimed bytes of ``folder``'s artifact."""
    m: Manifest = load_artifact_folder(folder)
    rows: list[dict[str, object]] = []
    for ctx in contexts:
        run = measure_run(folder, ctx, python=runtime_python(str(m.format)))
        claimed = m.memory.total_bytes(ctx)
        rows.append({"variant": m.variant, "runtime": run.runtime, "context": ctx,
                     "prompt_tokens": run.prompt_tokens, "new_tokens": run.new_tokens,
                     "weights_bytes": m.memory.weights_bytes, "kv_bytes_per_token": m.memory.kv_bytes_per_token,
                     "claimed_bytes": claimed, "measured_bytes": run.measured_bytes,
                     "baseline_bytes": run.baseline_bytes, "hwm_reset": run.hwm_reset,
                     "error": round(error_of(claimed, run.measured_bytes), 4),
                     "within_bound": within_bound(claimed, run.measured_bytes)})
    return rows


def fit(rows: list[dict[str, object]]) -> dict[str, tuple[float, float]]:
    """variant -> (overhead MB, compute bytes per token) from its first and last context."""
    out: dict[str, tuple[float, float]] = {}
    for variant in dict.fromkeys(str(r["variant"]) for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        (a, b) = mine[0], mine[-1]

        def rest(r: dict[str, object]) -> int:
            return int(r["measured_bytes"]) - int(r["weights_bytes"])  # type: ignore[call-overload]

        ca, cb = int(a["context"]), int(b["context"])  # type: ignore[call-overload]
        per_token = (rest(b) - rest(a)) / (cb - ca) if cb != ca else 0.0
        overhead = rest(a) - per_token * ca
        kv = int(a["kv_bytes_per_token"])  # type: ignore[call-overload]
        out[variant] = (round(overhead / 1e6, 1), round(per_token - kv, 1))
    return out


def build_like(model: str, layers: int, work: Path, only: str, *, force: bool = False) -> Path:
    """Write a real-dimension checkpoint of ``model`` and build ``only`` from it, without the quality gate.

    The gate is off here, and only here: the checkpoint's weights are random,
    on which int4 variants miss the gate's top-1 floor and bf16 its logit
    tolerance (a quality fact), while the memory a runtime
    takes does not depend on the weights' values.
    """
    from phi_get.builders import build
    from phi_get.builders.tiny import TinySpec, make_tiny_phi

    ckpt = work / f"{model}-{layers}"
    if not (ckpt / "config.json").is_file():
        make_tiny_phi(ckpt, TinySpec.like(model, layers=layers))
    build.quality_gate = lambda spec, quality: None  # see the docstring
    out = work / "out"
    for r in build.build_recipe(model, ckpt, out, only=only, force=force):
        print(f"{r.variant}: {r.outcome} {r.reason or ''}", file=sys.stderr)
    (folder,) = (out / model).iterdir()
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="?", type=Path, help="OUT/<name>/<version>/ of a build")
    ap.add_argument("--like", help="build a real-dimension checkpoint of this model first")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/phi-get-runtime-memory"))
    ap.add_argument("--contexts", default="512,2048")
    ap.add_argument("--only", default=CPU_VARIANTS, help="comma-separated variant globs")
    ap.add_argument("--fit", action="store_true", help="print each variant's fitted overhead and per-token figure")
    ap.add_argument("--force", action="store_true", help="with --like: rebuild variants that are up to date")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (builders/README.md)")
    args = ap.parse_args(argv)
    if args.artifacts is None and args.like is None:
        ap.error("give an ARTIFACTS folder or --like MODEL")
    root = args.artifacts or build_like(args.like, args.layers, args.work, args.only, force=args.force)
    contexts = [int(c) for c in args.contexts.split(",")]
    globs = args.only.split(",")
    rows: list[dict[str, object]] = []
    for folder in sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()):
        if any(fnmatch.fnmatch(folder.name, g) for g in globs):
            rows.extend(measure_variant(folder, contexts))
    if args.json:
        for r in rows:
            print(json.dumps(r))
    elif args.markdown:
        print("| runtime | variant | context | claimed MB | measured MB | error |\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['runtime']} | {r['variant']} | {r['context']} | {int(r['claimed_bytes']) / 1e6:.1f} | "  # type: ignore[call-overload]
                  f"{int(r['measured_bytes']) / 1e6:.1f} | {float(r['error']) * 100:+.1f} % |")  # type: ignore[arg-type]
    else:
        print(f"{'runtime':18} {'variant':18} {'context':>7} {'claimed MB':>11} {'measured MB':>12} {'error':>8}")
        for r in rows:
            print(f"{r['runtime']!s:18} {r['variant']!s:18} {r['context']!s:>7} "
                  f"{int(r['claimed_bytes']) / 1e6:11.1f} {int(r['measured_bytes']) / 1e6:12.1f} "  # type: ignore[call-overload]
                  f"{float(r['error']) * 100:+7.1f}%{'' if r['within_bound'] else '  OUT OF BOUND'}")  # type: ignore[arg-type]
    if args.fit:
        for variant, (overhead_mb, per_token) in fit(rows).items():
            print(f"fit {variant}: overhead {overhead_mb} MB, compute {per_token} B/token beyond KV")
    return 0 if all(r["within_bound"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
