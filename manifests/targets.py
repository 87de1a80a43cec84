"""Hardware targets: the tags an artifact runs on, and a device's ranking of them.

An artifact declares the target tags it runs on.  A device profile yields the
tags it supports, best first, the way a Python interpreter yields the wheel
tags it supports (``packaging.tags``).  Choosing an artifact is then ranking:
the earliest supported tag that an artifact declares is its hardware rank.

The vocabulary (documented for users in README.md, "Hardware targets"):

=====================  =====================================================
tag                    meaning (a device supports it when ...)
=====================  =====================================================
``cuda-smXY``          an NVIDIA GPU of compute capability X.Y or newer
``cuda``               any NVIDIA GPU with a CUDA driver
``rocm``               an AMD GPU on Linux
``metal``              an Apple-silicon GPU on macOS (unified memory)
``intel-gpu``          an Intel GPU, through OpenVINO
``qnn-npu``            a Qualcomm Hexagon NPU, through QNN
``intel-npu``          an Intel NPU, through OpenVINO
``directml``           any GPU on Windows, through DirectML (DirectX 12)
``webgpu``             any GPU, through WebGPU
``cpu-x86_64-v4``      x86-64 with AVX-512 (marker flag ``avx512f``)
``cpu-x86_64-v3``      x86-64 with AVX2 (marker flag ``avx2``)
``cpu-x86_64-v2``      x86-64 with SSE4.2 (marker flag ``sse4_2``)
``cpu-x86_64``         any x86-64 CPU
``cpu-arm64-sve``      Arm64 with SVE
``cpu-arm64-i8mm``     Arm64 with the int8 matrix extension
``cpu-arm64-dotprod``  Arm64 with dot-product instructions (``asimddp``)
``cpu-arm64``          any Arm64 CPU
=====================  =====================================================

A CPU level implies the levels below it: an AVX-512 machine also supports
``cpu-x86_64-v3``, ``-v2`` and plain ``cpu-x86_64``.  Likewise ``cuda-sm80``
means "compute capability 8.0 or newer".  The preference order between
accelerators is written once, in :func:`supported_targets`.

Memory a target will really give, written once in :func:`memory_share`:

=============================  ======  ==============================================
pool / device                   share   origin
=============================  ======  ==============================================
discrete GPU VRAM               0.90    the CUDA/ROCm context, cuBLAS workspaces and
                                        activations take about a tenth of VRAM
Apple GPU, unified <= 32 GiB    2/3     Metal's ``recommendedMaxWorkingSetSize`` on
                                        M-series Macs (llama.cpp prints it at load:
                                        5461 MiB of 8 GiB, 21845 MiB of 32 GiB)
Apple GPU, unified > 32 GiB     3/4     the same limit on larger Macs (27648 MiB of
                                        36 GiB, 49152 MiB of 64 GiB)
other unified (Jetson)          0.75    JetPack's OS, desktop and CUDA carve-outs
integrated GPU or NPU, no VRAM  0.50    Windows (WDDM/MCDM) lets a GPU or NPU use at
                                        most half of RAM as "shared GPU memory"; that
                                        is not VRAM, and Linux i915/amdgpu GTT sizes
                                        default to the same order
Android RAM                     0.50    the low-memory killer reclaims the rest for the
                                        system, the UI and cached apps; on-device LLM
                                        apps budget about half of RAM
CPU RAM elsewhere               0.80,   the OS, page cache and other processes; a small
                                -1 GiB  board (Raspberry Pi) keeps at least 1 GiB
=============================  ======  ==============================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .device import OS, AcceleratorType, Arch, DeviceProfile, Vendor
from .errors import ManifestError

__all__ = [
    "KNOWN_TAGS",
    "MemoryPool",
    "SupportedTarget",
    "check_target_tag",
    "family_of",
    "memory_share",
    "supported_targets",
]

# Compute capabilities NVIDIA has shipped, newest first.
_CUDA_CCS: Final = (
    (12, 1), (12, 0), (11, 0), (10, 3), (10, 1), (10, 0), (9, 0), (8, 9), (8, 7), (8, 6), (8, 0),
    (7, 5), (7, 2), (7, 0), (6, 2), (6, 1), (6, 0), (5, 3), (5, 2), (5, 0),
)
_CPU_X86: Final = ("cpu-x86_64-v4", "cpu-x86_64-v3", "cpu-x86_64-v2", "cpu-x86_64")
_CPU_ARM: Final = ("cpu-arm64-sve", "cpu-arm64-i8mm", "cpu-arm64-dotprod", "cpu-arm64")
_X86_MARKERS: Final = {"cpu-x86_64-v4": "avx512f", "cpu-x86_64-v3": "avx2", "cpu-x86_64-v2": "sse4_2"}
_ARM_MARKERS: Final = {"cpu-arm64-sve": ("sve",), "cpu-arm64-i8mm": ("i8mm",), "cpu-arm64-dotprod": ("asimddp", "dotprod")}

KNOWN_TAGS: Final = frozenset({
    *(f"cuda-sm{a}{b}" for a, b in _CUDA_CCS), "cuda", "rocm", "metal", "intel-gpu", "qnn-npu",
    "intel-npu", "directml", "webgpu", *_CPU_X86, *_CPU_ARM,
})
_CUDA_TAG = re.compile(r"cuda-sm(\d{2,3})", re.ASCII)  # fullmatch: no trailing newline, ASCII digits


def check_target_tag(tag: object, field: str = "targets", document: str = "document") -> str:
    """Validate one target tag against the vocabulary.

    Any ``cuda-smNN`` tag is accepted, so artifacts for a GPU newer than this
    phi-get still parse; other unknown tags are refused so a typo cannot make
    an artifact silently unusable everywhere.
    """
    if isinstance(tag, str) and (tag in KNOWN_TAGS or _CUDA_TAG.fullmatch(tag)):
        return tag
    raise ManifestError(
        "unknown hardware target; see the target vocabulary in README.md", field=field, value=tag, document=document
    )


class MemoryPool(StrEnum):
    """Where an artifact's weights and KV cache live on a target."""

    RAM = "ram"            # system memory (CPU, NPUs, integrated GPUs)
    VRAM = "vram"          # a discrete accelerator's own memory
    UNIFIED = "unified"    # Apple silicon: system memory shared with the GPU


@dataclass(frozen=True, kw_only=True, slots=True)
class SupportedTarget:
    tag: str
    #: Position in the device's preference order: 0 is best.
    rank: int
    pool: MemoryPool
    #: Bytes available for weights + KV cache on this target.
    memory_bytes: int
    #: Which hardware, for explanations ("NVIDIA H100 80GB HBM3", "CPU").
    hardware: str
    #: Fraction of ``memory_bytes`` the device really gives a model here (:func:`memory_share`).
    share: float = 0.8
    #: Where that fraction comes from, for explanations.
    share_origin: str = "CPU RAM: the OS and other processes keep a fifth"

    @property
    def budget_bytes(self) -> int:
        """Bytes the weights and KV cache may take on this target."""
        return int(self.memory_bytes * self.share)

    @property
    def family(self) -> str:
        return family_of(self.tag)


def family_of(tag: str) -> str:
    """``cuda-sm89`` and ``cuda`` are one family, as are all ``cpu-*`` levels."""
    if tag.startswith("cuda"):
        return "cuda"
    return "cpu" if tag.startswith("cpu-") else tag


_GIB: Final = 1 << 30


def memory_share(profile: DeviceProfile, pool: MemoryPool, memory_bytes: int, *, integrated: bool,
                 tag: str) -> tuple[float, str]:
    """The share of a pool a model may use, and its origin (the table in this module's docstring)."""
    if pool is MemoryPool.VRAM:
        return 0.90, "VRAM: the CUDA/ROCm context and activations take a tenth"
    if pool is MemoryPool.UNIFIED and tag == "metal":
        if memory_bytes <= 32 * _GIB:
            return 2 / 3, "unified memory: macOS lets the GPU wire about 2/3 of it (Metal working-set limit)"
        return 0.75, "unified memory: macOS lets the GPU wire about 3/4 of it (Metal working-set limit)"
    if pool is MemoryPool.UNIFIED:
        return 0.75, "unified memory: the OS and driver carve-outs keep a quarter"
    if integrated:
        return 0.50, "shared memory: an integrated GPU or NPU may use at most half of RAM, which is not VRAM"
    if profile.os is OS.ANDROID:
        return 0.50, "phone RAM: Android's low-memory killer leaves an app about half"
    if memory_bytes * 0.2 < _GIB:
        return (memory_bytes - _GIB) / memory_bytes, "small-board RAM: the OS keeps at least 1 GiB"
    return 0.80, "CPU RAM: the OS and other processes keep a fifth"


def _cuda_tags(cc: tuple[int, int]) -> list[str]:
    return [f"cuda-sm{a}{b}" for a, b in _CUDA_CCS if (a, b) <= cc] + ["cuda"]


def _cpu_tags(profile: DeviceProfile) -> list[str]:
    flags = profile.cpu_flags
    if profile.arch is Arch.X86_64:
        return [t for t in _CPU_X86 if t not in _X86_MARKERS or _level_x86(t, flags)]
    return [t for t in _CPU_ARM if t not in _ARM_MARKERS or _level_arm(t, flags)]


def _level_x86(tag: str, flags: frozenset[str]) -> bool:
    # A level is present when its marker flag or any higher level's is.
    order = list(_X86_MARKERS)
    return any(_X86_MARKERS[t] in flags for t in order[: order.index(tag) + 1])


def _level_arm(tag: str, flags: frozenset[str]) -> bool:
    order = list(_ARM_MARKERS)
    return any(m in flags for t in order[: order.index(tag) + 1] for m in _ARM_MARKERS[t])


def supported_targets(profile: DeviceProfile) -> tuple[SupportedTarget, ...]:
    """The target tags ``profile`` supports, best first, each with its memory.

    Preference: NVIDIA CUDA (newest capability first), AMD ROCm, Apple Metal,
    Intel GPU, Qualcomm NPU, Intel NPU, DirectML, WebGPU, then the CPU from
    its most specific ISA level down.  Among several GPUs of one kind, the one
    with the most memory comes first.  Dedicated paths beat generic ones
    because they are faster for the same artifact; the CPU is always last and
    always present.
    """
    entries: list[tuple[str, MemoryPool, int, str]] = []
    ram = profile.memory_bytes
    gpus = sorted(
        (a for a in profile.accelerators if a.type is AcceleratorType.GPU),
        key=lambda a: -(a.memory_bytes or 0),
    )
    npus = [a for a in profile.accelerators if a.type is AcceleratorType.NPU]

    def pool_of(acc_memory: int | None, unified: bool) -> tuple[MemoryPool, int]:
        if unified or acc_memory is None:
            return (MemoryPool.UNIFIED if unified else MemoryPool.RAM), ram
        return MemoryPool.VRAM, acc_memory

    for gpu in gpus:
        if gpu.vendor is Vendor.NVIDIA and gpu.cc_tuple and profile.os in (OS.LINUX, OS.WINDOWS):
            pool, mem = pool_of(gpu.memory_bytes, gpu.unified_memory)
            entries += [(t, pool, mem, gpu.name) for t in _cuda_tags(gpu.cc_tuple)]
    for gpu in gpus:
        if gpu.vendor is Vendor.AMD and profile.os is OS.LINUX:
            entries.append(("rocm", *pool_of(gpu.memory_bytes, gpu.unified_memory), gpu.name))
    for gpu in gpus:
        if gpu.vendor is Vendor.APPLE and profile.os is OS.MACOS and profile.arch is Arch.ARM64:
            entries.append(("metal", MemoryPool.UNIFIED, ram, gpu.name))
    for gpu in gpus:
        if gpu.vendor is Vendor.INTEL:
            entries.append(("intel-gpu", *pool_of(gpu.memory_bytes, gpu.unified_memory), gpu.name))
    for npu in npus:
        if npu.vendor is Vendor.QUALCOMM:
            entries.append(("qnn-npu", MemoryPool.RAM, ram, npu.name))
    for npu in npus:
        if npu.vendor is Vendor.INTEL:
            entries.append(("intel-npu", MemoryPool.RAM, ram, npu.name))
    if profile.os is OS.WINDOWS:
        for gpu in gpus:
            entries.append(("directml", *pool_of(gpu.memory_bytes, gpu.unified_memory), gpu.name))
    for gpu in gpus:
        entries.append(("webgpu", *pool_of(gpu.memory_bytes, gpu.unified_memory), gpu.name))
    entries += [(t, MemoryPool.RAM, ram, "CPU") for t in _cpu_tags(profile)]

    seen: set[str] = set()
    result: list[SupportedTarget] = []
    for tag, pool, mem, hardware in entries:
        if tag in seen:
            continue  # first (largest) device of a kind wins the tag
        seen.add(tag)
        share, origin = memory_share(profile, pool, mem, integrated=hardware != "CPU" and pool is MemoryPool.RAM,
                                     tag=tag)
        result.append(SupportedTarget(tag=tag, rank=len(result), pool=pool, memory_bytes=mem, hardware=hardware,
                                      share=share, share_origin=origin))
    return tuple(result)
