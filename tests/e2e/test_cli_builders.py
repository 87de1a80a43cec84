"""The builder commands as a new user meets them: quiet libraries, exit codes, a plan that
says what this machine lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from phi_get.manifests.errors import ExitCode
from phi_get.manifests.recipe import load_recipe

#: A Hub endpoint nothing listens on: "no Hub access" on any machine, at once.
NO_HUB = {"HF_ENDPOINT": "http://127.0.0.1:1", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_OFFLINE": ""}


def phi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_tiny_phi_prints_no_library_progress_bars(tmp_path: Path) -> None:
    """transformers' "Writing model shards" bars leaked into tiny-phi's stderr (and logs and pipes)."""
    out = phi("tiny-phi", str(tmp_path / "ckpt"))
    assert out.returncode == 0, out.stderr
    assert "it/s" not in out.stderr and "\r" not in out.stderr and "Writing model shards" not in out.stderr
    assert "MB)" in out.stdout
    doc = json.loads(phi("tiny-phi", str(tmp_path / "ckpt"), "--force", "--json").stdout)
    assert doc["size"] > 1_000_000 and doc["style"] == "phi3"  # --json: exact bytes


def test_tiny_phi_into_a_non_empty_folder_is_a_conflict(tmp_path: Path) -> None:
    """An existing folder exited 1 (generic): it is a folder in the way, exit 6, with the fix."""
    (tmp_path / "keep.txt").write_text("mine")
    out = phi("tiny-phi", str(tmp_path))
    assert out.returncode == ExitCode.CONFLICT and "pass --force" in out.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_plan_says_a_hub_variant_cannot_be_built_without_hub_access(tmp_path: Path) -> None:
    """build --plan said every variant was buildable on a machine with no Hub access."""
    out = phi("build", "phi-3.5-mini", "--plan", "--json", "--only", "gguf-q4_k_m", env=NO_HUB)
    assert out.returncode == 0, out.stderr
    entry = json.loads(out.stdout)
    assert entry["buildable"] is False and "no Hugging Face Hub access" in entry["reason"]
    assert "--source DIR" in entry["reason"]
    from phi_get.builders.plan import expected_needs

    recipe = load_recipe("phi-3.5-mini")
    spec = next(v for v in recipe.variants if v.id == "gguf-q4_k_m")
    needs, basis = expected_needs(recipe, spec, recipe.architecture["parameters"])  # measured
    assert entry["needs"]["memory_bytes"] == needs["memory_bytes"] and entry["needs_basis"] == basis
    text = phi("build", "phi-3.5-mini", "--plan", "--only", "gguf-q4_k_m", env=NO_HUB).stdout
    assert text.splitlines()[0].split() == ["VARIANT", "TOOLCHAIN", "CHECK", "HERE"]
    local = phi("build", "phi-3.5-mini", "--plan", "--json", "--only", "gguf-q4_k_m", "--source", str(tmp_path),
                env=NO_HUB)
    assert "Hub" not in (json.loads(local.stdout)["reason"] or "")  # a local checkpoint needs no Hub


def test_a_build_without_hub_access_exits_unavailable_and_suggests_source(tmp_path: Path) -> None:
    """The Hub unreachable exited 2 (bad input) and did not suggest --source DIR."""
    out = phi("build", "phi-3.5-mini", "--only", "gguf-q4_k_m", "--out", str(tmp_path / "out"), env=NO_HUB)
    assert out.returncode == ExitCode.UNAVAILABLE, out.stderr
    assert "from the Hugging Face Hub" in out.stderr and "--source DIR" in out.stderr
