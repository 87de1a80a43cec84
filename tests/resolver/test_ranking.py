"""The ranking a practitioner signs, and builds that cannot drive a target.

Attacks: a higher precision than the source passing itself off as better
quality (property over random metrics, policies, devices and contexts);
bits standing in for a measurement without saying so; a quality budget that
silently excludes everything; a CPU-only runtime build sent to a GPU (with
the real llama-cpp-python wheel of this machine, probed in a subprocess,
through the real ``phi-get resolve``); probe results that go stale, time
out, or leak the runtime into the resolving process; new profile / index /
manifest keys that would break old documents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phi_get.manifests.device import parse_device_profile
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import model_index_from_json, parse_model_index
from phi_get.manifests.manifest import manifest_from_json
from phi_get.resolver.capabilities import CACHE_NAME, probe_builds
from phi_get.resolver.detect import load_device
from phi_get.resolver.explain import no_match_error
from phi_get.resolver.resolve import Policy, Prefer, Reject, Verdict, make_policy, parse_requirement, resolve

DATA = Path(__file__).parents[1] / "data" / "resolver"
_DEVICES = sorted(p.stem for p in (DATA / "devices").glob("*.json"))


def _wirekit() -> Any:
    import wirekit  # on sys.path through conftest.py

    return wirekit


def _device(name: str) -> Any:
    return parse_device_profile((DATA / "devices" / f"{name}.json").read_bytes())


def _index(kit: Any, variants: list[dict[str, Any]], source: str | None = "bf16") -> Any:
    docs = []
    for v in variants:
        d = kit.compact_entry(v)
        if source:
            d["source_precision"] = source
        docs.append(d)
    return model_index_from_json({"schema": "phi-get.index/v1", "name": "m", "variants": docs})


_METRIC = st.one_of(st.none(), st.fixed_dictionaries({
    "kl_divergence": st.floats(0, 0.01), "top1_agreement": st.floats(0.98, 1.0)}))


@settings(max_examples=200, deadline=None)
@given(device=st.sampled_from(_DEVICES), prefer=st.sampled_from(list(Prefer)),
       context=st.sampled_from([None, 1024, 8192]), fp32_metrics=_METRIC, half_metrics=_METRIC,
       half=st.sampled_from(["fp16", "bf16"]), fmt=st.sampled_from([("gguf", "llama-cpp-python>=0.3"),
                                                                     ("safetensors", "transformers>=4.40")]))
def test_fp32_never_beats_the_half_precision_build_of_a_bf16_source(
        device: str, prefer: Prefer, context: int | None, fp32_metrics: dict[str, float] | None,
        half_metrics: dict[str, float] | None, half: str, fmt: tuple[str, str]) -> None:
    """fp32 from a bf16 checkpoint holds no more than the source: it never ranks above fp16/bf16, whatever it measured."""
    targets = ["cuda", "rocm", "metal", "cpu-x86_64", "cpu-arm64"]
    common = {"version": "1.0.0", "format": fmt[0], "targets": targets, "runtime": fmt[1], "max_context": 131072}
    fp32 = {**common, "variant": "a-fp32", "precision": "fp32", "weights_gb": 15.28}
    other = {**common, "variant": "b-half", "precision": half, "weights_gb": 7.64}
    if fp32_metrics:
        fp32["metrics"] = fp32_metrics
    if half_metrics:
        other["metrics"] = half_metrics
    res = resolve(parse_requirement("m"), _device(device), _index(_wirekit(), [fp32, other]).entries,
                  Policy(prefer=prefer, context=context))
    order = [c.entry.variant for c in res.candidates if c.verdict is not Verdict.REJECTED]
    if "a-fp32" in order:
        assert "b-half" in order and order.index("b-half") < order.index("a-fp32"), [c.reason for c in res.candidates]


def test_without_a_source_dtype_fp32_may_win_on_measurement(kit: Any) -> None:
    """The cap is the source's: with no source dtype recorded, a measured better fp32 is not demoted."""
    v = {"version": "1.0.0", "format": "gguf", "targets": ["cpu-x86_64"], "runtime": "llama-cpp-python>=0.3"}
    idx = _index(kit, [{**v, "variant": "f32", "precision": "fp32", "weights_gb": 15.3,
                        "metrics": {"kl_divergence": 0.0}},
                       {**v, "variant": "f16", "precision": "fp16", "weights_gb": 7.6,
                        "metrics": {"kl_divergence": 0.004}}], source=None)
    res = resolve(parse_requirement("m"), _device("x86-avx512-server"), idx.entries, Policy(prefer=Prefer.QUALITY))
    assert res.chosen is not None and res.chosen.entry.variant == "f32"


def test_bits_fallback_and_measurement_are_named_in_the_explanation(kit: Any) -> None:
    """A variant without measurements is ranked by bits, and the reason says the loss is estimated."""
    v = {"version": "1.0.0", "format": "gguf", "targets": ["cpu-x86_64"], "runtime": "llama-cpp-python>=0.3"}
    idx = _index(kit, [{**v, "variant": "q4", "precision": "int4", "weights_gb": 2.4},
                       {**v, "variant": "q8", "precision": "int8", "weights_gb": 4.1,
                        "metrics": {"kl_divergence": 0.0015, "top1_agreement": 0.986}}])
    res = resolve(parse_requirement("m"), _device("x86-avx2-server"), idx.entries, Policy(prefer=Prefer.QUALITY))
    assert res.chosen is not None and res.chosen.entry.variant == "q8"
    assert "quality: measured KL divergence 0.0015" in res.chosen.reason
    assert "decided over 1.0.0 q4 by rule 'prefer quality'" in res.chosen.reason
    loser = next(c for c in res.candidates if c.entry.variant == "q4")
    assert "no measurement: estimated from 4 bits per weight" in loser.reason


def test_quality_budget_excludes_and_reports(kit: Any) -> None:
    """A budget that excludes every candidate is reported as the cause, with the budget and the count."""
    v = {"version": "1.0.0", "format": "gguf", "targets": ["cpu-x86_64"], "runtime": "llama-cpp-python>=0.3"}
    idx = _index(kit, [{**v, "variant": "q4", "precision": "int4", "weights_gb": 2.4,
                        "metrics": {"kl_divergence": 0.03, "top1_agreement": 0.93}}])
    res = resolve(parse_requirement("m"), _device("x86-avx2-server"), idx.entries, make_policy(max_kl=0.01))
    assert res.chosen is None and res.candidates[0].reject is Reject.QUALITY
    message = str(no_match_error(res))
    assert "loss 0.0300 nats/token (measured KL divergence 0.0300) exceeds the quality budget max_kl 0.01" in message
    assert "the quality budget (max_kl 0.01) excluded 1 of 1 candidates: 1.0.0 q4" in message
    assert make_policy(max_kl=0.01).to_json()["max_kl"] == "0.01"
    with pytest.raises(ValueError, match="min_top1 must be a top-1 agreement between 0 and 1"):
        make_policy(min_top1=1.5)
    with pytest.raises(ValueError, match="max_kl must be a KL divergence >= 0"):
        make_policy(max_kl=-1)


def test_balanced_is_the_default_policy() -> None:
    """The default policy is balanced, in the core and in make_policy."""
    assert Policy().prefer is Prefer.BALANCED and make_policy().prefer is Prefer.BALANCED


# --- builds that cannot drive a target -------------------------------------------------------------------

_NVIDIA = {"type": "gpu", "vendor": "nvidia", "name": "NVIDIA L4", "memory_bytes": 24152899584,
           "compute_capability": "8.9"}


def test_declared_cpu_only_build_is_not_sent_to_cuda(kit: Any) -> None:
    """runtime_devices says llama-cpp-python is CPU-only: the CUDA target is skipped, noted, with CMAKE_ARGS."""
    doc = json.loads((DATA / "devices" / "l4-server.json").read_text())
    doc["runtime_devices"] = {"llama-cpp-python": ["cpu"]}
    device = parse_device_profile(json.dumps(doc))
    v = {"version": "1.0.0", "format": "gguf", "runtime": "llama-cpp-python>=0.3"}
    idx = _index(kit, [{**v, "variant": "q4", "precision": "int4", "weights_gb": 2.4,
                        "targets": ["cuda", "cpu-x86_64"]},
                       {**v, "variant": "cuda-only", "precision": "int4", "weights_gb": 2.4, "targets": ["cuda"]}])
    res = resolve(parse_requirement("m"), device, idx.entries, Policy())
    assert res.chosen is not None and res.chosen.target is not None and res.chosen.target.tag == "cpu-x86_64"
    assert any("not using NVIDIA L4: the installed llama-cpp-python build cannot drive cuda" in n
               and "CMAKE_ARGS='-DGGML_CUDA=on'" in n for n in res.notes), res.notes
    cuda_only = next(c for c in res.candidates if c.entry.variant == "cuda-only")
    assert cuda_only.reject is Reject.BUILD
    assert ("the installed llama-cpp-python build cannot drive cuda (known from the device profile's "
            "runtime_devices); CMAKE_ARGS='-DGGML_CUDA=on' pip install") in cuda_only.reason
    doc["runtime_devices"] = {"llama-cpp-python": ["cpu", "cuda"]}
    ok = resolve(parse_requirement("m"), parse_device_profile(json.dumps(doc)), idx.entries, Policy())
    assert ok.chosen is not None and ok.chosen.target is not None and ok.chosen.target.tag == "cuda"


def test_package_name_tells_the_directml_build_cannot_drive_cuda() -> None:
    """Only onnxruntime-genai-directml installed: CUDA exports are rejected with `pip install onnxruntime-genai-cuda`."""
    res = resolve(parse_requirement("phi-3.5-mini"), _device("windows-rtx-laptop"), _catalog("phi-3.5-mini"),
                  Policy())
    cuda = next(c for c in res.candidates if c.entry.variant == "onnx-cuda-int4")
    assert cuda.reject is Reject.BUILD
    assert cuda.reason == ("the installed onnxruntime-genai build cannot drive cuda (known from the installed "
                           "packages); pip install onnxruntime-genai-cuda")


def _catalog(name: str) -> Any:
    doc = json.loads((DATA / "catalogs" / f"{name}.json").read_text())
    return _index(_wirekit(), doc["variants"], doc["source_precision"]).entries


def test_real_probe_of_this_machines_runtimes(tmp_path: Path) -> None:
    """The installed (CPU-only) llama-cpp-python is probed in a subprocess: cpu only; cached per build; not imported here."""
    from importlib import metadata

    pytest.importorskip("llama_cpp")  # installed in the project venv: the probe asks the real wheel
    version = metadata.version("llama-cpp-python")
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from phi_get.resolver.capabilities import probe_builds\n"
        f"found, outcome = probe_builds({{'llama-cpp-python': {version!r}}}, cache_dir=Path({str(tmp_path)!r}))\n"
        "print(json.dumps([found, outcome, 'llama_cpp' in sys.modules]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    found, outcome, imported = json.loads(run.stdout)
    gpu = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_supports_gpu_offload())"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert found["llama-cpp-python"] == (["cpu"] if gpu == "False" else found["llama-cpp-python"])
    assert outcome == {"llama-cpp-python": "ok"} and imported is False  # the runtime stayed out of the resolver
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(again.stdout)[1] == {"llama-cpp-python": "cached"}
    cache = json.loads((tmp_path / CACHE_NAME).read_text())
    key = next(iter(cache["entries"]))
    assert f"|llama-cpp-python=={version}|" in key  # keyed per interpreter, version and RECORD stamp
    # A reinstall (another RECORD) of the same version is another build: the stale entry is not used.
    cache["entries"] = {key.rsplit("|", 1)[0] + "|0:0": ["cpu", "cuda"]}
    (tmp_path / CACHE_NAME).write_text(json.dumps(cache))
    third = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(third.stdout)[1] == {"llama-cpp-python": "ok"}


def test_probe_timeout_leaves_the_build_unverified(tmp_path: Path) -> None:
    """A probe past its timeout is killed, recorded with the reason, and not cached."""
    pytest.importorskip("llama_cpp")
    found, outcome = probe_builds({"llama-cpp-python": "0"}, cache_dir=tmp_path, timeout=0.001)
    assert found == {} and outcome["llama-cpp-python"].startswith("timed out after 0.001 s")
    assert not (tmp_path / CACHE_NAME).exists()


def test_cpu_only_build_rejected_through_the_real_cli(served_gguf: Any, tmp_path: Path) -> None:
    """phi-get resolve on this machine with an NVIDIA GPU added: the real CPU-only wheel keeps GGUF off CUDA, with the fix."""
    pytest.importorskip("llama_cpp")
    gpu = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_supports_gpu_offload())"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    if gpu != "False":
        pytest.skip("this machine's llama-cpp-python can offload to a GPU")
    partial = tmp_path / "gpu.json"
    partial.write_text(json.dumps({"accelerators": [_NVIDIA]}))  # merged over the real probe
    env = {**os.environ, "PHI_GET_HOME": str(tmp_path / "home"), "PHI_GET_DEVICE": str(partial)}
    out = subprocess.run([sys.executable, "-m", "phi_get", "resolve", "gg", "--registry", served_gguf.url,
                          "--explain"], capture_output=True, text=True, env=env, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    assert "on cpu-x86_64" in out.stdout
    assert "not using NVIDIA L4: the installed llama-cpp-python build cannot drive cuda" in out.stdout
    assert "CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall --no-cache-dir llama-cpp-python" in out.stdout
    device = subprocess.run([sys.executable, "-m", "phi_get", "device", "--json"], capture_output=True, text=True,
                            env=env, timeout=180, check=True)
    assert json.loads(device.stdout)["runtime_devices"]["llama-cpp-python"] == ["cpu"]


@pytest.fixture()
def served_gguf(tmp_path: Path, kit: Any) -> Any:
    files: dict[str, bytes | Path] = {"model.gguf": b"GGUF" + b"\0" * 4096}
    m = kit.make_manifest("gg", "1.0.0", "gguf-q4_k_m", files, format="gguf", precision="int4",
                          quantization="q4_k_m", targets=("cuda", "cpu-x86_64", "cpu-arm64"),
                          runtime=("llama-cpp-python", ">=0.3"))
    root = kit.write_mirror(tmp_path / "mirror", [(m, files)])
    with kit.LoopbackServer(root) as srv:
        yield srv


# --- compatible documents --------------------------------------------------------------------------------

def test_runtime_devices_key_is_optional_validated_and_round_trips() -> None:
    """Old profiles keep their bytes; the new key round-trips; a bad family names its field path."""
    old = (Path(__file__).parents[2] / "resolver" / "profiles" / "gpu-server.json").read_bytes()
    profile = parse_device_profile(old)
    assert profile.runtime_devices == {} and "runtime_devices" not in profile.to_json()
    doc = json.loads(old)
    doc["runtime_devices"] = {"Llama_CPP_Python": ["cuda", "cpu"]}
    again = parse_device_profile(json.dumps(doc))
    assert again.runtime_devices == {"llama-cpp-python": frozenset({"cpu", "cuda"})}
    assert parse_device_profile(again.to_bytes()) == again
    doc["runtime_devices"] = {"llama-cpp-python": ["vulkan"]}
    with pytest.raises(ManifestError, match=r"runtime_devices\.llama-cpp-python\[0\]: expected one of cpu \| cuda"):
        parse_device_profile(json.dumps(doc))


def test_source_precision_is_optional_in_index_and_manifest(kit: Any) -> None:
    """An index entry or manifest without a source dtype keeps its bytes; with one it round-trips; a bad one is named."""
    m = kit.make_manifest("m", "1.0.0", "gguf-f32", {"a.gguf": b"x"}, format="gguf")
    doc = m.to_json()
    assert "precision" not in doc["provenance"]["source"]
    doc["provenance"]["source"]["precision"] = "bf16"
    with_source = manifest_from_json(doc)
    assert str(with_source.provenance.source.precision) == "bf16" and with_source.digest != m.digest
    from phi_get.manifests.index import IndexEntry, ModelIndex

    old = kit.make_manifest("m", "1.0.0", "gguf-f16", {"a.gguf": b"y"}, format="gguf")
    entry = IndexEntry.from_manifest(with_source)
    text = ModelIndex(name="m", entries=(entry, IndexEntry.from_manifest(old))).to_bytes()
    parsed = parse_model_index(text)
    assert sorted(str(e.source_precision) for e in parsed.entries) == ["None", "bf16"]
    assert parsed.to_bytes() == text
    bad = json.loads(text)
    bad["variants"][0]["source_precision"] = "fp8"
    with pytest.raises(ManifestError, match=r"variants\[0\]\.source_precision: expected one of int4"):
        parse_model_index(json.dumps(bad))


def test_sample_profiles_still_load() -> None:
    """The five sample names keep working."""
    for name in ("gpu-server", "apple-laptop", "pi-board", "intel-ai-pc", "snapdragon-laptop"):
        assert load_device(name, environ={}).memory_bytes > 0


# --- the quality budget in phi.toml, recorded in phi.lock -----------------------------------------------

def _budget_project(tmp_path: Path, kit: Any, budget: str) -> tuple[Path, str]:
    arts = []
    for variant, precision, kl, size in (("gguf-q4_k_m", "int4", 0.032, 1000), ("gguf-q8_0", "int8", 0.0015, 2000)):
        files: dict[str, bytes | Path] = {"model.gguf": variant.encode()[-1:] * size}  # q4 is the smaller
        arts.append((kit.make_manifest("m", "1.0.0", variant, files, format="gguf", precision=precision,
                                       targets=("cpu-x86_64", "cpu-arm64"), runtime=("llama-cpp-python", ">=0.3"),
                                       metrics={"kl_divergence": kl}), files))
    mirror = kit.write_mirror(tmp_path / "mirror", arts)
    folder = tmp_path / "fleet"
    folder.mkdir()
    (folder / "phi.toml").write_text(f'[models]\n"m" = {{ prefer = "size", {budget} }}\n\n'
                                     '[device-classes]\nedge = "pi-board"\n')
    return folder, mirror.resolve().as_uri()


def test_quality_budget_in_phi_toml_is_enforced_and_locked(tmp_path: Path, kit: Any) -> None:
    """phi.toml's max_kl excludes the 4-bit build that prefer=size would pick, and phi.lock records the budget."""
    from phi_get.manifests.lockfile import parse_lock
    from phi_get.resolver.lock import lock_project

    folder, mirror = _budget_project(tmp_path, kit, "max_kl = 0.01")
    path, _ = lock_project(folder, tmp_path / "home", registries=[mirror])
    lock = parse_lock(path.read_bytes())
    (art,) = lock.artifacts
    assert art.variant == "gguf-q8_0" and art.policy["max_kl"] == "0.01"


def test_quality_budget_in_phi_toml_that_excludes_everything_is_reported(tmp_path: Path, kit: Any) -> None:
    """A budget nothing meets fails the lock with the budget named, not a generic no-match."""
    from phi_get.resolver.errors import NoMatchError
    from phi_get.resolver.lock import lock_project

    folder, mirror = _budget_project(tmp_path, kit, "max_kl = 0.001, min_top1 = 0.5")
    with pytest.raises(NoMatchError) as info:
        lock_project(folder, tmp_path / "home", registries=[mirror])
    assert "device class 'edge'" in str(info.value)
    assert "the quality budget (max_kl 0.001, min_top1 0.5) excluded 2 of 2 candidates" in str(info.value)
