"""Every rejected input of the foundation issue, each with its exact error text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from phi_get.manifests import ManifestError, SchemaVersionError, parse_manifest
from phi_get.manifests.errors import DocumentTooLargeError
from phi_get.manifests.manifest import manifest_from_json


def parse(doc: dict[str, Any]) -> Any:
    return parse_manifest(json.dumps(doc).encode())


def test_good_manifest_parses(good_manifest: dict[str, Any]) -> None:
    m = parse(good_manifest)
    assert m.name == "tiny-phi" and str(m.version) == "0.1.0"
    assert [f.path for f in m.files] == ["model.gguf", "docs/README.md"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../x", "invalid manifest at files[0].path: '.' and '..' components are not allowed (got '../x')"),
        ("/x", "invalid manifest at files[0].path: absolute paths are not allowed (got '/x')"),
        ("a/../../b", "invalid manifest at files[0].path: '.' and '..' components are not allowed (got 'a/../../b')"),
        ("C:\\x", "invalid manifest at files[0].path: backslashes are not allowed; use '/' as the separator (got 'C:\\\\x')"),
        ("C:x", "invalid manifest at files[0].path: Windows drive paths are not allowed (got 'C:x')"),
        ("C:/x", "invalid manifest at files[0].path: Windows drive paths are not allowed (got 'C:/x')"),
        ("\\\\host\\share", "invalid manifest at files[0].path: UNC and network paths are not allowed (got '\\\\\\\\host\\\\share')"),
        ("//host/share", "invalid manifest at files[0].path: UNC and network paths are not allowed (got '//host/share')"),
        ("a\\..\\b", "invalid manifest at files[0].path: backslashes are not allowed; use '/' as the separator (got 'a\\\\..\\\\b')"),
        ("./x", "invalid manifest at files[0].path: '.' and '..' components are not allowed (got './x')"),
        ("a//b", "invalid manifest at files[0].path: empty path component ('//' or a trailing '/') (got 'a//b')"),
        ("a/", "invalid manifest at files[0].path: empty path component ('//' or a trailing '/') (got 'a/')"),
        ("", "invalid manifest at files[0].path: expected a non-empty relative path (got '')"),
        ("a\x00b", "invalid manifest at files[0].path: path contains a control character (got 'a\\x00b')"),
        ("model.gguf:stream", "invalid manifest at files[0].path: ':' is not allowed in a path (Windows streams and drives) (got 'model.gguf:stream')"),
        ("CON", "invalid manifest at files[0].path: Windows device names are not allowed as path components (got 'CON')"),
        ("dir/nul.txt", "invalid manifest at files[0].path: Windows device names are not allowed as path components (got 'dir/nul.txt')"),
        ("x.", "invalid manifest at files[0].path: a path component may not end with '.' or a space (got 'x.')"),
    ],
)
def test_unsafe_paths_are_rejected(good_manifest: dict[str, Any], path: str, message: str) -> None:
    good_manifest["files"][0]["path"] = path
    with pytest.raises(ManifestError) as info:
        parse(good_manifest)
    assert str(info.value) == message
    assert info.value.field == "files[0].path"
    assert info.value.value == path


def test_path_that_is_not_a_string(good_manifest: dict[str, Any]) -> None:
    good_manifest["files"][1]["path"] = 7
    with pytest.raises(ManifestError, match=r"^invalid manifest at files\[1\]\.path: expected a non-empty relative path \(got 7\)$"):
        parse(good_manifest)


def test_duplicate_paths_are_rejected(good_manifest: dict[str, Any]) -> None:
    good_manifest["files"][1]["path"] = "model.gguf"
    with pytest.raises(ManifestError) as info:
        parse(good_manifest)
    assert str(info.value) == "invalid manifest at files[1].path: duplicate path (same as 'model.gguf') (got 'model.gguf')"


def test_paths_differing_only_in_case_are_duplicates(good_manifest: dict[str, Any]) -> None:
    good_manifest["files"][1]["path"] = "MODEL.gguf"
    with pytest.raises(ManifestError, match=r"at files\[1\]\.path: duplicate path \(same as 'model.gguf'\)"):
        parse(good_manifest)


def test_file_inside_another_file_is_rejected(good_manifest: dict[str, Any]) -> None:
    good_manifest["files"][1]["path"] = "model.gguf/inner"
    with pytest.raises(ManifestError, match=r"at files\[1\]\.path: path lies inside the file 'model.gguf'"):
        parse(good_manifest)


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("abc", "invalid manifest at files[0].sha256: expected 64 lower-case hex digits (got 'abc')"),
        ("G" * 64, "invalid manifest at files[0].sha256: expected 64 lower-case hex digits (got '" + "G" * 64 + "')"),
        ("A" * 64, "invalid manifest at files[0].sha256: expected 64 lower-case hex digits (got '" + "A" * 64 + "')"),
        ("0" * 63, "invalid manifest at files[0].sha256: expected 64 lower-case hex digits (got '" + "0" * 63 + "')"),
        ("sha256:" + "0" * 64, "invalid manifest at files[0].sha256: expected 64 lower-case hex digits (got 'sha256:" + "0" * 64 + "')"),
        (None, "invalid manifest at files[0].sha256: expected 64 lower-case hex digits (got None)"),
    ],
)
def test_malformed_digests_are_rejected(good_manifest: dict[str, Any], digest: Any, message: str) -> None:
    good_manifest["files"][0]["sha256"] = digest
    with pytest.raises(ManifestError) as info:
        parse(good_manifest)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (-1, "invalid manifest at files[0].size: must be at least 0 (got -1)"),
        (1 << 41, "invalid manifest at files[0].size: must be at most 1099511627776 (got 2199023255552)"),
        (10**30, "invalid manifest at files[0].size: must be at most 1099511627776 (got 1000000000000000000000000000000)"),
        (1.5, "invalid manifest at files[0].size: expected an integer, found number (got 1.5)"),
        ("12", "invalid manifest at files[0].size: expected an integer, found string (got '12')"),
        (True, "invalid manifest at files[0].size: expected an integer, found boolean (got True)"),
    ],
)
def test_bad_sizes_are_rejected(good_manifest: dict[str, Any], size: Any, message: str) -> None:
    good_manifest["files"][0]["size"] = size
    with pytest.raises(ManifestError) as info:
        parse(good_manifest)
    assert str(info.value) == message


def test_unknown_major_schema_version_is_rejected(good_manifest: dict[str, Any]) -> None:
    good_manifest["schema"] = "phi-get.manifest/v2"
    with pytest.raises(SchemaVersionError) as info:
        parse(good_manifest)
    assert str(info.value) == (
        "invalid manifest at schema: this phi-get reads phi-get.manifest/v1; "
        "a newer phi-get is needed for this document (got 'phi-get.manifest/v2')"
    )


def test_foreign_schema_is_rejected(good_manifest: dict[str, Any]) -> None:
    good_manifest["schema"] = "something-else"
    with pytest.raises(ManifestError, match=r"^invalid manifest at schema: expected 'phi-get.manifest/v1' \(got 'something-else'\)$"):
        parse(good_manifest)


def test_oversized_document_is_rejected_before_parsing() -> None:
    blob = b"{" + b" " * (1 << 20) + b"}"
    with pytest.raises(DocumentTooLargeError) as info:
        parse_manifest(blob)
    assert str(info.value) == "invalid manifest: document is 1048578 bytes, the limit is 1048576"


def test_too_many_files_is_rejected(good_manifest: dict[str, Any]) -> None:
    entry = good_manifest["files"][0]
    good_manifest["files"] = [dict(entry, path=f"f{i}") for i in range(10_001)]
    with pytest.raises(ManifestError, match=r"^invalid manifest at files: has 10001 items, the limit is 10000$"):
        manifest_from_json(good_manifest)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format", "zip", "invalid manifest at format: expected one of gguf | onnx | openvino | mlx | safetensors (got 'zip')"),
        ("precision", "int3", "invalid manifest at precision: expected one of int4 | int8 | fp16 | bf16 | fp32 (got 'int3')"),
        ("version", "one", "invalid manifest at version: not a valid PEP 440 version (got 'one')"),
        ("name", "../evil", "invalid manifest at name: a model name is 1-128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit (got '../evil')"),
        ("variant", "Q4 K M", "invalid manifest at variant: a variant id is 1-96 lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit (got 'Q4 K M')"),
        ("targets", ["cpu-z80"], "invalid manifest at targets[0]: unknown hardware target; see the target vocabulary in README.md (got 'cpu-z80')"),
        ("targets", [], "invalid manifest at targets: an artifact runs on at least one target"),
        ("files", [], "invalid manifest at files: an artifact has at least one file"),
    ],
)
def test_bad_fields_are_named(good_manifest: dict[str, Any], field: str, value: Any, message: str) -> None:
    good_manifest[field] = value
    with pytest.raises(ManifestError) as info:
        parse(good_manifest)
    assert str(info.value) == message


def test_missing_field_is_named(good_manifest: dict[str, Any]) -> None:
    del good_manifest["runtime"]["distribution"]
    with pytest.raises(ManifestError, match=r"^invalid manifest at runtime\.distribution: required field is missing$"):
        parse(good_manifest)


def test_bad_runtime_specifier_is_named(good_manifest: dict[str, Any]) -> None:
    good_manifest["runtime"]["specifier"] = ">>0.3"
    with pytest.raises(ManifestError, match=r"^invalid manifest at runtime\.specifier: not a valid PEP 440 version specifier \(got '>>0\.3'\)$"):
        parse(good_manifest)


def test_source_revision_must_be_exact(good_manifest: dict[str, Any]) -> None:
    good_manifest["provenance"]["source"] = {"repo": "microsoft/Phi-3.5-mini-instruct", "revision": "main"}
    with pytest.raises(ManifestError, match=r"at provenance\.source\.revision: expected the exact 40-hex commit"):
        parse(good_manifest)


def test_duplicate_json_keys_are_rejected() -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest at name: duplicate key in JSON object \(got 'name'\)$"):
        parse_manifest(b'{"name": "a", "name": "b"}')


def test_nan_is_rejected() -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest: NaN is not valid JSON$"):
        parse_manifest(b'{"x": NaN}')


def test_not_json_and_not_utf8() -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest: not JSON: Expecting value at line 1 column 1$"):
        parse_manifest(b"hello")
    with pytest.raises(ManifestError, match=r"^invalid manifest: not UTF-8: invalid start byte at byte 0$"):
        parse_manifest(b"\xff{}")


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest at \(top level\): expected an object, found array$"):
        parse_manifest(b"[]")
