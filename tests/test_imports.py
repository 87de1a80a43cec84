"""Import rules between the parts, and the light-weight command line.

- ``manifests`` imports nothing of phi-get and nothing but the standard
  library and ``packaging``;
- ``resolver``, ``registry`` and ``builders`` import ``manifests`` and never
  each other;
- ``phi-get --help`` and ``--version`` import none of the heavy libraries;
- no import cycle between phi-get's modules, counting the imports inside
  functions and under ``TYPE_CHECKING`` (an import moved into a function to
  dodge a cycle hides a fact that sits in the wrong module, STYLE.md 16).
"""

from __future__ import annotations

import ast
import graphlib
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


def module_name(path: Path, root: Path = ROOT) -> str:
    """The module a product file is imported as (``phi_get.resolver.resolve``, ``phi_get`` for __init__)."""
    parts = ["phi_get", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_files() -> list[Path]:
    """Every module of the phi_get package: the root's and the parts' (tests, bench and builds are not)."""
    return sorted(ROOT.glob("*.py")) + [f for part in PARTS for f in part_files(part)]


def import_graph(files: list[Path], root: Path = ROOT) -> dict[str, set[str]]:
    """For each module, the phi-get modules it imports anywhere in its text (functions included).

    ``from X import y`` counts ``X.y`` where that is a module, else ``X``; a
    package's ``__init__`` run on the way to a submodule is not counted (a
    package that re-exports its submodules is no cycle).
    """
    modules = {module_name(f, root): f for f in files}

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [known(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base) for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t is not None and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as the modules along it, or [] when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return list(e.args[1])
    return []


def test_no_import_cycle_inside_phi_get() -> None:
    cycle = find_cycle(import_graph(product_files()))
    assert not cycle, " -> ".join(cycle)


def test_cycle_finder_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The cycle test itself: a cycle closed by an import inside a function is found (the hiding it forbids)."""
    part = tmp_path / "manifests"
    part.mkdir()
    (part / "__init__.py").write_text("from . import a, b\n", encoding="utf-8")
    (part / "a.py").write_text("from phi_get.manifests.b import thing\n", encoding="utf-8")
    (part / "b.py").write_text("thing = 1\n", encoding="utf-8")
    files = sorted(part.glob("*.py"))
    assert not find_cycle(import_graph(files, tmp_path))  # a package re-exporting its modules is no cycle
    (part / "b.py").write_text("thing = 1\n\n\ndef f():\n    from . import a\n", encoding="utf-8")
    cycle = find_cycle(import_graph(files, tmp_path))
    assert set(cycle) == {"phi_get.manifests.a", "phi_get.manifests.b"}


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
