"""The runtimes that load phi-get artifacts: one table, as data.

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
    "RUN_MEMORY_NOTE",
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

    ``overhead_bytes = fixed + weights_share x weights + per_vocab x vocabulary``
    (the runtime's own state, a weight copy it makes while loading or
    repacking, buffers and tables sized by the vocabulary) and
    ``compute_bytes_per_token = per_token + per_token_vocab x vocabulary +
    per_token_head x attention heads`` (the prompt's activations; logits kept
    for every prompt token; llama.cpp's attention-score buffer, one row per
    head for each token of the window).  Fitted per runtime and precision
    class: see :data:`RUN_MEMORY_NOTE`.
    """

    fixed: int = 0
    weights_share: float = 0.0
    per_vocab: int = 0
    per_token: int = 0
    per_token_vocab: float = 0.0
    per_token_head: int = 0

    def needs(self, *, weights_bytes: int, vocab: int, heads: int) -> tuple[int, int]:
        """(overhead_bytes, compute_bytes_per_token) for a model of ``weights_bytes``, ``vocab`` and ``heads``."""
        return (self.fixed + round(self.weights_share * weights_bytes) + self.per_vocab * vocab,
                self.per_token + round(self.per_token_vocab * vocab) + self.per_token_head * heads)


#: How the ``overhead`` rows of :data:`RUNTIMES` were measured.
RUN_MEMORY_NOTE: Final = (
    "peak RSS (VmHWM, reset after the runtime's import) above the interpreter with the runtime imported, "
    "loading the artifact and generating 4 tokens after a prompt filling a window of 512 and of 2048 tokens "
    "(one repeated word; onnxruntime-genai fp32, openvino-genai and transformers refitted on distinct words: see their rows) "
    "(resolver/runmemory.py, bench/runtime_memory.py), on 1-layer checkpoints of Phi-3.5-mini's and "
    "Phi-4-mini's real dimensions (vocabulary 32,064 / 200,064, 32 / 24 heads), CPU, Linux x86_64, "
    "llama-cpp-python 0.3.36, onnxruntime-genai 0.18.0, openvino-genai in .envs/openvino, transformers 5.24 "
    "on torch 2.13; each row is the line through its runtime's measurements, constants rounded up about 3 %"
)

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
        # Measured (RUN_MEMORY_NOTE): 36 MB beyond the weights with a 32,064-token vocabulary, 73 MB with
        # 200,064 (the vocabulary's token tables: ~224 B a token); ~100 KB a window token beyond the KV
        # cache with 32 heads, ~77 KB with 24 (the f32 attention scores of a 512-token batch: ~3.2 KB a head);
        # q4_0 adds a repacked copy of its weights for the CPU kernels (+36 MB on 201 MB: 18 %; q4_k_m +6 MB).
        overhead={"*": RunOverhead(fixed=29_500_000, per_vocab=231, per_token_head=3_330),
                  "int4": RunOverhead(fixed=29_500_000, weights_share=0.185, per_vocab=231, per_token_head=3_330)},
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
        # Measured (RUN_MEMORY_NOTE): the graph returns fp32 logits for every prompt token (4 B a vocabulary
        # entry a token); beyond them ~223 KB a token for fp32 (below), ~219 KB for int4 (MatMulNBits' prefill
        # buffers); int4 keeps ~630 MB with the 200,064 vocabulary whatever the context (~3.15 KB an entry:
        # the tied int4 embedding prepacked for the lm_head MatMulNBits beside the Gather's copy).
        # fp32's per-token figure refitted with the spread prompt (resolver/runmemory.spread_prompt):
        # ~223 KB beyond the logits on Phi-3.5-mini (the one-token prompt had shown 70 KB); measured once.
        overhead={"fp32": RunOverhead(per_token=230_000, per_token_vocab=4.0),
                  "int4": RunOverhead(per_vocab=3_250, per_token=225_000, per_token_vocab=4.0)},
    ),
    Runtime(
        distribution="openvino-genai", import_name="openvino_genai", formats=("openvino",),
        vendor_paths=(("gpu", "intel-gpu"), ("npu", "intel-npu"), ("", "intel-gpu"), ("", "intel-npu")),
        requires=("openvino",),
        fixes={
            "intel-gpu": "pip install openvino-genai, and the Intel GPU driver (compute runtime / Level Zero)",
            "intel-npu": "pip install openvino-genai, and the Intel NPU driver",
        },
        # Measured (RUN_MEMORY_NOTE): logits only for the last token (optimum's stateful export), so the
        # per-token cost does not grow with the vocabulary; the CPU plugin keeps ~4.2 KB a vocabulary
        # entry (its own copy of the embedding: 133 MB at 32,064, 832 MB at 200,064).  Refitted on
        # Phi-3.5-mini with the spread prompt (resolver/runmemory.spread_prompt; the one-word prompt
        # had given ~6.3 KB a head a token): 3.6-3.9 KB a head a token beyond the KV cache (116-124 KB
        # with 32 heads) for every precision, and a fixed part of 113 / 158 / 350 MB for int4 / int8 /
        # fp16; Phi-4-mini's int8 with these constants: +11.3 % / +7.8 % at 512 / 2048 (builders/README).
        overhead={"int8": RunOverhead(fixed=163_000_000, per_vocab=4_290, per_token_head=3_730),
                  "int4": RunOverhead(fixed=116_000_000, per_vocab=4_290, per_token_head=3_740),
                  "fp16": RunOverhead(fixed=361_000_000, per_vocab=4_290, per_token_head=3_980)},
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
        # Measured (RUN_MEMORY_NOTE): 7-11 % of the weights again after loading (148 MB on Phi-4-mini's
        # 1431 MB, 44-56 MB on Phi-3.5-mini's 620 MB); per token 1.83 B a vocabulary entry (the
        # fp16/bf16 logits of the prompt's timed forward pass, resolver/run.py) plus 59-78 KB of
        # activations, fp16 and bf16 alike with the spread prompt (the one-word prompt had given 144 KB
        # for bf16).  The safetensors are memory-mapped and an untied input embedding (Phi-3.5-mini) is
        # read by row, but a prompt of a few hundred distinct tokens makes nearly all of it resident
        # (2 MB page-cache folios): the figures count it whole (resolver/runmemory.spread_prompt
        # measures it so).  Its peak at 2048 varied by 40-55 MB between runs.
        overhead={"*": RunOverhead(weights_share=0.1, per_token=80_000, per_token_vocab=2.0)},
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


def run_overhead(distribution: str, precision: str, *, weights_bytes: int, vocab: int,
                 heads: int) -> tuple[int, int]:
    """(overhead_bytes, compute_bytes_per_token) of a run of an artifact by ``distribution``.

    The precision class's row, else the runtime's ``"*"`` row, else (0, 0):
    a runtime nobody measured claims weights + KV only.
    """
    rt = runtime_of(distribution)
    row = None if rt is None else rt.overhead.get(precision) or rt.overhead.get("*")
    return (0, 0) if row is None else row.needs(weights_bytes=weights_bytes, vocab=vocab, heads=heads)


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
