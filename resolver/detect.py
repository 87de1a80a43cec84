"""Device probing: what this machine is, as a device profile v1.

One small function per fact.  Each runs with a timeout (in a worker thread,
and native tools in a subprocess with their own timeout); a probe that fails
or times out degrades to "not detected" and its reason is recorded in the
profile under ``probes`` (an extra key the format keeps).  Runtimes come from
the installed distributions' metadata folders (:mod:`.installed`), never by
importing them.
Nothing is read at import time.

:func:`load_device` applies the overrides: ``--device FILE`` or a shipped
sample profile name (``gpu-server``), else the environment variable
``PHI_GET_DEVICE``, else the probe.  A document without ``schema`` is a
partial override merged over the probe (``{"memory_bytes": 4000000000}``),
so any field can be overridden on its own.

What each installed runtime build can drive (``runtime_devices``) is asked of
the build itself, in a subprocess per runtime, cached per build
(:mod:`.capabilities`); ``PHI_GET_PROBE_BUILDS=0`` skips it (the runtimes are
then unverified), and a profile's ``runtime_devices`` overrides it.

Imports only the standard library, :mod:`phi_get.manifests`, and, when
probing, :mod:`.capabilities` and :mod:`.store` (the cache folder).
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.device import DeviceProfile, device_profile_from_json, parse_device_profile
from phi_get.manifests.runtimes import DISTRIBUTIONS

from .errors import DeviceProfileError

__all__ = [
    "BUILD_PROBE_ENV",
    "DEVICE_ENV",
    "PROBE_TIMEOUT_S",
    "RUNTIME_DISTRIBUTIONS",
    "NotPresent",
    "Probe",
    "load_device",
    "probe_device",
    "run_probes",
    "sample_profiles",
]

DEVICE_ENV: Final = "PHI_GET_DEVICE"
BUILD_PROBE_ENV: Final = "PHI_GET_PROBE_BUILDS"
PROBE_TIMEOUT_S: Final = 5.0
#: Distributions that load artifacts, looked up in package metadata (the runtimes table's names).
RUNTIME_DISTRIBUTIONS: Final = DISTRIBUTIONS
_NVIDIA_QUERY: Final = ("nvidia-smi", "--query-gpu=name,memory.total,compute_cap,driver_version",
                        "--format=csv,noheader,nounits")


class NotPresent(Exception):
    """A probe's hardware or OS is not there: 'not detected', not a failure."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Probe:
    """One probe's outcome: a value, or None and the reason it was not detected."""

    name: str
    value: Any
    reason: str = ""


def _on_path(program: str) -> bool:
    """Whether ``program`` is an executable file on ``PATH`` (or, with a separator, at that path)."""
    if os.sep in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return any(os.path.isfile(p) and os.access(p, os.X_OK)
               for p in (os.path.join(d, program) for d in os.get_exec_path()))


def _run(cmd: tuple[str, ...], timeout: float = PROBE_TIMEOUT_S) -> str:
    # A tool that is not installed (nvidia-smi on most machines) is known without importing subprocess and
    # forking: a few ms a probed command.  Windows resolves names through PATHEXT: left to subprocess there.
    if os.name != "nt" and not _on_path(cmd[0]):
        raise FileNotFoundError(errno.ENOENT, "not found", cmd[0])
    import subprocess

    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
    except subprocess.TimeoutExpired as exc:
        raise NotPresent(f"{cmd[0]} timed out after {exc.timeout:g} s") from None
    except subprocess.CalledProcessError as exc:
        raise NotPresent(f"{cmd[0]} exited with {exc.returncode}") from None


def _system() -> str:
    """``platform.system()``, imported only when probing (with ``subprocess``: about 5 ms a command
    that names its device profile does not pay)."""
    import platform

    return platform.system()


def _os() -> str:
    system = _system().lower()
    if system == "linux" and ("ANDROID_ROOT" in os.environ or Path("/system/build.prop").exists()):
        return "android"
    return {"darwin": "macos"}.get(system, system)


def _arch() -> str:
    import platform

    machine = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv8l": "arm64"}.get(machine, machine)


def _cpu_flags() -> list[str]:
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                return sorted(set(value.split()))
        return []
    if _system() == "Darwin":
        if _arch() == "arm64":
            names = _run(("sysctl", "hw.optional")).splitlines()
            flags = {"asimd"}
            for line in names:
                key, _, val = line.partition(":")
                if val.strip() == "1":
                    feat = key.rsplit(".", 1)[-1].lower().removeprefix("feat_")
                    flags.add({"dotprod": "asimddp"}.get(feat, feat))
            return sorted(flags)
        return sorted(f.lower().replace(".", "_") for f in _run(("sysctl", "-n", "machdep.cpu.features")).split())
    raise OSError("no /proc/cpuinfo and not macOS")


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _memory() -> int:
    if Path("/proc/meminfo").exists():
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
        raise OSError("no MemTotal in /proc/meminfo")
    if _system() == "Darwin":
        return int(_run(("sysctl", "-n", "hw.memsize")).strip())
    if _system() == "Windows":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ulong), ("load", ctypes.c_ulong), ("total", ctypes.c_ulonglong),
                        ("avail", ctypes.c_ulonglong), ("pt", ctypes.c_ulonglong), ("pa", ctypes.c_ulonglong),
                        ("vt", ctypes.c_ulonglong), ("va", ctypes.c_ulonglong), ("ve", ctypes.c_ulonglong)]
        status = _Status()
        status.len = ctypes.sizeof(_Status)
        ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status))  # type: ignore[attr-defined]
        return int(status.total)
    raise OSError("cannot read total memory on this OS")


def _nvidia() -> list[dict[str, Any]]:
    """NVIDIA GPUs through nvidia-smi (which reads NVML), with a timeout."""
    gpus = []
    for line in _run(_NVIDIA_QUERY).splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        name, mem_mib, cc, driver = parts
        gpu: dict[str, Any] = {"type": "gpu", "vendor": "nvidia", "name": name}
        if mem_mib.isdigit():
            gpu["memory_bytes"] = int(mem_mib) << 20
        if re.match(r"^\d{1,2}\.\d{1,2}$", cc):
            gpu["compute_capability"] = cc
        if driver:
            gpu["driver"] = driver
        gpus.append(gpu)
    return gpus


def _apple() -> list[dict[str, Any]]:
    if _system() != "Darwin" or _arch() != "arm64":
        raise NotPresent("not macOS on Apple silicon")
    brand = _run(("sysctl", "-n", "machdep.cpu.brand_string")).strip() or "Apple silicon"
    return [{"type": "gpu", "vendor": "apple", "name": brand, "unified_memory": True}]


def _pci_devices(cls_dir: str) -> list[tuple[str, Path]]:
    root = Path(cls_dir)
    found = []
    for dev in sorted(root.glob("*")) if root.exists() else []:
        vendor = dev / "device" / "vendor"
        if vendor.exists():
            found.append((vendor.read_text().strip().lower(), dev / "device"))
    return found


def _sysfs_accelerators() -> list[dict[str, Any]]:
    """Intel and AMD GPUs (DRM), Intel NPUs (accel class), Qualcomm NPUs (fastrpc) on Linux."""
    if _system() != "Linux":
        raise NotPresent("sysfs probing is Linux only")
    accs: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for vendor, dev in _pci_devices("/sys/class/drm"):
        if dev.resolve() in seen:
            continue
        seen.add(dev.resolve())
        if vendor == "0x8086":
            accs.append({"type": "gpu", "vendor": "intel", "name": "Intel GPU"})
        elif vendor == "0x1002":
            gpu: dict[str, Any] = {"type": "gpu", "vendor": "amd", "name": "AMD GPU"}
            vram = dev / "mem_info_vram_total"
            if vram.exists():
                gpu["memory_bytes"] = int(vram.read_text().strip())
            accs.append(gpu)
    for vendor, _dev in _pci_devices("/sys/class/accel"):
        if vendor == "0x8086":
            accs.append({"type": "npu", "vendor": "intel", "name": "Intel NPU"})
    if any(Path("/dev").glob("fastrpc-cdsp*")):
        accs.append({"type": "npu", "vendor": "qualcomm", "name": "Qualcomm Hexagon NPU"})
    return accs


def _runtimes() -> dict[str, str]:
    from .installed import find_installed  # only when probing

    return {dist: found.version for dist, found in find_installed(RUNTIME_DISTRIBUTIONS).items()}


_PROBES: Final[dict[str, Callable[[], Any]]] = {
    "os": _os, "arch": _arch, "cpu_flags": _cpu_flags, "cores": _cores, "memory": _memory,
    "nvidia": _nvidia, "apple": _apple, "sysfs": _sysfs_accelerators, "runtimes": _runtimes,
}


def run_probes(probes: dict[str, Callable[[], Any]], timeout: float = PROBE_TIMEOUT_S) -> dict[str, Probe]:
    """Run every probe at once, each in a daemon thread, all within ``timeout`` seconds.

    Plain threads rather than ``concurrent.futures``, whose import (it
    imports logging) costs a probed command more than the probes do.
    """
    import threading
    import time

    answers: dict[str, tuple[bool, Any]] = {}
    done = {name: threading.Event() for name in probes}

    def call(name: str, fn: Callable[[], Any]) -> None:
        try:
            answers[name] = (True, fn())
        except Exception as exc:  # noqa: BLE001 - turned into the probe's reason below
            answers[name] = (False, exc)
        finally:
            done[name].set()

    for name, fn in probes.items():
        threading.Thread(target=call, args=(name, fn), name=f"phi-get-probe-{name}", daemon=True).start()
    deadline = time.monotonic() + timeout
    results: dict[str, Probe] = {}
    for name in probes:
        if not done[name].wait(max(0.0, deadline - time.monotonic())):
            results[name] = Probe(name=name, value=None, reason=f"timed out after {timeout:g} s")
            continue
        ok, value = answers[name]
        if ok:
            results[name] = Probe(name=name, value=value)
        elif isinstance(value, NotPresent):
            results[name] = Probe(name=name, value=None, reason=str(value))
        elif isinstance(value, FileNotFoundError):
            results[name] = Probe(name=name, value=None, reason=f"not found: {value.filename or value}")
        else:  # a probe must never break the command: it degrades
            results[name] = Probe(name=name, value=None, reason=f"{type(value).__name__}: {value}")
    return results


def probe_device(timeout: float = PROBE_TIMEOUT_S, *, environ: Mapping[str, str] | None = None) -> DeviceProfile:
    """Probe this machine.  Undetected facts are recorded with their reason."""
    env = os.environ if environ is None else environ
    res = run_probes(_PROBES, timeout)
    accelerators = [*(res["nvidia"].value or []), *(res["apple"].value or []), *(res["sysfs"].value or [])]
    doc: dict[str, Any] = {
        "schema": "phi-get.device/v1",
        "os": res["os"].value or "linux",
        "arch": res["arch"].value or "x86_64",
        "cpu": {"flags": res["cpu_flags"].value or [], "cores": res["cores"].value or 1},
        "memory_bytes": res["memory"].value or 1,
        "accelerators": accelerators,
        "runtimes": res["runtimes"].value or {},
        "probes": {name: (p.reason if p.value is None else "ok") for name, p in sorted(res.items())},
    }
    if env.get(BUILD_PROBE_ENV, "1") != "0" and doc["runtimes"]:
        from .capabilities import probe_builds  # only when probing: subprocesses, a cache file
        from .home import default_home

        drives, outcomes = probe_builds(doc["runtimes"], cache_dir=default_home(dict(env)) / "cache")
        doc["runtime_devices"] = drives
        doc["probes"].update({f"build {dist}": outcome for dist, outcome in outcomes.items()})
    return device_profile_from_json(doc, document="probed device profile")


def sample_profiles() -> dict[str, Path]:
    """The device profiles shipped with phi-get, by name (``gpu-server`` ...)."""
    folder = Path(__file__).with_name("profiles")  # a folder of the package (never zip-imported)
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def _read_override(spec: str) -> tuple[bytes, str]:
    path = Path(spec)
    if path.is_file():
        return path.read_bytes(), str(path)
    samples = sample_profiles()
    if spec in samples:
        return samples[spec].read_bytes(), f"sample profile {spec!r}"
    raise DeviceProfileError(
        f"device profile {spec!r} is neither a file nor a sample profile name",
        hint="sample profiles: " + ", ".join(samples),
    )


def load_device(spec: str | None = None, *, environ: dict[str, str] | None = None) -> DeviceProfile:
    """The device to resolve for: ``spec`` (file or sample name), else ``PHI_GET_DEVICE``, else the probe.

    A document without a ``schema`` key is a partial override: its keys
    replace the probed ones (``cpu`` is merged key by key).
    """
    env = os.environ if environ is None else environ
    spec = spec or env.get(DEVICE_ENV) or None
    if spec is None:
        return probe_device(environ=env)
    data, where = _read_override(spec)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        doc = None  # let the parser (manifests' one loader) name the problem
    if isinstance(doc, dict) and "schema" not in doc:
        base = probe_device(environ=env).to_json()
        cpu = {**base.get("cpu", {}), **doc.get("cpu", {})}
        merged = {**base, **doc, "cpu": cpu}
        return device_profile_from_json(merged, document=f"device override {where}")
    return parse_device_profile(data, document=f"device profile {where}")
