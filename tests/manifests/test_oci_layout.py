"""The OCI layout as a format (manifests/oci.py): references, tags, documents, challenges, credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from phi_get.manifests.errors import ManifestError
from phi_get.manifests.index import IndexEntry
from phi_get.manifests.oci import (
    ENTRY,
    FILEPATH,
    PHI_MANIFEST,
    Variant,
    credentials_for,
    dumps,
    image_index,
    image_manifest,
    merge_index,
    model_config,
    parse_challenge,
    parse_index,
    parse_reference,
    variant_tag,
    version_tag,
)
from phi_get.registry.testing import make_manifest

MANIFEST = make_manifest([("model.gguf", 10, "a" * 64), ("tokenizer.json", 2, "b" * 64), ("LICENSE", 1, "c" * 64)])


def test_references_pick_the_scheme_and_keep_credentials_out_of_sight() -> None:
    """Secrets: the userinfo never reaches repr, the shown form or an error."""
    ref = parse_reference("oci://user:hunter2@127.0.0.1:5000/team/models")
    assert (ref.scheme, ref.host, ref.namespace, ref.shown) == ("http", "127.0.0.1:5000", "team/models",
                                                                "oci://127.0.0.1:5000/team/models")
    assert "hunter2" not in repr(ref)
    assert parse_reference("oci://registry.example/ns").scheme == "https"
    assert parse_reference("oci+http://registry.lan:80/ns").shown == "oci+http://registry.lan:80/ns"
    with pytest.raises(ManifestError) as err:
        parse_reference("oci://user:hunter2@host:99999/ns")
    assert "hunter2" not in str(err.value) and "0-65535" in str(err.value)


@pytest.mark.parametrize(("url", "reason"), [
    ("https://host/ns", "an OCI reference starts with oci:// or oci+http://"),
    ("oci:///ns", "expected oci://HOST[:PORT][/NAMESPACE] (no query or fragment)"),
    ("oci://host/ns?x=1", "expected oci://HOST[:PORT][/NAMESPACE] (no query or fragment)"),
    ("oci://host/Bad_/x", "an OCI repository path component is lower-case letters and digits"),
])
def test_bad_references_are_refused_by_name(url: str, reason: str) -> None:
    """Bad input: each refusal names the reason (the distribution spec's repository grammar included)."""
    with pytest.raises(ManifestError) as err:
        parse_reference(url)
    assert reason in str(err.value)


def test_tags_follow_the_documented_scheme() -> None:
    """Tag grammar: a local version's '+' becomes '_'; a tag over 128 characters is refused, not cut."""
    assert version_tag("1.2.0+cu121.1") == "1.2.0_cu121.1"
    assert variant_tag("1.2.0", "gguf-q4_k_m") == "1.2.0-gguf-q4_k_m"
    with pytest.raises(ManifestError, match="an OCI tag is 1-128"):
        variant_tag("1.0", "x" * 128)


def test_the_image_manifest_is_modelpack_with_one_raw_layer_per_file_and_phi_gets_manifest() -> None:
    """Format: layer digest = file sha256; the last layer is phi-get's manifest, whose digest is the pinned one."""
    data = MANIFEST.to_bytes()
    doc = json.loads(image_manifest(MANIFEST, data, model_config(MANIFEST)))
    assert doc["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert [(la["digest"], la["annotations"][FILEPATH]) for la in doc["layers"][:-1]] == [
        (f"sha256:{f.sha256}", f.path) for f in MANIFEST.files]
    assert [la["mediaType"].rsplit(".", 2)[-2:] for la in doc["layers"][:-1]] == [
        ["v1", "raw"], ["v1", "raw"], ["v1", "raw"]]
    assert doc["layers"][0]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert doc["layers"][1]["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert doc["layers"][2]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    assert doc["layers"][-1]["mediaType"] == PHI_MANIFEST and doc["layers"][-1]["digest"] == MANIFEST.digest
    assert json.loads(model_config(MANIFEST))["modelfs"]["diffIds"] == [f"sha256:{f.sha256}" for f in MANIFEST.files]


def test_an_index_round_trips_and_merges_by_version_and_variant() -> None:
    """Resolution data: the entry annotation parses back to the same IndexEntry; a re-push replaces, not adds,
    and keeps what another tool put in the same index."""
    entry = IndexEntry.from_manifest(MANIFEST)
    one = Variant(name="tiny-phi", entry=entry, digest="sha256:" + "d" * 64, size=900)
    data = image_index([one])
    assert parse_index(data, document="t") == (one,)
    again = merge_index(data, [Variant(name="tiny-phi", entry=entry, digest="sha256:" + "e" * 64, size=901)],
                        document="t")
    assert [v.digest for v in parse_index(again, document="t")] == ["sha256:" + "e" * 64]
    foreign = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "9" * 64,
               "size": 5, "platform": {"architecture": "amd64", "os": "linux"}}
    theirs = json.loads(again)
    theirs["manifests"].append(foreign)
    merged = json.loads(merge_index(dumps(theirs), [one], document="t"))
    assert merged["manifests"][-1] == foreign and len(merged["manifests"]) == 2  # another tool's entry survives


def test_an_index_entry_that_is_not_json_is_refused_with_its_path() -> None:
    """Hostile index: the bad annotation is named by its path; descriptors of other tools are skipped."""
    doc = {"schemaVersion": 2, "manifests": [
        {"mediaType": "x", "digest": "sha256:" + "1" * 64, "size": 1},  # someone else's: skipped
        {"mediaType": "x", "digest": "sha256:" + "1" * 64, "size": 1, "annotations": {ENTRY: "{not json"}}]}
    with pytest.raises(ManifestError) as err:
        parse_index(dumps(doc), document="reg/tiny-phi:1.0")
    assert "manifests[1].annotations['dev.phi-get.entry']" in str(err.value)
    assert parse_index(dumps({"schemaVersion": 2, "manifests": doc["manifests"][:1]}), document="t") == ()


def test_documents_are_written_as_go_writes_them() -> None:
    """Interop: Go's encoding/json escapes <, > and & and keeps UTF-8; skopeo's re-encoding then matches."""
    assert dumps({"b": "<&>", "a": "é"}) == '{"b":"\\u003c\\u0026\\u003e","a":"é"}'.encode()


def test_challenges_parse_quoted_parameters() -> None:
    """Auth: a Bearer challenge with commas inside quotes (distribution's scope lists)."""
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"')
    assert ch is not None and ch.scheme == "bearer"
    assert dict(ch.params) == {"realm": "https://auth.example/token", "service": "reg",
                               "scope": "repository:a/b:pull,push"}
    assert parse_challenge("") is None


def test_credentials_come_from_the_url_the_environment_then_the_docker_config(tmp_path: Path) -> None:
    """Credentials: the documented order; a config entry that is not base64 is refused naming its field."""
    ref = parse_reference("oci://reg.example:5000/ns")
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {"reg.example:5000": {"auth": base64.b64encode(b"alice:pw1").decode()}}}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert credentials_for(ref, env) == ("alice", "pw1")
    assert credentials_for(ref, {**env, "PHI_GET_OCI_USERNAME": "bob", "PHI_GET_OCI_PASSWORD": "pw2"}) == ("bob", "pw2")
    assert credentials_for(parse_reference("oci://carol:pw3@reg.example:5000/ns"), env) == ("carol", "pw3")
    assert credentials_for(parse_reference("oci://other.example/ns"), env) is None
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.example:5000": {"auth": "!!"}}}))
    with pytest.raises(ManifestError, match="not base64 of user:password"):
        credentials_for(ref, env)
