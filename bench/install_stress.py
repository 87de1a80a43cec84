"""Bench: resume after a kill at 50 %, and 8 concurrent installs of one artifact.

One 1 GB artifact (random bytes) served by the test kit's loopback server,
which counts every body byte it sends.  ``phi-get install`` runs as real
processes (``python -m phi_get install``):

* resume: an install is SIGKILLed once its journal shows half the file,
  then run again; re-downloaded = bytes sent in both runs - file size.
  Target: at most one part (the part size is printed);
* concurrency: 8 installs start at once into one empty store; target: the
  server sends at most 1.1 x the artifact's size, all 8 succeed, and the
  installed folder verifies.

    .venv/bin/python bench/install_stress.py [--size-mb 1024] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "kit"))

import wirekit
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.resolver.fetch import _part_size


def install(url: str, home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "phi_get", "install", "bench-model", "--registry", url,
                             "--device", "pi-board", "--quiet"],
                            env={**os.environ, "PHI_GET_HOME": str(home), "PHI_GET_UNSIGNED": url},  # the bench's own
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def covered(pdir: Path) -> int:
    """Bytes journaled in the download's work folder (``partial/<hex>/w-*/journal``)."""
    spans: dict[int, int] = {}
    try:
        for journal in pdir.glob("w-*/journal"):
            for line in journal.read_text().splitlines():
                a, b = map(int, line.split())
                spans[a] = max(spans.get(a, 0), b)
    except (FileNotFoundError, ValueError):
        return 0
    return sum(b - a for a, b in spans.items())


def bench_resume(srv: wirekit.LoopbackServer, m: object, home: Path, size: int) -> dict[str, object]:
    sha = m.files[0].sha256  # type: ignore[attr-defined]
    journal = home / "partial" / sha
    proc = install(srv.url, home)
    while covered(journal) < size // 2 and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    first = srv.stats.body_bytes
    at_kill = covered(journal)
    t = time.perf_counter()
    second = install(srv.url, home)
    _, err = second.communicate()
    assert second.returncode == 0, err
    resume_s = time.perf_counter() - t
    load_artifact_folder(next((home / "artifacts" / "sha256").iterdir()))
    total = srv.stats.body_bytes
    part = _part_size(size, 4)
    again = total - size
    return {"sent_before_kill": first, "journaled_at_kill": at_kill, "sent_total": total,
            "redownloaded_bytes": again, "part_bytes": part, "redownloaded_parts": round(again / part, 3),
            "resume_s": round(resume_s, 2)}


def bench_concurrent(srv: wirekit.LoopbackServer, home: Path, size: int, n: int = 8) -> dict[str, object]:
    t = time.perf_counter()
    procs = [install(srv.url, home) for _ in range(n)]
    results = [(p.communicate()[1], p.returncode) for p in procs]
    elapsed = time.perf_counter() - t
    assert all(rc == 0 for _, rc in results), results
    folders = list((home / "artifacts" / "sha256").iterdir())
    assert len(folders) == 1
    load_artifact_folder(folders[0])
    return {"processes": n, "all_succeeded": True, "sent_bytes": srv.stats.body_bytes,
            "ratio_sent_over_size": round(srv.stats.body_bytes / size, 3), "wall_s": round(elapsed, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    args = ap.parse_args()
    size = args.size_mb << 20
    work = Path(tempfile.mkdtemp(prefix="phi-get-bench-", dir=args.workdir))
    try:
        m, mirror = wirekit.write_random_mirror(work, size)
        with wirekit.LoopbackServer(mirror) as srv:
            srv.faults.slow = 0.0
            resume = bench_resume(srv, m, work / "home-resume", size)
            shutil.rmtree(work / "home-resume")
            srv.reset()
            conc = bench_concurrent(srv, work / "home-concurrent", size)
        print(json.dumps({"size_bytes": size, "resume": resume, "concurrent": conc}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
