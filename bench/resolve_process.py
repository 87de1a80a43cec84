"""Bench: ``phi-get resolve`` as a whole process with a warm cache (target <= 0.3 s).

A loopback registry serves a model index of 30 variants; one resolve fills
the index cache (ETag), then each timed run revalidates it (HTTP 304) and
resolves.  Timed in the same run as peers: the bare interpreter
(``python -c pass``) and the CLI's start (``phi-get --version``).  Reported
for a given device profile (``--device pi-board``) and for the probe, and
for the same resolve run by ``phi_get.resolver.resolve_command.main``
without typer (what a root CLI that dispatches ``resolve`` before loading
typer would cost).

Where ``PYTHONDONTWRITEBYTECODE`` is set (it is on the development
machines), every process compiles phi-get's sources again, a cost that
grows with the size of the code and that no installed wheel pays (pip
compiles the bytecode at install).  The rows marked "(bytecode cached)"
run with a bytecode cache under a temporary ``PYTHONPYCACHEPREFIX``.

``--baseline REV`` also times the same resolve run by the code of a git
revision (``git archive`` into a temporary folder, imported ahead of the
editable install), alternating run by run with this tree's so both see the
same load; it prints both medians and their ratio (> 1: this tree is slower).

    .venv/bin/python bench/resolve_process.py [--repeat 11] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "kit"))

import wirekit
from benchkit import baseline_tree

TARGET_S = 0.3


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
        assert out.returncode == 0, out.stderr
    return statistics.median(times)


def timed_pair(cmd: list[str], envs: tuple[dict[str, str], dict[str, str]], repeat: int) -> tuple[float, float]:
    """Median seconds of ``cmd`` under each of two environments, alternating run by run."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for env, out in zip(envs, times, strict=True):
            t = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, check=False, cwd=tempfile.gettempdir())
            out.append(time.perf_counter() - t)
            assert done.returncode == 0, done.stderr
    return statistics.median(times[0]), statistics.median(times[1])


def _signed_copy(root: Path, tmp: Path) -> Path:
    """The mirror again, TUF-signed as a registry operator would sign it (registry/tuf_repo.py)."""
    import shutil

    from phi_get.registry.tuf_repo import TufRepository, create_keys, mirror_documents

    out = tmp / "signed-mirror"
    shutil.copytree(root, out)
    create_keys(tmp / "keys")
    repo = TufRepository(tmp / "tuf")
    repo.init(tmp / "keys", None)
    repo.sync(None, documents=mirror_documents(out))
    for name, body in repo.files():
        (out / "v1" / "tuf").mkdir(parents=True, exist_ok=True)
        (out / "v1" / "tuf" / name).write_bytes(body)
    return out


def _pin(url: str, signed_root: Path, env: dict[str, str]) -> None:
    root = signed_root / "v1" / "tuf" / "1.root.json"
    subprocess.run([sys.executable, "-m", "phi_get", "trust", "add", url, str(root)], env=env, check=True,
                   capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--baseline", metavar="REV", help="also time resolve by the code of this git revision")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mirror"
        arts = []
        for i in range(30):
            files: dict[str, bytes | Path] = {"model.bin": f"weights {i}".encode()}
            arts.append((wirekit.make_manifest("bench-model", f"1.{i // 6}.0", f"variant-{i % 6}", files), files))
        wirekit.write_mirror(root, arts)
        signed_root = _signed_copy(root, Path(tmp))
        with wirekit.LoopbackServer(root) as srv, wirekit.LoopbackServer(signed_root) as signed_srv:
            # the plain mirror is unsigned: accepted explicitly, as a user would
            env = {**os.environ, "PHI_GET_HOME": str(Path(tmp) / "home"), "PHI_GET_UNSIGNED": srv.url}
            signed = [*[sys.executable], "-m", "phi_get", "resolve", "bench-model", "--registry", signed_srv.url]
            _pin(signed_srv.url, signed_root, env)
            subprocess.run([*signed, "--device", "pi-board"], env=env, check=True, capture_output=True)  # warm
            py = [sys.executable]
            resolve = [*py, "-m", "phi_get", "resolve", "bench-model", "--registry", srv.url]
            subprocess.run([*resolve, "--device", "pi-board"], env=env, check=True, capture_output=True)  # warm
            script = "import sys; from phi_get.resolver.resolve_command import main; sys.exit(main(sys.argv[1:]))"
            direct = [*py, "-c", script, "bench-model", "--registry", srv.url]
            cached = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            subprocess.run([*resolve, "--device", "pi-board"], env=cached, check=True, capture_output=True)  # compile
            comparison: dict[str, float] = {}
            results = {
                "python -c pass": timed([*py, "-c", "pass"], env, args.repeat),
                "phi-get --version": timed([*py, "-m", "phi_get", "--version"], env, args.repeat),
                "resolve --device pi-board": timed([*resolve, "--device", "pi-board"], env, args.repeat),
                "resolve (probed device)": timed(resolve, env, args.repeat),
                "no-typer resolve --device pi-board": timed([*direct, "--device", "pi-board"], env, args.repeat),
                "no-typer resolve (probed)": timed(direct, env, args.repeat),
                # TUF-verified source, warm metadata cache: a root probe and timestamp.json per process
                "signed resolve --device pi-board": timed([*signed, "--device", "pi-board"], env, args.repeat),
                "phi-get --version (bytecode cached)": timed([*py, "-m", "phi_get", "--version"], cached, args.repeat),
                "resolve --device pi-board (bytecode cached)": timed([*resolve, "--device", "pi-board"], cached,
                                                                     args.repeat),
            }
            if args.baseline:
                tree = str(baseline_tree(args.baseline, Path(tmp)))
                old = {"PYTHONPATH": tree, "PHI_GET_HOME": str(Path(tmp) / "home-baseline")}
                pairs = {"bytecode compiled": (env, {**env, **old}),
                         "bytecode cached": (cached, {**cached, **old,
                                                      "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache-baseline")})}
                for what, here in (("resolve --device pi-board", [*resolve, "--device", "pi-board"]),
                                   ("resolve (probed device)", resolve)):
                    for label, (new_env, old_env) in pairs.items():
                        subprocess.run(here, env=old_env, check=True, capture_output=True, cwd=tmp)  # cache, bytecode
                        new_s, old_s = timed_pair(here, (new_env, old_env), args.repeat)
                        results[f"{what} ({label}), this tree"] = new_s
                        results[f"{what} ({label}), {args.baseline}"] = old_s
                        comparison[f"{what} ({label})"] = round(new_s / old_s, 3)
    for label, secs in results.items():
        print(f"{label:<58} p50 {secs * 1000:6.0f} ms")
    worst = max(results["resolve --device pi-board"], results["resolve (probed device)"],
                results["signed resolve --device pi-board"])
    worst_direct = max(results["no-typer resolve --device pi-board"], results["no-typer resolve (probed)"])
    print(json.dumps({"p50_ms": {k: round(v * 1000) for k, v in results.items()}, "target_s": TARGET_S,
                      "ratio_target_over_resolve": round(TARGET_S / worst, 2),
                      "ratio_target_over_no_typer_resolve": round(TARGET_S / worst_direct, 2),
                      "resolve_minus_cli_start_ms": round((worst - results["phi-get --version"]) * 1000),
                      **({"baseline": args.baseline, "ratio_this_tree_over_baseline": comparison} if comparison else {})}))


if __name__ == "__main__":
    main()
