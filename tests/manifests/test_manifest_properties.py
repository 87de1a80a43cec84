"""Property tests (hypothesis) over the parsers and the target ranking, including hostile input
(SECURITY.md, hostile numbers and nesting: oversized integers, deep nesting, structure hidden in strings)."""

from __future__ import annotations

import json
import ntpath
import posixpath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phi_get.manifests import ManifestError, parse_device_profile, parse_manifest, parse_model_index, supported_targets
from phi_get.manifests.canonical import MAX_DEPTH, _json_too_deep, load_toml_document
from phi_get.manifests.device import OS, Accelerator, AcceleratorType, Arch, DeviceProfile, Vendor
from phi_get.manifests.lockfile import parse_lock
from phi_get.manifests.manifest import (
    FileEntry,
    Format,
    Manifest,
    MemoryNeeds,
    Precision,
    Provenance,
    Quality,
    QualityCheck,
    RuntimeRequirement,
    Source,
    manifest_from_json,
)
from phi_get.manifests.names import check_relative_path
from phi_get.manifests.project import parse_project
from phi_get.manifests.targets import KNOWN_TAGS

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12).filter(
    lambda s: s not in WINDOWS_DEVICES)  # refused by design: see test_manifest_rejects
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
safe_paths = st.lists(segment, min_size=1, max_size=4).map("/".join)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    paths = draw(st.lists(safe_paths, min_size=1, max_size=5, unique_by=str.casefold))
    # a path may not lie inside another file: keep only leaf-free sets
    paths = [p for p in paths if not any(q != p and q.casefold().startswith(p.casefold() + "/") for q in paths)
             and not any(p.casefold().startswith(q.casefold() + "/") for q in paths)] or ["model.bin"]
    version = draw(st.sampled_from(["0.1.0", "1.0.0", "2024.8.20", "1.0.0rc1", "3.post2"]))
    return Manifest(
        name=draw(st.sampled_from(["tiny-phi", "phi-3.5-mini", "phi-4-mini"])),
        version=__import__("packaging.version").version.Version(version),
        variant=draw(st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}[a-z0-9]\Z")),
        format=draw(st.sampled_from(list(Format))),
        precision=draw(st.sampled_from(list(Precision))),
        quantization=draw(st.sampled_from(["q4_k_m", "none", "int4-sym-g64", "rtn-block-32"])),
        targets=tuple(draw(st.lists(st.sampled_from(sorted(KNOWN_TAGS)), min_size=1, max_size=5, unique=True))),
        runtime=RuntimeRequirement(distribution="llama-cpp-python",
                                   specifier=__import__("packaging.specifiers").specifiers.SpecifierSet(">=0.3"),
                                   provider=draw(st.sampled_from(["cpu", "cuda", "dml"]))),
        memory=MemoryNeeds(weights_bytes=draw(st.integers(0, 1 << 40)), kv_bytes_per_token=draw(st.integers(0, 1 << 20)),
                           max_context=draw(st.integers(1, 1 << 20)), overhead_bytes=draw(st.integers(0, 1 << 40)),
                           compute_bytes_per_token=draw(st.integers(0, 1 << 20))),
        files=tuple(FileEntry(path=p, size=draw(st.integers(0, 1 << 40)), sha256=draw(hexes)) for p in paths),
        provenance=Provenance(source=Source(local_sha256=draw(hexes)), recipe={"id": "x"}, builder="phi-get 0.1.0",
                              tools={"gguf": "0.19.0"}, command=("phi-get", "build"), created="2026-11-26T09:00:00Z"),
        quality=Quality(check=draw(st.sampled_from(list(QualityCheck))),
                        metrics={"perplexity": draw(st.floats(0, 1e6, allow_nan=False))}),
        architecture={"class": "Phi3ForCausalLM"},
    )


@given(manifests())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_manifest_round_trips_and_digest_is_stable(m: Manifest) -> None:
    data = m.to_bytes()
    again = parse_manifest(data)
    assert again == m
    assert again.to_bytes() == data
    assert again.digest == m.digest
    # key order in the input does not matter: canonical form is the identity
    shuffled = json.dumps(dict(reversed(list(json.loads(data).items()))), indent=2).encode()
    assert parse_manifest(shuffled).digest == m.digest


@given(json_values)
@settings(max_examples=300)
def test_manifest_parser_raises_only_manifest_error(doc: Any) -> None:
    try:
        manifest_from_json(doc)
    except ManifestError:
        pass


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_parsers_on_arbitrary_bytes(data: bytes) -> None:
    for parser in (parse_manifest, parse_device_profile, parse_model_index):
        try:
            parser(data)
        except ManifestError:
            pass


@given(st.text(max_size=60) | st.lists(st.sampled_from(["..", ".", "a", "b", "", "C:", "\\", "/", "nul", "x "]),
                                       max_size=6).map("/".join))
@settings(max_examples=500)
def test_accepted_paths_never_escape(path: str) -> None:
    try:
        accepted = check_relative_path(path)
    except ManifestError:
        return
    for flavour in (posixpath, ntpath):
        joined = flavour.normpath(flavour.join("base", accepted))
        assert joined == "base" + flavour.sep + flavour.normpath(accepted)
        assert not flavour.isabs(accepted)
        assert ".." not in accepted.split("/")


@st.composite
def profiles(draw: st.DrawFn) -> DeviceProfile:
    accs = draw(st.lists(st.builds(
        Accelerator,
        type=st.sampled_from(list(AcceleratorType)), vendor=st.sampled_from(list(Vendor)), name=st.just("acc"),
        memory_bytes=st.none() | st.integers(1, 1 << 40),
        compute_capability=st.none() | st.sampled_from(["7.5", "8.0", "8.6", "9.0", "12.0"]),
        unified_memory=st.booleans(),
    ), max_size=4))
    return DeviceProfile(
        os=draw(st.sampled_from(list(OS))), arch=draw(st.sampled_from(list(Arch))),
        cpu_flags=frozenset(draw(st.lists(st.sampled_from(["avx2", "avx512f", "sse4_2", "asimddp", "i8mm", "sve"])))),
        memory_bytes=draw(st.integers(1, 1 << 40)), accelerators=tuple(accs),
    )


@given(profiles())
@settings(max_examples=300)
def test_ranking_is_total_and_ends_with_the_cpu(p: DeviceProfile) -> None:
    targets = supported_targets(p)
    tags = [t.tag for t in targets]
    assert len(tags) == len(set(tags))
    assert [t.rank for t in targets] == list(range(len(targets)))
    assert tags[-1] in ("cpu-x86_64", "cpu-arm64")
    first_cpu = next(i for i, t in enumerate(tags) if t.startswith("cpu-"))
    assert all(t.startswith("cpu-") for t in tags[first_cpu:])
    assert supported_targets(p) == targets  # deterministic
    assert parse_device_profile(p.to_bytes()) == p


# ---- hostile numbers and nesting (SECURITY.md) ----------------------------------------------


# Strings that look like structure: brackets, quotes, escapes, dots, comment marks.
tricky_text = st.text(alphabet='[]{}"\\\'.#=,ab \n\u0131', max_size=12)
hostile_ints = st.integers(min_value=2**63, max_value=10**400) | st.integers(max_value=-(2**63) - 1, min_value=-(10**400))
hostile_fragments = st.sampled_from([
    b"[" * 70 + b"]" * 70, b"[" * 5000, b"{\"a\":" * 100, b"9" * 5000, b"-" + b"9" * 4400, b"1e99999", b'"\\ud800"',
    b'"\\udc00\\ud800"', b"NaN", b"-Infinity", b"\xff", b"\"\\", b"0" * 5000,
])


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@st.composite
def nested_json(draw: st.DrawFn) -> Any:
    """A JSON value wrapped in up to 80 arrays and objects, strings full of brackets and escapes beside."""
    value: Any = draw(st.recursive(st.none() | st.integers() | tricky_text, lambda c: st.lists(c, max_size=3)
                                   | st.dictionaries(tricky_text, c, max_size=3), max_leaves=8))
    for _ in range(draw(st.integers(0, 80))):
        noise = draw(tricky_text)
        value = draw(st.sampled_from([[noise, value], [value], {noise: value}, {"k": value, noise: noise}]))
    return value


@given(nested_json(), st.booleans())
@settings(max_examples=400, deadline=None)
def test_depth_scan_is_exact_for_valid_json(value: Any, ascii_only: bool) -> None:
    """The byte-level depth scan agrees with the parsed depth on every valid document."""
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    assert _json_too_deep(raw) == (_depth(value) > MAX_DEPTH)


@given(st.lists(hostile_fragments | st.binary(max_size=8) | tricky_text.map(str.encode), max_size=6).map(b"".join))
@settings(max_examples=400, deadline=None)
def test_hostile_json_bytes_raise_only_manifest_error(data: bytes) -> None:
    for parser in (parse_manifest, parse_device_profile, parse_model_index):
        try:
            parser(data)
        except ManifestError:
            pass


@given(hostile_ints)
@settings(max_examples=200, deadline=None)
def test_oversized_integers_anywhere_in_a_manifest_are_named(big: int) -> None:
    """An integer past 64 bits in any field, known or free-form, is a ManifestError, never a crash."""
    from phi_get.manifests.canonical import canonical_bytes

    base = json.loads((__import__("pathlib").Path(__file__).parents[1] / "data" / "manifests"
                       / "good-manifest.json").read_text())
    for path in (("files", 0, "size"), ("memory", "weights_bytes"), ("architecture", "layers"),
                 ("provenance", "recipe", "x"), ("quality", "metrics", "perplexity")):
        mutated = json.loads(json.dumps(base))
        target = mutated
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = big * 10**31 if path[0] == "quality" else big  # metrics are floats up to 1e30
        try:
            canonical_bytes(parse_manifest(json.dumps(mutated).encode()).to_json())
        except ManifestError as exc:
            assert exc.field.startswith(path[0]), (path, str(exc))
        else:
            raise AssertionError(f"{path} accepted {big}")


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        return '""'
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")
    return str(value)


@given(nested_json())
@settings(max_examples=300, deadline=None)
def test_toml_scan_never_refuses_a_shallow_document(value: Any) -> None:
    """TOML inline tables and arrays with tricky strings: accepted when at most 64 deep, refused beyond."""
    import tomllib

    text = f"x = {_toml_value(value)}\n# {_toml_value(value)}\n"
    expected_depth = 1 + _depth(value)  # the top-level table counts
    try:
        tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return  # e.g. TOML arrays of mixed types in old grammars; not this scan's concern
    if expected_depth > MAX_DEPTH:
        with pytest.raises(ManifestError, match="nested more than 64"):
            load_toml_document(text, limit=1 << 20, document="t")
    else:
        assert load_toml_document(text, limit=1 << 20, document="t") == tomllib.loads(text)


@given(st.lists(st.sampled_from(["[", "]", "{", "}", ".", "=", '"', "'", "#", "\n", "x", "1", " ", "9" * 5000,
                                 "a" + ".a" * 200, "[" * 70, "x = ", "[models]\n", "'''", '"""', "\\",
                                 "\nx = " + "9" * 5000 + "\n", "\ny = " + "[" * 2000, "\nz = 1979-05-27\n"]), max_size=12)
       .map("".join))
@settings(max_examples=300, deadline=None)
def test_hostile_toml_raises_only_manifest_error(text: str) -> None:
    for parser in (parse_project, parse_lock):
        try:
            parser(text)
        except ManifestError:
            pass
