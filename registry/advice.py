"""What the web catalog's "what fits my device" page needs from a resolver.

The registry never imports the resolver (tests/test_imports.py): the page is
handed an :class:`Advisor` by whoever builds the app (the root layer wires
one built on ``phi_get.resolver.resolve``, the very code ``phi-get install``
runs), and shows the :class:`Advice` it returns.  Without an advisor the
page says so instead of guessing: a second, simplified resolution written
here would disagree with the client sooner or later.

Imports the standard library and :mod:`phi_get.manifests` only (no web stack),
so the root layer can implement it without loading fastapi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from phi_get.manifests.device import DeviceProfile
from phi_get.manifests.index import ModelIndex

__all__ = ["Advice", "Advisor", "CandidateAdvice"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CandidateAdvice:
    """One index entry's verdict for one device, in words."""

    version: str
    variant: str
    verdict: str  # chosen | eligible | rejected
    reason: str
    #: The target tag it would run on; None when rejected before a target was found.
    target: str | None = None
    #: Bytes it needs at the resolution's context and the budget it was compared to (0: not checked).
    needed_bytes: int = 0
    budget_bytes: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Advice:
    """A resolution of one model for one device: the choice and every candidate's verdict."""

    requirement: str
    #: The tags the device supports, best first.
    device_targets: tuple[str, ...]
    chosen: CandidateAdvice | None
    #: Every candidate: the chosen first, then eligible by rank, then rejected.
    candidates: tuple[CandidateAdvice, ...]
    #: Why better hardware is not used (a CPU fall back is never silent).
    notes: tuple[str, ...] = ()
    #: When nothing fits: the client's own no-match message (nearest misses and fixes).
    no_match: str = ""


class Advisor(Protocol):
    """Resolution for the web page; pure, like the resolver it wraps."""

    def samples(self) -> Mapping[str, DeviceProfile]:
        """The sample device profiles shipped with phi-get, by name."""
        ...

    def preferences(self) -> tuple[str, ...]:
        """The ``prefer`` values the resolver accepts, its default first."""
        ...

    def advise(self, device: DeviceProfile, index: ModelIndex, *, prefer: str | None = None,
               context: int | None = None) -> Advice:
        """Resolve ``index``'s model (any version) for ``device``; None: the resolver's defaults;
        ValueError for a ``prefer`` it does not know."""
        ...
