"""The runtimes that load phi-get artifacts: one table, as data (issue 11).

Each row says which Python distribution a runtime is, the module it is
imported as (only ever in a probe subprocess or the runtime loader, never in
the resolving process), the formats it loads, which other distributions
install a build of it, the hardware it is the vendor's own path for, and how
to get a build that drives each accelerator.  The resolver ranks the
vendor's runtime first on its own hardware (MLX on Apple silicon, OpenVINO
on Intel GPU/NPU, the CUDA build of ONNX Runtime GenAI on NVIDIA, QNN on
Qualcomm NPUs, DirectML on Windows GPUs) and cites this table; the device
probe reads the distribution names from it; the build probe
(``resolver/capabilities.py``) and the resolver's rejection of a target a
build cannot drive name the fixes from it.

Target families are the tag families of :mod:`.targets` (``cuda`` for every
``cuda-smXY``, ``cpu`` for every ``cpu-*`` level).

Imports nothing of phi-get beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ACCELERATOR_FAMILIES",
    "RunOverhead",
    "DISTRIBUTIONS",
    "RUNTIMES",
    "RUNTIME_PROVIDES",
    "Runtime",
    "build_families",
    "fix_for",
    "is_vendor_path",
    "run_overhead",
    "runtime_of",
]

#: Target families that are accelerators (everything but ``cpu``).
ACCELERATOR_FAMILIES: Final = frozenset({"cuda", "rocm", "metal", "intel-gpu", "qnn-npu", "intel-npu", "directml",
                                         "webgpu"})


@dataclass(frozen=True, kw_only=True, slots=True)
class RunOverhead:
    """What a run takes beyond the weights and the KV cache: the two extra terms of ``MemoryNeeds``.

    ``overhead_bytes = fixed + weights_share x weights_bytes`` and
    ``compute_bytes_per_token = per_token + per_token_vocab x vocabulary``
    (logits kept for every prompt token scale with the vocabulary; activations
    and attention buffers of the prompt with the context).  Fitted per runtime
    and precision class from peak-RSS measurements (``resolver/runmemory.py``,
    ``bench/runtime_memory.py``); each figure says where it came from.
    """

    fixed: int = 0
    weights_share: float = 0.0
    per_token: int = 0
    per_token_vocab: int = 0

    def needs(self, *, weights_bytes: int, vocab: int) -> tuple[int, int]:
        """(overhead_bytes, compute_bytes_per_token) for a model of ``weights_bytes`` and ``vocab``."""
        return (self.fixed + round(self.weights_share * weights_bytes),
                self.per_token + self.per_token_vocab * vocab)


@dataclass(frozen=True, kw_only=True, slots=True)
class Runtime:
    distribution: str
    import_name: str
    formats: tuple[str, ...]
    #: (provider, target family) pairs where this runtime is the hardware vendor's own path.
    vendor_paths: tuple[tuple[str, str], ...] = ()
    #: Other distributions that install a build of this runtime, and the families that build drives.
    builds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The families the plain distribution drives, when its package name says so (None: the
    #: build decides, e.g. llama-cpp-python's CMAKE_ARGS; only a probe or the profile can tell).
    base_families: tuple[str, ...] | None = None
    #: Packages that add an execution provider to an installed build, and what they add.
    addons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The libraries beneath it, whose versions a device profile records too (torch under transformers).
    requires: tuple[str, ...] = ()
    #: Target family -> the command that installs a build able to drive it.
    fixes: Mapping[str, str] = field(default_factory=dict)
    #: Precision class (or "*") -> the memory a run takes beyond weights + KV (measured: see RUN_MEMORY_NOTE).
    overhead: Mapping[str, RunOverhead] = field(default_factory=dict)


RUNTIMES: Final = (
    Runtime(
        distribution="llama-cpp-python", import_name="llama_cpp", formats=("gguf",),
        # The PyPI sdist builds CPU-only unless CMAKE_ARGS selects a GGML backend (its README).
        fixes={
            "cuda": "CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall --no-cache-dir llama-cpp-python "
                    "(or a prebuilt wheel: pip install llama-cpp-python "
                    "--extra-index-url https://abetlen.github.io/llama-cpp-python/whl/cu124)",
            "metal": "CMAKE_ARGS='-DGGML_METAL=on' pip install --force-reinstall --no-cache-dir llama-cpp-python",
            "rocm": "CMAKE_ARGS='-DGGML_HIPBLAS=on' pip install --force-reinstall --no-cache-dir llama-cpp-python",
            "webgpu": "CMAKE_ARGS='-DGGML_VULKAN=on' pip install --force-reinstall --no-cache-dir llama-cpp-python",
        },
    ),
    Runtime(
        distribution="onnxruntime-genai", import_name="onnxruntime_genai", formats=("onnx",),
        vendor_paths=(("cuda", "cuda"), ("directml", "directml"), ("qnn", "qnn-npu")),
        # One PyPI package per execution provider (onnxruntime-genai's install docs).
        builds={"onnxruntime-genai-cuda": ("cpu", "cuda"), "onnxruntime-genai-directml": ("cpu", "directml")},
        base_families=("cpu",),
        addons={"onnxruntime-qnn": ("qnn-npu",)},
        requires=("onnxruntime",),
        fixes={
            "cuda": "pip install onnxruntime-genai-cuda",
            "directml": "pip install onnxruntime-genai-directml",
            "qnn-npu": "pip install onnxruntime-qnn onnxruntime-genai (Windows on Arm)",
        },
    ),
    Runtime(
        distribution="openvino-genai", import_name="openvino_genai", formats=("openvino",),
        vendor_paths=(("gpu", "intel-gpu"), ("npu", "intel-npu"), ("", "intel-gpu"), ("", "intel-npu")),
        requires=("openvino",),
        fixes={
            "intel-gpu": "pip install openvino-genai, and the Intel GPU driver (compute runtime / Level Zero)",
            "intel-npu": "pip install openvino-genai, and the Intel NPU driver",
        },
    ),
    Runtime(
        distribution="mlx-lm", import_name="mlx_lm", formats=("mlx",),
        vendor_paths=(("", "metal"),),
        requires=("mlx",),
        fixes={"metal": "pip install mlx-lm (macOS 14+ on Apple silicon)"},
    ),
    Runtime(
        distribution="transformers", import_name="transformers", formats=("safetensors",), requires=("torch",),
        # transformers drives what its torch build drives.
        fixes={
            "cuda": "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu124",
            "rocm": "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/rocm6.2",
            "metal": "pip install --force-reinstall torch (macOS arm64 wheels include MPS)",
        },
    ),
)

_BY_NAME: Final = {r.distribution: r for r in RUNTIMES}

#: Builds of a runtime published under another name that load the same artifacts.
RUNTIME_PROVIDES: Final = {
    **{build: r.distribution for r in RUNTIMES for build in r.builds},
    "onnxruntime-gpu": "onnxruntime",
}

#: Every distribution a device profile records (looked up in package metadata by the device probe).
DISTRIBUTIONS: Final = tuple(dict.fromkeys(
    [name for r in RUNTIMES for name in (r.distribution, *r.builds, *r.addons, *r.requires)] + list(RUNTIME_PROVIDES)))


def runtime_of(distribution: str) -> Runtime | None:
    """The table row for ``distribution`` or for the runtime it is a build of."""
    return _BY_NAME.get(distribution) or _BY_NAME.get(RUNTIME_PROVIDES.get(distribution, ""))


def run_overhead(distribution: str, precision: str, *, weights_bytes: int, vocab: int) -> tuple[int, int]:
    """(overhead_bytes, compute_bytes_per_token) of a run of an artifact by ``distribution``.

    The precision class's row, else the runtime's ``"*"`` row, else (0, 0):
    a runtime nobody measured claims weights + KV only.
    """
    rt = runtime_of(distribution)
    row = None if rt is None else rt.overhead.get(precision) or rt.overhead.get("*")
    return (0, 0) if row is None else row.needs(weights_bytes=weights_bytes, vocab=vocab)


def is_vendor_path(distribution: str, provider: str, family: str) -> bool:
    """Whether (runtime, provider) is the hardware vendor's own path on ``family``."""
    rt = runtime_of(distribution)
    if rt is None:
        return False
    return any(f == family and p in ("", provider) for p, f in rt.vendor_paths)


def fix_for(distribution: str, family: str) -> str:
    """The command that installs a build of ``distribution`` able to drive ``family``."""
    rt = runtime_of(distribution)
    if rt is not None and family in rt.fixes:
        return rt.fixes[family]
    return f"install a build of {distribution} with {family} support"


def build_families(distribution: str, installed: Mapping[str, str],
                   declared: Mapping[str, frozenset[str]]) -> tuple[frozenset[str] | None, str]:
    """The target families the installed build(s) of ``distribution`` can drive, and how that is known.

    ``installed`` is the device's distribution -> version map, ``declared``
    its ``runtime_devices`` (a probe's finding or the profile's word), which
    wins.  Otherwise the package names tell where this table says they do
    (``onnxruntime-genai-cuda``); otherwise the answer is None: unverified.
    """
    rt = runtime_of(distribution)
    names = [distribution] if rt is None else [rt.distribution, *rt.builds]
    found = [declared[n] for n in names if n in declared and n in installed]
    if found:
        return frozenset().union(*found), "the device profile's runtime_devices"
    if rt is None or rt.base_families is None:
        return None, "unverified"
    fams: set[str] = set()
    if rt.distribution in installed:
        fams.update(rt.base_families)
    for build, adds in rt.builds.items():
        if build in installed:
            fams.update(adds)
    if not fams:
        return None, "unverified"
    for addon, adds in rt.addons.items():
        if addon in installed:
            fams.update(adds)
    return frozenset(fams), "the installed packages"
