"""Quality and cost: the numbers :func:`.resolve.preference_key` ranks by.

Quality is one number, the *loss*: the mean KL divergence, in nats per
token, of a variant's next-token distributions from the reference model's
(what llama.cpp's ``llama-perplexity --kl-divergence`` reports as "Mean
KLD").  It is taken from the manifest's measured metrics, best evidence
first:

1. ``kl_divergence``: measured, used as is;
2. ``perplexity_ratio`` or ``perplexity`` / ``reference_perplexity``: the
   log of the ratio, the mean cross-entropy increase over the reference, in
   the same unit (llama.cpp prints ``ln(PPL(Q)/PPL(base))`` beside the KLD
   and the two agree to within a factor of about two);
3. ``top1_agreement`` alone: ``8 (1 - top1)^2``, a fit through llama.cpp's
   published pairs for 7-8B models (Q8_0: 98.5 % same top token, KLD 0.002;
   Q4_K_M: 93 %, KLD 0.04); an estimate, and the explanation says so;
4. no measurement: an estimate from the bits per weight
   (:data:`FALLBACK_LOSS`), and the explanation says so.

No quality above the source: a variant stored at as many bits as its source
checkpoint or more (fp32 or fp16 from a bf16 checkpoint) holds the source's
weights, so its loss is 0 and its top-1 agreement 1, whatever it measured;
the extra bits only cost bytes, so the smaller of the two always ranks first.

Imports only :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from phi_get.manifests.display import human_bytes
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.runtimes import is_vendor_path
from phi_get.manifests.targets import family_of

from .resolution import Candidate, Prefer

__all__ = [
    "BALANCED_PRICE",
    "FALLBACK_LOSS",
    "Measured",
    "balanced_cost",
    "decision",
    "measured",
]

#: Estimated loss (nats/token) by bits per weight, where a manifest has no measurement:
#: 16 and 32 bits are the reference; 8-bit round-to-nearest with per-block scales
#: (Q8_0, int8 per-channel) and 4-bit group quantization (Q4_K_M, int4 g32-g128, MLX
#: 4-bit) at the middle of llama.cpp's published KLD ranges for models of this size.
FALLBACK_LOSS: Final = {32: 0.0, 16: 0.0, 8: 0.002, 4: 0.05}

#: ``balanced`` trades loss for memory: filling the device's whole budget costs as
#: much as 0.2 nats of KL divergence (the loss of a poor 2-3 bit quantization), so
#: a variant that uses half the budget must be 0.1 nats better to win.  On a large
#: GPU the memory term is small and the lowest loss wins; on a phone or a small
#: board it dominates and the 4-bit variants win (the Phi cookbook's advice).
BALANCED_PRICE: Final = 0.2


@dataclass(frozen=True, slots=True)
class Measured:
    """A variant's quality as ranked: loss (nats/token), top-1 agreement, and the evidence."""

    loss: float
    top1: float
    basis: str


def _top1_loss(top1: float) -> float:
    return 8.0 * (1.0 - top1) ** 2


def measured(e: IndexEntry) -> Measured:
    """The loss and top-1 agreement the ranking uses for ``e``, and what they rest on."""
    src = e.source_precision
    if src is not None and e.precision.bits >= src.bits:
        return Measured(0.0, 1.0, f"{e.precision} holds every bit of its {src} source: the source's quality")
    m = e.quality.metrics
    top1 = min(1.0, max(0.0, m["top1_agreement"])) if "top1_agreement" in m else -1.0
    if "kl_divergence" in m:
        return Measured(max(0.0, m["kl_divergence"]), top1, f"measured KL divergence {m['kl_divergence']:.4f}")
    ratio = m.get("perplexity_ratio")
    if ratio is None and m.get("reference_perplexity", 0.0) > 0 and "perplexity" in m:
        ratio = m["perplexity"] / m["reference_perplexity"]
    if ratio is not None and ratio > 0:
        return Measured(max(0.0, math.log(ratio)), top1, f"measured perplexity ratio {ratio:.4f}")
    if top1 >= 0:
        return Measured(_top1_loss(top1), top1, f"estimated from measured top-1 agreement {top1:.3f}")
    bits = e.precision.bits
    return Measured(FALLBACK_LOSS.get(bits, 0.05), top1,
                    f"no measurement: estimated from {bits} bits per weight")


def balanced_cost(loss: float, needed: int, budget: int) -> float:
    """``balanced``'s objective: loss plus :data:`BALANCED_PRICE` per whole budget used."""
    return loss + BALANCED_PRICE * (needed / budget if budget > 0 else 1.0)


def _vendor(c: Candidate) -> bool:
    rt = c.entry.runtime
    return c.target is not None and is_vendor_path(rt.distribution, rt.provider, family_of(c.target.tag))


def _q(c: Candidate) -> str:
    q = measured(c.entry)
    return f"loss {q.loss:.4f} ({q.basis})"


def decision(c: Candidate, best: Candidate, prefer: Prefer, hardware_rank: Mapping[str, int]) -> tuple[str, str]:
    """The rule of :func:`.resolve.preference_key` that put ``best`` before ``c``, and why, in words.

    Walks the keys in the order ``preference_key`` compares them and names
    the first that differs: ``--explain`` shows it for the top two.
    """
    e, b = c.entry, best.entry
    if e.version != b.version:
        return "newest version", f"older version than {b.version}"
    if (c.runtime_version is None) != (best.runtime_version is None):
        rt = e.runtime if c.runtime_version is None else b.runtime
        who = c.label if c.runtime_version is None else best.label
        return "runtime installed", f"runtime not installed for {who}: pip install '{rt.distribution}{rt.specifier}'"
    assert c.target is not None and best.target is not None
    if hardware_rank[c.target.tag] != hardware_rank[best.target.tag]:
        return ("hardware order", f"runs on {c.target.tag} ({c.target.hardware}, {c.target.pool}), "
                f"below {best.target.tag} in this device's order")
    if _vendor(c) != _vendor(best):
        return ("vendor runtime first", f"{b.runtime.distribution} ({b.runtime.provider}) is the vendor's own runtime "
                f"on {family_of(best.target.tag)} (manifests/runtimes.py); {e.runtime.distribution} is not")
    qc, qb = measured(e), measured(b)
    name = str(prefer)
    if name == "balanced":
        cost_c, cost_b = balanced_cost(qc.loss, c.needed, c.budget), balanced_cost(qb.loss, best.needed, best.budget)
        if cost_c != cost_b or qc.loss != qb.loss:
            share_c, share_b = c.needed / max(c.budget, 1), best.needed / max(best.budget, 1)
            return ("prefer balanced", f"cost {cost_c:.4f} = {_q(c)} + {BALANCED_PRICE:g} x {share_c:.0%} of the "
                    f"budget, above {b.variant}'s {cost_b:.4f} = {_q(best)} + {BALANCED_PRICE:g} x {share_b:.0%}")
    elif name == "quality":
        if qc.loss != qb.loss:
            return "prefer quality", f"higher {_q(c)} than {b.variant}'s {_q(best)}"
        if qc.top1 != qb.top1:
            return "prefer quality", f"lower top-1 agreement {qc.top1:.3f} than {b.variant}'s {qb.top1:.3f}"
    elif name == "size":
        if e.size != b.size:
            return "prefer size", f"larger download {human_bytes(e.size)} than {human_bytes(b.size)}"
        if qc.loss != qb.loss:
            return "prefer size", f"same size, higher {_q(c)}"
    else:
        if e.memory.weights_bytes != b.memory.weights_bytes:
            return ("prefer speed", f"more weights to read per token {human_bytes(e.memory.weights_bytes)} than "
                    f"{human_bytes(b.memory.weights_bytes)}")
        if qc.loss != qb.loss:
            return "prefer speed", f"same weights, higher {_q(c)}"
    if c.needed != best.needed or e.size != b.size:
        return f"prefer {name}", f"equal quality, needs {human_bytes(c.needed)} against {human_bytes(best.needed)}"
    if c.target.rank != best.target.rank:
        return "most specific tag", f"targets {c.target.tag}, less specific than {best.target.tag}"
    return "variant id", f"ranked after {b.variant} by {name}, then variant id"
