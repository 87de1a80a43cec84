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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .device import AcceleratorType, Arch, DeviceProfile, OS, Vendor
from .errors import ManifestError

__all__ = [
    "KNOWN_TAGS",
    "MemoryPool",
    "SupportedTarget",
    "check_target_tag",
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
_CUDA_TAG = re.compile(r"^cuda-sm(\d{2,3})$")


def check_target_tag(tag: object, field: str = "targets", document: str = "document") -> str:
    """Validate one target tag against the vocabulary.

    Any ``cuda-smNN`` tag is accepted, so artifacts for a GPU newer than this
    phi-get still parse; other unknown tags are refused so a typo cannot make
    an artifact silently unusable everywhere.
    """
    if isinstance(tag, str) and (tag in KNOWN_TAGS or _CUDA_TAG.match(tag)):
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
        result.append(SupportedTarget(tag=tag, rank=len(result), pool=pool, memory_bytes=mem, hardware=hardware))
    return tuple(result)
