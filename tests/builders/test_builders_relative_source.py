"""A relative --source works for every toolchain (found following the README).

The toolchains run in their own working folders; a relative source path used
to reach the ONNX builder unchanged, which then took `tiny` for a Hugging Face
repo id and failed asking for a hub token.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_relative_source_path_builds_onnx(tiny_phi: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_phi, tmp_path / "tiny")
    proc = subprocess.run(
        [sys.executable, "-m", "phi_get", "build", "tiny-phi", "--source", "tiny", "--only", "onnx-cpu-int4",
         "--out", "out", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["outcome"] for r in results] == ["built"]
    assert (tmp_path / "out" / "tiny-phi" / "0.1.0" / "onnx-cpu-int4" / "manifest.json").is_file()
