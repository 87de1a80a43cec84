"""The registry's signing: the operator's commands, hashed bins, expiry and revocation.

The operator commands run as real ``phi-get registry trust ...`` processes on
the registry's storage; the registry is the real server on loopback; the
client is the real ``phi-get`` with the root pinned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from phi_get.registry.client import publish_tree
from phi_get.registry.testing import registry_server, write_artifact
from phi_get.registry.tuf_repo import TufRepository, signing_status

pytest.importorskip("tuf")
pytest.importorskip("model_signing")
pytestmark = pytest.mark.slow


def phi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PHI_GET_UNSIGNED", "PHI_GET_TOKEN")}
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**base, "PHI_GET_DEVICE": "pi-board", "PHI_GET_REGISTRY_CONFIG": os.devnull,
                               **(env or {})}, timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _versions(meta: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in meta.glob("*.*.json"):
        n, role = p.name.split(".", 1)
        out[role] = max(out.get(role, 0), int(n))
    return out


def _artifact(tmp: Path, version: str, name: str = "tiny-phi") -> Path:
    folder = tmp / f"{name}-{version}"
    write_artifact(folder, {"model.gguf": f"{name}{version}".encode() * 500}, name=name, version=version,
                   targets=("cpu-x86_64", "cpu-arm64"))  # type: ignore[arg-type]
    return folder


def test_operator_ceremony_end_to_end(tmp_path: Path) -> None:
    """Keys, init, publish signing few bins, re-sign, online key rotation, root rotation, publisher revocation."""
    storage = tmp_path / "reg" / "blobs"
    keys = tmp_path / "offline"
    st = ["--storage", str(storage)]
    token = ok(phi("registry", "token", "create", "--scope", "admin", *st)).strip()
    ok(phi("registry", "trust", "keygen", str(keys)))
    assert {p.name for p in keys.iterdir()} == {f"{r}.pem" for r in ("root", "targets", "snapshot", "timestamp",
                                                                     "bins")}
    assert oct(os.stat(keys / "root.pem").st_mode & 0o777) == "0o600"
    init = ok(phi("registry", "trust", "init", "--keys", str(keys), *st))
    assert "root.json sha256" in init
    repo = TufRepository(storage / "tuf")
    assert not (storage / "tuf" / "online" / "root.pem").exists()  # offline keys never enter the storage
    assert signing_status(storage)["signed"] is True
    key = tmp_path / "publisher.pem"
    ok(phi("sign", str(_artifact(tmp_path, "0.1.0")), "--key", str(key), "--new-key"))
    ok(phi("registry", "trust", "publisher", "tiny-phi", "--key", str(key.with_suffix(".pub")), "--keys", str(keys),
           *st))
    with registry_server(tmp_path / "reg") as running:
        publish_tree(tmp_path / "tiny-phi-0.1.0", running.url, token)
        for i in range(4):  # other models: their bins are signed now ...
            publish_tree(_artifact(tmp_path, "1.0.0", name=f"other-{i}"), running.url, token)
        before = _versions(repo.metadata)
        ok(phi("sign", str(_artifact(tmp_path, "0.2.0")), "--key", str(key)))
        publish_tree(tmp_path / "tiny-phi-0.2.0", running.url, token)
        after = _versions(repo.metadata)
        resigned = {r for r in after if after[r] != before.get(r)}
        # ... and one model's publish re-signs its bins (index, manifest, signature, catalog), not all 16
        assert "snapshot.json" in resigned and "targets.json" not in resigned
        assert 1 <= len([r for r in resigned if r.startswith("bins-")]) <= 4, resigned
        digest = json.loads(running.registry.index("tiny-phi")[0])["variants"][-1]["manifest"]
        assert signing_status(storage, digest)["publisher_signed"] is True

        home = tmp_path / "home"
        env = {"PHI_GET_HOME": str(home)}
        root = tmp_path / "root.json"
        root.write_bytes((repo.metadata / "1.root.json").read_bytes())
        ok(phi("trust", "add", running.url, str(root), "--home", str(home)))
        ok(phi("install", "tiny-phi", "--registry", running.url, env=env))

        ts = json.loads((repo.metadata / "timestamp.json").read_bytes())["signed"]
        ok(phi("registry", "trust", "resign", *st))  # the daily timer / after expiry
        ts2 = json.loads((repo.metadata / "timestamp.json").read_bytes())["signed"]
        assert ts2["version"] > ts["version"] and ts2["expires"] >= ts["expires"]
        assert datetime.fromisoformat(ts2["expires"]) > datetime.now(UTC)
        ok(phi("registry", "trust", "rotate-key", "timestamp", "--keys", str(keys), *st))
        ok(phi("registry", "trust", "rotate-key", "bins", "--keys", str(keys), *st))
        new_root = tmp_path / "new-root"
        ok(phi("registry", "trust", "keygen", str(new_root)))
        assert "root version" in ok(phi("registry", "trust", "rotate-root", "--keys", str(keys), "--new-keys",
                                         str(new_root), *st))
        ok(phi("resolve", "tiny-phi", "--registry", running.url, env=env))  # the client follows every rotation

        # revoke the publisher key: set the model's keys without it (signed by the offline targets key)
        other = tmp_path / "other.pem"
        ok(phi("sign", str(_artifact(tmp_path, "9.9.9", name="scratch")), "--key", str(other), "--new-key"))
        ok(phi("registry", "trust", "publisher", "tiny-phi", "--key", str(other.with_suffix(".pub")), "--keys",
               str(keys), *st))
        fresh = {"PHI_GET_HOME": str(tmp_path / "home2")}
        ok(phi("trust", "add", running.url, str(root), "--home", str(tmp_path / "home2")))
        refused = phi("install", "tiny-phi", "--registry", running.url, env=fresh)
        assert refused.returncode == 4 and "not a publisher key of this model" in refused.stderr, refused.stderr


def test_trust_add_refuses_a_root_that_is_not_self_signed(tmp_path: Path) -> None:
    """First use: a root whose signatures do not meet its own threshold is never pinned."""
    from phi_get.registry.tuf_repo import create_keys

    keys = tmp_path / "k"
    create_keys(keys)
    repo = TufRepository(tmp_path / "tuf")
    repo.init(keys, None)
    doc = json.loads((repo.metadata / "1.root.json").read_bytes())
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # changed after signing
    bad = tmp_path / "root.json"
    bad.write_text(json.dumps(doc))
    out = phi("trust", "add", "http://127.0.0.1:9", str(bad), "--home", str(tmp_path / "home"))
    assert out.returncode == 4 and "not a valid self-signed TUF root" in out.stderr, out.stderr
    assert not (tmp_path / "home" / "trust").exists() or not list((tmp_path / "home" / "trust").rglob("root.json"))
