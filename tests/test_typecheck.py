"""mypy sees the same names as the tests and the installed package.

The repository root is the ``phi_get`` package, so mypy is pointed at a
temporary folder holding one link, ``phi_get -> <repo root>``; it then checks
``phi_get.manifests`` (strict, per pyproject.toml) under the very module names
the installed package has.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_manifests_pass_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    (tmp_path / "phi_get").symlink_to(ROOT, target_is_directory=True)
    env = dict(os.environ, MYPYPATH=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "phi_get.manifests"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
