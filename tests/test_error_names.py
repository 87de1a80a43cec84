"""One error vocabulary: no two error classes of phi-get share a name.

Fault class: the same name meaning two things (an ``IntegrityError`` for
downloaded bytes in the resolver and for uploaded bytes in the registry, a
``SourceError`` for an unreachable registry and for an unusable checkpoint),
so that a reader, a log or an ``except`` clause takes one for the other.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("manifests", "resolver", "registry", "builders")


def error_classes(root: Path) -> dict[str, list[str]]:
    """Every class named ``...Error`` defined in the product code, with where each is defined."""
    found: dict[str, list[str]] = defaultdict(list)
    files = sorted(root.glob("*.py")) + [f for part in PARTS for f in sorted((root / part).rglob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                found[node.name].append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_two_error_classes_share_a_name() -> None:
    found = error_classes(ROOT)
    assert "PhiGetError" in found  # the walk reads the tree it means to
    twice = {name: places for name, places in found.items() if len(places) > 1}
    assert not twice, twice
