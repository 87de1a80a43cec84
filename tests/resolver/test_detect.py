"""Device probes: real subprocesses and timeouts; a failing probe degrades to 'not detected' with its reason."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from phi_get.resolver.detect import load_device, probe_device, run_probes, sample_profiles


def test_a_hanging_probe_times_out_and_the_others_still_answer() -> None:
    started = time.perf_counter()
    res = run_probes({"slow": lambda: time.sleep(1), "fast": lambda: 42, "broken": lambda: 1 / 0}, timeout=0.2)
    assert time.perf_counter() - started < 2
    assert res["slow"].value is None and res["slow"].reason == "timed out after 0.2 s"
    assert res["fast"].value == 42
    assert res["broken"].reason == "ZeroDivisionError: division by zero"


def test_nvidia_smi_is_read_through_a_subprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559, 9.0, 580.159.04'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    profile = probe_device()
    gpu = next(a for a in profile.accelerators if a.vendor == "nvidia")
    assert (gpu.name, gpu.memory_bytes, gpu.compute_capability, gpu.driver) == (
        "NVIDIA H100 80GB HBM3", 81559 << 20, "9.0", "580.159.04")
    assert profile.extra["probes"]["nvidia"] == "ok"


def test_a_failing_nvidia_smi_degrades_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    profile = probe_device()
    assert not [a for a in profile.accelerators if a.vendor == "nvidia"]
    assert profile.extra["probes"]["nvidia"] == "nvidia-smi exited with 9"


def test_probe_reads_this_machine() -> None:
    profile = probe_device()
    assert profile.memory_bytes > 1 << 28
    assert profile.cpu_flags  # /proc/cpuinfo flags (x86) or Features (arm)
    assert profile.has_runtime("packaging") is None  # only model runtimes are listed


def test_sample_profiles_all_parse() -> None:
    names = set(sample_profiles())
    assert names == {"gpu-server", "apple-laptop", "pi-board", "intel-ai-pc", "snapdragon-laptop"}
    for name in names:
        assert load_device(name, environ={}).memory_bytes > 0


def test_installed_distributions_match_importlib_metadata() -> None:
    """One listing of sys.path answers as importlib.metadata does, for every distribution installed here."""
    from importlib import metadata

    from phi_get.resolver.installed import find_installed

    names = sorted({d.metadata["Name"] for d in metadata.distributions()})
    assert len(names) > 50  # the test environment: torch, transformers, llama-cpp-python ...
    found = find_installed(names)
    assert {n: f.version for n, f in found.items()} == {n: metadata.version(n) for n in names}
    assert all(f.metadata_dir.is_dir() for f in found.values())


def test_installed_first_path_entry_wins_and_egg_info_is_read(tmp_path: Path) -> None:
    from phi_get.resolver.installed import find_installed

    first, second = tmp_path / "first", tmp_path / "second"
    (first / "Llama_CPP_Python-0.3.1.dist-info").mkdir(parents=True)
    (second / "llama_cpp_python-0.2.0.dist-info").mkdir(parents=True)
    (second / "mlx_lm.egg-info").mkdir()
    (second / "mlx_lm.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: mlx-lm\nVersion: 0.21.0\n\nbody")
    (second / "openvino_genai-2025.1-py3.11.egg-info").write_text("Name: openvino-genai\nVersion: 2025.1.0\n")
    found = find_installed(["llama-cpp-python", "mlx-lm", "openvino-genai", "onnxruntime-genai"],
                           [str(tmp_path / "missing"), str(first), str(second)])
    assert {n: f.version for n, f in found.items()} == {
        "llama-cpp-python": "0.3.1", "mlx-lm": "0.21.0", "openvino-genai": "2025.1.0"}
    assert found["llama-cpp-python"].metadata_dir == first / "Llama_CPP_Python-0.3.1.dist-info"


def test_a_missing_tool_is_not_found_without_starting_a_process(tmp_path: Path) -> None:
    """No nvidia-smi on PATH: the probe says so, and the probing command never imported subprocess."""
    import subprocess
    import sys

    script = ("import sys; from phi_get.resolver.detect import probe_device; p = probe_device(); "
              "print(p.extra['probes']['nvidia'], 'subprocess' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PATH": str(tmp_path), "PHI_GET_PROBE_BUILDS": "0"}).stdout
    assert out.split() == ["not", "found:", "nvidia-smi", "False"], out
