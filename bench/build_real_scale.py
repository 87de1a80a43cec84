"""Benchmark: what each variant costs to build at real Phi dimensions, measured at two layer counts, extrapolated to 32.

Usage: .venv/bin/python bench/build_real_scale.py [--models phi-3.5-mini,phi-4-mini] [--layers 1,2]
           [--only gguf-q4_k_m,onnx-cpu-int4,...] [--layout hub] [--root DIR] [--json]

For each model and layer count, the real-dimension checkpoint
(``phi-get tiny-phi --like MODEL --layers N``: the published config, bf16,
random weights) is built one variant at a time, each in a fresh output
folder, as one CI job per variant would (so each pays its own shared work:
the reference logits, the fp32 GGUF conversion).  Each build runs in a child
process; a sampler reads ``/proc`` every 0.25 s and records, for the child
and all its descendants (the toolchains' subprocesses included):

- **peak tree memory**: the largest sum over the tree of each process's PSS
  (``/proc/PID/smaps_rollup``: shared pages divided among the processes that
  map them, so a checkpoint mmapped by two processes is counted once), and
  the largest single process's RSS with its command: which process holds the
  model (``getrusage(RUSAGE_CHILDREN)`` would give only the largest single
  process, and only of children that were waited for);
- **peak disk**: the largest size of the output folder during the build
  (allocated blocks: the artifact in progress, ``.work`` with the shared
  conversions, toolchain caches phi-get places there), and at the end the
  artifact's size and the work folder's;
- **wall time** of the child, phi-get's own split (toolchain, check, package),
  and the **CPU time** of the whole tree (user + system, from
  ``getrusage(RUSAGE_CHILDREN)`` around the one child: every descendant is
  waited for), which the load of a shared machine disturbs less than wall time.

Every figure is then extrapolated linearly in the layer count to the full 32
layers (the tree's peak memory phase by phase: see :class:`Sampler`) (``value(32) = value(a) + (value(b) - value(a)) / (b - a) * (32 - a)``),
and printed beside the measured ones.  The child builds with the quality gate
recording instead of refusing: on random weights 4-bit top-1 agreement is
noise (and mlx-lm's LongRoPE is a known mismatch), and the point here is the
cost of the build through packaging; the gate's verdict is printed in the
``gate`` column.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_ONLY = "gguf-q4_k_m,onnx-cpu-int4,openvino-int4,mlx-4bit,safetensors-bf16"
FULL_LAYERS = 32
#: Figures extrapolated (all grow with the layer count); wall in s, memory and disk in bytes.
FIGURES = ("wall_s", "cpu_s", "tree_pss", "max_rss", "peak_disk", "artifact", "work", "checkpoint_bytes")
#: A GitHub-hosted standard Linux runner: 16 GB of RAM, 14 GB of disk (docs.github.com, "About GitHub-hosted runners").
RUNNER_RAM, RUNNER_DISK = 16e9, 14e9
#: The child writes phi-get's current step here (in the output folder) for the sampler.
STEP_FILE = ".bench-step"


# -- sampling /proc --------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in bytes; (0, 0) once it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return pss, rss


def _cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            parts = fh.read().split(b"\0")
    except OSError:
        return "?"
    words = [p.decode(errors="replace") for p in parts if p]
    # "python -m X" / "python script.py": the module or script names the tool.
    for i, w in enumerate(words):
        if w == "-m" and i + 1 < len(words):
            return words[i + 1]
        if w.endswith("build_real_scale.py"):
            return "phi-get build (in process)"
        if w.endswith((".py", "optimum-cli")):
            return Path(w).name
    return Path(words[0]).name if words else "?"


def disk_usage(folder: Path) -> int:
    """Allocated bytes under ``folder`` (symbolic links not followed)."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                else:
                    total += e.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                pass
    return total


class Sampler(threading.Thread):
    """Peak tree PSS (overall and per phase), peak single-process RSS (and its command), peak disk of a folder.

    A phase is phi-get's step (``reference``: the PyTorch fp32 reference
    logits; ``build``: the backend, its toolchain and runtime check; from the
    build's reporter, through ``STEP_FILE``) and the set of processes alive in
    the tree, named by their commands ("build: phi-get build (in process) +
    optimum-cli"): the steps of one build peak at different times and grow at
    different rates with the layer count, so each phase is extrapolated on its own.
    """

    def __init__(self, pid: int, folder: Path, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.folder, self.interval = pid, folder, interval
        self.tree_pss = self.max_rss = self.peak_disk = 0
        self.max_rss_cmd = ""
        self.phases: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            names = set()
            for p in _tree(self.pid):
                pss, rss = _memory(p)
                if pss == 0 and rss == 0:
                    continue
                total += pss
                name = _cmd(p)
                names.add(name)
                if rss > self.max_rss:
                    self.max_rss, self.max_rss_cmd = rss, name
            procs = " + ".join(sorted(names, key=lambda n: (not n.startswith("phi-get"), n)))
            try:
                step = (self.folder / STEP_FILE).read_text().strip()
            except OSError:
                step = "start"
            phase = f"{step}: {procs}" if procs else ""
            if phase:
                self.phases[phase] = max(self.phases.get(phase, 0), total)
            self.tree_pss = max(self.tree_pss, total)
            self.peak_disk = max(self.peak_disk, disk_usage(self.folder))
            self.done.wait(self.interval)


# -- one build -------------------------------------------------------------------------------------------------


def child(model: str, source: str, out: str, variant: str) -> None:
    """In the child process: build one variant, the gate recording its verdict instead of refusing."""
    from phi_get.builders import build
    from phi_get.builders.evaluate import QualityGateError, quality_gate

    verdicts: list[str] = []

    def recording_gate(spec: Any, quality: Any) -> None:
        try:
            quality_gate(spec, quality)
            verdicts.append("pass")
        except QualityGateError as exc:
            verdicts.append(f"refused: {exc}")

    def report(variant_id: str, message: str) -> None:
        step = "reference" if message.startswith("loading") else "build" if message.startswith("building") else None
        if step:
            tmp = Path(out) / (STEP_FILE + ".tmp")
            tmp.write_text(step)
            os.replace(tmp, Path(out) / STEP_FILE)

    build.quality_gate = recording_gate  # type: ignore[assignment]
    (r,) = build.build_recipe(model, source, out, only=variant, reporter=report)
    print(json.dumps({**r.to_json(), "gate": verdicts[-1] if verdicts else None}))


def measure(model: str, source: Path, variant: str, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--child", model, str(source), str(out), variant]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid, out)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    sampler.done.set()
    sampler.join()
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"outcome": "crashed", "reason": stderr[-500:], "timings": {}, "folder": None}
    folder = Path(result["folder"]) if result.get("folder") else None
    works = list((out / ".work").glob("*"))
    return {
        "variant": variant, "outcome": result["outcome"], "reason": result.get("reason", ""),
        "gate": result.get("gate"), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "timings": result.get("timings", {}),
        "tree_pss": sampler.tree_pss, "phases": sampler.phases, "max_rss": sampler.max_rss, "max_rss_process": sampler.max_rss_cmd,
        "peak_disk": sampler.peak_disk, "artifact": disk_usage(folder) if folder else 0,
        "work": sum(disk_usage(w) for w in works),
    }


# -- extrapolation and the table -------------------------------------------------------------------------------


def extrapolate(a: tuple[int, float], b: tuple[int, float], layers: int = FULL_LAYERS) -> float:
    """Linear in the layer count through the two measurements."""
    (la, va), (lb, vb) = a, b
    return va + (vb - va) / (lb - la) * (layers - la)


def _gb(n: float) -> str:
    return f"{n / 1e9:6.2f}"


def summarise(rows: list[dict[str, Any]], layers: tuple[int, int]) -> list[dict[str, Any]]:
    """One entry per (model, variant): the measured figures at both layer counts and the 32-layer extrapolation."""
    out = []
    keys = sorted({(r["model"], r["variant"]) for r in rows})
    for model, variant in keys:
        at = {r["layers"]: r for r in rows if (r["model"], r["variant"]) == (model, variant)}
        entry: dict[str, Any] = {"model": model, "variant": variant, "measured": at}
        if all(n in at for n in layers):
            x = {f: round(extrapolate((layers[0], at[layers[0]][f]), (layers[1], at[layers[1]][f]))) for f in FIGURES}
            # The tree's peak at 32 layers: the largest of its phases', each on its own line.
            phases = {ph: round(extrapolate((layers[0], at[layers[0]]["phases"][ph]),
                                            (layers[1], at[layers[1]]["phases"][ph])))
                      for ph in at[layers[0]].get("phases", {}) if ph in at[layers[1]].get("phases", {})}
            if phases:
                x["phases"] = phases
                x["peak_phase"] = max(phases, key=phases.__getitem__)
                x["tree_pss"] = max(x["tree_pss"], phases[x["peak_phase"]])
                # Without phi-get's PyTorch fp32 reference (a fact of its evaluation, not of the toolchain).
                if any(ph.startswith("reference:") for ph in phases):
                    x["tree_pss_without_reference"] = max(v for ph, v in phases.items()
                                                          if not ph.startswith("reference:"))
            x["from_layers"] = list(layers)
            entry["extrapolated"] = x
        out.append(entry)
    # The reference step is the same code for every variant of a model: its 32-layer peak is the
    # largest any variant's build measured, and every runtime-checked variant pays it.
    for e in out:
        x = e.get("extrapolated")
        if not x:
            continue
        refs = [v for o in out if o["model"] == e["model"] and o.get("extrapolated")
                for ph, v in o["extrapolated"].get("phases", {}).items() if ph.startswith("reference:")]
        x["reference_step"] = max(refs) if refs else None
        x["tree_pss_model"] = max(x.get("tree_pss_without_reference", x["tree_pss"]), *(refs or [0]))
    return out


def print_table(summary: list[dict[str, Any]], layers: tuple[int, int]) -> None:
    a, b = layers
    print(f"{'model':13} {'variant':17} | wall s {a:>2}L {b:>2}L  32L* | cpu s {a:>2}L {b:>2}L  32L* | tree PSS GB {a}L {b}L  32L* | "
          f"max RSS GB {a}L {b}L 32L* | peak disk GB {a}L {b}L 32L* | artifact GB 32L* | gate ({b}L)")
    for e in summary:
        m, x = e["measured"], e.get("extrapolated")

        def cell(f: str, scale: Any, m: dict[int, Any] = m, x: dict[str, Any] | None = x) -> str:
            vals = [scale(m[n][f]) if n in m else "     -" for n in layers]
            return " ".join(vals) + " " + (scale(x[f]) if x else "     -")

        gate = (m.get(b) or m.get(a) or {}).get("gate") or (m.get(b) or m.get(a) or {}).get("outcome")
        print(f"{e['model']:13} {e['variant']:17} | {cell('wall_s', lambda v: f'{v:6.0f}')} | "
              f"{cell('cpu_s', lambda v: f'{v:6.0f}')} | "
              f"{cell('tree_pss', _gb)} | {cell('max_rss', _gb)} | {cell('peak_disk', _gb)} | "
              f"{_gb(x['artifact']) if x else '     -'} | {str(gate)[:60]}")
    print("* extrapolated linearly from the two measured layer counts to 32 layers; tree PSS: peak of the sum over the "
          "build's process tree; max RSS: the largest single process")


def fits_runner(x: dict[str, Any], memory: str = "tree_pss") -> str:
    """Whether the extrapolated 32-layer build fits a standard runner: memory, and disk with the source checkpoint."""
    disk = x["checkpoint_bytes"] + x["peak_disk"]
    ram_ok, disk_ok = x[memory] < RUNNER_RAM, disk < RUNNER_DISK
    if ram_ok and disk_ok:
        return "yes"
    return "no (" + ", ".join(w for w, bad in ((f"RAM {x[memory] / 1e9:.1f} GB", not ram_ok),
                                               (f"disk {disk / 1e9:.1f} GB", not disk_ok)) if bad) + ")"


def _without(x: dict[str, Any]) -> str:
    if "tree_pss_without_reference" not in x:
        return "-"
    return f"{x['tree_pss_without_reference'] / 1e9:.1f} ({fits_runner(x, 'tree_pss_without_reference')})"


def print_markdown(summary: list[dict[str, Any]], layers: tuple[int, int]) -> None:
    """The README's table: measured at both layer counts, extrapolated to 32 (GB, s)."""
    a, b = layers
    print(f"| model | variant | wall s ({a} / {b} L) | CPU s ({a} / {b} L, 32 L*) | peak memory GB, tree PSS ({a} / {b} L, 32 L*) | "
          f"largest process GB ({b} L, 32 L*) | phase of the peak (32 L*) | "
          f"without the reference step GB (32 L*) | peak disk GB, output ({a} / {b} L, 32 L*) | artifact GB (32 L*) | "
          "fits a 16 GB / 14 GB runner (32 L*: the model's reference step included) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in summary:
        m, x = e["measured"], e.get("extrapolated")
        if not x:
            continue
        g = 1e9
        print(f"| {e['model']} | {e['variant']} | {m[a]['wall_s']:.0f} / {m[b]['wall_s']:.0f} | "
              f"{m[a]['cpu_s']:.0f} / {m[b]['cpu_s']:.0f}, {x['cpu_s']:.0f} | "
              f"{m[a]['tree_pss'] / g:.2f} / {m[b]['tree_pss'] / g:.2f}, **{x['tree_pss'] / g:.1f}** | "
              f"{m[b]['max_rss'] / g:.2f} ({m[b]['max_rss_process']}), {x['max_rss'] / g:.1f} | "
              f"{x.get('peak_phase', '-')} | "
              f"{_without(x)} | "
              f"{m[a]['peak_disk'] / g:.2f} / {m[b]['peak_disk'] / g:.2f}, **{x['peak_disk'] / g:.1f}** | "
              f"{x['artifact'] / g:.2f} | {fits_runner(x, 'tree_pss_model')} |")


def _parameters(model: str, layers: int) -> int:
    from phi_get.builders.tiny_real import parameter_count, real_model

    return parameter_count({**real_model(model)["config"], "num_hidden_layers": layers})


def write_costs(path: Path, summary: list[dict[str, Any]], layers: tuple[int, int]) -> None:
    """builders/data/build_costs.json: the two measured points per model and variant (the plan draws the
    line).  Entries this run measured replace their old ones; the others stay, each with its own date."""
    from phi_get import __version__

    doc: dict[str, Any] = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    costs: dict[str, dict[str, Any]] = doc.get("costs", {})
    stamp = f"phi-get {__version__}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs"
    for entry in costs.values():
        for cost in entry.values():
            cost.setdefault("measured_by", doc.get("measured_by", "unknown"))
    for e in summary:
        m = e["measured"]
        if not all(n in m for n in layers):
            continue
        costs.setdefault(e["model"], {})[e["variant"]] = {
            "layers": list(layers), "parameters": [_parameters(e["model"], n) for n in layers],
            "memory_bytes": [m[n]["tree_pss"] for n in layers], "disk_bytes": [m[n]["peak_disk"] for n in layers],
            "measured_by": stamp}
    out = {"_comment": ["Written by bench/build_real_scale.py --write-costs; read by builders/plan.py (build --plan).",
                        "Per model and variant, two builds of the real-dimension checkpoint (phi-get tiny-phi --like)",
                        "with `layers` layers: peak memory of the build's process tree (summed PSS) and peak disk of",
                        "its output folder (the source checkpoint not included); `measured_by` says when."],
           "costs": costs}
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="phi-3.5-mini,phi-4-mini")
    parser.add_argument("--layers", default="1,2", help="two layer counts, comma-separated")
    parser.add_argument("--only", default=DEFAULT_ONLY, help="variant ids, comma-separated")
    parser.add_argument("--layout", default="hub", help="config layout of the checkpoints (hub, transformers5)")
    parser.add_argument("--root", type=Path, default=None, help="keep checkpoints and builds here (default: temp)")
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    parser.add_argument("--markdown", action="store_true", help="print the README's markdown table at the end")
    parser.add_argument("--write-costs", type=Path, default=None,
                        help="write the plan's measured costs (builders/data/build_costs.json)")
    parser.add_argument("--append", type=Path, default=None,
                        help="JSON lines file: measurements are appended as they finish and earlier ones reused")
    args = parser.parse_args()
    la, lb = (int(n) for n in args.layers.split(","))
    root = args.root or Path(tempfile.mkdtemp(prefix="phi-get-real-scale-"))
    from phi_get.builders.tiny import TinySpec, make_tiny_phi

    done: list[dict[str, Any]] = []
    if args.append and args.append.is_file():
        done = [json.loads(line) for line in args.append.read_text().splitlines() if line.strip()]
    rows = list(done)
    for model in args.models.split(","):
        for layers in (la, lb):
            src = root / f"{model}-{layers}L-{args.layout}"
            for variant in args.only.split(","):
                if any((r["model"], r["layers"], r["variant"]) == (model, layers, variant) for r in done):
                    continue
                if not (src / "config.json").is_file():
                    make_tiny_phi(src, TinySpec.like(model, layers=layers, layout=args.layout), force=True)
                out = root / "builds" / f"{model}-{layers}L-{variant}"
                subprocess.run(["rm", "-rf", str(out)], check=True)
                row = {"model": model, "layers": layers, "layout": args.layout,
                       "checkpoint_bytes": disk_usage(src), **measure(model, src, variant, out)}
                subprocess.run(["rm", "-rf", str(out)], check=True)
                print(f"{model} {layers}L {variant}: {row['outcome']} {row['wall_s']} s, tree PSS "
                      f"{_gb(row['tree_pss'])} GB, max RSS {_gb(row['max_rss'])} GB ({row['max_rss_process']}), "
                      f"peak disk {_gb(row['peak_disk'])} GB; gate: {str(row['gate'])[:80]}", file=sys.stderr, flush=True)
                rows.append(row)
                if args.append:
                    with open(args.append, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    summary = summarise(rows, (la, lb))
    print_table(summary, (la, lb))
    if args.markdown:
        print_markdown(summary, (la, lb))
    if args.write_costs:
        write_costs(args.write_costs, summary, (la, lb))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
