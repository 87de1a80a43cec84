"""The web catalog shows signing status: TUF-signed metadata and publisher signatures.

A real registry on loopback, signed by the operator's real commands
(``phi-get registry trust keygen/init/publisher``), an artifact signed by
``phi-get sign`` and one model without publisher keys; the pages say which
is which, and an unsigned registry says it is unsigned.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from phi_get.registry.client import publish_tree
from phi_get.registry.testing import registry_server, write_artifact

pytest.importorskip("tuf")
pytest.importorskip("model_signing")


def phi(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PHI_GET_UNSIGNED", "PHI_GET_TOKEN")}
    done = subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**env, "PHI_GET_REGISTRY_CONFIG": os.devnull}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _artifact(tmp: Path, name: str) -> Path:
    folder = tmp / name
    write_artifact(folder, {"model.gguf": name.encode() * 300}, name=name)  # type: ignore[arg-type]
    return folder


def test_pages_show_signed_metadata_and_publisher_signatures(tmp_path: Path) -> None:
    storage, keys, key = tmp_path / "reg" / "blobs", tmp_path / "offline", tmp_path / "publisher.pem"
    token = phi("registry", "token", "create", "--scope", "admin", "--storage", str(storage)).strip()
    phi("registry", "trust", "keygen", str(keys))
    phi("registry", "trust", "init", "--keys", str(keys), "--storage", str(storage))
    phi("sign", str(_artifact(tmp_path, "tiny-phi")), "--key", str(key), "--new-key")
    phi("registry", "trust", "publisher", "tiny-phi", "--key", str(key.with_suffix(".pub")), "--keys", str(keys),
        "--storage", str(storage))
    with registry_server(tmp_path / "reg") as running:
        publish_tree(tmp_path / "tiny-phi", running.url, token)
        publish_tree(_artifact(tmp_path, "other-model"), running.url, token)
        signed = httpx.get(f"{running.url}/models/tiny-phi", timeout=30).text
        other = httpx.get(f"{running.url}/models/other-model", timeout=30).text
        variant = httpx.get(f"{running.url}/models/tiny-phi/0.1.0/gguf-q4_k_m", timeout=30).text
    assert "Metadata TUF-signed by the registry (current until 20" in signed
    assert '<td class="signature">publisher-signed</td>' in signed
    assert '<td class="signature">none</td>' in other and "Metadata TUF-signed" in other
    assert "publisher signature (OpenSSF model signing); metadata TUF-signed" in variant


def test_an_unsigned_registry_says_so(tmp_path: Path) -> None:
    token = phi("registry", "token", "create", "--scope", "admin", "--storage", str(tmp_path / "reg" / "blobs")).strip()
    with registry_server(tmp_path / "reg") as running:
        publish_tree(_artifact(tmp_path, "tiny-phi"), running.url, token)
        page = httpx.get(f"{running.url}/models/tiny-phi", timeout=30).text
        variant = httpx.get(f"{running.url}/models/tiny-phi/0.1.0/gguf-q4_k_m", timeout=30).text
    assert "metadata is <strong>not signed</strong>" in page and '<td class="signature">none</td>' in page
    assert "no publisher signature; metadata not signed" in variant
