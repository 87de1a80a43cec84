"""mypy --strict over the spec and the resolver, with one set-up (STYLE.md habit 11).

The repository root is the ``phi_get`` package, so mypy is pointed at a
temporary folder holding one link, ``phi_get -> <repo root>``; it then checks
``phi_get.manifests`` and ``phi_get.resolver`` in one run, under the very
module names the installed package has.  ``make typecheck`` runs this test:
the set-up lives here only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The packages held to mypy --strict.
STRICT = ("phi_get.manifests", "phi_get.resolver")


def mypy(tmp_path: Path, *packages: str) -> subprocess.CompletedProcess[str]:
    """mypy --strict over ``packages``, the repository seen through a ``phi_get`` link in ``tmp_path``."""
    pytest.importorskip("mypy")
    (tmp_path / "phi_get").symlink_to(ROOT, target_is_directory=True)
    args = [arg for package in packages for arg in ("-p", package)]
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--strict",
         "--cache-dir", str(tmp_path / "cache"), *args],
        capture_output=True, text=True, env=dict(os.environ, MYPYPATH=str(tmp_path)), cwd=tmp_path, timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_spec_and_resolver_pass_mypy_strict(tmp_path: Path) -> None:
    proc = mypy(tmp_path, *STRICT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
