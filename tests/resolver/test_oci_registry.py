"""Models as OCI artifacts, against real programs on loopback.

The registry is the CNCF distribution registry (Debian ``docker-registry``
2.8) with htpasswd auth, or with bearer tokens from this kit's token server
(tests/kit/ocikit.py); ``skopeo`` (Debian) is the other client.  phi-get
pushes with ``phi-get publish --to``, and pulls with the real CLI: resolve,
install, lock, sync --locked, bundle export, sync --from.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from phi_get.manifests.manifest import Manifest
from phi_get.manifests.oci import FILEPATH, IMAGE_INDEX, MODEL_ARTIFACT, MODEL_CONFIG, PHI_MANIFEST
from phi_get.registry.testing import write_artifact

sys.path.insert(0, str(Path(__file__).parents[1] / "kit"))
from ocikit import PASSWORD, USER, OciRegistry, oci_registry

PHI_GET = str(Path(sys.executable).parent / "phi-get")
SECRETS = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
TARGETS = ("cpu-x86_64", "cpu-arm64")
PROJECT = """
[project]
name = "fleet"
registries = ["{url}"]

[models]
"tiny-phi" = ">=0.1"

[device-classes]
edge = "pi-board"
"""


def _env(home: Path, *, creds: bool = True, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHI_GET_", "DOCKER_CONFIG", "REGISTRY_AUTH"))}
    env.update(PHI_GET_HOME=str(home), DOCKER_CONFIG=str(home / "no-docker"), PHI_GET_MIN_RATE="0",
               PHI_GET_DEVICE="intel-ai-pc",  # a sample profile: no probing
               PHI_GET_UNSIGNED="*")  # OCI sources serve no TUF metadata: accepted unsigned
    env.update(extra)
    if creds:
        env.update(PHI_GET_OCI_USERNAME=USER, PHI_GET_OCI_PASSWORD=PASSWORD)
    return env


def phi(*args: str, env: dict[str, str], cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([PHI_GET, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    out = r.stdout + r.stderr
    for secret in SECRETS:
        assert secret not in out, f"a credential leaked into the output of {args}"
    assert "Traceback" not in out, out
    if ok:
        assert r.returncode == 0, out
    return r


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo (Debian package) is not installed; .ci/run installs it")
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return r


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _no_secret_under(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"a credential was written to {path}"


@pytest.fixture(scope="module")
def arts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Manifest]]:
    top = tmp_path_factory.mktemp("arts")
    weights = os.urandom(17 << 20)  # three ranges at the fetcher's 8 MiB part size
    made = [write_artifact(top / "q4", {"model.gguf": weights, "tokenizer.json": b'{"t": 1}', "README.md": b"hi"},
                           targets=TARGETS),  # type: ignore[arg-type]
            write_artifact(top / "q8", {"model.gguf": os.urandom(4096)}, variant="gguf-q8_0", version="0.0.9",
                           targets=TARGETS)]  # type: ignore[arg-type]
    return top, made


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory, arts: tuple[Path, list[Manifest]]) -> Iterator[OciRegistry]:
    """A registry with htpasswd auth, the two variants pushed with ``phi-get publish --to``."""
    folder = tmp_path_factory.mktemp("basic")
    with oci_registry(folder / "reg", auth="basic") as reg:
        r = phi("publish", str(arts[0]), "--to", reg.url(), env=_env(folder / "pusher"))
        assert r.stdout.count("published tiny-phi") == 2, r.stdout
        yield reg


def test_push_then_install_over_basic_auth_and_a_repush_uploads_nothing(
        basic: OciRegistry, arts: tuple[Path, list[Manifest]], tmp_path: Path) -> None:
    """Interop/idempotence: what phi-get pushed installs byte for byte; pushing again sends no blob."""
    again = phi("publish", str(arts[0]), "--to", basic.url(), env=_env(tmp_path / "p2"))
    assert again.stdout.count("already published") == 2 and "uploaded 0 blob(s)" in again.stdout, again.stdout
    home = tmp_path / "home"
    weights = next(f for f in arts[1][0].files if f.path == "model.gguf")
    before = len(basic.ranged_gets(f"sha256:{weights.sha256}"))
    r = phi("install", "tiny-phi", "--registry", basic.url(), env=_env(home))
    assert "installed tiny-phi 0.1.0 gguf-q4_k_m" in r.stdout
    placed = home / "artifacts" / "sha256" / arts[1][0].digest.removeprefix("sha256:")
    assert (placed / "model.gguf").read_bytes() == (arts[0] / "q4" / "model.gguf").read_bytes()
    ranges = basic.ranged_gets(f"sha256:{weights.sha256}")[before:]  # parallel Range GETs, as over HTTP
    assert len(ranges) >= 2 and sum(ranges) == weights.size, ranges
    _no_secret_under(home)


def test_install_without_credentials_is_refused_with_a_hint(basic: OciRegistry, tmp_path: Path) -> None:
    """Auth fault: a registry that needs credentials, none given: a clear error (no traceback, no 5xx)."""
    r = phi("install", "tiny-phi", "--registry", basic.url(), env=_env(tmp_path / "h", creds=False), ok=False)
    assert r.returncode != 0
    assert "HTTP 401" in r.stderr and "PHI_GET_OCI_USERNAME" in r.stderr, r.stderr


def test_an_oci_source_not_accepted_unsigned_is_refused(basic: OciRegistry, tmp_path: Path) -> None:
    """Trust: an OCI registry serves no TUF metadata, so it is used only once accepted unsigned."""
    r = phi("install", "tiny-phi", "--registry", basic.url(), env=_env(tmp_path / "h", PHI_GET_UNSIGNED=""),
            ok=False)
    assert r.returncode == 4 and "not marked unsigned" in r.stderr and "allow-unsigned" in r.stderr, r.stderr


def test_wrong_password_is_refused_and_never_shown(basic: OciRegistry, tmp_path: Path) -> None:
    """Auth fault + leak: refused credentials in the URL: refused, and the URL is shown redacted."""
    url = f"oci://{USER}:{PASSWORD}-wrong@{basic.host}/models"
    r = phi("install", "tiny-phi", "--registry", url, env=_env(tmp_path / "h", creds=False), ok=False)
    assert r.returncode != 0 and "refused" in r.stderr, r.stderr
    assert f"{PASSWORD}-wrong" not in r.stdout + r.stderr


def test_docker_config_file_credentials(basic: OciRegistry, tmp_path: Path) -> None:
    """Credentials from ~/.docker/config.json (``auths[host].auth``), as `docker login` writes them."""
    home = tmp_path / "h"
    cfg = tmp_path / "docker"
    cfg.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {basic.host: {"auth": auth}}}))
    env = _env(home, creds=False)
    env["DOCKER_CONFIG"] = str(cfg)
    r = phi("resolve", "tiny-phi", "--registry", basic.url(), "--json", env=env)
    assert json.loads(r.stdout)["chosen"]["variant"] == "gguf-q4_k_m"


def test_skopeo_reads_what_phi_get_pushed_and_copies_it_back_with_digests_intact(
        basic: OciRegistry, tmp_path: Path) -> None:
    """Interop: skopeo inspects, copies to an oci: layout and back; the bytes (so digests) are unchanged,
    and phi-get installs from the copy, from the full index or from a version tag alone (tags/list)."""
    creds = f"--creds={USER}:{PASSWORD}"
    src = f"docker://{basic.host}/models/tiny-phi"
    index = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", creds, f"{src}:0.1.0").stdout)
    assert index["mediaType"] == IMAGE_INDEX and len(index["manifests"]) == 1
    raw = skopeo("inspect", "--raw", "--tls-verify=false", creds, f"{src}:0.1.0-gguf-q4_k_m").stdout
    manifest = json.loads(raw)
    assert manifest["artifactType"] == MODEL_ARTIFACT and index["manifests"][0]["digest"] == _digest(raw)
    assert manifest["config"]["mediaType"] == MODEL_CONFIG
    assert [la["annotations"][FILEPATH] for la in manifest["layers"]] == [
        "README.md", "model.gguf", "tokenizer.json", "manifest.json"]
    assert manifest["layers"][-1]["mediaType"] == PHI_MANIFEST
    layout = tmp_path / "layout"
    for tag in ("phi-get.index", "0.1.0"):
        skopeo("copy", "--all", "--src-tls-verify=false", f"--src-creds={USER}:{PASSWORD}", f"{src}:{tag}",
               f"oci:{layout}:{tag}")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}",
           f"oci:{layout}:phi-get.index", f"docker://{basic.host}/copy/tiny-phi:phi-get.index")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}",
           f"oci:{layout}:0.1.0", f"docker://{basic.host}/versions/tiny-phi:0.1.0")
    for repo, tag in (("copy", "phi-get.index"), ("versions", "0.1.0")):
        there = skopeo("inspect", "--raw", "--tls-verify=false", creds, f"docker://{basic.host}/{repo}/tiny-phi:{tag}")
        here = skopeo("inspect", "--raw", "--tls-verify=false", creds, f"{src}:{tag}")
        assert there.stdout == here.stdout
    by_digest = f"tiny-phi@{index['manifests'][0]['digest']}"
    copied = skopeo("inspect", "--raw", "--tls-verify=false", creds, f"docker://{basic.host}/copy/{by_digest}")
    assert copied.stdout == raw or json.loads(copied.stdout)["layers"]  # the variant, by its digest, copied too
    for repo in ("copy", "versions"):
        r = phi("install", "tiny-phi", "--registry", f"oci://{basic.host}/{repo}", env=_env(tmp_path / f"home-{repo}"))
        assert "installed tiny-phi 0.1.0 gguf-q4_k_m" in r.stdout


def test_a_blob_corrupted_on_the_registrys_disk_is_refused_at_install(
        tmp_path: Path, arts: tuple[Path, list[Manifest]]) -> None:
    """Integrity: the registry serves a file's bytes from disk without re-hashing; same size, other bytes:
    phi-get refuses them before placing anything.  (Also: resolving costs one request, as over HTTP.)"""
    with oci_registry(tmp_path / "reg") as reg:
        phi("publish", str(arts[0] / "q4"), "--to", reg.url(), env=_env(tmp_path / "p", creds=False))
        before = len(reg.requests())
        phi("resolve", "tiny-phi", "--registry", reg.url(), env=_env(tmp_path / "r", creds=False))
        assert reg.requests()[before:] == ["GET /v2/models/tiny-phi/manifests/phi-get.index HTTP/1.1"]  # one request
        weights = next(f for f in arts[1][0].files if f.path == "model.gguf")
        blob = reg.blob_file(f"sha256:{weights.sha256}")
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        home = tmp_path / "home"
        r = phi("install", "tiny-phi", "--registry", reg.url(), env=_env(home, creds=False), ok=False)
        assert r.returncode != 0 and "sha256" in r.stderr, r.stderr
        assert not list((home / "artifacts").glob("sha256/*")) if (home / "artifacts").exists() else True
        assert not list((home / "refs").rglob("*.json")) if (home / "refs").exists() else True


def test_token_flow_push_and_pull_with_scoped_tokens(tmp_path: Path, arts: tuple[Path, list[Manifest]]) -> None:
    """Bearer flow: push asks the token server for pull,push; pull for pull only; the JWTs the registry
    accepts come from the realm its challenge named; wrong credentials at the token server are refused."""
    with oci_registry(tmp_path / "reg", auth="token") as reg:
        assert reg.tokens is not None
        phi("publish", str(arts[0]), "--to", reg.url(), env=_env(tmp_path / "p"))
        assert reg.tokens.granted and set(reg.tokens.granted) == {"repository:models/tiny-phi:pull,push"}
        pushed = len(reg.tokens.granted)
        home = tmp_path / "home"
        r = phi("install", "tiny-phi", "--registry", reg.url(), env=_env(home))
        assert "installed tiny-phi 0.1.0 gguf-q4_k_m" in r.stdout
        assert set(reg.tokens.granted[pushed:]) == {"repository:models/tiny-phi:pull"}
        _no_secret_under(home)
        bad = _env(tmp_path / "h2", creds=False, PHI_GET_OCI_USERNAME=USER, PHI_GET_OCI_PASSWORD="nope")
        r = phi("install", "tiny-phi", "--registry", reg.url(), env=bad, ok=False)
        assert r.returncode != 0 and "token server refused a pull token" in r.stderr, r.stderr


def test_lock_sync_locked_and_a_bundle_through_skopeo(basic: OciRegistry, tmp_path: Path) -> None:
    """Locks and air gaps: phi.lock from an OCI registry holds no secret; sync --locked installs it; a bundle
    holds exactly what the lock pins, installs with no network, and survives skopeo copies both ways."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "phi.toml").write_text(PROJECT.format(url=basic.url()))
    phi("lock", "--project", str(project), env=_env(tmp_path / "locker"))
    lock_text = (project / "phi.lock").read_text()
    assert f"oci://{basic.host}/models" in lock_text
    for secret in SECRETS:
        assert secret not in lock_text
    r = phi("sync", "--locked", "--project", str(project), env=_env(tmp_path / "h1"))
    assert "installed tiny-phi 0.1.0" in r.stdout
    bundle = tmp_path / "bundle"
    made = phi("bundle", "export", "--lock", str(project / "phi.lock"), str(bundle), "--json", env=_env(tmp_path / "h1"))
    assert json.loads(made.stdout)["variants"] == 1
    index = json.loads((bundle / "index.json").read_bytes())
    assert len(index["manifests"]) == 1  # exactly what the lock pins: one class, one variant
    ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    # no credentials and a dead network: the bundle alone; its source was unsigned (no TUF metadata in it), so
    # it is used only where that source is accepted unsigned, and the install says so
    offline = _env(tmp_path / "h2", creds=False, PHI_GET_OFFLINE="1", PHI_GET_UNSIGNED="")
    refused = phi("sync", "--locked", "--from", str(bundle), "--project", str(project), env=offline, ok=False)
    assert refused.returncode == 4 and "carries no TUF metadata" in refused.stderr, refused.stderr
    assert f"phi-get trust allow-unsigned oci://{basic.host}/models" in refused.stderr
    accepted = {**offline, "PHI_GET_UNSIGNED": f"oci://{basic.host}/models"}
    r = phi("sync", "--locked", "--from", str(bundle), "--project", str(project), env=accepted)
    assert "installed tiny-phi 0.1.0" in r.stdout and "installed unsigned" in r.stderr, r.stderr
    assert (project / "phi.lock").read_text() == lock_text  # still says the OCI source was unsigned
    assert f'unsigned-sources = ["oci://{basic.host}/models"]' in lock_text
    # outside a locked install, the bundle is still an unsigned source that needs the opt-out
    refused = phi("install", "tiny-phi", "--registry", str(bundle), env=offline, ok=False)
    assert refused.returncode == 4 and "allow-unsigned" in refused.stderr, refused.stderr
    dest = f"docker://{basic.host}/bundled/tiny-phi:{ref.rpartition('_')[2]}"
    skopeo("copy", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}", f"oci:{bundle}:{ref}", dest)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"--creds={USER}:{PASSWORD}", dest).stdout
    assert raw.encode() == (bundle / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes()
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"--src-creds={USER}:{PASSWORD}", dest, f"oci:{back}:{ref}")
    r = phi("sync", "--locked", "--from", str(back), "--project", str(project),
            env=_env(tmp_path / "h3", creds=False, PHI_GET_OFFLINE="1"))
    assert "installed tiny-phi 0.1.0" in r.stdout
    for folder in (tmp_path / "locker", tmp_path / "h1", bundle):
        _no_secret_under(folder)


def test_a_blob_redirected_to_another_origin_goes_there_without_the_token(tmp_path: Path) -> None:
    """Token leak: registries send blobs to object storage with a redirect; the bearer token must stay with the
    registry's origin (the storage sees no Authorization), while every registry request carries it.

    A stub registry is needed here: distribution's filesystem storage never redirects.
    """
    import http.server
    import threading

    from phi_get.manifests.index import IndexEntry
    from phi_get.manifests.oci import Variant, image_index
    from phi_get.registry.testing import make_manifest

    weights = os.urandom(200_000)
    sha = hashlib.sha256(weights).hexdigest()
    manifest = make_manifest([("model.gguf", len(weights), sha)], targets=TARGETS)
    data = manifest.to_bytes()
    index = image_index([Variant(name="tiny-phi", entry=IndexEntry.from_manifest(manifest),
                                 digest="sha256:" + "f" * 64, size=10)])
    seen: dict[str, list[str | None]] = {"registry": [], "storage": []}

    def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    class Storage(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen["storage"].append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(weights)))
            self.end_headers()
            self.wfile.write(weights)

    storage = serve(Storage)

    class Registry(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for k, v in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(k.replace("_", "-"), v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            port = self.server.server_address[1]
            if self.path.startswith("/token"):
                ok = self.headers.get("Authorization") == "Basic " + SECRETS[1]
                return self.answer(200, b'{"token": "tok-123", "expires_in": 300}') if ok else self.answer(401)
            seen["registry"].append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "Bearer tok-123":
                return self.answer(401, WWW_Authenticate=f'Bearer realm="http://127.0.0.1:{port}/token",service="s"')
            if self.path == "/v2/models/tiny-phi/manifests/phi-get.index":
                return self.answer(200, index)
            if self.path == f"/v2/models/tiny-phi/blobs/{manifest.digest}":
                return self.answer(200, data)
            if self.path == f"/v2/models/tiny-phi/blobs/sha256:{sha}":
                return self.answer(307, Location=f"http://localhost:{storage.server_address[1]}/b/{sha}")
            return self.answer(404)

    registry = serve(Registry)
    try:
        home = tmp_path / "home"
        r = phi("install", "tiny-phi", "--registry", f"oci://127.0.0.1:{registry.server_address[1]}/models",
                env=_env(home))
        assert "installed tiny-phi 0.1.0" in r.stdout
        assert seen["storage"] and seen["storage"] == [None] * len(seen["storage"])
        assert seen["registry"][0] is None and set(seen["registry"][1:]) == {"Bearer tok-123"}
        _no_secret_under(home)
    finally:
        for server in (registry, storage):
            server.shutdown()
            server.server_close()


def test_a_bearer_token_is_renewed_before_it_runs_out(tmp_path: Path, arts: tuple[Path, list[Manifest]]) -> None:
    """Expiry: a long download outlives a short-lived token; the fetcher's workers ask the hook per request,
    which asks the realm again once most of the token's lifetime is gone (never sends a stale one)."""
    import time

    from phi_get.resolver.oci import _RepoAuth

    with oci_registry(tmp_path / "reg", auth="token") as reg:
        assert reg.tokens is not None
        reg.tokens.lifetime = 1
        auth = _RepoAuth((USER, PASSWORD), "models/tiny-phi")
        auth.answer(f'Bearer realm="{reg.tokens.url}",service="phi-test-registry"', "test")
        first = auth.header()
        assert first is not None and first.startswith("Bearer ") and auth.header() == first
        time.sleep(1.1)
        assert auth.header() not in (None, first)
        assert reg.tokens.granted == ["repository:models/tiny-phi:pull"] * 2


def test_a_model_the_registry_does_not_have_is_no_match(basic: OciRegistry, tmp_path: Path) -> None:
    """Missing repository: the registry's 404 (NAME_UNKNOWN) means the source does not list the model."""
    r = phi("install", "no-such-model", "--registry", basic.url(), env=_env(tmp_path / "h"), ok=False)
    assert r.returncode == 3 and "no source lists the model 'no-such-model'" in r.stderr, r.stderr


def test_dropped_blob_connections_resume_where_they_stopped_with_the_token_each_time(tmp_path: Path) -> None:
    """Faults mid-blob: a registry that cuts every range halfway through its first answer; the fetcher asks
    again from where each part got to (a Range starting past the part's start), each time with the bearer
    token, and places the verified blob. A stub registry: distribution never cuts a response."""
    import http.server
    import re
    import threading

    from phi_get.manifests.index import IndexEntry
    from phi_get.manifests.oci import Variant, image_index
    from phi_get.registry.testing import make_manifest

    weights = os.urandom(17 << 20)
    sha = hashlib.sha256(weights).hexdigest()
    manifest = make_manifest([("model.gguf", len(weights), sha)], targets=TARGETS)
    data = manifest.to_bytes()
    index = image_index([Variant(name="tiny-phi", entry=IndexEntry.from_manifest(manifest),
                                 digest="sha256:" + "f" * 64, size=10)])
    asked: list[tuple[int, int, str | None]] = []
    cut: set[int] = set()
    lock = threading.Lock()

    class Registry(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for k, v in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(k.replace("_", "-"), v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            port = self.server.server_address[1]
            if self.path.startswith("/token"):
                return self.answer(200, b'{"token": "tok-9", "expires_in": 300}')
            if self.headers.get("Authorization") != "Bearer tok-9":
                return self.answer(401, WWW_Authenticate=f'Bearer realm="http://127.0.0.1:{port}/token"')
            if self.path == "/v2/models/tiny-phi/manifests/phi-get.index":
                return self.answer(200, index)
            if self.path == f"/v2/models/tiny-phi/blobs/{manifest.digest}":
                return self.answer(200, data)
            if self.path != f"/v2/models/tiny-phi/blobs/sha256:{sha}":
                return self.answer(404)
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
            assert m, self.headers.get("Range")
            start, end = int(m[1]), int(m[2])
            with lock:
                asked.append((start, end, self.headers.get("Authorization")))
                first = end not in cut
                cut.add(end)
            body = weights[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(weights)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if first else body)
            if first:
                self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        home = tmp_path / "home"
        r = phi("install", "tiny-phi", "--json", "--registry", f"oci://127.0.0.1:{server.server_address[1]}/models",
                env=_env(home))
        assert json.loads(r.stdout)["manifest"] == manifest.digest
        starts = {end: start for start, end, _ in sorted(asked, reverse=True)}  # each part's first start
        retries = [(s, e) for s, e, _ in asked if s != starts[e]]
        assert len(cut) >= 2 and len(retries) >= len(cut)
        assert all(s > starts[e] for s, e in retries)  # resumed, not started over
        assert {a for _, _, a in asked} == {"Bearer tok-9"}
    finally:
        server.shutdown()
        server.server_close()


def test_bundle_export_refuses_a_missing_lock_and_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    """Bad input: no lock, or a non-empty folder that is not an OCI layout: a clear error, nothing written."""
    env = _env(tmp_path / "h")
    r = phi("bundle", "export", "--lock", str(tmp_path / "phi.lock"), str(tmp_path / "b"), env=env, ok=False)
    assert r.returncode == 2 and "no such lock file" in r.stderr and not (tmp_path / "b").exists(), r.stderr
    (tmp_path / "phi.lock").write_text("")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = phi("bundle", "export", "--lock", str(tmp_path / "phi.lock"), str(other), env=env, ok=False)
    assert r.returncode == 2 and "is not an OCI image layout; refusing" in r.stderr, r.stderr
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
