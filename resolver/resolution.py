"""The resolution's value types: requirement, policy, candidates and their verdicts.

What :func:`.resolve.resolve` takes and returns, apart from the functions
that compute it, so that the pure helpers that rank and explain a
resolution (:mod:`.ranking`, :mod:`.explain`) import these types without
importing the resolver itself: each fact in one place, no import cycle.

Imports only :mod:`phi_get.manifests` and :mod:`packaging`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from packaging.specifiers import SpecifierSet
from packaging.version import Version
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.manifest import Format, Precision
from phi_get.manifests.targets import SupportedTarget

__all__ = [
    "Candidate",
    "LazyVerdicts",
    "Policy",
    "Prefer",
    "Reject",
    "Requirement",
    "Resolution",
    "Skip",
    "Verdict",
]


class Prefer(StrEnum):
    """What the ranking favours once hardware and runtime are decided (README, "How an artifact is chosen")."""

    BALANCED = "balanced"  # least loss + BALANCED_PRICE x share of the memory budget used (the default)
    QUALITY = "quality"    # least measured loss, then top-1 agreement, then least memory
    SIZE = "size"          # smallest download, then least loss
    SPEED = "speed"        # least memory traffic per token: smallest weights, then least loss


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
    QUALITY = "quality"
    CONTEXT = "context"
    TARGET = "target"
    BUILD = "build"
    MEMORY = "memory"
    RUNTIME = "runtime"


#: Which rejections are "nearest": the ones a change of device or flags could lift.
_MISS_ORDER: Final = (Reject.MEMORY, Reject.RUNTIME, Reject.BUILD, Reject.QUALITY, Reject.CONTEXT, Reject.TARGET,
                      Reject.PRECISION, Reject.FORMAT, Reject.YANKED, Reject.VERSION)


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


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    prefer: Prefer = Prefer.BALANCED
    format: Format | None = None
    precision: Precision | None = None
    #: Context length the memory check uses; None: min(max_context, 4096).
    context: int | None = None
    #: Reject (instead of ranking last) candidates whose runtime is not installed.
    require_runtime: bool = False
    #: Fraction of each memory pool kept free; None: the device's share (targets.memory_share).
    headroom: float | None = None
    #: Quality budget: the largest loss (mean KL divergence, nats/token) accepted; None: any.
    max_kl: float | None = None
    #: Quality budget: the smallest top-1 agreement with the reference accepted; None: any.
    min_top1: float | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "prefer": str(self.prefer), "format": str(self.format or ""), "precision": str(self.precision or ""),
            "context": self.context or 0, "require_runtime": self.require_runtime,
            "headroom": "" if self.headroom is None else repr(self.headroom),
        }
        if self.max_kl is not None:
            out["max_kl"] = repr(self.max_kl)
        if self.min_top1 is not None:
            out["min_top1"] = repr(self.min_top1)
        return out


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
    #: Better targets the artifact declares that the installed runtime build cannot drive, with the fix.
    undrivable: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.entry.version} {self.entry.variant}"


class LazyVerdicts(Protocol):
    """Every candidate's verdict, computed when first asked for (built by :func:`.resolve.resolve`)."""

    def get(self) -> tuple[Candidate, ...]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Resolution:
    requirement: Requirement
    policy: Policy
    targets: tuple[SupportedTarget, ...]
    chosen: Candidate | None
    notes: tuple[str, ...] = ()
    verdicts: LazyVerdicts = field(repr=False, compare=False)

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
