"""The real ``phi-get`` against a hostile server (hostile.py) and hostile mirrors (SECURITY.md: credentials in a URL; no deadline, no size cap; redirects, retries and lies).

Class 2: a credential in a registry URL is sent as HTTP Basic to its origin
only and never shown or stored.  Class 5: every read has a deadline (a
total time for documents, a minimum rate for blobs) and a size cap,
``file://`` included.  Class 6: redirects are followed for GETs (bounded,
http(s) only, without credentials to another origin) and 429/503 are
retried after the ``Retry-After`` asked for.  Each test runs the real CLI
as a process and checks the exact refusal, that no traceback was printed,
and that nothing was placed or leaked.
"""

from __future__ import annotations

import base64
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hostile import HostileServer, Rule
from wirekit import ONE_CLASS_PROJECT

SECRET = "s3cr3t-T0KEN"
BASIC = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
INDEX = "/v1/models/tiny-model/index.json"
BLOBS = "/v1/blobs/sha256/"


def phi(*args: str, home: Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60,
        memory: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``phi-get`` as a process; a hang past ``timeout`` fails the test (the old code hung)."""
    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    full = {**os.environ, "PHI_GET_HOME": str(home), **(env or {})}
    if "PHI_GET_REGISTRY" not in (env or {}):
        full.pop("PHI_GET_REGISTRY", None)
    try:
        return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                              env=full, cwd=cwd, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"phi-get {' '.join(args)} was still running after {timeout} s")


def with_secret(url: str) -> str:
    return url.replace("http://", f"http://alice:{SECRET}@")


def shown(url: str) -> str:
    return url.replace("http://", "http://***@")


def assert_clean(proc: subprocess.CompletedProcess[str], *files: Path) -> None:
    """No traceback, and the secret in no output and no file under ``files`` (folders walked)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    for top in files:
        for path in [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]:
            assert SECRET.encode() not in path.read_bytes(), path


def assert_nothing_placed(home: Path, sha256: str | None = None) -> None:
    """No artifact placed, and no blob (or not the blob ``sha256``, when the others may have been fetched)."""
    blobs = home / "blobs" / "sha256"
    if sha256 is None:
        assert not blobs.exists() or not any(blobs.iterdir())
    else:
        assert not (blobs / sha256).exists()
    arts = home / "artifacts" / "sha256"
    assert not arts.exists() or not any(arts.iterdir())


def test_a_credential_in_the_url_is_sent_as_basic_to_its_origin_and_never_shown_or_stored(
        mirror: Any, tmp_path: Path) -> None:
    """Class 2: install, lock, sync and list with ``http://user:TOKEN@host``; the registry demands the credential."""
    home = tmp_path / "home"
    with HostileServer(mirror[0], Rule(match="/v1/", require_auth=BASIC)) as srv:
        registry = with_secret(srv.url)
        inst = phi("install", "tiny-model", "--registry", registry, "--device", "pi-board", "--json", home=home)
        assert inst.returncode == 0, inst.stderr
        assert all(r.headers.get("Authorization") == BASIC for r in srv.requests)
        listed = phi("list", "--available", "--registry", registry, "--json", home=home)
        assert listed.returncode == 0, listed.stderr
        assert f'"source": "{shown(srv.url)}"' in listed.stdout
        proj = tmp_path / "proj"
        proj.mkdir()
        (proj / "phi.toml").write_text(ONE_CLASS_PROJECT.format(url=srv.url))
        locked = phi("lock", "--registry", registry, "--json", home=home, cwd=proj)
        assert locked.returncode == 0, locked.stderr
        lock_text = (proj / "phi.lock").read_text()
        assert f'"{srv.url}"' in lock_text and "***" not in lock_text  # stored without any credential
        # A committed lock has no secret: sync borrows it from PHI_GET_REGISTRY (same origin).
        synced = phi("sync", "--locked", "--json", home=tmp_path / "home2", cwd=proj,
                     env={"PHI_GET_REGISTRY": registry})
        assert synced.returncode == 0, synced.stderr
    for proc in (inst, listed, locked, synced):
        assert_clean(proc, home, tmp_path / "home2", proj)


def test_a_refused_or_failing_source_is_named_redacted(mirror: Any, tmp_path: Path) -> None:
    """Class 2: errors about a credentialed source (index refused, blob missing) show ``http://***@host``."""
    home = tmp_path / "home"
    with HostileServer(mirror[0], Rule(match=INDEX, status=401)) as srv:
        resolved = phi("resolve", "tiny-model", "--registry", with_secret(srv.url), "--device", "pi-board",
                       "--json", home=home)
    assert resolved.returncode == 5
    assert f"error: the source answered HTTP 401 ({shown(srv.url)}{INDEX})\n" in resolved.stderr
    assert "hint: the URL's credentials (user:token@) are missing or refused" in resolved.stderr
    with HostileServer(mirror[0], Rule(match=BLOBS, status=404)) as srv:
        installed = phi("install", "tiny-model", "--registry", with_secret(srv.url), "--device", "pi-board",
                        "--json", home=home)
    assert installed.returncode == 5
    assert f"blob not found ({shown(srv.url)}{BLOBS}" in installed.stderr
    for proc in (resolved, installed):
        assert_clean(proc, home)
    assert_nothing_placed(home)


def test_blobs_follow_a_redirect_to_another_origin_without_the_credential(mirror: Any, tmp_path: Path) -> None:
    """Classes 2 and 6: the registry sends blobs to a CDN (another port, another origin); the index is
    redirected within the origin.  The CDN never sees the Authorization header; the registry always does."""
    home = tmp_path / "home"
    with HostileServer(mirror[0]) as cdn, HostileServer(
            mirror[0], Rule(match=INDEX, times=1, redirect="{path}?moved"),
            Rule(match=BLOBS, redirect=cdn.url + "{path}")) as registry:
        proc = phi("install", "tiny-model", "--registry", with_secret(registry.url), "--device", "pi-board",
                   home=home)
        assert proc.returncode == 0, proc.stderr
        assert [r.path for r in registry.requests_for(INDEX)] == [INDEX, INDEX + "?moved"]
        assert all(r.headers.get("Authorization") == BASIC for r in registry.requests)
        assert cdn.requests_for(BLOBS) and all("Authorization" not in r.headers for r in cdn.requests)
    assert_clean(proc, home)


@pytest.mark.parametrize(("rule", "message"), [
    (Rule(match=INDEX, redirect="{path}"), "more than 5 redirects (the last to {url}/v1/models/tiny-model/index.json)"),
    (Rule(match=INDEX, redirect="file:///etc/passwd"),
     "the source redirected to 'file:///etc/passwd', which is not http(s); refused ({url}{index})"),
])
def test_a_redirect_loop_or_a_redirect_to_a_local_file_is_refused(mirror: Any, tmp_path: Path, rule: Rule,
                                                                   message: str) -> None:
    """Class 6: redirects are bounded and never lead to ``file://``."""
    with HostileServer(mirror[0], rule) as srv:
        proc = phi("resolve", "tiny-model", "--registry", srv.url, "--device", "pi-board", home=tmp_path / "h")
    assert proc.returncode == 5
    assert "error: " + message.format(url=srv.url, index=INDEX) in proc.stderr
    assert_clean(proc)


@pytest.mark.parametrize("rule", [
    Rule(match=INDEX, trickle=0.3),        # the body, a byte every 0.3 s
    Rule(match=INDEX, trickle_head=0.3),   # the status line and headers, a byte every 0.3 s
    Rule(match=INDEX, stall=True),         # the head, then silence
], ids=["trickled-body", "trickled-head", "stalled"])
def test_a_slow_index_fails_within_the_document_deadline(mirror: Any, tmp_path: Path, rule: Rule) -> None:
    """Class 5: an index that never finishes arriving fails ``resolve`` once PHI_GET_DOC_TIMEOUT_S has passed."""
    with HostileServer(mirror[0], rule) as srv:
        start = time.monotonic()
        proc = phi("resolve", "tiny-model", "--registry", srv.url, "--device", "pi-board", home=tmp_path / "h",
                   env={"PHI_GET_DOC_TIMEOUT_S": "2"}, timeout=40)
        took = time.monotonic() - start
    assert proc.returncode == 5, proc.stderr
    assert (f"error: no complete answer within 2 s (the source sends too slowly or not at all) ({srv.url}{INDEX})\n"
            "hint: PHI_GET_DOC_TIMEOUT_S sets the limit") in proc.stderr
    assert took < 2 + 6  # the deadline, plus a process start on a busy machine
    assert_clean(proc)


def test_a_trickled_blob_fails_on_the_minimum_rate(mirror: Any, tmp_path: Path) -> None:
    """Class 5: a blob trickled at 20 bytes/s is dropped by the minimum-rate rule and, since a trickle is no
    progress, fails after the part's tries, naming the URL and the rate; nothing is placed."""
    home = tmp_path / "home"
    with HostileServer(mirror[0], Rule(match=BLOBS, trickle=0.05)) as srv:
        start = time.monotonic()
        proc = phi("install", "tiny-model", "--registry", srv.url, "--device", "pi-board", home=home,
                   env={"PHI_GET_MIN_RATE": "20000", "PHI_GET_RATE_WINDOW_S": "1"}, timeout=60)
        took = time.monotonic() - start
    assert proc.returncode == 5, proc.stderr
    assert "failed after 4 attempts; last: the source sent" in proc.stderr
    assert f"below the minimum rate of 20000 bytes/s (PHI_GET_MIN_RATE, PHI_GET_RATE_WINDOW_S) ({srv.url}{BLOBS}" \
        in proc.stderr
    assert took < 30
    assert_clean(proc)
    assert_nothing_placed(home, _weights(mirror).sha256)


def test_retry_after_is_honoured_for_the_index(mirror: Any, tmp_path: Path) -> None:
    """Class 6: an index answered 503 and 429 with Retry-After: 1 is fetched on the third try, each a second
    or more after the one before (measured from the server's log)."""
    with HostileServer(mirror[0], Rule(match=INDEX, times=1, status=503, retry_after="1"),
                       Rule(match=INDEX, times=1, status=429, retry_after="1")) as srv:
        proc = phi("resolve", "tiny-model", "--registry", srv.url, "--device", "pi-board", home=tmp_path / "h")
        times = [r.at for r in srv.requests_for(INDEX)]
    assert proc.returncode == 0, proc.stderr
    assert "tiny-model 0.2.0" in proc.stdout
    assert len(times) == 3 and all(1.0 <= b - a < 4.0 for a, b in zip(times, times[1:], strict=False))
    assert_clean(proc)


def test_retry_after_is_honoured_for_a_blob_part(mirror: Any, tmp_path: Path) -> None:
    """Class 6: a blob part answered 429 with Retry-After: 1 is asked again no sooner than a second later."""
    weights = _weights(mirror).sha256
    with HostileServer(mirror[0], Rule(match=weights, times=1, status=429, retry_after="1")) as srv:
        proc = phi("install", "tiny-model", "--registry", srv.url, "--device", "pi-board", home=tmp_path / "h")
        times = [r.at for r in srv.requests_for(weights)]
    assert proc.returncode == 0, proc.stderr
    assert len(times) == 2 and 1.0 <= times[1] - times[0] < 4.0
    assert_clean(proc)


def _weights(mirror: Any) -> Any:
    return next(f for f in mirror[1][1].files if f.path == "model.bin")


def test_lies_about_lengths_and_ranges_are_named(mirror: Any, tmp_path: Path) -> None:
    """Classes 5 and 6: a Content-Range for another blob size, a Content-Length that is not the range's,
    and an index that ends before its Content-Length, each refused with what was wrong."""
    w = _weights(mirror)
    home = tmp_path / "home"
    cases = [
        (Rule(match=w.sha256, content_range=f"bytes 0-{w.size - 1}/999"),
         f"the source answered the wrong range 'bytes 0-{w.size - 1}/999' for bytes=0-{w.size - 1} "
         f"of a {w.size}-byte blob"),
        (Rule(match=w.sha256, content_length=w.size + 10),
         f"the source declared Content-Length {w.size + 10} for {w.size} bytes"),
    ]
    for rule, message in cases:
        with HostileServer(mirror[0], rule) as srv:
            proc = phi("install", "tiny-model", "--registry", srv.url, "--device", "pi-board", home=home)
        assert proc.returncode == 5, proc.stderr
        assert f"last: {message} ({srv.url}{BLOBS}{w.sha256})" in proc.stderr
        assert_clean(proc)
        assert_nothing_placed(home, w.sha256)
    size = len((mirror[0] / INDEX.lstrip("/")).read_bytes())
    with HostileServer(mirror[0], Rule(match=INDEX, extra=-10)) as srv:
        proc = phi("resolve", "tiny-model", "--registry", srv.url, "--device", "pi-board", home=home)
    assert proc.returncode == 5
    assert (f"error: gave up after 4 tries: the answer ended after {size - 10} of the {size} bytes it declared "
            f"({srv.url}{INDEX})") in proc.stderr
    assert_clean(proc)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _sparse_8g(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(8 << 30)


@pytest.mark.parametrize(("make", "message"), [
    (_fifo, "error: not a regular file in the mirror; refused ({url})"),
    (_dev_zero, "error: not a regular file in the mirror; refused ({url})"),
    (_sparse_8g, "error: invalid {url}: document is more than 67108864 bytes, the limit"),
], ids=["fifo", "dev-zero", "sparse-8GiB"])
def test_a_file_mirror_index_is_read_no_further_than_the_limit(mirror: Any, tmp_path: Path, make: Any,
                                                               message: str) -> None:
    """Class 5: a ``file://`` index that is a FIFO, ``/dev/zero`` or 8 GiB is refused, with memory capped at
    1 GiB (the old code blocked in open() or read the whole file into memory)."""
    index = mirror[0] / INDEX.lstrip("/")
    index.unlink()
    make(index)
    proc = phi("resolve", "tiny-model", "--registry", mirror[0].as_uri(), "--device", "pi-board",
               home=tmp_path / "h", memory=1 << 30, timeout=40)
    assert proc.returncode in (2, 5), proc.stderr
    assert message.format(url=index.as_uri()) in proc.stderr
    assert_clean(proc)


def test_a_file_mirror_blob_of_another_size_or_kind_is_refused(mirror: Any, tmp_path: Path) -> None:
    """Class 5: a mirror blob longer than declared (the right bytes, then more) or a link to /dev/zero is not
    copied: the manifest's size is the most that is read, and only from a regular file."""
    w = _weights(mirror)
    blob = mirror[0] / BLOBS.lstrip("/") / w.sha256
    original = blob.read_bytes()
    home = tmp_path / "home"
    blob.write_bytes(original + b"more")
    proc = phi("install", "tiny-model", "--registry", mirror[0].as_uri(), "--device", "pi-board", home=home)
    assert proc.returncode == 5
    assert (f"last: blob in the mirror is {w.size + 4} bytes, not the {w.size} the manifest declares "
            f"({blob.as_uri()})") in proc.stderr
    assert_clean(proc)
    assert_nothing_placed(home, w.sha256)
    blob.unlink()
    blob.symlink_to("/dev/zero")
    proc = phi("install", "tiny-model", "--registry", mirror[0].as_uri(), "--device", "pi-board", home=home)
    assert proc.returncode == 5
    assert f"last: not a regular file in the mirror; refused ({blob.as_uri()})" in proc.stderr
    assert_clean(proc)
    assert_nothing_placed(home, w.sha256)
