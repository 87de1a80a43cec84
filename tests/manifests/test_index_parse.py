"""The fast index parser (entries rebuilt from parts already accepted) agrees with the field-by-field parse.

``model_index_from_json`` reuses parsed runtimes, memory needs, qualities,
targets and versions across the entries of one document.  The reference
below is the parse every entry went through before (``IndexEntry.from_reader``
on each, duplicates checked with ``Version`` keys); for documents that mix
valid repeated entries with one entry mutated in one field, both must give
the same entries (same canonical bytes, same types) or the same error text.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.fields import Reader
from phi_get.manifests.index import INDEX_SCHEMA, IndexEntry, ModelIndex, model_index_from_json, parse_model_index
from phi_get.manifests.names import check_model_name

BASE: dict[str, Any] = {
    "version": "1.0.0", "variant": "gguf-q4", "manifest": "sha256:" + "a" * 64, "format": "gguf",
    "precision": "int4", "quantization": "q4_k_m", "targets": ["cpu-x86_64", "cuda"],
    "runtime": {"distribution": "llama-cpp-python", "specifier": ">=0.3", "provider": "cpu"},
    "memory": {"weights_bytes": 2_000_000_000, "kv_bytes_per_token": 393216, "max_context": 4096,
               "overhead_bytes": 50_000_000},
    "size": 2_100_000_000,
    "quality": {"check": "runtime", "metrics": {"top1_agreement": 0.9, "perplexity": 7}, "evaluation": {"text": "x"}},
}

#: (path to a field, inside BASE) for the mutations.
FIELDS = [("version",), ("variant",), ("manifest",), ("format",), ("precision",), ("quantization",), ("targets",),
          ("size",), ("yanked",), ("runtime",), ("runtime", "distribution"), ("runtime", "specifier"),
          ("runtime", "provider"), ("memory",), ("memory", "weights_bytes"), ("memory", "kv_bytes_per_token"),
          ("memory", "max_context"), ("memory", "overhead_bytes"), ("memory", "compute_bytes_per_token"), ("quality",), ("quality", "check"), ("quality", "metrics"),
          ("quality", "metrics", "top1_agreement"), ("quality", "metrics", "perplexity"), ("quality", "evaluation"),
          ("quality", "evaluation", "text"), ("quality", "note")]

DELETE = object()
#: Valid and nearly valid values of the fields above, drawn more often than arbitrary ones.
NEAR = st.sampled_from([
    "", "1.0", "1.0.0", "2.0", "gguf", "onnx", "int4", "fp16", "cuda", "cpu-arm64", "bogus-tag", "runtime",
    "structural", "q4_k_m", "Q4", "llama-cpp-python", ">=0.3", "not a spec", "cpu", "CPU", "gguf-q4", "-x", "x\x00y",
    "a" * 2000, "sha256:" + "b" * 64, "sha256:" + "B" * 64, 0, 7, 4096, 4096.0, 0.0, -0.0, 0.9, True, False, None,
    ["cuda"], ["cuda", "cuda"], ["cuda", 1], [], {}, {"top1_agreement": 0.5}, {"a": "b"}, {"a": 1},
])
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2, max_value=2**45),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5))
values = st.one_of(NEAR, NEAR, NEAR, scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(["a", "top1_agreement"]), scalars, max_size=2), st.just(DELETE))


def reference(data: object, document: str = "model index") -> ModelIndex:
    """The parse before the fast path: every entry through from_reader, duplicates keyed by Version."""
    r = Reader(data, document=document)
    r.schema(INDEX_SCHEMA)
    entries = tuple(IndexEntry.from_reader(e) for e in r.objects("variants", max_items=200_000))
    seen: set[tuple[Version, str]] = set()
    for i, e in enumerate(entries):
        if (e.version, e.variant) in seen:
            raise r.error(f"variants[{i}]", "duplicate version and variant", f"{e.version} {e.variant}")
        seen.add((e.version, e.variant))
    return ModelIndex(name=check_model_name(r.text("name", max_len=128), "name", document), entries=entries)


def outcome(parse: Any, doc: dict[str, Any]) -> tuple[str, object]:
    try:
        index = parse(copy.deepcopy(doc))
    except ManifestError as exc:
        return "error", str(exc)
    shapes = [(type(e.size), tuple(type(v) for v in e.quality.metrics.values()),
               tuple(math.copysign(1, v) for v in e.quality.metrics.values())) for e in index.entries]
    return "ok", (index.entries, index.to_bytes(), shapes)


def mutated(path: tuple[str, ...], value: object, version: str, variant: str) -> dict[str, Any]:
    entry = {**copy.deepcopy(BASE), "version": version, "variant": variant}
    if not path:
        return entry
    target = entry
    for key in path[:-1]:
        target = target[key]
        if not isinstance(target, dict):
            return entry
    if value is DELETE:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return entry


def seeded() -> list[dict[str, Any]]:
    """Entries that teach the parser every part of BASE, both versions and both variant ids."""
    return [mutated((), None, "1.0.0", "a"), mutated((), None, "2.0.0", "b"), mutated((), None, "2.0.0", "m"),
            mutated((), None, "2.0.0", "a")]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(path=st.sampled_from(FIELDS), value=values, position=st.integers(0, 3), also=st.sampled_from(FIELDS),
       other=values)
def test_fast_parse_matches_the_field_by_field_parse(path: tuple[str, ...], value: object, position: int,
                                                      also: tuple[str, ...], other: object) -> None:
    variants = seeded()
    # The same mutation twice: the second is built from what the first (if accepted) left in the caches.
    variants.insert(position, mutated(path, value, "1.0.0", "m"))
    variants.insert(position, mutated(path, value, "1.0.0", "b"))
    variants.append(mutated(also, other, "1.0.0", "a" if position % 2 else "c"))
    doc = {"schema": INDEX_SCHEMA, "name": "phi-3.5-mini", "variants": variants}
    assert outcome(model_index_from_json, doc) == outcome(reference, doc)


@pytest.mark.parametrize(("first", "second"), [("1.0", "1.0.0"), ("1.0.0", "1.0.0"), ("2.0", "2.0.0.0")])
def test_equal_versions_written_differently_are_duplicates(first: str, second: str) -> None:
    doc = {"schema": INDEX_SCHEMA, "name": "m", "variants": [{**BASE, "version": first}, {**BASE, "version": second}]}
    with pytest.raises(ManifestError, match=r"variants\[1\].*duplicate version and variant"):
        model_index_from_json(doc)


@pytest.mark.parametrize(("path", "first", "second"), [
    (("memory", "max_context"), 4096, 4096.0),
    (("memory", "weights_bytes"), 1, True),
    (("size",), 5, 5.0),
    (("quality", "metrics", "perplexity"), 1, True),
    (("quality", "metrics", "top1_agreement"), 0.0, -0.0),
    (("quality", "metrics", "top1_agreement"), -0.0, 0.0),
    (("quality", "metrics", "perplexity"), 7.0, 7),
    (("quality", "note"), "n", 1),
    (("runtime", "provider"), "cpu", None),
    (("targets",), ["cuda"], ["cuda", 1]),
    (("yanked",), "bad", "x" * 1025),
    (("yanked",), "bad", ""),
    (("yanked",), "bad", "x\x00y"),
    (("variant",), "b", "B"),
    (("quantization",), "q4_k_m", "q" * 65),
])
def test_reused_parts_keep_json_types_apart(path: tuple[str, ...], first: object, second: object) -> None:
    """``1``, ``1.0`` and ``true`` (and ``0.0``, ``-0.0``) compare equal in Python; the parse must not mix them.

    The last entry can be built from parts: its version and variant id are
    known, and its part equals (in Python) the one the third entry taught.
    """
    doc = {"schema": INDEX_SCHEMA, "name": "m", "variants": [
        mutated((), None, "1.0.0", "a"), mutated((), None, "2.0.0", "b"), mutated(path, first, "1.0.0", "b"),
        mutated(path, second, "2.0.0", "a")]}
    assert outcome(model_index_from_json, doc) == outcome(reference, doc)
    assert outcome(reference, {**doc, "variants": doc["variants"][:3]})[0] == "ok"


def test_repeated_parts_are_reused() -> None:
    """The point of the fast path: later entries share the parsed parts of earlier ones."""
    index = model_index_from_json({"schema": INDEX_SCHEMA, "name": "m", "variants": seeded()})
    first, last = index.entries[0], index.entries[-1]
    assert last.runtime is first.runtime and last.quality is first.quality and last.targets is first.targets
    # One Version object per version: the resolver groups 100,000 entries by it at identity speed.
    assert index.entries[1].version is index.entries[2].version is last.version


def test_parse_restores_the_garbage_collector() -> None:
    import gc

    data = (b'{"schema":"phi-get.index/v1","name":"m","variants":[]}')
    assert gc.isenabled()
    parse_model_index(data)
    assert gc.isenabled()
    gc.disable()
    try:
        parse_model_index(data)
        assert not gc.isenabled()
    finally:
        gc.enable()
