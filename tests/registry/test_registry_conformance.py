"""The catalog conformance suite: the real server on loopback, over SQLite and
over a real PostgreSQL (the ``catalog_url`` fixture runs each test on both).

Covers the wire layout the resolver reads, publishing (idempotent, immutable,
concurrent), yanking, download counts, search, export and gc.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import httpx
import pytest
from phi_get.manifests.index import LAYOUT, parse_catalog, parse_model_index
from phi_get.manifests.manifest import parse_manifest
from phi_get.registry.client import publish_tree
from phi_get.registry.errors import ConflictError
from phi_get.registry.export import export_mirror
from phi_get.registry.testing import RunningRegistry, write_artifact
from phi_get.registry.tokens import mint_token


def _token(server: RunningRegistry, *scopes: str) -> str:
    return mint_token(server.registry.engine, list(scopes or ["publish:tiny-phi"]))


def _publish(server: RunningRegistry, folder: Path, token: str | None = None) -> object:
    return publish_tree(folder, server.url, token or _token(server))


def test_publish_then_read_the_wire_layout(server: RunningRegistry, tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    m = write_artifact(tmp_path / "a", {"model.gguf": payload, "tokenizer/tokenizer.json": b'{"v":1}'})
    report = _publish(server, tmp_path / "a")
    assert report.artifacts[0].created and report.artifacts[0].digest == m.digest  # type: ignore[attr-defined]
    with httpx.Client(base_url=server.url) as c:
        catalog = parse_catalog(c.get("/" + LAYOUT["catalog"]).content)
        assert catalog.models == (("tiny-phi", "0.1.0"),)
        r = c.get("/v1/models/tiny-phi/index.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        index = parse_model_index(r.content)
        (entry,) = index.entries
        assert (str(entry.version), entry.variant, entry.manifest, entry.size) == (
            "0.1.0", "gguf-q4_k_m", m.digest, len(payload) + 7)
        assert entry.yanked is None and entry.targets == ("cpu-x86_64",)
        body = c.get(f"/v1/manifests/sha256/{m.digest.removeprefix('sha256:')}.json").content
        assert body == m.to_bytes() and parse_manifest(body) == m
        blob = c.get(f"/v1/blobs/sha256/{m.files[0].sha256}")
        assert blob.content == payload and blob.headers["content-length"] == str(len(payload))
        assert blob.headers["etag"] == f'"sha256:{m.files[0].sha256}"'


def test_index_etag_gives_304_until_something_changes(server: RunningRegistry, tmp_path: Path) -> None:
    write_artifact(tmp_path / "a", {"model.gguf": b"a" * 1000})
    token = _token(server)
    _publish(server, tmp_path / "a", token)
    with httpx.Client(base_url=server.url) as c:
        first = c.get("/v1/models/tiny-phi/index.json")
        etag = first.headers["etag"]
        again = c.get("/v1/models/tiny-phi/index.json", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        for header in (f'"other", W/{etag}', "*"):
            assert c.get("/v1/models/tiny-phi/index.json", headers={"if-none-match": header}).status_code == 304
        assert c.get("/v1/models/tiny-phi/index.json", headers={"if-none-match": '"other"'}).status_code == 200
        write_artifact(tmp_path / "b", {"model.gguf": b"b" * 1000}, version="0.2.0")
        _publish(server, tmp_path / "b", token)
        changed = c.get("/v1/models/tiny-phi/index.json", headers={"if-none-match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert [str(e.version) for e in parse_model_index(changed.content).entries] == ["0.1.0", "0.2.0"]


def test_blob_ranges(server: RunningRegistry, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40
    m = write_artifact(tmp_path / "a", {"model.gguf": payload})
    _publish(server, tmp_path / "a")
    url = f"/v1/blobs/sha256/{m.files[0].sha256}"
    with httpx.Client(base_url=server.url) as c:
        r = c.get(url, headers={"range": "bytes=100-199"})
        assert (r.status_code, r.content, r.headers["content-range"]) == (206, payload[100:200], "bytes 100-199/10240")
        r = c.get(url, headers={"range": "bytes=10000-"})
        assert (r.status_code, r.content) == (206, payload[10000:])
        r = c.get(url, headers={"range": "bytes=-16"})
        assert (r.status_code, r.content) == (206, payload[-16:])
        r = c.get(url, headers={"range": "bytes=10240-"})
        assert (r.status_code, r.headers["content-range"]) == (416, "bytes */10240")
        r = c.head(url)
        assert (r.status_code, r.headers["content-length"], r.content) == (200, "10240", b"")
        assert c.get("/v1/blobs/sha256/" + "0" * 64).status_code == 404


def test_republish_identical_is_a_noop_and_different_is_409(server: RunningRegistry, tmp_path: Path) -> None:
    token = _token(server)
    m = write_artifact(tmp_path / "a", {"model.gguf": b"x" * 5000})
    _publish(server, tmp_path / "a", token)
    again = _publish(server, tmp_path / "a", token).artifacts[0]  # type: ignore[attr-defined]
    assert (again.created, again.blobs_uploaded, again.bytes_uploaded, again.digest) == (False, 0, 0, m.digest)
    write_artifact(tmp_path / "b", {"model.gguf": b"y" * 5000})  # same name, version, variant
    with pytest.raises(ConflictError, match=r"tiny-phi 0.1.0 gguf-q4_k_m is already published as sha256:"):
        _publish(server, tmp_path / "b", token)
    index = parse_model_index(httpx.get(server.url + "/v1/models/tiny-phi/index.json").content)
    assert [e.manifest for e in index.entries] == [m.digest]


def test_concurrent_publishes_of_one_variant_exactly_one_wins(server: RunningRegistry, tmp_path: Path) -> None:
    token = _token(server)
    folders = []
    for i in range(6):
        write_artifact(tmp_path / f"c{i}", {"model.gguf": f"content {i}".encode() * 100})
        folders.append(tmp_path / f"c{i}")
    # Upload every blob first so that the commits race each other, not the uploads.
    bodies = []
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}) as c:
        for folder in folders:
            data = (folder / "model.gguf").read_bytes()
            m = parse_manifest((folder / "manifest.json").read_bytes())
            assert c.put(f"/v1/uploads/sha256/{m.files[0].sha256}", params={"model": "tiny-phi"}, content=data).status_code == 201
            bodies.append(m.to_bytes())
    statuses: list[int] = []
    barrier = threading.Barrier(len(bodies))

    def commit(body: bytes) -> None:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}) as c:
            barrier.wait()
            statuses.append(c.post("/v1/publish", content=body).status_code)

    threads = [threading.Thread(target=commit, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * (len(bodies) - 1)
    index = parse_model_index(httpx.get(server.url + "/v1/models/tiny-phi/index.json").content)
    assert len(index.entries) == 1


def test_yank_hides_from_resolution_but_keeps_serving(server: RunningRegistry, tmp_path: Path) -> None:
    token = _token(server)
    m = write_artifact(tmp_path / "a", {"model.gguf": b"1" * 100})
    write_artifact(tmp_path / "b", {"model.gguf": b"2" * 100}, version="0.2.0")
    _publish(server, tmp_path / "a", token)
    _publish(server, tmp_path / "b", token)
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/v1/models/tiny-phi/versions/0.2.0/yank", json={"reason": "bad logits"}, headers=auth)
        assert r.status_code == 200 and r.json() == {"yanked": 1}
        entries = {str(e.version): e for e in parse_model_index(c.get("/v1/models/tiny-phi/index.json").content).entries}
        assert entries["0.2.0"].yanked == "bad logits" and entries["0.1.0"].yanked is None
        assert parse_catalog(c.get("/v1/models.json").content).models == (("tiny-phi", "0.1.0"),)
        yanked = entries["0.2.0"]
        assert c.get(f"/v1/manifests/sha256/{yanked.manifest.removeprefix('sha256:')}.json").status_code == 200
        r = c.delete("/v1/models/tiny-phi/versions/0.2.0/yank", headers=auth)
        assert r.json() == {"unyanked": 1}
        assert all(e.yanked is None for e in parse_model_index(c.get("/v1/models/tiny-phi/index.json").content).entries)
        r = c.post("/v1/models/tiny-phi/versions/9.9/yank", json={"reason": "x"}, headers=auth)
        assert r.status_code == 404 and r.json()["error"] == "not-found"
    assert m.digest != yanked.manifest


def test_download_counts_and_search(server: RunningRegistry, tmp_path: Path) -> None:
    m = write_artifact(tmp_path / "a", {"model.gguf": b"z" * 100})
    _publish(server, tmp_path / "a")
    with httpx.Client(base_url=server.url) as c:
        for _ in range(3):
            assert c.get(f"/v1/manifests/sha256/{m.digest.removeprefix('sha256:')}.json").status_code == 200
        stats = c.get("/v1/models/tiny-phi/stats.json").json()
        assert stats == {"name": "tiny-phi", "downloads": 3,
                         "variants": [{"version": "0.1.0", "variant": "gguf-q4_k_m", "downloads": 3}]}
        assert [h["name"] for h in c.get("/v1/search", params={"q": "TINY"}).json()] == ["tiny-phi"]
        assert c.get("/v1/search", params={"q": "phi-4"}).json() == []
        assert c.get("/v1/models/nope/index.json").status_code == 404


def test_export_mirror_is_byte_identical_to_the_live_registry(server: RunningRegistry, tmp_path: Path) -> None:
    token = _token(server)
    write_artifact(tmp_path / "a", {"model.gguf": os.urandom(5000), "extra/config.json": b"{}"})
    write_artifact(tmp_path / "b", {"model.gguf": os.urandom(3000)}, variant="onnx-int4")
    _publish(server, tmp_path / "a", token)
    _publish(server, tmp_path / "b", token)
    out = tmp_path / "mirror"
    report = export_mirror(server.registry, out)
    assert (report.models, report.manifests, report.blobs_written) == (1, 2, 3)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) == 1 + 1 + 2 + 3
    with httpx.Client(base_url=server.url) as c:
        for rel in files:
            assert (out / rel).read_bytes() == c.get("/" + rel).content, rel
    again = export_mirror(server.registry, out)
    assert (again.blobs_written, again.blobs_kept) == (0, 3)


def test_gc_keeps_referenced_and_deletes_unreferenced(server: RunningRegistry, tmp_path: Path) -> None:
    token = _token(server)
    m = write_artifact(tmp_path / "a", {"model.gguf": b"keep" * 100})
    _publish(server, tmp_path / "a", token)
    orphan = os.urandom(1000)
    import hashlib

    orphan_hex = hashlib.sha256(orphan).hexdigest()
    r = httpx.put(f"{server.url}/v1/uploads/sha256/{orphan_hex}?model=tiny-phi", content=orphan,
                  headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 201
    (server.storage / "uploads" / "abandoned.part").write_bytes(b"half")
    young = server.registry.gc()  # default grace: nothing young is touched
    assert young.blobs_deleted == () and young.uploads_removed == 0
    report = server.registry.gc(grace_s=0)
    assert report.blobs_deleted == (orphan_hex,) and report.freed_bytes == 1000 and report.uploads_removed == 1
    assert server.registry.store.size(m.files[0].sha256) == 400
    assert server.registry.store.size(orphan_hex) is None
    assert httpx.get(f"{server.url}/v1/blobs/sha256/{m.files[0].sha256}").content == b"keep" * 100
    assert json.loads(httpx.get(f"{server.url}/v1/models.json").content)["models"][0]["name"] == "tiny-phi"


def test_index_sees_a_publish_by_another_process_within_its_max_age(server: RunningRegistry, tmp_path: Path) -> None:
    import time

    from phi_get.registry.http_api import INDEX_MAX_AGE_S
    from phi_get.registry.server import open_registry
    from phi_get.registry.tokens import Principal

    write_artifact(tmp_path / "a", {"model.gguf": b"one" * 10})
    _publish(server, tmp_path / "a")
    url = f"{server.url}/v1/models/tiny-phi/index.json"
    etag = httpx.get(url).headers["etag"]
    assert httpx.get(url).headers["etag"] == etag  # served from the cache now
    other = open_registry(server.db_url, server.storage)  # a second server process on the same catalog
    try:
        m = write_artifact(tmp_path / "b", {"model.gguf": b"two" * 10}, version="0.2.0")
        up = other.store.begin_upload(m.files[0].sha256, m.files[0].size)
        up.write(b"two" * 10)
        up.commit()
        other.publish(Principal(token_id="other", scopes=frozenset({"admin"})), m.to_bytes())
        published_at = time.monotonic()
        while httpx.get(url).headers["etag"] == etag:
            assert time.monotonic() - published_at < INDEX_MAX_AGE_S + 2, "stale index served too long"
            time.sleep(0.05)
        assert [str(e.version) for e in parse_model_index(httpx.get(url).content).entries] == ["0.1.0", "0.2.0"]
    finally:
        other.engine.dispose()


def test_a_commit_that_fails_midway_leaves_nothing(server: RunningRegistry, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest, its blob references, the variant and the model row are one transaction."""
    import phi_get.registry.service as service_module
    from phi_get.registry.tokens import Principal

    m = write_artifact(tmp_path / "a", {"model.gguf": b"atomic" * 100})
    up = server.registry.store.begin_upload(m.files[0].sha256, m.files[0].size)
    up.write(b"atomic" * 100)
    up.commit()

    def crash(*_args: object) -> str:  # runs after the manifest row and blob refs are flushed
        raise RuntimeError("simulated crash between the manifest and the variant row")

    monkeypatch.setattr(service_module, "entry_json", crash)
    admin = Principal(token_id="test", scopes=frozenset({"admin"}))
    with pytest.raises(RuntimeError, match="simulated crash"):
        server.registry.publish(admin, m.to_bytes())
    assert server.registry.manifests() == [] and server.registry.referenced_blobs() == {}
    assert server.registry.model_names() == []
    assert httpx.get(f"{server.url}/v1/models/tiny-phi/index.json").status_code == 404
    monkeypatch.undo()
    assert server.registry.publish(admin, m.to_bytes()).created


def test_publish_resumes_after_an_interruption(server: RunningRegistry, tmp_path: Path) -> None:
    """Blobs uploaded before the interruption are not sent again; nothing is visible until the commit."""
    token = _token(server)
    m = write_artifact(tmp_path / "a", {"a.bin": b"A" * 3000, "b.bin": b"B" * 5000})
    first = next(f for f in m.files if f.path == "a.bin")
    r = httpx.put(f"{server.url}/v1/uploads/sha256/{first.sha256}", params={"model": "tiny-phi"},
                  content=b"A" * 3000, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 201  # ...and then the publisher died
    assert httpx.get(f"{server.url}/v1/models/tiny-phi/index.json").status_code == 404
    report = _publish(server, tmp_path / "a", token).artifacts[0]  # type: ignore[attr-defined]
    assert (report.created, report.blobs_skipped, report.blobs_uploaded, report.bytes_uploaded) == (True, 1, 1, 5000)


def test_concurrent_first_publishes_of_different_variants_all_succeed(server: RunningRegistry,
                                                                       tmp_path: Path) -> None:
    """Racing to create the model's row is not a conflict: every variant lands."""
    from phi_get.registry.tokens import Principal

    manifests = []
    for i in range(6):
        data = f"variant {i}".encode() * 50
        m = write_artifact(tmp_path / f"v{i}", {"model.gguf": data}, variant=f"gguf-q{i}")
        up = server.registry.store.begin_upload(m.files[0].sha256, m.files[0].size)
        up.write(data)
        up.commit()
        manifests.append(m)
    admin = Principal(token_id="test", scopes=frozenset({"admin"}))
    barrier = threading.Barrier(len(manifests))
    results: list[object] = []

    def commit(body: bytes) -> None:
        barrier.wait()
        try:
            results.append(server.registry.publish(admin, body).created)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=commit, args=(m.to_bytes(),)) for m in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * len(manifests)
    index = parse_model_index(httpx.get(server.url + "/v1/models/tiny-phi/index.json").content)
    assert sorted(e.variant for e in index.entries) == sorted(f"gguf-q{i}" for i in range(6))
