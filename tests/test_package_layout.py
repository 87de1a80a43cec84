"""The repository root is the ``phi_get`` package, with its costs contained.

Faults: in an editable install every root folder would import as part of
phi_get (``phi_get.tests``, ``phi_get.bench``), so test helpers could leak
into the product by an import; and a wheel built with setuptools' warnings
(data folders missing from ``packages``) ships files by accident, not by
statement.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["phi_get.tests", "phi_get.bench"])
def test_repository_folders_do_not_import_as_part_of_the_package(name: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert f"ModuleNotFoundError: No module named '{name}'" in proc.stderr
    assert "not a part of the phi_get package" in proc.stderr


def test_the_parts_and_their_data_folders_still_import(tmp_path: Path) -> None:
    script = ("import phi_get.manifests.recipes, phi_get.resolver, phi_get.builders.drivers\n"
              "from importlib import resources\n"
              "print(resources.files('phi_get.resolver').joinpath('profiles', 'pi-board.json').is_file())\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


@pytest.mark.slow
def test_the_wheel_builds_without_warnings_and_ships_only_the_package(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".envs", ".artifacts", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # its notice is no warning
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp_path / "wheel"), "-v"], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "warn" in line.lower()]
    assert not warnings, warnings
    (wheel,) = (tmp_path / "wheel").glob("phi_get-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("phi_get/tests/", "phi_get/bench/", "phi_get/build/"))]
    for shipped in ("phi_get/py.typed", "phi_get/resolver/profiles/pi-board.json", "phi_get/registry/templates/base.html",
                    "phi_get/registry/static/catalog.css", "phi_get/builders/data/corpus.txt",
                    "phi_get/builders/requirements/mlx.txt", "phi_get/builders/drivers/mlx_check.py",
                    "phi_get/manifests/recipes/__init__.py"):
        assert shipped in names, shipped
