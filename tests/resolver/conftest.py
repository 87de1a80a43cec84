"""Fixtures for the device side's tests: the wire kit, scenarios, a loopback mirror."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "kit"))  # the test kit: shared with tests/registry and bench/

import wirekit

DATA = Path(__file__).parents[1] / "data" / "resolver"


@pytest.fixture()
def kit() -> object:
    return wirekit


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty phi-get home (PHI_GET_HOME) for this test."""
    path = tmp_path / "home"
    monkeypatch.setenv("PHI_GET_HOME", str(path))
    monkeypatch.delenv("PHI_GET_REGISTRY", raising=False)
    monkeypatch.delenv("PHI_GET_DEVICE", raising=False)
    return path


@pytest.fixture()
def mirror(tmp_path: Path) -> tuple[Path, list[object]]:
    """A static mirror with one small model in two versions; files share a blob."""
    root = tmp_path / "mirror"
    shared = b"tokenizer " * 1000
    arts = []
    for version, weights in (("0.1.0", b"w1" * 300_000), ("0.2.0", b"w2" * 400_000)):
        files: dict[str, bytes | Path] = {"model.bin": weights, "tokenizer.json": shared, "sub/config.json": b"{}"}
        m = wirekit.make_manifest("tiny-model", version, "safetensors-fp32", files)
        arts.append((m, files))
    wirekit.write_mirror(root, arts)
    return root, [m for m, _ in arts]


@pytest.fixture()
def served(mirror: tuple[Path, list[object]]) -> Iterator[wirekit.LoopbackServer]:
    with wirekit.LoopbackServer(mirror[0]) as srv:
        yield srv
