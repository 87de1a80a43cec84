"""Device profile v1: what a device is, as the resolver sees it.

Written by ``phi-get device --json`` on the device itself, or by hand for a
device one is not on (a CI machine locking for a fleet).  Shape::

    {"schema": "phi-get.device/v1", "os": "linux", "arch": "x86_64",
     "cpu": {"flags": ["avx2", "avx512f"], "cores": 16},
     "memory_bytes": 135148564480,
     "accelerators": [{"type": "gpu", "vendor": "nvidia", "name": "NVIDIA H100 80GB HBM3",
                       "memory_bytes": 85520809984, "compute_capability": "9.0",
                       "driver": "580.159.04"}],
     "runtimes": {"llama-cpp-python": "0.3.36", "onnxruntime-genai": "0.18.0"}}

More keys may be added by later minor versions; unknown keys are kept in
``extra`` and written back, so a profile round-trips through this version.

Optional keys added compatibly (a profile without them parses as before):

``runtime_devices``
    installed runtime distribution -> the target families that build can
    drive (``cpu``, ``cuda``, ``rocm``, ``metal``, ``intel-gpu``,
    ``intel-npu``, ``qnn-npu``, ``directml``, ``webgpu``), as the build probe
    (``phi-get device --probe-builds``; ``resolver/capabilities.py``) found it
    or as written by hand: ``{"llama-cpp-python": ["cpu"]}`` says this
    llama-cpp-python wheel is CPU-only, so the resolver will not send a GGUF
    to CUDA through it.  A runtime not listed is unverified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from .canonical import canonical_bytes, load_json_document
from .fields import Reader
from .names import normalize_distribution_name
from .runtimes import ACCELERATOR_FAMILIES

__all__ = [
    "DEVICE_SCHEMA",
    "OS",
    "Arch",
    "AcceleratorType",
    "Vendor",
    "Accelerator",
    "DeviceProfile",
    "device_profile_from_json",
    "parse_device_profile",
]

DEVICE_SCHEMA: Final = "phi-get.device/v1"
_MAX_PROFILE_BYTES: Final = 256 * 1024
_MAX_MEMORY: Final = 1 << 50  # 1 PiB: more is a corrupt profile, not a machine
_CC = re.compile(r"\d{1,2}\.\d{1,2}", re.ASCII)  # fullmatch: no trailing newline, ASCII digits


class OS(StrEnum):
    LINUX = "linux"
    WINDOWS = "windows"
    MACOS = "macos"
    ANDROID = "android"


class Arch(StrEnum):
    X86_64 = "x86_64"
    ARM64 = "arm64"


class AcceleratorType(StrEnum):
    GPU = "gpu"
    NPU = "npu"


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"
    APPLE = "apple"
    QUALCOMM = "qualcomm"


@dataclass(frozen=True, kw_only=True, slots=True)
class Accelerator:
    type: AcceleratorType
    vendor: Vendor
    name: str
    memory_bytes: int | None = None
    compute_capability: str | None = None
    driver: str | None = None
    unified_memory: bool = False

    @property
    def cc_tuple(self) -> tuple[int, int] | None:
        if self.compute_capability is None:
            return None
        major, minor = self.compute_capability.split(".")
        return int(major), int(minor)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": str(self.type), "vendor": str(self.vendor), "name": self.name}
        if self.memory_bytes is not None:
            out["memory_bytes"] = self.memory_bytes
        if self.compute_capability is not None:
            out["compute_capability"] = self.compute_capability
        if self.driver is not None:
            out["driver"] = self.driver
        if self.unified_memory != (self.vendor is Vendor.APPLE):  # written when not the vendor's default
            out["unified_memory"] = self.unified_memory
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceProfile:
    os: OS
    arch: Arch
    cpu_flags: frozenset[str] = frozenset()
    cores: int = 1
    memory_bytes: int
    accelerators: tuple[Accelerator, ...] = ()
    #: Installed Python distributions, canonical name -> version string.
    runtimes: Mapping[str, str] = field(default_factory=dict)
    #: Installed runtime build -> target families it can drive (probed or declared); absent: unverified.
    runtime_devices: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Keys this version does not know, kept for round-tripping.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def has_runtime(self, distribution: str) -> str | None:
        return self.runtimes.get(normalize_distribution_name(distribution))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update({
            "schema": DEVICE_SCHEMA,
            "os": str(self.os),
            "arch": str(self.arch),
            "cpu": {"flags": sorted(self.cpu_flags), "cores": self.cores},
            "memory_bytes": self.memory_bytes,
            "accelerators": [a.to_json() for a in self.accelerators],
            "runtimes": dict(sorted(self.runtimes.items())),
        })
        if self.runtime_devices:
            out["runtime_devices"] = {k: sorted(v) for k, v in sorted(self.runtime_devices.items())}
        return out

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())



def _accelerator(r: Reader) -> Accelerator:
    cc = r.text("compute_capability", None, max_len=8)
    if cc is not None and not _CC.fullmatch(cc):
        raise r.error("compute_capability", "expected MAJOR.MINOR, like '9.0'", cc)
    vendor = r.choice("vendor", Vendor)
    unified = r.flag("unified_memory", vendor is Vendor.APPLE)
    return Accelerator(
        type=r.choice("type", AcceleratorType),
        vendor=vendor,
        name=r.text("name", max_len=256),
        memory_bytes=r.integer("memory_bytes", None, min=0, max=_MAX_MEMORY),
        compute_capability=cc,
        driver=r.text("driver", None, max_len=64),
        unified_memory=unified,
    )


_KNOWN = {"schema", "os", "arch", "cpu", "memory_bytes", "accelerators", "runtimes", "runtime_devices"}
_FAMILIES: Final = ACCELERATOR_FAMILIES | {"cpu"}


def _runtime_devices(r: Reader) -> dict[str, frozenset[str]]:
    raw = r.obj("runtime_devices", {})
    if not isinstance(raw, Reader):
        return {}
    out: dict[str, frozenset[str]] = {}
    for dist in raw.data:
        families = raw.texts(dist, max_items=16, max_len=32)
        for i, fam in enumerate(families):
            if fam not in _FAMILIES:
                raise raw.error(f"{dist}[{i}]", f"expected one of {' | '.join(sorted(_FAMILIES))}", fam)
        out[normalize_distribution_name(dist)] = frozenset(families)
    return out


def device_profile_from_json(data: object, *, document: str = "device profile") -> DeviceProfile:
    r = Reader(data, document=document)
    r.schema(DEVICE_SCHEMA)
    cpu = r.obj("cpu", {})
    cpu_r = cpu if isinstance(cpu, Reader) else Reader(cpu, "cpu", document)
    flags = cpu_r.texts("flags", [], max_items=1024, max_len=64)
    runtimes_raw = r.text_map("runtimes", {})
    runtimes = {normalize_distribution_name(k): v for k, v in runtimes_raw.items()}
    return DeviceProfile(
        os=r.choice("os", OS),
        arch=r.choice("arch", Arch),
        cpu_flags=frozenset(f.lower() for f in flags),
        cores=cpu_r.integer("cores", 1, min=1, max=1 << 16),
        memory_bytes=r.integer("memory_bytes", min=1, max=_MAX_MEMORY),
        accelerators=tuple(_accelerator(a) for a in r.objects("accelerators", [], max_items=64)),
        runtimes=runtimes,
        runtime_devices=_runtime_devices(r),
        extra={k: v for k, v in r.data.items() if k not in _KNOWN},
    )


def parse_device_profile(data: bytes | str, *, document: str = "device profile") -> DeviceProfile:
    """Parse and validate a device profile document."""
    return device_profile_from_json(
        load_json_document(data, limit=_MAX_PROFILE_BYTES, document=document), document=document
    )
