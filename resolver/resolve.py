"""Resolution: choose the best artifact of a model for a device, with reasons.

A pure function of (requirement, device profile, index entries, policy): no
I/O, no clock, no randomness.  Every candidate gets a verdict (chosen,
eligible, rejected) and a reason, so ``--explain`` can show why each was
taken or left.

Order of work (issue 5):

1. hard filters, in this order, each recorded as the rejection reason:
   version specifier, yanked (only an exact ``==`` pin may select a yanked
   version, as PEP 592 says), ``--format`` / ``--precision`` pins, context
   length, target compatibility, memory fit on some supported target, and,
   with ``require_runtime``, the runtime being installed;
2. ranking, written once in :func:`preference_key`.

Memory fit: ``weights_bytes + kv_bytes_per_token * context`` must be at most
the target's memory (:func:`phi_get.manifests.targets.supported_targets`)
minus a headroom: :data:`HEADROOM` of the pool (VRAM 10 %: CUDA context and
activations; RAM 20 %: the OS and other processes; unified 25 %: macOS lets
the GPU wire about 75 % of memory).  The default context is
``min(max_context, 4096)``.  An artifact that declares an accelerator target
but does not fit there is tried on its next supported target, and the
reason the better target was skipped is kept: a fall back from an
accelerator to the CPU is never silent.

Imports only :mod:`phi_get.manifests` and :mod:`packaging`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from phi_get.manifests.device import DeviceProfile
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.manifest import Format, Precision
from phi_get.manifests.names import check_model_name, check_specifier
from phi_get.manifests.targets import MemoryPool, SupportedTarget, supported_targets
from phi_get.manifests.display import human_bytes

__all__ = [
    "DEFAULT_CONTEXT",
    "HEADROOM",
    "RUNTIME_PROVIDES",
    "Candidate",
    "IndexView",
    "Policy",
    "Prefer",
    "Reject",
    "Requirement",
    "Resolution",
    "Skip",
    "Verdict",
    "budget_of",
    "family_ranks",
    "make_policy",
    "parse_requirement",
    "preference_key",
    "resolve",
    "target_family",
]

DEFAULT_CONTEXT: Final = 4096
HEADROOM: Final = {MemoryPool.VRAM: 0.10, MemoryPool.RAM: 0.20, MemoryPool.UNIFIED: 0.25}
#: Builds of a runtime published under another name that load the same artifacts.
RUNTIME_PROVIDES: Final = {
    "onnxruntime-genai-cuda": "onnxruntime-genai",
    "onnxruntime-genai-directml": "onnxruntime-genai",
    "onnxruntime-gpu": "onnxruntime",
}
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


class Prefer(StrEnum):
    """What the ranking favours once hardware is decided."""

    QUALITY = "quality"  # highest precision, then measured agreement, then smallest
    SIZE = "size"        # smallest download
    SPEED = "speed"      # least memory traffic per token: smallest weights


class Verdict(StrEnum):
    CHOSEN = "chosen"
    ELIGIBLE = "eligible"  # compatible, ranked below the choice
    REJECTED = "rejected"


class Reject(StrEnum):
    """Why a candidate was filtered out; the order is the order of the filters."""

    VERSION = "version"
    YANKED = "yanked"
    FORMAT = "format"
    PRECISION = "precision"
    CONTEXT = "context"
    TARGET = "target"
    MEMORY = "memory"
    RUNTIME = "runtime"


#: Which rejections are "nearest": the ones a change of device or flags could lift.
_MISS_ORDER: Final = (Reject.MEMORY, Reject.RUNTIME, Reject.CONTEXT, Reject.TARGET, Reject.PRECISION,
                      Reject.FORMAT, Reject.YANKED, Reject.VERSION)


@dataclass(frozen=True, kw_only=True, slots=True)
class Requirement:
    name: str
    specifier: SpecifierSet = field(default_factory=SpecifierSet)

    @property
    def exact_pin(self) -> Version | None:
        specs = list(self.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return Version(specs[0].version)
        return None

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


def make_policy(*, prefer: str = "quality", format: str | None = None, precision: str | None = None,
                context: int | None = None, require_runtime: bool = False) -> Policy:
    """A policy from plain strings (CLI options, phi.toml, the Python API); bad values raise ValueError."""
    return Policy(prefer=Prefer(prefer), format=Format(format) if format else None,
                  precision=Precision(precision) if precision else None, context=context,
                  require_runtime=require_runtime)


def parse_requirement(text: str, *, document: str = "requirement") -> Requirement:
    """``phi-3.5-mini``, ``phi-3.5-mini>=1.0,<2``, ``phi-3.5-mini==1.0.0``."""
    m = _REQ.match(text)
    if not m:
        raise ManifestError("expected NAME followed by an optional version specifier", value=text, document=document)
    name = check_model_name(m.group(1), "name", document)
    return Requirement(name=name, specifier=check_specifier(m.group(2), "specifier", document))


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    prefer: Prefer = Prefer.QUALITY
    format: Format | None = None
    precision: Precision | None = None
    #: Context length the memory check uses; None: min(max_context, 4096).
    context: int | None = None
    #: Reject (instead of ranking last) candidates whose runtime is not installed.
    require_runtime: bool = False
    #: Fraction of each memory pool kept free; None: :data:`HEADROOM`.
    headroom: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "prefer": str(self.prefer), "format": str(self.format or ""), "precision": str(self.precision or ""),
            "context": self.context or 0, "require_runtime": self.require_runtime,
            "headroom": "" if self.headroom is None else repr(self.headroom),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Skip:
    """A better target an artifact declares but could not use, and why."""

    tag: str
    hardware: str
    needed: int
    budget: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    entry: IndexEntry
    verdict: Verdict
    reason: str
    reject: Reject | None = None
    target: SupportedTarget | None = None
    context: int = 0
    needed: int = 0
    budget: int = 0
    #: The installed version of the runtime, or None when it must be installed.
    runtime_version: str | None = None
    skipped: tuple[Skip, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.entry.version} {self.entry.variant}"


class IndexView:
    """One model's entries grouped by version, newest first.

    Prepared once per loaded index (grouping 100,000 entries costs tens of
    milliseconds); :func:`resolve` accepts it in place of the entries.
    """

    __slots__ = ("entries", "groups", "versions")

    def __init__(self, entries: Iterable[IndexEntry]) -> None:
        self.entries = tuple(entries)
        groups: dict[Version, list[IndexEntry]] = {}
        for e in self.entries:
            groups.setdefault(e.version, []).append(e)
        self.versions = sorted(groups, reverse=True)
        self.groups = groups


class _Verdicts:
    """Every candidate's verdict, computed on first use (explain, JSON, nearest misses)."""

    __slots__ = ("_done", "_filter", "_view")

    def __init__(self, f: _Filter, view: IndexView) -> None:
        self._filter, self._view = f, view
        self._done: tuple[Candidate, ...] | None = None

    def get(self) -> tuple[Candidate, ...]:
        if self._done is None:
            checked = [_check(self._filter, e) for e in self._view.entries]
            ranked = _rank(self._filter, checked)
            self._done = tuple(ranked + [c for c in checked if c.verdict is Verdict.REJECTED])
        return self._done


@dataclass(frozen=True, kw_only=True, slots=True)
class Resolution:
    requirement: Requirement
    policy: Policy
    targets: tuple[SupportedTarget, ...]
    chosen: Candidate | None
    notes: tuple[str, ...] = ()
    verdicts: _Verdicts = field(repr=False, compare=False)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every candidate: the chosen first, then eligible by rank, then rejected in index order."""
        return self.verdicts.get()

    def nearest_misses(self, count: int = 3) -> list[Candidate]:
        """Rejected candidates closest to fitting: memory misses by shortfall, then the others."""
        rejected = [c for c in self.candidates if c.verdict is Verdict.REJECTED]
        rejected.sort(key=lambda c: c.entry.version, reverse=True)
        rejected.sort(key=lambda c: (_MISS_ORDER.index(c.reject or Reject.VERSION), c.needed - c.budget))
        return rejected[:count]


def budget_of(target: SupportedTarget, headroom: float | None = None) -> int:
    frac = HEADROOM[target.pool] if headroom is None else headroom
    return int(target.memory_bytes * (1.0 - frac))


def _runtime_version(device_runtimes: Mapping[str, str], distribution: str) -> str | None:
    dist = canonicalize_name(distribution)
    if dist in device_runtimes:
        return device_runtimes[dist]
    for provider, provides in RUNTIME_PROVIDES.items():
        if provides == dist and provider in device_runtimes:
            return device_runtimes[provider]
    return None


def target_family(tag: str) -> str:
    """``cuda-sm89`` and ``cuda`` are one family, as are all ``cpu-*`` levels."""
    if tag.startswith("cuda"):
        return "cuda"
    return "cpu" if tag.startswith("cpu-") else tag


def family_ranks(targets: Iterable[SupportedTarget]) -> dict[str, int]:
    """Each tag's hardware rank: the rank of the best tag of its family on this device."""
    best: dict[str, int] = {}
    for t in targets:
        best.setdefault(target_family(t.tag), t.rank)
    return {t.tag: best[target_family(t.tag)] for t in targets}


def preference_key(c: Candidate, version_rank: Mapping[Version, int], prefer: Prefer,
                   hardware_rank: Mapping[str, int]) -> tuple[object, ...]:
    """THE preference order (lower sorts first), for candidates that passed the filters.

    1. newest version; 2. runtime already installed; 3. the device's hardware
    rank of the target family the artifact runs on (CUDA, ROCm, Metal, Intel
    GPU, Qualcomm NPU, Intel NPU, DirectML, WebGPU, CPU: ``supported_targets``);
    4. the policy; 5. the most specific tag (``cuda-sm89`` before ``cuda``,
    ``cpu-x86_64-v3`` before ``cpu-x86_64``); 6. the variant id, so ties are
    deterministic.
    """
    e = c.entry
    rank = c.target.rank if c.target is not None else 1 << 20
    hw = hardware_rank.get(c.target.tag, rank) if c.target is not None else rank
    if prefer is Prefer.QUALITY:
        policy: tuple[object, ...] = (-e.precision.bits, -e.quality.metrics.get("top1_agreement", 0.0), e.size)
    elif prefer is Prefer.SIZE:
        policy = (e.size, -e.precision.bits)
    else:
        policy = (e.memory.weights_bytes, e.size)
    return (version_rank[e.version], c.runtime_version is None, hw, *policy, rank, e.variant)


class _Filter:
    """Per-resolution caches so that 100,000 entries cost one pass of dict lookups."""

    def __init__(self, req: Requirement, device: DeviceProfile, policy: Policy) -> None:
        self.req, self.device, self.policy = req, device, policy
        self.targets = supported_targets(device)
        self.by_tag = {t.tag: t for t in self.targets}
        self.budgets = {t.tag: budget_of(t, policy.headroom) for t in self.targets}
        self.pin = req.exact_pin
        self._versions: dict[Version, bool] = {}
        self._targets: dict[tuple[str, ...], tuple[SupportedTarget, ...]] = {}
        self._runtimes: dict[tuple[str, str], str | None | bool] = {}

    def version_ok(self, v: Version) -> bool:
        ok = self._versions.get(v)
        if ok is None:
            ok = self._versions[v] = self.req.specifier.contains(v, prereleases=True if self.pin else None)
        return ok

    def usable_targets(self, tags: tuple[str, ...]) -> tuple[SupportedTarget, ...]:
        found = self._targets.get(tags)
        if found is None:
            found = self._targets[tags] = tuple(sorted(
                (self.by_tag[t] for t in tags if t in self.by_tag), key=lambda t: t.rank))
        return found

    def runtime(self, e: IndexEntry) -> str | None | bool:
        """Installed version; None when missing; False when installed but outside the specifier."""
        key = (e.runtime.distribution, str(e.runtime.specifier))
        if key not in self._runtimes:
            have = _runtime_version(self.device.runtimes, e.runtime.distribution)
            if have is not None and e.runtime.specifier and not e.runtime.specifier.contains(have, prereleases=True):
                self._runtimes[key] = False
            else:
                self._runtimes[key] = have
        return self._runtimes[key]


_gb = human_bytes  # one size convention (manifests/display.py)


def _check(f: _Filter, e: IndexEntry) -> Candidate:
    """Apply the hard filters to one entry: a rejected candidate or a provisional eligible one."""
    pol = f.policy

    def rejected(code: Reject, reason: str, **kw: object) -> Candidate:
        return Candidate(entry=e, verdict=Verdict.REJECTED, reject=code, reason=reason, **kw)  # type: ignore[arg-type]

    if not f.version_ok(e.version):
        return rejected(Reject.VERSION, f"version {e.version} is outside {f.req.specifier}")
    if e.yanked is not None and f.pin != e.version:
        return rejected(Reject.YANKED, f"yanked: {e.yanked} (only an exact ==pin selects it)")
    if pol.format is not None and e.format is not pol.format:
        return rejected(Reject.FORMAT, f"format {e.format} is not the pinned {pol.format}")
    if pol.precision is not None and e.precision is not pol.precision:
        return rejected(Reject.PRECISION, f"precision {e.precision} is not the pinned {pol.precision}")
    context = pol.context or min(e.memory.max_context, DEFAULT_CONTEXT)
    if context > e.memory.max_context:
        return rejected(Reject.CONTEXT, f"context {context} exceeds the model's maximum {e.memory.max_context}")
    usable = f.usable_targets(e.targets)
    if not usable:
        return rejected(Reject.TARGET, f"targets {', '.join(e.targets)} are not supported by this device")
    needed = e.memory.weights_bytes + e.memory.kv_bytes_per_token * context
    skipped: list[Skip] = []
    for t in usable:
        budget = f.budgets[t.tag]
        if needed <= budget:
            break
        skipped.append(Skip(tag=t.tag, hardware=t.hardware, needed=needed, budget=budget))
    else:
        worst = skipped[0]
        return rejected(
            Reject.MEMORY,
            f"needs {_gb(needed)} at context {context}; the best budget is {_gb(max(s.budget for s in skipped))} "
            f"({worst.tag}, {worst.hardware})",
            context=context, needed=needed, budget=max(s.budget for s in skipped), skipped=tuple(skipped),
        )
    runtime = f.runtime(e)
    if runtime is False:
        return rejected(Reject.RUNTIME, f"installed {e.runtime.distribution} "
                        f"{f.device.has_runtime(e.runtime.distribution)} is outside {e.runtime.specifier}",
                        target=t, context=context, needed=needed, budget=budget)
    if runtime is None and pol.require_runtime:
        return rejected(Reject.RUNTIME, f"runtime {e.runtime.distribution}{e.runtime.specifier} is not installed",
                        target=t, context=context, needed=needed, budget=budget)
    return Candidate(entry=e, verdict=Verdict.ELIGIBLE, reason="", target=t, context=context, needed=needed,
                     budget=budget, runtime_version=runtime if isinstance(runtime, str) else None,
                     skipped=tuple(skipped))


def _rank(f: _Filter, checked: list[Candidate]) -> list[Candidate]:
    """The eligible candidates in preference order, with their verdicts and reasons."""
    from .explain import chosen_reason, eligible_reason  # pure text helpers

    eligible = [c for c in checked if c.verdict is Verdict.ELIGIBLE]
    versions = sorted({c.entry.version for c in eligible}, reverse=True)
    vrank = {v: i for i, v in enumerate(versions)}
    hw = family_ranks(f.targets)
    eligible.sort(key=lambda c: preference_key(c, vrank, f.policy.prefer, hw))
    return [_with(c, Verdict.CHOSEN, chosen_reason(c, f.targets, f.policy)) if i == 0 else
            _with(c, Verdict.ELIGIBLE, eligible_reason(c, eligible[0], f.policy, hw))
            for i, c in enumerate(eligible)]


def resolve(req: Requirement, device: DeviceProfile, entries: Iterable[IndexEntry] | IndexView,
            policy: Policy = Policy()) -> Resolution:
    """Choose among ``entries`` (one model's index) for ``device``; explain every verdict.

    Version is the first key of the preference order, so the choice is found
    by checking versions newest first and stopping at the first with an
    eligible candidate; the verdicts of all the other candidates are
    computed when asked for (:attr:`Resolution.candidates`), with the same
    filters and the same order.
    """
    from .explain import fallback_notes

    view = entries if isinstance(entries, IndexView) else IndexView(entries)
    f = _Filter(req, device, policy)
    chosen: Candidate | None = None
    notes: list[str] = []
    for version in view.versions:
        if not f.version_ok(version):
            continue
        checked = [_check(f, e) for e in view.groups[version]]
        ranked = _rank(f, checked)
        if ranked:
            chosen = ranked[0]
            notes = fallback_notes(chosen, checked, f.targets)
            break
    return Resolution(requirement=req, policy=policy, targets=f.targets, chosen=chosen, notes=tuple(notes),
                      verdicts=_Verdicts(f, view))


def _with(c: Candidate, verdict: Verdict, reason: str) -> Candidate:
    return Candidate(entry=c.entry, verdict=verdict, reason=reason, target=c.target, context=c.context,
                     needed=c.needed, budget=c.budget, runtime_version=c.runtime_version, skipped=c.skipped)
