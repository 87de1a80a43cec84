"""Import rules between the parts, and the light-weight command line.

- ``manifests`` imports nothing of phi-get and nothing but the standard
  library and ``packaging``;
- ``resolver``, ``registry`` and ``builders`` import ``manifests`` and never
  each other;
- ``phi-get --help`` and ``--version`` import none of the heavy libraries.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("manifests", "resolver", "registry", "builders")
HEAVY = ("torch", "transformers", "onnx", "onnxruntime", "onnxruntime_genai", "sqlmodel", "sqlalchemy",
         "llama_cpp", "openvino", "openvino_genai", "mlx", "mlx_lm", "fastapi", "uvicorn", "numpy")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    package = ["phi_get", *path.relative_to(ROOT).parent.parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


def part_files(part: str) -> list[Path]:
    return sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", PARTS)
def test_parts_do_not_import_each_other(part: str) -> None:
    others = [p for p in PARTS if p not in (part, "manifests")]
    bad = [
        f"{f.relative_to(ROOT)} imports {m}"
        for f in part_files(part)
        for m in imported_modules(f)
        if any(m == f"phi_get.{o}" or m.startswith(f"phi_get.{o}.") for o in others)
        or (part == "manifests" and m.startswith("phi_get") and not m.startswith("phi_get.manifests"))
    ]
    assert not bad, bad


def test_manifests_uses_only_stdlib_and_packaging() -> None:
    allowed = set(sys.stdlib_module_names) | {"packaging", "phi_get"}
    bad = [
        f"{f.relative_to(ROOT)} imports {m}"
        for f in part_files("manifests")
        for m in imported_modules(f)
        if m.split(".")[0] not in allowed
    ]
    assert not bad, bad


def heavy_imports(*args: str) -> set[str]:
    """Top-level heavy packages a phi-get process imports, from -X importtime."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "phi_get", *args],
        capture_output=True, text=True, timeout=60, check=True,
    )
    seen = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    return seen & set(HEAVY)


@pytest.mark.parametrize("args", [("--help",), ("--version",)])
def test_cli_help_and_version_stay_light(args: tuple[str, ...]) -> None:
    assert heavy_imports(*args) == set()


def test_bad_option_value_is_a_usage_error_not_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "phi_get", "tiny-phi", "out", "--seed", "abc"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Invalid value for '--seed'" in proc.stderr and "Traceback" not in proc.stderr
