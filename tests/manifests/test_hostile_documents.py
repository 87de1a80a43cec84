"""The spec layer's refusals of hostile documents, with their exact texts (SECURITY.md: hostile numbers and nesting, names that look alike, pickles, typos).

The real CLI runs the same attacks in tests/resolver/test_hostile_documents.py and the
registry in tests/registry/test_registry_hostile_requests.py; here each rule is pinned once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from phi_get.manifests import ManifestError, parse_manifest
from phi_get.manifests.canonical import check_plain_data, load_json_document, load_toml_document
from phi_get.manifests.fields import Reader
from phi_get.manifests.lockfile import parse_lock
from phi_get.manifests.manifest import manifest_from_json
from phi_get.manifests.names import check_digest, check_model_name, check_relative_path, check_variant_id, path_key
from phi_get.manifests.recipe import load_variant_catalog, parse_recipe, parse_variant_catalog


def parse(doc: dict[str, Any]) -> Any:
    return parse_manifest(json.dumps(doc).encode())


# ---- names that look alike (class 7) ----------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-ph\u0131", "tiny-phi\n", "tiny-\u212aphi", "tiny-phi\u017f", "\uff54iny-phi"])
def test_model_names_are_ascii_and_whole(name: str) -> None:
    """Look-alike letters (dotless i, Kelvin sign, long s, fullwidth t) and a trailing newline."""
    with pytest.raises(ManifestError) as info:
        check_model_name(name)
    assert str(info.value) == ("invalid document at name: a model name is 1-128 letters, digits, '.', '_' or '-', "
                               f"starting and ending with a letter or digit (got {name!r})")


def test_variants_and_digests_are_matched_whole() -> None:
    """A trailing newline passed Python's '$'."""
    with pytest.raises(ManifestError, match=r"^invalid document at variant: a variant id is"):
        check_variant_id("gguf-q4_k_m\n")
    with pytest.raises(ManifestError, match=r"^invalid document at digest: expected 'sha256:' followed by 64"):
        check_digest("sha256:" + "a" * 64 + "\n")


def test_look_alike_name_in_a_manifest_is_refused(good_manifest: dict[str, Any]) -> None:
    good_manifest["name"] = "tiny-ph\u0131"
    with pytest.raises(ManifestError, match=r"^invalid manifest at name: a model name is"):
        parse(good_manifest)


# ---- file names: one Unicode spelling (class 8) -----------------------------------------------

def test_paths_must_be_nfc(good_manifest: dict[str, Any]) -> None:
    """'café' decomposed (NFD) beside 'café' composed: two names here, one file on macOS and Windows.
    Paths must be NFC, so each name has one spelling and the manifest hashes what file systems show."""
    good_manifest["files"][0]["path"] = "docs/cafe\u0301.txt"
    with pytest.raises(ManifestError) as info:
        parse(good_manifest)
    assert str(info.value) == ("invalid manifest at files[0].path: path is not in Unicode NFC form: write it "
                               "composed (NFC), as file systems show it (got 'docs/cafe\u0301.txt')")


@pytest.mark.parametrize(("path", "reason"), [
    ("model\u202egguf.exe", "path contains an invisible formatting character"),
    ("model\u200b.gguf", "path contains an invisible formatting character"),
    ("model\x85.gguf", "path contains a control character"),
])
def test_paths_with_invisible_or_control_characters(path: str, reason: str) -> None:
    """A right-to-left override shows 'model\\u202egguf.exe' as 'modelexe.fugg': a name that is not what it looks."""
    with pytest.raises(ManifestError, match=f"^invalid document at path: {reason}"):
        check_relative_path(path)


def test_duplicates_are_found_after_nfc_and_case_folding(good_manifest: dict[str, Any]) -> None:
    good_manifest["files"][0]["path"] = "caf\u00e9.gguf"
    good_manifest["files"][1]["path"] = "CAF\u00c9.GGUF"
    with pytest.raises(ManifestError, match=r"at files\[1\]\.path: duplicate path \(same as 'caf\u00e9.gguf'\)"):
        parse(good_manifest)
    assert path_key("J\u030c.txt") == path_key("\u01f0.txt")  # case folding decomposes; NFC again recomposes


def test_ten_thousand_files_are_checked_in_linear_time(good_manifest: dict[str, Any]) -> None:
    """Absurd sizes: the file-inside-a-file check compared every pair (11 s for 10,000 files)."""
    import time

    entry = good_manifest["files"][0]
    good_manifest["files"] = [dict(entry, path=f"d{i % 100}/f{i}") for i in range(10_000)]
    started = time.monotonic()
    assert len(manifest_from_json(good_manifest).files) == 10_000
    assert time.monotonic() - started < 2.0


# ---- hostile numbers and nesting (class 4) -----------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    (b'{"a":' + b"9" * 5000 + b"}", "invalid d: not JSON: an integer has more than 4300 digits"),
    (b"[" * 65 + b"]" * 65, "invalid d: nested more than 64 arrays or objects deep"),
    (b"[" * 100_000, "invalid d: nested more than 64 arrays or objects deep"),
    (b'["\\ud800"]', "invalid d: a string holds a lone UTF-16 surrogate escape, which is not Unicode text"),
])
def test_json_loader_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_json_document(data, limit=1 << 20, document="d")
    assert str(info.value) == message


def test_json_loader_accepts_what_only_looks_deep() -> None:
    nested: Any = 1
    for _ in range(60):
        nested = [nested, ']]]]\\"{{']
    doc = json.dumps({"a": "[" * 100 + '"\\', "b": nested}).encode()
    assert load_json_document(doc, limit=1 << 20, document="d")["a"].startswith("[" * 100)
    assert load_json_document(b"[" * 64 + b"]" * 64, limit=1 << 20, document="d") is not None


@pytest.mark.parametrize(("text", "message"), [
    ("x = " + "9" * 5000, "invalid t: not TOML: an integer has more than 4300 digits"),
    ("x = " + "[" * 3000 + "]" * 3000, "invalid t: nested more than 64 arrays or objects deep"),
    ("x" + ".x" * 100_000 + " = 1", "invalid t: nested more than 64 arrays or objects deep"),
    ("[" + ".".join(["t"] * 100) + "]", "invalid t: nested more than 64 arrays or objects deep"),
    ("x = 1979-05-27T07:32:00Z", "invalid t at x: dates and times are not used in phi-get documents "
                                 "(got '1979-05-27 07:32:00+00:00')"),
])
def test_toml_loader_refusals(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_toml_document(text, limit=1 << 20, document="t")
    assert str(info.value) == message


def test_toml_loader_accepts_structure_inside_strings_and_comments() -> None:
    text = "".join(f'a{i} = "[[[[{{{{...."\nb{i} = \'[[[[....\'\n# [[[[[[[....\nc{i} = """\n[[[[\n"""\n'
                   for i in range(40))
    assert load_toml_document(text, limit=1 << 20, document="t")["a0"] == "[[[[{{...."


@pytest.mark.parametrize(("value", "message"), [
    ({"layers": 2**64}, "invalid m at architecture.layers: integers are limited to 64 bits (got 18446744073709551616)"),
    ({"x": [float("inf")]}, "invalid m at architecture.x[0]: must be a finite number (got inf)"),
    ({"when": object()}, "invalid m at architecture.when: a object is not JSON data"),
])
def test_free_form_data_is_plain(value: Any, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        check_plain_data(value, field="architecture", document="m")
    assert str(info.value) == message


def test_number_fields_refuse_what_is_not_a_finite_float() -> None:
    r = Reader({"a": 10**400, "b": float("inf")}, "quality.metrics", "index")
    with pytest.raises(ManifestError, match=r"^invalid index at quality\.metrics\.a: must be a finite number"):
        r.number("a")
    with pytest.raises(ManifestError, match=r"^invalid index at quality\.metrics\.b: must be a finite number"):
        r.number("b")


# ---- unknown keys in hand-written TOML (class 8) -----------------------------------------------

RECIPE = """schema = "phi-get.recipe/v1"
name = "tiny-phi"
version = "0.1.0"
[source]
local = true
[matrix]
variants = ["gguf-q4_k_m"]
"""


@pytest.mark.parametrize(("old", "new", "message"), [
    ("[matrix]", "[matrix]\nextras = []", "invalid recipe at matrix.extras: unknown key 'extras' in [matrix]; "
                                          "did you mean 'extra'?"),
    ("[source]", "[sources]\n[source]", "invalid recipe at sources: unknown key 'sources' at the top level; "
                                        "did you mean 'source'?"),
    ("local = true", "local = true\nrevison = \"x\"", "invalid recipe at source.revison: unknown key 'revison' in "
                                                      "[source]; did you mean 'revision'?"),
])
def test_recipe_refuses_unknown_keys(old: str, new: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_recipe(RECIPE.replace(old, new, 1), load_variant_catalog())
    assert str(info.value) == message


def test_variant_catalog_refuses_unknown_keys() -> None:
    text = """schema = "phi-get.variants/v1"
[[variant]]
id = "x"
format = "gguf"
precision = "int4"
quantization = "q4_k_m"
targets = ["cpu-x86_64"]
refernce = true
runtime = { distribution = "llama-cpp-python", specifier = ">=0.3" }
"""
    with pytest.raises(ManifestError) as info:
        parse_variant_catalog(text)
    assert str(info.value) == ("invalid variants.toml at variant[0].refernce: unknown key 'refernce' in [[variant]]; "
                               "did you mean 'reference'?")


LOCK = """lock-version = "1.MINOR"
created-by = "phi-get 0.1.0"
inputs = "sha256:{hex}"
EXTRA
[[device-class]]
name = "edge"
profile = "pi-board"
profile-sha256 = "{hex}"
targets = ["cpu-arm64"]
""".replace("{hex}", "a" * 64)


def test_lock_refuses_unknown_keys_of_its_own_version() -> None:
    with pytest.raises(ManifestError) as info:
        parse_lock(LOCK.replace("MINOR", "0").replace("EXTRA", 'signature = "x"'))
    assert str(info.value) == ("invalid phi.lock at signature: unknown key 'signature' at the top level; the known "
                               "keys are artifact, created-by, device-class, inputs, lock-version")


def test_lock_of_a_newer_minor_may_add_keys() -> None:
    lock = parse_lock(LOCK.replace("MINOR", "7").replace("EXTRA", 'signature = "x"'))
    assert lock.newer_minor and [c.name for c in lock.device_classes] == ["edge"]
