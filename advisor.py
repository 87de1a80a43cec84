"""The resolver behind the registry's "what fits my device" page.

The registry may not import the resolver (tests/test_imports.py), so its web
catalog takes an :class:`phi_get.registry.advice.Advisor`; this root-layer
module implements one with the client's own code: the sample profiles of
``phi-get install --device NAME`` (:func:`phi_get.resolver.detect.sample_profiles`),
:func:`phi_get.resolver.resolve.resolve` for the choice and every verdict,
and :func:`phi_get.resolver.explain.no_match_error` for the nearest misses.
What the page shows is what ``phi-get resolve --explain`` would print for
the same device and index.

Imports the resolver, :mod:`phi_get.manifests` and ``registry.advice`` (no web stack).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from phi_get.manifests.device import DeviceProfile, parse_device_profile
from phi_get.manifests.index import ModelIndex
from phi_get.registry.advice import Advice, CandidateAdvice
from phi_get.resolver.detect import sample_profiles
from phi_get.resolver.explain import no_match_error
from phi_get.resolver.resolution import Candidate, Prefer, Requirement, Resolution
from phi_get.resolver.resolve import make_policy, resolve

__all__ = ["ResolverAdvisor"]


def _candidate(c: Candidate) -> CandidateAdvice:
    return CandidateAdvice(version=str(c.entry.version), variant=c.entry.variant, verdict=str(c.verdict),
                           reason=c.reason, target=c.target.tag if c.target is not None else None,
                           needed_bytes=c.needed, budget_bytes=c.budget)


class ResolverAdvisor:
    """:class:`~phi_get.registry.advice.Advisor` built on ``phi_get.resolver``; the samples are read once."""

    def __init__(self) -> None:
        self._samples: Mapping[str, DeviceProfile] | None = None

    def samples(self) -> Mapping[str, DeviceProfile]:
        if self._samples is None:
            self._samples = MappingProxyType({
                name: parse_device_profile(path.read_bytes(), document=f"sample profile {name!r}")
                for name, path in sample_profiles().items()
            })
        return self._samples

    def preferences(self) -> tuple[str, ...]:
        default = str(make_policy().prefer)
        return (default, *(str(p) for p in Prefer if str(p) != default))

    def advise(self, device: DeviceProfile, index: ModelIndex, *, prefer: str | None = None,
               context: int | None = None) -> Advice:
        # Only what the page set is passed: the rest stays make_policy's default, as for `phi-get resolve`.
        options: dict[str, Any] = {"context": context}
        if prefer is not None:
            options["prefer"] = prefer
        policy = make_policy(**options)  # ValueError for a prefer it does not know
        res = resolve(Requirement(name=index.name), device, index.entries, policy)
        return Advice(
            requirement=str(res.requirement),
            device_targets=tuple(t.tag for t in res.targets),
            chosen=_candidate(res.chosen) if res.chosen is not None else None,
            candidates=tuple(_candidate(c) for c in res.candidates),
            notes=res.notes,
            no_match="" if res.chosen is not None else _no_match(res),
        )


def _no_match(res: Resolution) -> str:
    err = no_match_error(res)
    return f"{err}\n{err.hint}" if err.hint else str(err)
