"""Registry administration mistakes through the real ``phi-get registry`` : where the registry
lives, ``serve`` on a bad or busy port, the access log, and publish/yank/token output for scripts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from phi_get.demo import free_port
from phi_get.manifests.errors import ExitCode
from phi_get.registry.testing import write_artifact
from serve import PHI_GET, registry_serve

#: No administration setting leaks in from the machine running the tests.
CLEAN = {"PHI_GET_REGISTRY_STORAGE": "", "PHI_GET_REGISTRY_DB": "", "PHI_GET_REGISTRY": ""}


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PHI_GET, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
                          env={**os.environ, **CLEAN, "PHI_GET_REGISTRY_CONFIG": os.devnull, **(env or {})})


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes], Path]]:
    """`registry serve` on a fresh storage folder, its stderr in a file; yields (url, storage, process, log)."""
    storage, log = tmp_path / "reg", tmp_path / "serve.log"
    with registry_serve("--storage", str(storage), log=log,
                        env={**os.environ, **CLEAN, "PHI_GET_REGISTRY_CONFIG": os.devnull}) as served:
        yield served.url, storage, served.process, log


def test_token_create_without_a_storage_creates_nothing_in_the_cwd(tmp_path: Path) -> None:
    """`token create` without --storage minted into a new ./registry-data the server never reads."""
    out = run("registry", "token", "create", "--scope", "admin", cwd=tmp_path)
    assert out.returncode == ExitCode.BAD_INPUT and out.stdout == ""
    assert "no storage folder given" in out.stderr and "PHI_GET_REGISTRY_STORAGE" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_token_list_on_a_mistyped_storage_is_an_error_not_an_empty_catalog(tmp_path: Path) -> None:
    """`token list --storage typo` created an empty catalog and exited 0."""
    for args in (["token", "list"], ["token", "revoke", "abc"], ["gc"], ["export", str(tmp_path / "m")]):
        out = run("registry", *args, "--storage", str(tmp_path / "typo"))
        assert out.returncode == ExitCode.NOT_FOUND, (args, out.stderr)
        assert "no registry at storage folder" in out.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / "m").exists()


def test_storage_from_the_environment_is_shared_by_every_admin_command(tmp_path: Path) -> None:
    """One place finds the registry: PHI_GET_REGISTRY_STORAGE serves token create and token list alike."""
    env = {"PHI_GET_REGISTRY_STORAGE": str(tmp_path / "reg")}
    assert run("registry", "token", "create", "--scope", "admin", "--note", "ops", env=env).returncode == 0
    listed = run("registry", "token", "list", "--json", env=env)
    rows = json.loads(listed.stdout)
    assert [r["note"] for r in rows] == ["ops"] and rows[0]["created"].endswith("+00:00")  # ISO 8601, not epoch
    table = run("registry", "token", "list", env=env).stdout.splitlines()
    assert table[0].split()[:2] == ["ID", "SCOPES"]
    revoked = run("registry", "token", "revoke", rows[0]["id"], "--json", env=env)
    assert json.loads(revoked.stdout) == {"revoked": rows[0]["id"]}


def test_serve_refuses_a_port_out_of_range(tmp_path: Path) -> None:
    """`--port 99999` printed that URL and listened on some other port."""
    out = run("registry", "serve", "--storage", str(tmp_path / "reg"), "--port", "99999")
    assert out.returncode == ExitCode.BAD_INPUT and "--port" in out.stderr
    assert not (tmp_path / "reg").exists()


def test_serve_on_a_busy_port_says_so_and_exits_unavailable(tmp_path: Path) -> None:
    """A busy port gave uvicorn's raw error and exit 3 ("nothing matches")."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        out = run("registry", "serve", "--storage", str(tmp_path / "reg"), "--port", str(port))
    assert out.returncode == ExitCode.UNAVAILABLE
    assert f"error: cannot listen on 127.0.0.1:{port}: the port is in use by another process" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "reg").exists()


@pytest.mark.slow
def test_access_log_logs_requests_and_publish_yank_speak_json(server: tuple[str, Path, object, Path],
                                                              tmp_path: Path) -> None:
    """--access-log (on by default) logged nothing; publish and yank ignored PHI_GET_REGISTRY and had no --json."""
    url, storage, _proc, log = server
    httpx.get(url + "/v1/catalog.json", timeout=5)
    deadline = time.monotonic() + 10
    while "GET /v1/catalog.json" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "GET /v1/catalog.json" in log.read_text()

    token = run("registry", "token", "create", "--storage", str(storage), "--scope", "publish:*").stdout.strip()
    write_artifact(tmp_path / "out" / "tiny-phi" / "0.1.0" / "gguf-q4_k_m", {"model.gguf": os.urandom(20_000)})
    env = {"PHI_GET_REGISTRY": url, "PHI_GET_TOKEN": token}
    pub = run("publish", str(tmp_path / "out"), "--json", env=env)
    assert pub.returncode == 0, pub.stderr
    doc = json.loads(pub.stdout)
    assert doc[0]["created"] is True and doc[0]["bytes_uploaded"] == 20_000 and token not in pub.stdout + pub.stderr
    yank = run("registry", "yank", "tiny-phi", "0.1.0", "--reason", "broken", "--json", env=env)
    assert yank.returncode == 0, yank.stderr
    json.loads(yank.stdout)
    text = run("registry", "yank", "tiny-phi", "0.1.0", "--undo", "-r", url, env={"PHI_GET_TOKEN": token})
    assert text.stdout.strip() == "un-yanked tiny-phi 0.1.0 (every variant)" and "{" not in text.stdout


@pytest.mark.slow
def test_publish_shows_progress_during_a_large_upload(server: tuple[str, Path, object, Path], tmp_path: Path) -> None:
    """Publishing 2 GiB showed no progress for 8 s: a large blob reports the bytes sent while it travels."""
    url, storage, _proc, _log = server
    token = run("registry", "token", "create", "--storage", str(storage), "--scope", "publish:*").stdout.strip()
    folder = tmp_path / "out" / "tiny-phi" / "0.1.0" / "gguf-q4_k_m"
    write_artifact(folder, {"model.gguf": b"x"})
    with open(folder / "model.gguf", "wb") as fh:  # 210 MB, written in pieces (the manifest is rewritten below)
        fh.writelines(os.urandom(1_000_000) for _ in range(210))
    write_artifact(folder, {"model.gguf": (folder / "model.gguf").read_bytes()})
    out = run("publish", str(tmp_path / "out"), "-r", url, env={"PHI_GET_TOKEN": token})
    assert out.returncode == 0, out.stderr
    progress = [line for line in out.stderr.splitlines() if line.startswith("  sent ")]
    assert len(progress) >= 2 and "MB so far" in progress[0], out.stderr
    assert "committed tiny-phi 0.1.0 gguf-q4_k_m after uploading 210 MB" in out.stderr


def test_a_storage_that_is_a_file_is_bad_input_not_a_traceback(tmp_path: Path) -> None:
    """--storage naming a file (or a folder that cannot be made) gave a Python traceback."""
    afile = tmp_path / "afile"
    afile.write_text("not a registry")
    for args in (["serve", "--port", str(free_port())], ["token", "create", "--scope", "admin"], ["token", "list"]):
        out = run("registry", *args, "--storage", str(afile))
        assert out.returncode == ExitCode.BAD_INPUT, (args, out.stderr)
        assert "Traceback" not in out.stderr and str(afile) in out.stderr
    assert afile.read_text() == "not a registry"


@pytest.mark.parametrize(("content", "message"), [
    (b"storage = " + b"[" * 5000 + b"]" * 5000, "nested more than 64 arrays or objects deep"),
    (b"storage = " + b"9" * 5000, "integer"),
    (b"stroage = '/srv'", "unknown key"),
    (b"\xff\xfe", "codec can't decode byte 0xff"),
], ids=["deep-nesting", "huge-integer", "unknown-key", "not-utf8"])
def test_a_hostile_registry_config_file_is_bad_input_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    """The registry's config file goes through the one loader (was tomllib with a narrow except)."""
    config = tmp_path / "registry.toml"
    config.write_bytes(content)
    proc = run("registry", "token", "list", env={"PHI_GET_REGISTRY_CONFIG": str(config)})
    assert proc.returncode == ExitCode.BAD_INPUT, (proc.stdout, proc.stderr)
    assert str(config) in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
