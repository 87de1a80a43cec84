"""``phi-get publish`` against a hostile server (tests/kit/hostile.py): SECURITY.md's credentials in a URL, redirects and retries.

Class 6: a redirect is refused with the URL and the Location, before any
upload (it used to be taken for success, and the commit then crashed).
Class 2: credentials in the registry URL go as HTTP Basic and appear in no
output.  Each runs the real CLI as a process.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from hostile import HostileServer, Rule  # tests/kit: on sys.path from conftest.py
from phi_get.registry.testing import write_artifact

SECRET = "s3cr3t-T0KEN"
BASIC = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()


def publish(folder: Path, registry: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PHI_GET_TOKEN", "PHI_GET_REGISTRY")}
    return subprocess.run([sys.executable, "-m", "phi_get", "publish", str(folder), "--registry", registry, *extra],
                          capture_output=True, text=True, timeout=60, check=False, env=env)


def _artifact(tmp_path: Path) -> tuple[Path, str]:
    data = os.urandom(20_000)
    write_artifact(tmp_path / "out" / "tiny-phi" / "0.1.0" / "gguf-q4_k_m", {"model.gguf": data})
    import hashlib

    return tmp_path / "out", hashlib.sha256(data).hexdigest()


def test_publish_refuses_a_redirect_naming_the_url_and_the_location(tmp_path: Path) -> None:
    """Class 6: every answer is a 307 elsewhere; publish stops at the first with a clear error, uploads nothing."""
    out, sha = _artifact(tmp_path)
    (tmp_path / "empty").mkdir()
    rule = Rule(match="/v1/", redirect_status=307, redirect="http://bob:hunter2@127.0.0.1:9/elsewhere{path}")
    with HostileServer(tmp_path / "empty", rule) as srv:
        proc = publish(out, srv.url.replace("http://", f"http://alice:{SECRET}@"))
        methods = {r.method for r in srv.requests}
    assert proc.returncode == 5, proc.stderr
    assert (f"error: checking blob sha256:{sha}: the registry answered HTTP 307, redirecting to "
            f"http://***@127.0.0.1:9/elsewhere/v1/blobs/sha256/{sha} ({srv.url}/v1/blobs/sha256/{sha}); "
            "publishing does not follow redirects\n") in proc.stderr
    assert methods == {"HEAD"}  # nothing uploaded, nothing committed
    assert "Traceback" not in proc.stderr
    for text in (proc.stdout, proc.stderr):
        assert SECRET not in text and "hunter2" not in text


def test_publish_sends_url_credentials_as_basic_and_never_shows_them(tmp_path: Path) -> None:
    """Class 2: a failing registry behind ``http://alice:TOKEN@host`` is named without the credential, which
    went as Basic; credentials and a token together are refused before anything is sent."""
    out, sha = _artifact(tmp_path)
    (tmp_path / "empty").mkdir()
    with HostileServer(tmp_path / "empty", Rule(match="/v1/", status=500)) as srv:
        registry = srv.url.replace("http://", f"http://alice:{SECRET}@")
        proc = publish(out, registry)
        both = publish(out, registry, "--token", "phig_abc_def")
        seen = srv.requests
    assert proc.returncode == 5
    assert (f"error: checking blob sha256:{sha}: HTTP 500 from {srv.url}/v1/blobs/sha256/{sha}: ''\n"
            in proc.stderr)
    assert seen and all(r.headers.get("Authorization") == BASIC for r in seen)
    assert both.returncode == 2
    assert (f"error: the registry URL http://***@127.0.0.1:{srv.port} carries credentials and a token was given: "
            "only one can be sent as Authorization") in both.stderr
    assert len(srv.requests) == len(seen)  # the refused one sent nothing
    for p in (proc, both):
        assert "Traceback" not in p.stderr
        assert SECRET not in p.stdout and SECRET not in p.stderr


def test_a_malformed_registry_url_is_refused_without_its_credentials(tmp_path: Path) -> None:
    """Class 2: the URL check's own refusal names the URL redacted."""
    out, _sha = _artifact(tmp_path)
    proc = publish(out, f"http://alice:{SECRET}@127.0.0.1:notaport")
    assert proc.returncode == 2
    assert "error: the registry URL's port must be a number in 0-65535 (got 'http://***@127.0.0.1:notaport')" \
        in proc.stderr
    assert SECRET not in proc.stderr and "Traceback" not in proc.stderr
