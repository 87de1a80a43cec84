"""Explanations: the words and JSON for a resolution's verdicts.

Pure text helpers used by :mod:`.resolve` (reasons for the chosen and the
eligible candidates, notes when an accelerator is passed over) and by the
CLI (``--explain`` tables, ``--json`` documents, the no-match error with the
nearest misses and what would make them fit).

Imports only :mod:`phi_get.manifests` and sibling pure modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from phi_get.manifests.display import human_bytes
from phi_get.manifests.targets import SupportedTarget

from .errors import NoMatchError
from .resolution import Candidate, Policy, Resolution

__all__ = [
    "chosen_reason",
    "eligible_reason",
    "fallback_notes",
    "no_match_error",
    "quality_budget_lines",
    "render_text",
    "resolution_json",
]


_gb = human_bytes  # one size convention for every command (manifests/display.py)


def _where(c: Candidate) -> str:
    t = c.target
    assert t is not None
    return f"{t.tag} ({t.hardware}, {t.pool})"


def _runtime(c: Candidate) -> str:
    rt = c.entry.runtime
    if c.runtime_version is not None:
        return f"runtime {rt.distribution} {c.runtime_version} installed"
    return f"runtime not installed: pip install '{rt.distribution}{rt.specifier}'"


def chosen_reason(c: Candidate, targets: Sequence[SupportedTarget], policy: Policy) -> str:
    skipped = "".join(f"; skipped {s.tag} ({s.hardware}): needs {_gb(s.needed)}, budget {_gb(s.budget)}"
                      for s in c.skipped)
    return (f"runs on {_where(c)}: needs {_gb(c.needed)} of a {_gb(c.budget)} budget at context {c.context}; "
            f"{_runtime(c)}; best by version, hardware, then {policy.prefer}{skipped}")


def eligible_reason(c: Candidate, best: Candidate, policy: Policy, hardware_rank: dict[str, int]) -> str:
    """Why a compatible candidate lost to ``best``: the first key where they differ."""
    e, b = c.entry, best.entry
    if e.version != b.version:
        return f"compatible; older version than {b.version}"
    if (c.runtime_version is None) != (best.runtime_version is None):
        return f"compatible; {_runtime(c)}"
    assert c.target is not None and best.target is not None
    if hardware_rank[c.target.tag] != hardware_rank[best.target.tag]:
        return f"compatible; runs on {_where(c)}, below {best.target.tag} in this device's order"
    if policy.prefer == "quality" and e.precision.bits != b.precision.bits:
        return f"compatible; lower precision {e.precision} than {b.precision} (prefer quality)"
    if policy.prefer == "size" and e.size != b.size:
        return f"compatible; larger download {_gb(e.size)} than {_gb(b.size)} (prefer size)"
    if policy.prefer == "speed" and e.memory.weights_bytes != b.memory.weights_bytes:
        return (f"compatible; more weights to read per token {_gb(e.memory.weights_bytes)} than "
                f"{_gb(b.memory.weights_bytes)} (prefer speed)")
    if c.target.rank != best.target.rank:
        return f"compatible; targets {c.target.tag}, less specific than {best.target.tag}"
    return f"compatible; ranked after {b.variant} by {policy.prefer}, then variant id"


def fallback_notes(chosen: Candidate | None, checked: Sequence[Candidate],
                   targets: Sequence[SupportedTarget]) -> list[str]:
    """Say why accelerators the device has are not used: a CPU fall back is never silent."""
    if chosen is None or chosen.target is None:
        return []
    better = [t for t in targets if t.rank < chosen.target.rank and t.hardware != chosen.target.hardware]
    notes = []
    for hw in dict.fromkeys(t.hardware for t in better):
        tags = {t.tag for t in better if t.hardware == hw}
        declaring = [c for c in checked if tags & set(c.entry.targets)]
        if not declaring:
            notes.append(f"not using {hw}: no artifact of this model targets {', '.join(sorted(tags)[:4])}")
            continue
        # What the device could change (memory, runtime), not what the user pinned.
        misses = [f"{c.label}: needs {_gb(s.needed)}, budget {_gb(s.budget)}"
                  for c in declaring for s in c.skipped if s.hardware == hw]
        misses += [f"{c.label}: {c.reason}" for c in declaring
                   if c.verdict == "rejected" and str(c.reject) in ("runtime", "context")]
        notes.append(f"not using {hw}: " + ("; ".join(misses[:3]) or "its artifacts rank lower"))
    return notes


def _fix(c: Candidate) -> str:
    """What would make a rejected candidate fit."""
    code = str(c.reject)
    e = c.entry
    if code == "memory":
        fits_ctx = e.memory.context_within(c.budget)
        ctx = f"--context {fits_ctx} or less, or " if 256 <= fits_ctx < c.context else ""
        return f"fits with {ctx}{_gb(c.needed - c.budget)} more memory on {c.skipped[0].tag}"
    if code == "runtime":
        return f"pip install '{e.runtime.distribution}{e.runtime.specifier}'"
    if code == "quality":
        return "relax the quality budget (max_kl / min_top1 in phi.toml)"
    if code == "build":
        return c.reason.rsplit("; ", 1)[-1]
    if code == "context":
        return f"--context {e.memory.max_context} or less"
    if code == "target":
        return f"a device with one of {', '.join(e.targets)}"
    if code in ("format", "precision"):
        return f"drop the --{code} pin"
    if code == "yanked":
        return f"pin it exactly: =={e.version}"
    return "widen the version specifier"


def no_match_error(res: Resolution) -> NoMatchError:
    total = len(res.candidates)
    if not total:
        return NoMatchError(f"{res.requirement.name} has no artifacts in the index",
                            hint="`phi-get list --available` shows the models the sources serve")
    lines = [f"no artifact of {res.requirement} fits this device ({total} candidates rejected); nearest misses:"]
    for c in res.nearest_misses():
        lines.append(f"  {c.label}: {c.reason} -> {_fix(c)}")
    lines += quality_budget_lines(res)
    return NoMatchError("\n".join(lines), hint="--explain lists every candidate with its reason")


def quality_budget_lines(res: Resolution) -> list[str]:
    """What the policy's quality budget excluded: reported whenever it excluded anything."""
    excluded = [c for c in res.candidates if str(c.reject) == "quality"]
    if not excluded:
        return []
    pol = res.policy
    limits = ", ".join(f"{k} {v:g}" for k, v in (("max_kl", pol.max_kl), ("min_top1", pol.min_top1)) if v is not None)
    names = ", ".join(c.label for c in excluded[:6]) + (", ..." if len(excluded) > 6 else "")
    return [f"  the quality budget ({limits}) excluded {len(excluded)} of {len(res.candidates)} candidates: {names}"]


def resolution_json(res: Resolution) -> dict[str, Any]:
    def cand(c: Candidate) -> dict[str, Any]:
        return {
            "version": str(c.entry.version), "variant": c.entry.variant, "manifest": c.entry.manifest,
            "format": str(c.entry.format), "precision": str(c.entry.precision), "size": c.entry.size,
            "verdict": str(c.verdict), "reject": str(c.reject) if c.reject else None, "reason": c.reason,
            "target": c.target.tag if c.target else None, "context": c.context, "needed_bytes": c.needed,
            "budget_bytes": c.budget, "runtime": c.entry.runtime.distribution,
            "runtime_installed": c.runtime_version,
        }
    chosen = res.chosen
    return {
        "requirement": str(res.requirement), "policy": res.policy.to_json(),
        "device_targets": [t.tag for t in res.targets],
        "chosen": cand(chosen) if chosen else None, "notes": list(res.notes),
        "candidates": [cand(c) for c in res.candidates],
    }


def render_text(res: Resolution, *, explain: bool) -> str:
    chosen = res.chosen
    out = []
    if chosen is not None:
        out.append(f"{res.requirement.name} {chosen.entry.version} {chosen.entry.variant} "
                   f"({chosen.entry.format} {chosen.entry.precision}, {_gb(chosen.entry.size)}) "
                   f"on {chosen.target.tag if chosen.target else '?'}")
        out.append(f"  why: {chosen.reason}")
    out += [f"  note: {n}" for n in res.notes]
    if explain:
        out.append(f"candidates ({len(res.candidates)}), device targets: {', '.join(t.tag for t in res.targets)}")
        for c in res.candidates:
            out.append(f"  [{c.verdict}] {c.label} ({c.entry.format} {c.entry.precision}): {c.reason}")
    return "\n".join(out)
