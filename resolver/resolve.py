"""Resolution: choose the best artifact of a model for a device, with reasons.

A pure function of (requirement, device profile, index entries, policy): no
I/O, no clock, no randomness.  Every candidate gets a verdict (chosen,
eligible, rejected) and a reason, so ``--explain`` can show why each was
taken or left.

Order of work:

1. hard filters, in this order, each recorded as the rejection reason:
   version specifier, yanked (only an exact ``==`` pin may select a yanked
   version, as PEP 592 says), ``--format`` / ``--precision`` pins, the
   quality budget (``max_kl`` / ``min_top1``), context length, target
   compatibility, memory fit on some supported target, and, with
   ``require_runtime``, the runtime being installed;
2. ranking, written once in :func:`preference_key`.

Memory fit: the manifest's ``memory.total_bytes(context)`` (weights + the
runtime's overhead + (KV cache + compute buffers) x context: the one formula,
:class:`phi_get.manifests.manifest.MemoryNeeds`) must be at most
the share of the target's memory the device really gives
(:func:`phi_get.manifests.targets.memory_share`: VRAM 90 %, a Mac's GPU 2/3
or 3/4 of unified memory by size, an integrated GPU or NPU half of RAM,
a phone half of RAM, other CPU RAM 80 %), or ``1 - headroom`` when a policy
sets one.  The default context is ``min(max_context, 4096)``.  An artifact that declares an accelerator target
but does not fit there is tried on its next supported target, and the
reason the better target was skipped is kept: a fall back from an
accelerator to the CPU is never silent.

Imports only :mod:`phi_get.manifests` and :mod:`packaging`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from packaging.version import Version
from phi_get.manifests.device import DeviceProfile
from phi_get.manifests.display import human_bytes
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.manifest import Format, Precision
from phi_get.manifests.names import check_model_name, check_specifier, normalize_distribution_name
from phi_get.manifests.runtimes import RUNTIME_PROVIDES, build_families, fix_for, is_vendor_path
from phi_get.manifests.targets import SupportedTarget, family_of, supported_targets

from . import resolution
from .explain import chosen_reason, fallback_notes
from .ranking import balanced_cost, decision, measured
from .resolution import Candidate, Policy, Prefer, Reject, Requirement, Resolution, Skip, Verdict

__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_POLICY",
    "RUNTIME_PROVIDES",
    "IndexView",
    "budget_of",
    "family_ranks",
    "make_policy",
    "parse_requirement",
    "preference_key",
    "resolve",
    "target_family",
]
__all__ += resolution.__all__  # the value types, re-exported: callers import them from here too

DEFAULT_CONTEXT: Final = 4096
#: The policy of a plain ``phi-get resolve`` (frozen, so one instance serves every call).
DEFAULT_POLICY: Final = Policy()
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


def make_policy(*, prefer: str = "balanced", format: str | None = None, precision: str | None = None,
                context: int | None = None, require_runtime: bool = False, max_kl: float | None = None,
                min_top1: float | None = None) -> Policy:
    """A policy from plain strings (CLI options, phi.toml, the Python API); bad values raise ValueError."""
    if max_kl is not None and not max_kl >= 0:
        raise ValueError(f"max_kl must be a KL divergence >= 0 (nats per token), got {max_kl!r}")
    if min_top1 is not None and not 0 <= min_top1 <= 1:
        raise ValueError(f"min_top1 must be a top-1 agreement between 0 and 1, got {min_top1!r}")
    return Policy(prefer=Prefer(prefer), format=Format(format) if format else None,
                  precision=Precision(precision) if precision else None, context=context,
                  require_runtime=require_runtime, max_kl=max_kl, min_top1=min_top1)


def parse_requirement(text: str, *, document: str = "requirement") -> Requirement:
    """``phi-3.5-mini``, ``phi-3.5-mini>=1.0,<2``, ``phi-3.5-mini==1.0.0``."""
    m = _REQ.match(text)
    if not m:
        raise ManifestError("expected NAME followed by an optional version specifier", value=text, document=document)
    name = check_model_name(m.group(1), "name", document)
    return Requirement(name=name, specifier=check_specifier(m.group(2), "specifier", document))


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


def budget_of(target: SupportedTarget, headroom: float | None = None) -> int:
    """Bytes a model may take on ``target``: the device's share, or ``1 - headroom`` of the pool."""
    if headroom is None:
        return target.budget_bytes
    return int(target.memory_bytes * (1.0 - headroom))


def _runtime_version(device_runtimes: Mapping[str, str], distribution: str) -> str | None:
    dist = normalize_distribution_name(distribution)
    if dist in device_runtimes:
        return device_runtimes[dist]
    for provider, provides in RUNTIME_PROVIDES.items():
        if provides == dist and provider in device_runtimes:
            return device_runtimes[provider]
    return None


target_family = family_of  # kept for callers; the fact lives in manifests/targets.py


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
    4. the hardware vendor's own runtime on that hardware
    (:data:`phi_get.manifests.runtimes.RUNTIMES`: MLX on Metal, OpenVINO on
    Intel GPU/NPU, ONNX Runtime GenAI's CUDA, DirectML and QNN builds);
    5. the policy, on measured quality (:func:`.ranking.measured`: loss in
    nats/token, KL divergence first, bits only where nothing was measured):
    ``balanced`` least loss + :data:`.ranking.BALANCED_PRICE` x needed/budget,
    ``quality`` least loss then best top-1 then least memory, ``size`` smallest
    download then least loss, ``speed`` smallest weights then least loss;
    6. the most specific tag (``cuda-sm89`` before ``cuda``); 7. the variant
    id, so ties are deterministic.
    """
    e = c.entry
    rank = c.target.rank if c.target is not None else 1 << 20
    hw = hardware_rank.get(c.target.tag, rank) if c.target is not None else rank
    vendor = c.target is not None and is_vendor_path(e.runtime.distribution, e.runtime.provider,
                                                     family_of(c.target.tag))
    q = measured(e)
    policy: tuple[object, ...]
    if prefer is Prefer.BALANCED:
        policy = (balanced_cost(q.loss, c.needed, c.budget), q.loss, c.needed)
    elif prefer is Prefer.QUALITY:
        policy = (q.loss, -q.top1, c.needed)
    elif prefer is Prefer.SIZE:
        policy = (e.size, q.loss)
    else:
        policy = (e.memory.weights_bytes, q.loss, e.size)
    return (version_rank[e.version], c.runtime_version is None, hw, not vendor, *policy, rank, e.variant)


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
        self._drives: dict[str, tuple[frozenset[str] | None, str]] = {}

    def drives(self, distribution: str) -> tuple[frozenset[str] | None, str]:
        """What the installed build of ``distribution`` can drive (None: unverified), and how that is known."""
        found = self._drives.get(distribution)
        if found is None:
            found = self._drives[distribution] = build_families(
                normalize_distribution_name(distribution), self.device.runtimes, self.device.runtime_devices)
        return found

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
    if pol.max_kl is not None or pol.min_top1 is not None:
        q = measured(e)
        if pol.max_kl is not None and q.loss > pol.max_kl:
            return rejected(Reject.QUALITY, f"loss {q.loss:.4f} nats/token ({q.basis}) exceeds the quality "
                            f"budget max_kl {pol.max_kl:g}")
        if pol.min_top1 is not None and q.top1 < pol.min_top1:
            top1 = "not measured" if q.top1 < 0 else f"{q.top1:.3f}"
            return rejected(Reject.QUALITY, f"top-1 agreement {top1} is below the quality budget "
                            f"min_top1 {pol.min_top1:g}")
    context = pol.context or min(e.memory.max_context, DEFAULT_CONTEXT)
    if context > e.memory.max_context:
        return rejected(Reject.CONTEXT, f"context {context} exceeds the model's maximum {e.memory.max_context}")
    usable = f.usable_targets(e.targets)
    if not usable:
        return rejected(Reject.TARGET, f"targets {', '.join(e.targets)} are not supported by this device")
    undrivable: list[tuple[str, str]] = []
    if f.device.runtimes:
        usable, undrivable = _drivable(f, e, usable)
        if not usable:
            tag, fix = undrivable[0]
            return rejected(Reject.BUILD, f"the installed {e.runtime.distribution} build cannot drive "
                            f"{', '.join(dict.fromkeys(family_of(t) for t, _ in undrivable))} "
                            f"(known from {f.drives(e.runtime.distribution)[1]}); {fix}")
    needed = e.memory.total_bytes(context)
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
                     skipped=tuple(skipped), undrivable=tuple(undrivable))


def _drivable(f: _Filter, e: IndexEntry,
              usable: tuple[SupportedTarget, ...]) -> tuple[tuple[SupportedTarget, ...], list[tuple[str, str]]]:
    """Split ``usable`` into the targets the installed build can drive and (tag, fix) for the others.

    Only an installed runtime is checked (one to be installed is installed
    with the fix named), and only where its build is known: probed or
    declared in the profile's ``runtime_devices``, or told by the package
    name (``manifests/runtimes.py``).  Unknown builds stay unverified.
    """
    if f.runtime(e) is None:
        return usable, []
    families, _how = f.drives(e.runtime.distribution)
    if families is None:
        return usable, []
    ok = tuple(t for t in usable if family_of(t.tag) in families)
    bad = [(t.tag, fix_for(e.runtime.distribution, family_of(t.tag))) for t in usable
           if family_of(t.tag) not in families]
    return ok, bad


def _rank(f: _Filter, checked: list[Candidate]) -> list[Candidate]:
    """The eligible candidates in preference order, with their verdicts and reasons."""
    eligible = [c for c in checked if c.verdict is Verdict.ELIGIBLE]
    versions = sorted({c.entry.version for c in eligible}, reverse=True)
    vrank = {v: i for i, v in enumerate(versions)}
    hw = family_ranks(f.targets)
    eligible.sort(key=lambda c: preference_key(c, vrank, f.policy.prefer, hw))
    out = []
    for i, c in enumerate(eligible):
        if i == 0:
            why = chosen_reason(c, f.targets, f.policy) + f"; quality: {measured(c.entry).basis}"
            # The runner-up of the same version: the newest-first shortcut sees only that version.
            runner = next((r for r in eligible[1:] if r.entry.version == c.entry.version), None)
            if runner is not None:
                rule, text = decision(runner, c, f.policy.prefer, hw)
                why += f"; decided over {runner.label} by rule '{rule}': {text}"
            out.append(_with(c, Verdict.CHOSEN, why))
        else:
            out.append(_with(c, Verdict.ELIGIBLE, "compatible; " + decision(c, eligible[0], f.policy.prefer, hw)[1]))
    return out


def resolve(req: Requirement, device: DeviceProfile, entries: Iterable[IndexEntry] | IndexView,
            policy: Policy = DEFAULT_POLICY) -> Resolution:
    """Choose among ``entries`` (one model's index) for ``device``; explain every verdict.

    Version is the first key of the preference order, so the choice is found
    by checking versions newest first and stopping at the first with an
    eligible candidate; the verdicts of all the other candidates are
    computed when asked for (:attr:`Resolution.candidates`), with the same
    filters and the same order.
    """
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
            notes = fallback_notes(chosen, checked, f.targets) + _build_notes(chosen, checked, f.targets)
            break
    return Resolution(requirement=req, policy=policy, targets=f.targets, chosen=chosen, notes=tuple(notes),
                      verdicts=_Verdicts(f, view))


def _with(c: Candidate, verdict: Verdict, reason: str) -> Candidate:
    return Candidate(entry=c.entry, verdict=verdict, reason=reason, target=c.target, context=c.context,
                     needed=c.needed, budget=c.budget, runtime_version=c.runtime_version, skipped=c.skipped,
                     undrivable=c.undrivable)


def _build_notes(chosen: Candidate, checked: list[Candidate], targets: tuple[SupportedTarget, ...]) -> list[str]:
    """Accelerators passed over because an installed runtime build cannot drive them: never silent."""
    assert chosen.target is not None
    better = {t.tag: t for t in targets if t.rank < chosen.target.rank}
    notes: dict[str, str] = {}
    for c in checked:
        lost = list(c.undrivable) if c.verdict is not Verdict.REJECTED else []
        if c.reject is Reject.BUILD:
            lost = [(t, c.reason.rsplit("; ", 1)[-1]) for t in c.entry.targets if t in better]
        for tag, fix in lost:
            t = better.get(tag)
            if t is not None and t.hardware != chosen.target.hardware:
                notes.setdefault(t.hardware, f"not using {t.hardware}: the installed {c.entry.runtime.distribution} "
                                 f"build cannot drive {family_of(tag)} ({c.label}); {fix}")
    return list(notes.values())
