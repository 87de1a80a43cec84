"""Shared fixtures: the tiny Phi checkpoint, generated once per test session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_phi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Phi-3 checkpoint, as `phi-get tiny-phi` writes it."""
    pytest.importorskip("torch")
    from phi_get.builders.tiny import make_tiny_phi

    return make_tiny_phi(tmp_path_factory.mktemp("tiny") / "tiny-phi")


@pytest.fixture()
def good_manifest() -> dict[str, Any]:
    """A valid manifest document as plain JSON data, fresh for each test."""
    data: dict[str, Any] = json.loads((DATA / "manifests" / "good-manifest.json").read_text())
    return data


# a source without a pinned TUF root is refused unless the user accepts it unsigned.
# The suite's fixtures serve unsigned wire layouts, so the session accepts every source unsigned
# (the explicit opt-out, as a user would set it); the signing tests (tests/resolver/test_trust_*.py,
# tests/registry/test_registry_tuf.py) remove it to test the default.
import os as _os  # noqa: E402

_os.environ.setdefault("PHI_GET_UNSIGNED", "*")
