"""Device profile v1 parsing and the target ranking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests import ManifestError, SchemaVersionError, parse_device_profile, supported_targets
from phi_get.manifests.targets import MemoryPool, check_target_tag

DATA = Path(__file__).parents[1] / "data"


def profile(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "manifests" / "gpu-server.json").read_text())
    doc.update(changes)
    return doc


def tags(doc: dict[str, Any]) -> list[str]:
    return [t.tag for t in supported_targets(parse_device_profile(json.dumps(doc)))]


def test_the_issue_example_parses_and_round_trips() -> None:
    raw = (DATA / "manifests" / "gpu-server.json").read_bytes()
    p = parse_device_profile(raw)
    assert p.accelerators[0].compute_capability == "9.0"
    assert p.runtimes == {"llama-cpp-python": "0.3.36", "onnxruntime-genai": "0.18.0"}
    assert parse_device_profile(p.to_bytes()) == p
    assert p.to_json()["cpu"] == {"flags": ["avx2", "avx512f"], "cores": 16}


def test_unknown_keys_are_kept() -> None:
    p = parse_device_profile(json.dumps(profile(hostname="edge-17")))
    assert p.to_json()["hostname"] == "edge-17"


def test_h100_server_ranks_cuda_first_then_cpu() -> None:
    t = tags(profile())
    assert t[0] == "cuda-sm90" and "cuda-sm80" in t and t.index("cuda") < t.index("cpu-x86_64-v4")
    assert t[-4:] == ["cpu-x86_64-v4", "cpu-x86_64-v3", "cpu-x86_64-v2", "cpu-x86_64"]
    assert "cuda-sm100" not in t  # newer than the card
    cuda = supported_targets(parse_device_profile(json.dumps(profile())))[0]
    assert cuda.pool is MemoryPool.VRAM and cuda.memory_bytes == 85520809984 and cuda.hardware.startswith("NVIDIA")


def test_apple_laptop_uses_unified_memory() -> None:
    doc = profile(os="macos", arch="arm64", cpu={"flags": ["asimddp", "i8mm"], "cores": 10},
                  memory_bytes=16 << 30,
                  accelerators=[{"type": "gpu", "vendor": "apple", "name": "Apple M3"}])
    targets = supported_targets(parse_device_profile(json.dumps(doc)))
    assert [t.tag for t in targets] == ["metal", "webgpu", "cpu-arm64-i8mm", "cpu-arm64-dotprod", "cpu-arm64"]
    assert targets[0].pool is MemoryPool.UNIFIED and targets[0].memory_bytes == 16 << 30
    assert parse_device_profile(json.dumps(doc)).accelerators[0].unified_memory is True


def test_raspberry_pi_is_cpu_only() -> None:
    doc = profile(arch="arm64", cpu={"flags": ["asimd"], "cores": 4}, memory_bytes=8 << 30, accelerators=[])
    assert tags(doc) == ["cpu-arm64"]


def test_windows_snapdragon_prefers_npu_then_directml() -> None:
    doc = profile(os="windows", arch="arm64", cpu={"flags": ["asimddp"], "cores": 12}, memory_bytes=32 << 30,
                  accelerators=[{"type": "npu", "vendor": "qualcomm", "name": "Hexagon"},
                                {"type": "gpu", "vendor": "qualcomm", "name": "Adreno X1", "unified_memory": True}])
    assert tags(doc) == ["qnn-npu", "directml", "webgpu", "cpu-arm64-dotprod", "cpu-arm64"]


def test_intel_ai_pc() -> None:
    doc = profile(os="windows", cpu={"flags": ["avx2", "sse4_2"], "cores": 16}, memory_bytes=32 << 30,
                  accelerators=[{"type": "gpu", "vendor": "intel", "name": "Arc 140V", "unified_memory": True},
                                {"type": "npu", "vendor": "intel", "name": "Intel AI Boost"}])
    assert tags(doc) == ["intel-gpu", "intel-npu", "directml", "webgpu", "cpu-x86_64-v3", "cpu-x86_64-v2", "cpu-x86_64"]


def test_cpu_levels_imply_lower_levels() -> None:
    assert tags(profile(accelerators=[], cpu={"flags": ["avx512f"]}))[:1] == ["cpu-x86_64-v4"]
    assert tags(profile(accelerators=[], cpu={"flags": []})) == ["cpu-x86_64"]


def test_cuda_tag_vocabulary() -> None:
    assert check_target_tag("cuda-sm130") == "cuda-sm130"  # future GPUs still parse
    with pytest.raises(ManifestError, match=r"unknown hardware target"):
        check_target_tag("cuda-smXY")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"os": "plan9"}, "invalid device profile at os: expected one of linux | windows | macos | android (got 'plan9')"),
        ({"arch": "riscv64"}, "invalid device profile at arch: expected one of x86_64 | arm64 (got 'riscv64')"),
        ({"memory_bytes": -5}, "invalid device profile at memory_bytes: must be at least 1 (got -5)"),
        ({"memory_bytes": 1 << 60}, "invalid device profile at memory_bytes: must be at most 1125899906842624 (got 1152921504606846976)"),
        ({"cpu": {"flags": "avx2"}}, "invalid device profile at cpu.flags: expected an array, found string (got 'avx2')"),
        ({"cpu": {"cores": 0}}, "invalid device profile at cpu.cores: must be at least 1 (got 0)"),
        ({"accelerators": [{"type": "tpu", "vendor": "nvidia", "name": "x"}]},
         "invalid device profile at accelerators[0].type: expected one of gpu | npu (got 'tpu')"),
        ({"accelerators": [{"type": "gpu", "vendor": "nvidia", "name": "x", "compute_capability": "nine"}]},
         "invalid device profile at accelerators[0].compute_capability: expected MAJOR.MINOR, like '9.0' (got 'nine')"),
        ({"runtimes": {"llama-cpp-python": 3}}, "invalid device profile at runtimes.llama-cpp-python: expected a string, found integer (got 3)"),
        ({"schema": "phi-get.device/v2"},
         "invalid device profile at schema: this phi-get reads phi-get.device/v1; a newer phi-get is needed for this document (got 'phi-get.device/v2')"),
    ],
)
def test_bad_profiles_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_device_profile(json.dumps(profile(**changes)))
    assert str(info.value) == message
    if "schema" in changes:
        assert isinstance(info.value, SchemaVersionError)


def test_missing_memory_is_named() -> None:
    doc = profile()
    del doc["memory_bytes"]
    with pytest.raises(ManifestError, match=r"^invalid device profile at memory_bytes: required field is missing$"):
        parse_device_profile(json.dumps(doc))
