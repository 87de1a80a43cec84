"""The command line end to end, as the demo uses it: ``phi-get registry serve``
as a subprocess, ``token create`` printing only the token, ``publish`` with the
token from the environment (never echoed), ``export``, ``gc`` and ``yank``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from phi_get.manifests.index import parse_model_index
from phi_get.registry.testing import write_artifact
from serve import PHI_GET, registry_serve


def run(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PHI_GET, *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})
    if ok:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture()
def served(tmp_path: Path, catalog_url: str) -> Iterator[tuple[str, str, Path]]:
    """`phi-get registry serve` in a subprocess, over SQLite and over PostgreSQL;
    yields (url, db url, storage)."""
    storage = tmp_path / "store"
    with registry_serve("--db", catalog_url, "--storage", str(storage), "--host", "127.0.0.1") as server:
        yield server.url, catalog_url, storage


@pytest.mark.slow
def test_demo_flow_through_the_cli(served: tuple[str, str, Path], tmp_path: Path) -> None:
    url, db, storage = served
    minted = run("registry", "token", "create", "--db", db, "--scope", "publish:tiny-phi")
    token = minted.stdout.strip()
    assert minted.stdout == token + "\n" and token.startswith("phig_") and minted.stderr == ""
    write_artifact(tmp_path / "out" / "tiny-phi" / "0.1.0" / "gguf-q4_k_m", {"model.gguf": os.urandom(50_000)})
    write_artifact(tmp_path / "out" / "tiny-phi" / "0.1.0" / "onnx-int4", {"model.onnx": os.urandom(30_000)},
                   variant="onnx-int4")
    first = run("publish", str(tmp_path / "out"), "--registry", url, env={"PHI_GET_TOKEN": token})
    assert first.stdout.count("published tiny-phi 0.1.0") == 2
    assert "uploaded 1 blob(s), 50.0 kB" in first.stdout and "uploaded 1 blob(s), 30.0 kB" in first.stdout
    assert token not in first.stdout + first.stderr
    again = run("publish", str(tmp_path / "out"), "--registry", url, "--token", token)
    assert again.stdout.count("already published") == 2 and again.stdout.count("uploaded 0 blob(s), 0 B") == 2
    assert token not in again.stdout + again.stderr

    refused = run("publish", str(tmp_path / "out"), "--registry", url, env={"PHI_GET_TOKEN": "phig_x"}, ok=False)
    assert refused.returncode == 2 and "invalid token" in refused.stderr and "phig_x" not in refused.stderr

    mirror = tmp_path / "mirror"
    exported = run("registry", "export", str(mirror), "--db", db, "--storage", str(storage))
    assert "exported 1 model(s), 2 manifest(s), 2 blob(s) written" in exported.stdout
    live = httpx.get(url + "/v1/models/tiny-phi/index.json").content
    assert (mirror / "v1" / "models" / "tiny-phi" / "index.json").read_bytes() == live

    gc = run("registry", "gc", "--db", db, "--storage", str(storage), "--grace-seconds", "0")
    assert gc.stdout.startswith("deleted 0 blob(s) (freed 0 B)") and "kept 2 blob(s)" in gc.stdout

    yanked = run("registry", "yank", "tiny-phi", "0.1.0", "--reason", "broken tokenizer", "--variant", "onnx-int4",
                 "--registry", url, env={"PHI_GET_TOKEN": token})
    assert "yanked tiny-phi 0.1.0" in yanked.stdout
    entries = {e.variant: e for e in parse_model_index(httpx.get(url + "/v1/models/tiny-phi/index.json").content).entries}
    assert entries["onnx-int4"].yanked == "broken tokenizer" and entries["gguf-q4_k_m"].yanked is None


def test_token_create_refuses_bad_scope(tmp_path: Path) -> None:
    proc = run("registry", "token", "create", "--db", f"sqlite:///{tmp_path}/c.db", "--scope", "root", ok=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "invalid token scope 'root': expected admin, publish:* or publish:<model>" in proc.stderr
