"""The README's main job (`phi-get demo`), on a subset of the matrix.

`make demo` runs the full matrix; here two variants keep the suite short
while every step (checkpoint, registry, build, publish + mirror, resolve for
six devices, lock, offline sync, run) still runs for real.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end_and_stops_its_processes(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "phi_get", "demo", "--work", str(work), "--only", "gguf-q4_k_m,safetensors-fp16"],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = proc.stdout.split("== Summary", 1)[1]
    assert summary.count("  ok   ") == 9 and "FAIL" not in summary  # 9 steps: the last pushes to and pulls from an OCI registry
    assert "metadata TUF-signed" in summary and "TUF + publisher signature verified" in summary  # signed metadata and publisher signatures
    resolved = proc.stdout.split("== resolve for 6 devices", 1)[1].split("== lock", 1)[0]
    assert "on cuda" in resolved and "on metal" in resolved and "on cpu-arm64" in resolved
    assert "new tokens" in summary
    lock = (work / "fleet" / "phi.lock").read_text()
    assert lock.count("[[device-class]]") == 6
    # the registry it started is gone: its port no longer answers
    port = int(proc.stdout.split("http://127.0.0.1:", 1)[1].split()[0].rstrip(")/"))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_demo_fails_loudly_when_a_step_fails(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "phi_get", "demo", "--work", str(tmp_path / "demo"), "--only", "no-such-variant"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1
    assert "FAIL build the tiny-phi matrix" in proc.stdout
