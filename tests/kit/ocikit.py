"""Real OCI parts on loopback for the OCI tests: the CNCF distribution registry and a token server.

* :func:`oci_registry` starts Debian's ``docker-registry`` (distribution 2.8)
  on an ephemeral loopback port with storage in a temporary folder, with
  htpasswd auth (``auth="basic"``), bearer tokens (``auth="token"``) or none;
* the token server is this test kit's own (:class:`TokenServer`): it checks
  HTTP Basic credentials against one user and signs RS256 JWTs with an
  ``x5c`` header and an ``access`` claim granting exactly the scope asked,
  as distribution's token auth expects; it records every scope it granted.

Skips the test when ``docker-registry`` is not installed (``.ci/run``
installs it).
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from phi_get.demo import free_port

__all__ = ["PASSWORD", "USER", "OciRegistry", "TokenServer", "oci_registry"]

USER = "pusher"
PASSWORD = "s3cret-Pa55-Zq9"
SERVICE = "phi-test-registry"
ISSUER = "phi-test-issuer"


@dataclass
class TokenServer:
    """A token server of this test kit: Basic credentials in, a signed JWT granting the asked scope out."""

    key_pem: bytes
    cert_der: bytes
    url: str = ""
    lifetime: int = 300  # seconds, the token's exp and expires_in
    granted: list[str] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    def sign(self, scope: str) -> str:
        import jwt

        access = []
        for item in scope.split(" ") if scope else []:
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + self.lifetime, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        headers = {"x5c": [base64.b64encode(self.cert_der).decode()]}
        return jwt.encode(claims, self.key_pem, algorithm="RS256", headers=headers)

    def start(self) -> None:
        kit = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                want = f"Basic {base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}"
                if self.headers.get("Authorization") != want:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                scope = " ".join(query.get("scope", []))
                kit.granted.append(scope)
                body = json.dumps({"token": kit.sign(scope), "expires_in": kit.lifetime}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _key_and_cert(folder: Path) -> tuple[bytes, bytes, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phi-test-token-signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = folder / "token-root.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.DER), pem


@dataclass
class OciRegistry:
    host: str            # 127.0.0.1:PORT
    storage: Path        # the registry's filesystem root
    auth: str
    log: Path            # the registry's log, with its access log
    tokens: TokenServer | None = None

    def url(self, namespace: str = "models", *, creds: bool = False) -> str:
        who = f"{USER}:{PASSWORD}@" if creds else ""
        return f"oci://{who}{self.host}/{namespace}"

    def _log_lines(self) -> list[str]:
        """The log's lines once it stopped growing for 0.2 s (the registry writes a line after answering)."""
        size, still = -1, time.monotonic()
        deadline = still + 5
        while time.monotonic() < deadline:
            now = self.log.stat().st_size
            if now != size:
                size, still = now, time.monotonic()
            elif time.monotonic() - still >= 0.2:
                break
            time.sleep(0.05)
        return self.log.read_text().splitlines()

    def ranged_gets(self, digest: str) -> list[int]:
        """The byte counts of the 206 answers to GETs of a blob, from the registry's access log."""
        wanted = f"/blobs/{digest} HTTP/1.1\" 206 "
        return [int(line.split(wanted, 1)[1].split()[0]) for line in self._log_lines() if wanted in line]

    def requests(self) -> list[str]:
        """Every request line of the registry's access log so far (``GET /v2/... HTTP/1.1``)."""
        return [line.split('"', 2)[1] for line in self._log_lines() if '] "' in line]

    def blob_file(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def _wait_up(host: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for auth
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not answer within 20 s")


@contextmanager
def oci_registry(folder: Path, *, auth: str = "none") -> Iterator[OciRegistry]:
    """The distribution registry on loopback: ``auth`` is "none", "basic" (htpasswd) or "token"."""
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.skip("docker-registry (Debian package) is not installed; .ci/run installs it")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    storage = folder / "storage"
    lines = ["version: 0.1", "log:", "  level: info", "  accesslog:", "    disabled: false", "storage:", "  filesystem:",
             f"    rootdirectory: {storage}", "  delete:", "    enabled: true", "http:", f"  addr: {host}"]
    tokens = None
    if auth == "basic":
        hashed = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True).stdout
        (folder / "htpasswd").write_bytes(hashed)
        lines += ["auth:", "  htpasswd:", "    realm: phi-test", f"    path: {folder / 'htpasswd'}"]
    elif auth == "token":
        key_pem, cert_der, pem = _key_and_cert(folder)
        tokens = TokenServer(key_pem=key_pem, cert_der=cert_der)
        tokens.start()
        lines += ["auth:", "  token:", f"    realm: {tokens.url}", f"    service: {SERVICE}",
                  f"    issuer: {ISSUER}", f"    rootcertbundle: {pem}"]
    cfg = folder / "config.yml"
    cfg.write_text("\n".join(lines) + "\n")
    log = folder / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_up(host, proc, log)
        yield OciRegistry(host=host, storage=storage, auth=auth, log=log, tokens=tokens)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if tokens is not None:
            tokens.stop()
