"""One exit-code table: every error class names its code from ExitCode, and the README lists it."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import phi_get
from phi_get.manifests.errors import EXIT_CODE_HELP, ExitCode, PhiGetError

ROOT = Path(__file__).resolve().parents[2]


def _all_error_classes() -> list[type[PhiGetError]]:
    for part in ("manifests", "resolver", "registry", "builders"):
        pkg = importlib.import_module(f"phi_get.{part}")
        for info in pkgutil.iter_modules(pkg.__path__, f"phi_get.{part}."):
            if info.name.endswith(("errors", "artifact")):
                importlib.import_module(info.name)
    seen, todo = [], [PhiGetError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += cls.__subclasses__()
    return seen


def test_every_error_class_uses_a_code_of_the_table() -> None:
    """Codes written as bare numbers drift from the table (bad URL 5, Hub unreachable 2, existing folder 1)."""
    assert phi_get  # the package imports
    classes = _all_error_classes()
    assert len(classes) > 15
    for cls in classes:
        assert cls.exit_code in set(ExitCode), (cls, cls.exit_code)
        assert isinstance(cls.exit_code, ExitCode), f"{cls.__qualname__}.exit_code is a bare number"


def test_the_readme_lists_the_same_table() -> None:
    """The table in `phi-get --help` and the README's are the same rows."""
    readme = (ROOT / "README.md").read_text()
    for row in EXIT_CODE_HELP.splitlines():
        code, name = row.split()[:2]
        assert f"| {code} | {name} |" in readme, row
