"""The resolver passes mypy --strict (STYLE.md habit 11), under the installed package's module names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_resolver_passes_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    (tmp_path / "phi_get").symlink_to(ROOT, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--strict",
         "--cache-dir", str(tmp_path / "cache"), "-p", "phi_get.resolver"],
        capture_output=True, text=True, env=dict(os.environ, MYPYPATH=str(tmp_path)), cwd=tmp_path, timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
