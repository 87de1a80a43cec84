"""Shared conversion, incremental rebuilds, bit-reproducibility, and failures that leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from phi_get.builders import gguf
from phi_get.builders.base import Outcome
from phi_get.builders.build import build_recipe
from phi_get.manifests.artifact import load_artifact_folder

pytestmark = pytest.mark.slow
GGUF = "gguf-f32,gguf-f16,gguf-q8_0,gguf-q4_0"


@pytest.fixture()
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every HF-to-GGUF conversion the builder does."""
    pytest.importorskip("llama_cpp")
    calls: list[Path] = []
    real = gguf.convert_to_gguf

    def counting(ckpt: object, dest: Path) -> Path:
        calls.append(dest)
        return real(ckpt, dest)  # type: ignore[arg-type]

    monkeypatch.setattr(gguf, "convert_to_gguf", counting)
    return calls


def test_one_conversion_feeds_every_gguf_variant(tiny_phi: Path, tmp_path: Path, conversions: list[Path]) -> None:
    results = build_recipe("tiny-phi", tiny_phi, tmp_path, only=GGUF)
    assert [r.outcome for r in results] == [Outcome.BUILT] * 4
    assert len(conversions) == 1 and conversions[0].parent.parent.parent.name == ".work"


def test_unchanged_inputs_are_not_rebuilt(tiny_phi: Path, tmp_path: Path, conversions: list[Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_recipe("tiny-phi", tiny_phi, tmp_path, only=GGUF)
    before = {r.variant: load_artifact_folder(r.folder).to_bytes() for r in first}
    again = build_recipe("tiny-phi", tiny_phi, tmp_path, only=GGUF)
    assert [r.outcome for r in again] == [Outcome.UP_TO_DATE] * 4
    assert {r.variant: load_artifact_folder(r.folder).to_bytes() for r in again} == before  # not even re-stamped
    # A different tool version is a different input: everything is rebuilt.
    real_tools = gguf.GgufBackend.tools
    monkeypatch.setattr(gguf.GgufBackend, "tools", lambda self, spec=None: {**real_tools(self), "gguf": "999"})
    assert [r.outcome for r in build_recipe("tiny-phi", tiny_phi, tmp_path, only=GGUF)] == [Outcome.BUILT] * 4


def test_damaged_artifact_is_rebuilt(tiny_phi: Path, tmp_path: Path, conversions: list[Path]) -> None:
    (result,) = build_recipe("tiny-phi", tiny_phi, tmp_path, only="gguf-q8_0")
    assert result.folder is not None
    with open(result.folder / "model.gguf", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff\xff")
    (again,) = build_recipe("tiny-phi", tiny_phi, tmp_path, only="gguf-q8_0")
    assert again.outcome is Outcome.BUILT
    load_artifact_folder(again.folder)


def test_rebuilds_are_bit_reproducible(tiny_phi: Path, tmp_path: Path) -> None:
    # bench/build_matrix.py checks the whole matrix; this pins one of each main-env toolchain.
    pytest.importorskip("onnxruntime_genai")
    only = f"{GGUF},onnx-cpu-int4,safetensors-fp16"
    a = build_recipe("tiny-phi", tiny_phi, tmp_path / "a", only=only)
    b = build_recipe("tiny-phi", tiny_phi, tmp_path / "b", only=only)
    assert [r.outcome for r in a] == [Outcome.BUILT] * 6
    assert {r.variant: r.digests for r in a} == {r.variant: r.digests for r in b}


def test_cli_builds_and_records_the_command(tiny_phi: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    argv = ["build", "tiny-phi", "--source", str(tiny_phi), "--out", str(tmp_path / "o"), "--only", "gguf-q4_0",
            "--json"]
    proc = subprocess.run([sys.executable, "-m", "phi_get", *argv], capture_output=True, text=True, cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    result = json.loads(line)
    assert result["outcome"] == "built" and result["variant"] == "gguf-q4_0"
    manifest = load_artifact_folder(result["folder"])
    assert list(manifest.provenance.command) == ["phi-get", *argv]
    again = subprocess.run([sys.executable, "-m", "phi_get", *argv], capture_output=True, text=True, cwd=tmp_path,
                           check=False)
    assert json.loads(again.stdout)["outcome"] == "up-to-date"


def test_a_failed_variant_leaves_nothing_that_looks_finished(tiny_phi: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")

    def broken_runtime(path: Path, ctx: object) -> None:
        raise RuntimeError("llama.cpp refused the file")

    monkeypatch.setattr(gguf, "run_gguf", broken_runtime)
    results = build_recipe("tiny-phi", tiny_phi, tmp_path, only="gguf-q4_0,gguf-f16")
    assert [(r.variant, r.outcome) for r in results] == [("gguf-f16", Outcome.FAILED), ("gguf-q4_0", Outcome.FAILED)]
    for r in results:  # the failing frame and the step's full log are named (builders/steplog.py)
        head, _, log = r.reason.partition("; full log: ")
        assert head.startswith(f"the llama.cpp build of {r.variant} failed in broken_runtime ("), r.reason
        assert head.endswith("): RuntimeError: llama.cpp refused the file"), r.reason
        assert "llama.cpp refused the file" in Path(log).read_text()
    assert list((tmp_path / "tiny-phi" / "0.1.0").iterdir()) == []


_KILLED_BUILD = """
import sys, time
from pathlib import Path
from phi_get.builders import pytorch
from phi_get.builders.build import build_recipe
real_cast = pytorch.cast_safetensors

def cast_then_hang(sources, dest, dtype):
    real_cast(sources, dest, dtype)  # the bytes are written; the process is killed before the folder is renamed
    Path(sys.argv[3]).write_text(str(dest))
    time.sleep(600)

pytorch.cast_safetensors = cast_then_hang
build_recipe("tiny-phi", Path(sys.argv[1]), Path(sys.argv[2]), only="safetensors-fp16")
"""


def test_a_build_killed_mid_cast_leaves_nothing_finished_and_the_next_build_removes_its_folder(
        tiny_phi: Path, tmp_path: Path) -> None:
    """kill -9 during a variant's build: no folder that looks finished; the next build removes the hidden one."""
    out, marker = tmp_path / "out", tmp_path / "cast-done"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(tiny_phi), str(out), str(marker)])
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the build never reached the cast (exit {proc.poll()})"
    finally:
        proc.kill()
        proc.wait()
    version = out / "tiny-phi" / "0.1.0"
    left = [p.name for p in version.iterdir()]
    assert len(left) == 1 and left[0].startswith(".safetensors-fp16."), left  # hidden, unfinished
    assert Path(marker.read_text()).is_relative_to(version / left[0])  # the cast wrote into that hidden folder
    assert not (version / left[0] / "manifest.json").exists()
    results = build_recipe("tiny-phi", tiny_phi, out, only="safetensors-fp16")
    assert [r.outcome for r in results] == [Outcome.BUILT], results[0].reason
    assert [p.name for p in version.iterdir()] == ["safetensors-fp16"]
    load_artifact_folder(version / "safetensors-fp16", verify=True)
