"""Bad input against the real server: each gets a clear 4xx naming what is
wrong, and the store (blobs, uploads, catalog) is left exactly as it was.

Runs on SQLite only: these are properties of the HTTP layer and the blob
store; the catalog backends are covered by the conformance suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from phi_get.manifests.canonical import canonical_bytes
from phi_get.registry.testing import RunningRegistry, registry_server, write_artifact
from phi_get.registry.tokens import mint_token, revoke_token


@pytest.fixture()
def srv(tmp_path: Path) -> Iterator[RunningRegistry]:
    with registry_server(tmp_path / "registry") as running:
        yield running


@pytest.fixture()
def token(srv: RunningRegistry) -> str:
    return mint_token(srv.registry.engine, ["publish:tiny-phi"])


def snapshot(srv: RunningRegistry) -> tuple[object, ...]:
    """Everything a request could have changed: files in the store, catalog rows."""
    files = sorted((p.relative_to(srv.storage).as_posix(), p.stat().st_size)
                   for p in srv.storage.rglob("*") if p.is_file() and "catalog.sqlite3" not in p.name)
    reg = srv.registry
    indexes = [reg.index(n)[0] for n in reg.model_names()]
    return (files, reg.catalog_bytes(), sorted(d for d, _ in reg.manifests()), indexes)


def error_of(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()
    return r.status_code, body["error"], body["message"]


def published(srv: RunningRegistry, tmp_path: Path, token: str) -> tuple[object, Path]:
    """A registry holding one published artifact, for tests that need a baseline."""
    from phi_get.registry.client import publish_tree

    m = write_artifact(tmp_path / "a", {"model.gguf": b"base" * 500})
    publish_tree(tmp_path / "a", srv.url, token)
    return m, tmp_path / "a"


def test_wrong_digest_is_refused_and_nothing_is_stored(srv: RunningRegistry, token: str) -> None:
    before = snapshot(srv)
    claimed = hashlib.sha256(b"what I said").hexdigest()
    actual = hashlib.sha256(b"what I sent").hexdigest()
    r = httpx.put(f"{srv.url}/v1/uploads/sha256/{claimed}?model=tiny-phi", content=b"what I sent",
                  headers={"authorization": f"Bearer {token}"})
    assert error_of(r) == (400, "integrity", f"uploaded bytes have sha256:{actual}, not the declared sha256:{claimed}")
    assert snapshot(srv) == before
    assert httpx.head(f"{srv.url}/v1/blobs/sha256/{claimed}").status_code == 404


def _raw_request(url: str, head: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(head.encode("latin-1") + body)
        s.shutdown(socket.SHUT_WR)  # the client goes away mid-body
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_truncated_upload_leaves_nothing(srv: RunningRegistry, token: str) -> None:
    before = snapshot(srv)
    data = os.urandom(100_000)
    h = hashlib.sha256(data).hexdigest()
    head = (f"PUT /v1/uploads/sha256/{h}?model=tiny-phi HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n")
    _raw_request(srv.url, head, data[:40_000])
    deadline = time.monotonic() + 10
    while list((srv.storage / "uploads").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert snapshot(srv) == before
    assert httpx.head(f"{srv.url}/v1/blobs/sha256/{h}").status_code == 404


def test_oversize_upload_is_refused_before_reading(srv: RunningRegistry, token: str) -> None:
    srv.registry.max_blob_size = 1000
    before = snapshot(srv)
    data = b"x" * 1001
    r = httpx.put(f"{srv.url}/v1/uploads/sha256/{hashlib.sha256(data).hexdigest()}?model=tiny-phi", content=data,
                  headers={"authorization": f"Bearer {token}"})
    assert error_of(r) == (413, "too-large", "body of 1001 bytes is over the limit of 1000 bytes")
    assert snapshot(srv) == before


def test_upload_without_content_length_is_refused(srv: RunningRegistry, token: str) -> None:
    before = snapshot(srv)
    r = httpx.put(f"{srv.url}/v1/uploads/sha256/{'a' * 64}?model=tiny-phi", content=iter([b"abc"]),
                  headers={"authorization": f"Bearer {token}"})
    assert error_of(r) == (400, "bad-request", "Content-Length is required: blobs are uploaded with their exact size")
    assert snapshot(srv) == before


def test_oversize_manifest_is_refused(srv: RunningRegistry, token: str) -> None:
    before = snapshot(srv)
    r = httpx.post(f"{srv.url}/v1/publish", content=b" " * ((1 << 20) + 1), headers={"authorization": f"Bearer {token}"})
    assert error_of(r) == (413, "too-large", "body of 1048577 bytes is over the limit of 1048576 bytes")
    assert snapshot(srv) == before


@pytest.mark.parametrize("path", [
    "/v1/blobs/sha256/..%2F..%2Fcatalog.sqlite3",
    "/v1/blobs/sha256/..%2fLAYOUT",
    "/v1/manifests/sha256/..%2F..%2Fetc%2Fpasswd.json",
    "/v1/models/..%2F..%2Fetc/index.json",
    "/v1/models/%2e%2e/index.json",
])
def test_path_traversal_in_urls_never_reaches_a_file(srv: RunningRegistry, path: str) -> None:
    r = httpx.get(srv.url + path)
    assert 400 <= r.status_code < 500
    assert b"SQLite" not in r.content and b"blobstore" not in r.content and b"root:" not in r.content


def test_path_traversal_in_upload_url(srv: RunningRegistry, token: str) -> None:
    before = snapshot(srv)
    auth = {"authorization": f"Bearer {token}"}
    # An encoded slash decodes into another path, which no route matches.
    r = httpx.put(f"{srv.url}/v1/uploads/sha256/..%2F..%2Fevil?model=tiny-phi", content=b"x", headers=auth)
    assert r.status_code == 404
    r = httpx.put(f"{srv.url}/v1/uploads/sha256/%2e%2e?model=tiny-phi", content=b"x", headers=auth)
    assert error_of(r) == (400, "bad-request",
                           "invalid request path at digest: expected 64 lower-case hex digits (got '..')")
    r = httpx.put(f"{srv.url}/v1/uploads/sha256/{'a' * 64}?model=..%2F..", content=b"x", headers=auth)
    assert r.status_code == 400 and "invalid request at name: a model name is" in r.json()["message"]
    assert snapshot(srv) == before


def _manifest_doc(tmp_path: Path) -> dict[str, object]:
    write_artifact(tmp_path / "doc", {"model.gguf": b"m" * 100})
    doc: dict[str, object] = json.loads((tmp_path / "doc" / "manifest.json").read_bytes())
    return doc


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["files"][0].update(path="../../etc/passwd"),
     "invalid published manifest at files[0].path: '.' and '..' components are not allowed (got '../../etc/passwd')"),
    (lambda d: d["files"][0].update(path="/etc/passwd"),
     "invalid published manifest at files[0].path: absolute paths are not allowed (got '/etc/passwd')"),
    (lambda d: d["files"][0].update(path="C:\\\\x"),
     "invalid published manifest at files[0].path: backslashes are not allowed; use '/' as the separator"),
    (lambda d: d.update(schema="phi-get.manifest/v9"),
     "invalid published manifest at schema: this phi-get reads phi-get.manifest/v1"),
    (lambda d: d.pop("files"), "invalid published manifest at files: required field is missing"),
    (lambda d: d.update(version="not a version"),
     "invalid published manifest at version: not a valid PEP 440 version (got 'not a version')"),
])
def test_malformed_manifest_is_refused(srv: RunningRegistry, token: str, tmp_path: Path, mutate: object,
                                       message: str) -> None:
    doc = _manifest_doc(tmp_path)
    mutate(doc)  # type: ignore[operator]
    before = snapshot(srv)
    r = httpx.post(f"{srv.url}/v1/publish", content=canonical_bytes(doc), headers={"authorization": f"Bearer {token}"})
    status, code, text = error_of(r)
    assert (status, code) == (400, "bad-request") and text.startswith(message), text
    assert snapshot(srv) == before


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "invalid published manifest: not JSON: Expecting value at line 1 column 1"),
    (b"[]", "invalid published manifest at (top level): expected an object, found array"),
    (b'{"a":1,"a":2}', "invalid published manifest at a: duplicate key in JSON object"),
])
def test_unparseable_manifest_is_refused(srv: RunningRegistry, token: str, body: bytes, message: str) -> None:
    before = snapshot(srv)
    r = httpx.post(f"{srv.url}/v1/publish", content=body, headers={"authorization": f"Bearer {token}"})
    assert error_of(r)[:2] == (400, "bad-request") and error_of(r)[2].startswith(message)
    assert snapshot(srv) == before


def test_non_canonical_manifest_is_refused(srv: RunningRegistry, token: str, tmp_path: Path) -> None:
    doc = _manifest_doc(tmp_path)
    before = snapshot(srv)
    r = httpx.post(f"{srv.url}/v1/publish", content=json.dumps(doc, indent=2).encode(),
                   headers={"authorization": f"Bearer {token}"})
    assert error_of(r)[:2] == (400, "bad-request")
    assert "not in canonical form" in error_of(r)[2]
    assert snapshot(srv) == before


def test_manifest_whose_blobs_are_missing_is_refused(srv: RunningRegistry, token: str, tmp_path: Path) -> None:
    write_artifact(tmp_path / "a", {"model.gguf": b"never uploaded"})
    before = snapshot(srv)
    r = httpx.post(f"{srv.url}/v1/publish", content=(tmp_path / "a" / "manifest.json").read_bytes(),
                   headers={"authorization": f"Bearer {token}"})
    status, code, text = error_of(r)
    assert (status, code) == (400, "bad-request")
    assert text.startswith("cannot commit tiny-phi 0.1.0 gguf-q4_k_m: 1 blob(s) not uploaded, first sha256:")
    assert snapshot(srv) == before


def _bad_tokens(srv: RunningRegistry) -> list[tuple[str, dict[str, str], int, str]]:
    engine = srv.registry.engine
    expired = mint_token(engine, ["publish:tiny-phi"], expires_in_s=-1)
    revoked = mint_token(engine, ["publish:tiny-phi"])
    revoke_token(engine, revoked.split("_")[1])
    foreign = mint_token(engine, ["publish:phi-4-mini"])
    good_id = mint_token(engine, ["publish:tiny-phi"]).split("_")[1]
    return [
        ("missing", {}, 401, "no token: this request needs 'Authorization: Bearer <token>'"),
        ("not bearer", {"authorization": "Basic dXNlcjpwYXNz"}, 401, "malformed Authorization header"),
        ("garbage", {"authorization": "Bearer hunter2"}, 401, "invalid token: not a phi-get token"),
        ("wrong secret", {"authorization": f"Bearer phig_{good_id}_{'A' * 43}"}, 401,
         "invalid token: unknown id or wrong secret"),
        ("expired", {"authorization": f"Bearer {expired}"}, 401, f"token {expired.split('_')[1]} expired"),
        ("revoked", {"authorization": f"Bearer {revoked}"}, 401, f"token {revoked.split('_')[1]} is revoked"),
        ("foreign scope", {"authorization": f"Bearer {foreign}"}, 403,
         f"token {foreign.split('_')[1]} may not publish to model 'tiny-phi' (scopes: publish:phi-4-mini)"),
    ]


def test_bad_tokens_write_nothing(srv: RunningRegistry, token: str, tmp_path: Path) -> None:
    m, _ = published(srv, tmp_path, token)
    data = b"new blob bytes"
    write_artifact(tmp_path / "b", {"model.gguf": data}, version="0.2.0")
    manifest_bytes = (tmp_path / "b" / "manifest.json").read_bytes()
    before = snapshot(srv)
    for label, headers, status, message in _bad_tokens(srv):
        requests = [
            ("put", f"/v1/uploads/sha256/{hashlib.sha256(data).hexdigest()}?model=tiny-phi", {"content": data}),
            ("post", "/v1/publish", {"content": manifest_bytes}),
            ("post", "/v1/models/tiny-phi/versions/0.1.0/yank", {"json": {"reason": "x"}}),
            ("delete", "/v1/models/tiny-phi/versions/0.1.0/yank", {}),
        ]
        for method, path, kwargs in requests:
            r = httpx.request(method, srv.url + path, headers=headers, **kwargs)  # type: ignore[arg-type]
            assert r.status_code == status, (label, path, r.text)
            assert r.json()["message"].startswith(message), (label, path, r.text)
        assert snapshot(srv) == before, label
    assert m is not None


def test_token_is_never_echoed(srv: RunningRegistry, token: str) -> None:
    secret = token.split("_", 2)[2]
    foreign = mint_token(srv.registry.engine, ["publish:other"])
    for t in (token[:-1] + ("B" if token[-1] != "B" else "C"), foreign, "phig_" + secret):
        r = httpx.post(f"{srv.url}/v1/publish", content=b"{}", headers={"authorization": f"Bearer {t}"})
        assert t.split("_", 2)[-1] not in r.text
