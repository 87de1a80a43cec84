"""Lint is part of the test command: ``ruff check`` over the whole tree, clean.

The rule set is the one stated in ``pyproject.toml`` (``[tool.ruff.lint]``),
not ruff's defaults, so a ruff upgrade does not change what the tree is held
to.  Fault class: code that compiles but carries a likely bug (an unused
import hiding a typo, a mutable default, a shadowed loop variable, a missing
comma in a list of strings) lands unseen.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("ruff")
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=False)


def test_tree_passes_ruff() -> None:
    proc = _ruff(".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rule_set_is_stated_and_catches_a_likely_bug(tmp_path: Path) -> None:
    """The configured rules see an unused import and a mutable default argument (the lint cannot pass idly)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x=[]):\n    return x\n", encoding="utf-8")
    proc = _ruff("--config", str(ROOT / "pyproject.toml"), "--output-format", "concise", str(bad))
    assert proc.returncode == 1
    assert "F401" in proc.stdout and "B006" in proc.stdout
