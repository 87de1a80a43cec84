"""MemoryNeeds: the one memory formula, its inverse, and manifests from before the runtime overhead."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from phi_get.manifests.fields import Reader
from phi_get.manifests.manifest import MemoryNeeds

OLD = {"weights_bytes": 2_000_000_000, "kv_bytes_per_token": 393216, "max_context": 4096}


def test_a_manifest_without_the_overhead_fields_reads_them_as_zero_and_keeps_its_bytes() -> None:
    m = MemoryNeeds.from_reader(Reader(OLD, document="manifest"))
    assert (m.overhead_bytes, m.compute_bytes_per_token) == (0, 0)
    assert m.total_bytes(1000) == 2_000_000_000 + 393216 * 1000  # the claim of a manifest without the overhead fields
    assert m.to_json() == OLD  # written only when non-zero: the old manifest's canonical bytes


def test_the_overhead_fields_round_trip_and_enter_the_one_formula() -> None:
    doc = {**OLD, "overhead_bytes": 60_000_000, "compute_bytes_per_token": 128_256}
    m = MemoryNeeds.from_reader(Reader(doc, document="manifest"))
    assert m.to_json() == doc
    assert m.total_bytes(2048) == 2_000_000_000 + 60_000_000 + (393216 + 128_256) * 2048


@given(weights=st.integers(0, 1 << 36), kv=st.integers(0, 1 << 20), compute=st.integers(0, 1 << 18),
       overhead=st.integers(0, 1 << 30), max_context=st.integers(1, 1 << 18), budget=st.integers(0, 1 << 38))
def test_context_within_is_the_inverse_of_total_bytes(weights: int, kv: int, compute: int, overhead: int,
                                                     max_context: int, budget: int) -> None:
    m = MemoryNeeds(weights_bytes=weights, kv_bytes_per_token=kv, max_context=max_context, overhead_bytes=overhead,
                    compute_bytes_per_token=compute)
    ctx = m.context_within(budget)
    assert 0 <= ctx <= max_context
    if ctx > 0:
        assert m.total_bytes(ctx) <= budget
    if ctx < max_context and (ctx > 0 or m.total_bytes(0) <= budget):
        assert m.total_bytes(ctx + 1) > budget
