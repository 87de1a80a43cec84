"""What each installed runtime build can drive: probed in a subprocess, cached per build.

A CPU-only llama-cpp-python wheel and a CUDA one have the same name and
version; so do a CPU and a CUDA torch.  Only the build itself can say which
devices it drives, so each installed runtime is asked in its own Python
subprocess (``sys.executable -c SCRIPT``), with a timeout, and never
imported into the resolving process (importing torch alone takes seconds and
may initialise a GPU driver).  Each probe prints the target families
(``manifests/targets.py``) its build can use:

==================  ==========================================================
runtime             how the build is asked
==================  ==========================================================
llama-cpp-python    ``llama_supports_gpu_offload()``; the backend from the
                    ``libggml-<backend>`` libraries it ships and
                    ``llama_print_system_info()`` (CUDA, Metal, HIP/ROCm)
onnxruntime-genai   ``is_cuda_available()``, ``is_dml_available()``,
(and its builds)    ``is_qnn_available()``, ``is_webgpu_available()``, each
                    confirmed by ``onnxruntime.get_available_providers()``
openvino-genai      ``openvino.Core().available_devices`` (CPU, GPU, NPU)
transformers        torch: ``torch.cuda.is_available()`` (ROCm when
                    ``torch.version.hip``), ``torch.backends.mps.is_available()``
mlx-lm              ``mlx.core.metal.is_available()``
==================  ==========================================================

Results are cached in ``<PHI_GET_HOME>/cache/runtime-devices-v1.json``,
keyed by the interpreter, the distribution, its version and its RECORD
file's size and modification time (a reinstall of the same version with
other ``CMAKE_ARGS`` writes a new RECORD, so it is probed again).  A probe
that fails or times out leaves the runtime unverified (not cached) and its
reason is recorded.  A device profile's ``runtime_devices`` overrides
everything (``--device FILE`` or ``PHI_GET_DEVICE`` with
``{"runtime_devices": {"llama-cpp-python": ["cpu", "cuda"]}}``).

Imports only the standard library and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from phi_get.manifests.runtimes import RUNTIME_PROVIDES

from .installed import Installed, find_installed

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "BUILD_PROBE_TIMEOUT_S",
    "CACHE_NAME",
    "PROBE_SCRIPTS",
    "probe_builds",
]

BUILD_PROBE_TIMEOUT_S: Final = 30.0
CACHE_NAME: Final = "runtime-devices-v1.json"
_CACHE_SCHEMA: Final = "phi-get.runtime-devices-cache/v1"

_LLAMA: Final = """
import json, os, llama_cpp
fams = {"cpu"}
if llama_cpp.llama_supports_gpu_offload():
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    names = " ".join(os.listdir(lib)).lower() if os.path.isdir(lib) else ""
    try:
        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").lower()
    except Exception:
        info = ""
    for key, fam in (("cuda", "cuda"), ("metal", "metal"), ("hip", "rocm"), ("rocm", "rocm")):
        if "ggml-" + key in names or key + " " in info or key + "=" in info or key + ":" in info:
            fams.add(fam)
print(json.dumps(sorted(fams)))
"""
_ORT_GENAI: Final = """
import json, onnxruntime_genai as og
try:
    import onnxruntime as ort
    providers = set(ort.get_available_providers())
except Exception:
    providers = None
fams = {"cpu"}
for name, provider, fam in (("is_cuda_available", "CUDAExecutionProvider", "cuda"),
                            ("is_dml_available", "DmlExecutionProvider", "directml"),
                            ("is_qnn_available", "QNNExecutionProvider", "qnn-npu"),
                            ("is_webgpu_available", "WebGpuExecutionProvider", "webgpu"),
                            ("is_rocm_available", "ROCMExecutionProvider", "rocm")):
    fn = getattr(og, name, None)
    try:
        built = fn() if fn is not None else True
    except Exception:
        built = False
    # GenAI says what it was built for; the ONNX Runtime beside it says which providers load.
    if built and (providers is None and fn is not None or providers is not None and provider in providers):
        fams.add(fam)
print(json.dumps(sorted(fams)))
"""
_OPENVINO: Final = """
import json, openvino as ov
fams = set()
for dev in ov.Core().available_devices:
    dev = dev.upper()
    fams.add("cpu" if dev.startswith("CPU") else "intel-gpu" if dev.startswith("GPU") else
             "intel-npu" if dev.startswith("NPU") else "")
print(json.dumps(sorted(fams - {""})))
"""
_TORCH: Final = """
import json, torch
fams = {"cpu"}
if torch.cuda.is_available():
    fams.add("rocm" if getattr(torch.version, "hip", None) else "cuda")
mps = getattr(torch.backends, "mps", None)
if mps is not None and mps.is_available():
    fams.add("metal")
print(json.dumps(sorted(fams)))
"""
_MLX: Final = """
import json, mlx.core as mx
print(json.dumps(["cpu", "metal"] if mx.metal.is_available() else ["cpu"]))
"""
#: The probe of each runtime distribution (its builds share the probe of the runtime they build).
PROBE_SCRIPTS: Final = {
    "llama-cpp-python": _LLAMA, "onnxruntime-genai": _ORT_GENAI, "openvino-genai": _OPENVINO,
    "transformers": _TORCH, "mlx-lm": _MLX,
}
_FAMILIES: Final = frozenset({"cpu", "cuda", "rocm", "metal", "intel-gpu", "qnn-npu", "intel-npu", "directml",
                              "webgpu"})


def _script_for(distribution: str) -> str | None:
    return PROBE_SCRIPTS.get(distribution) or PROBE_SCRIPTS.get(RUNTIME_PROVIDES.get(distribution, ""))


def _build_key(distribution: str, version: str, found: Installed | None) -> str:
    """Interpreter, distribution, version and the RECORD's size and mtime: one key per installed build."""
    stamp = ""
    if found is not None:
        try:
            st = (found.metadata_dir / "RECORD").stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            pass
    return f"{sys.executable}|{distribution}=={version}|{stamp}"


def _read_cache(path: Path) -> dict[str, list[str]]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    entries = doc.get("entries") if isinstance(doc, dict) and doc.get("schema") == _CACHE_SCHEMA else None
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items()
            if isinstance(k, str) and isinstance(v, list) and all(f in _FAMILIES for f in v)}


def _write_cache(path: Path, entries: Mapping[str, list[str]]) -> None:
    """Atomically: a unique temp file beside the cache, renamed over it; a failure only costs a re-probe."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        tmp.write_text(json.dumps({"schema": _CACHE_SCHEMA, "entries": dict(sorted(entries.items()))}, indent=1),
                       "utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _parse(stdout: str) -> list[str] | None:
    lines = stdout.strip().splitlines()
    try:
        fams = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if isinstance(fams, list) and all(isinstance(f, str) and f in _FAMILIES for f in fams):
        return sorted(set(fams))
    return None


def probe_builds(runtimes: Mapping[str, str], *, cache_dir: Path | None,
                 timeout: float = BUILD_PROBE_TIMEOUT_S) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``runtime_devices`` for the installed ``runtimes`` (distribution -> version), and each probe's outcome.

    Cached builds are answered from the cache; the others are probed at
    once, each in its own subprocess, all within ``timeout`` seconds.
    Returns (distribution -> families, distribution -> "ok" | "cached" | reason).
    """
    cache_path = cache_dir / CACHE_NAME if cache_dir is not None else None
    cache = _read_cache(cache_path) if cache_path is not None else {}
    found: dict[str, list[str]] = {}
    outcome: dict[str, str] = {}
    running: dict[str, tuple[str, subprocess.Popen[str]]] = {}
    installed = find_installed(runtimes)  # one listing of sys.path for every key
    for dist, version in sorted(runtimes.items()):
        script = _script_for(dist)
        if script is None:
            continue
        key = _build_key(dist, version, installed.get(dist))
        if key in cache:
            found[dist], outcome[dist] = cache[key], "cached"
            continue
        import subprocess  # only for a build not in the cache

        try:
            proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True)
        except OSError as exc:
            outcome[dist] = f"could not start the probe: {exc}"
            continue
        running[dist] = (key, proc)
    deadline = time.monotonic() + timeout
    fresh = False
    for dist, (key, proc) in running.items():
        try:
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # imported above, before any process was started
            proc.kill()
            proc.communicate()
            outcome[dist] = f"timed out after {timeout:g} s: unverified"
            continue
        fams = _parse(out) if proc.returncode == 0 else None
        if fams is None:
            last = (err.strip().splitlines() or ["no output"])[-1][:200]
            outcome[dist] = f"probe exited with {proc.returncode}: {last}: unverified"
            continue
        found[dist], outcome[dist] = fams, "ok"
        cache[key], fresh = fams, True
    if fresh and cache_path is not None:
        _write_cache(cache_path, cache)
    return found, outcome
