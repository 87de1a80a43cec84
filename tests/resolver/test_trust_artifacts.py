"""Publisher signatures (OpenSSF model-signing), interop, and offline locked installs from a signed mirror.

The registry is the real one on loopback with signing set up by the operator
code; artifacts are small synthetic folders; installs and locks go through
the real ``phi-get`` command line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("model_signing") is None,
    reason="the registry or the signing dependencies are not installed")]

from trustkit import SignedRegistry

TARGETS = ("cpu-x86_64", "cpu-arm64")


def phi(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "PHI_GET_UNSIGNED"}
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**base, "PHI_GET_DEVICE": "pi-board", **(env or {})}, cwd=cwd, timeout=120)


@pytest.fixture()
def reg(tmp_path: Path) -> Iterator[SignedRegistry]:
    r = SignedRegistry(tmp_path / "r")
    yield r
    r.close()


def _keys(tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    from phi_get.registry.artifact_sign import create_publisher_key

    priv = tmp_path / f"{name}.pem"
    pub, keyid = create_publisher_key(priv)
    return priv, pub, keyid


def _publish(reg: SignedRegistry, tmp_path: Path, version: str, key: Path | None) -> Path:
    from phi_get.registry.artifact_sign import sign_artifact
    from phi_get.registry.client import publish_tree
    from phi_get.registry.testing import write_artifact

    folder = tmp_path / f"art-{version}"
    write_artifact(folder, {"model.gguf": version.encode() * 999, "tokenizer.json": b"{}"}, version=version,
                   targets=TARGETS)  # type: ignore[arg-type]
    if key is not None:
        sign_artifact(folder, key)
    publish_tree(folder, reg.url, reg.token)
    return folder


def _pin(home: Path, url: str, root: bytes, tmp_path: Path) -> None:
    root_file = tmp_path / "root.json"
    root_file.write_bytes(root)
    done = phi("trust", "add", url, str(root_file), "--home", str(home))
    assert done.returncode == 0, done.stderr


def test_install_verifies_the_publisher_signature(reg: SignedRegistry, tmp_path: Path) -> None:
    """A signed artifact from a registered publisher key installs; --explain says the source is signed."""
    priv, pub, _keyid = _keys(tmp_path, "publisher")
    reg.repo.set_publishers("tiny-phi", [pub.read_bytes()], reg.keys, reg.registry)
    _publish(reg, tmp_path, "0.1.0", priv)
    home = tmp_path / "home"
    _pin(home, reg.url, reg.root(), tmp_path)
    env = {"PHI_GET_HOME": str(home)}
    out = phi("install", "tiny-phi", "--registry", reg.url, "--json", env=env)
    assert out.returncode == 0, out.stderr
    explained = phi("resolve", "tiny-phi", "--registry", reg.url, "--explain", env=env)
    assert f"source: {reg.url} signed (TUF verified)" in explained.stdout, explained.stdout


def test_artifact_resigned_by_another_key_is_refused_naming_the_key(reg: SignedRegistry, tmp_path: Path) -> None:
    """Impersonation: an artifact re-signed by a key that is not the publisher's is refused, naming that key id."""
    _priv, pub, good_id = _keys(tmp_path, "publisher")
    evil_priv, _evil_pub, evil_id = _keys(tmp_path, "attacker")
    reg.repo.set_publishers("tiny-phi", [pub.read_bytes()], reg.keys, reg.registry)
    _publish(reg, tmp_path, "0.1.0", evil_priv)  # a stolen publish token, but not the publisher's key
    home = tmp_path / "home"
    _pin(home, reg.url, reg.root(), tmp_path)
    out = phi("install", "tiny-phi", "--registry", reg.url, env={"PHI_GET_HOME": str(home)})
    assert out.returncode == 4, out.stderr
    assert f"signed by key {evil_id}" in out.stderr and good_id in out.stderr, out.stderr
    assert not list((home / "artifacts").glob("*/*")) if (home / "artifacts").exists() else True


def test_missing_publisher_signature_is_refused(reg: SignedRegistry, tmp_path: Path) -> None:
    """A model whose publisher keys are listed, published without a signature: refused before any blob."""
    _priv, pub, _ = _keys(tmp_path, "publisher")
    reg.repo.set_publishers("tiny-phi", [pub.read_bytes()], reg.keys, reg.registry)
    _publish(reg, tmp_path, "0.1.0", None)
    home = tmp_path / "home"
    _pin(home, reg.url, reg.root(), tmp_path)
    out = phi("install", "tiny-phi", "--registry", reg.url, env={"PHI_GET_HOME": str(home)})
    assert out.returncode == 4 and "has no publisher signature" in out.stderr, out.stderr


def test_model_signing_cli_verifies_what_phi_get_signed(tmp_path: Path) -> None:
    """Interop: the model_signing command line itself verifies an artifact folder that `phi-get sign` signed."""
    from phi_get.registry.testing import write_artifact

    folder = tmp_path / "art"
    write_artifact(folder, {"model.gguf": b"weights" * 1000, "sub/tokenizer.json": b"{}"})
    key = tmp_path / "publisher.pem"
    signed = phi("sign", str(folder), "--key", str(key), "--new-key")
    assert signed.returncode == 0, signed.stderr
    tool = shutil.which("model_signing", path=str(Path(sys.executable).parent))
    assert tool is not None
    ok = subprocess.run([tool, "verify", "key", str(folder), "--signature", str(folder / "model.sig"),
                         "--public_key", str(key.with_suffix(".pub"))], capture_output=True, text=True, timeout=120,
                        check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (folder / "model.gguf").write_bytes(b"tampered" * 1000)
    bad = subprocess.run([tool, "verify", "key", str(folder), "--signature", str(folder / "model.sig"),
                          "--public_key", str(key.with_suffix(".pub"))], capture_output=True, text=True, timeout=120,
                         check=False)
    assert bad.returncode != 0


def test_offline_locked_install_from_a_signed_mirror(reg: SignedRegistry, tmp_path: Path) -> None:
    """Offline: lock against a signed mirror, stop the registry, sync --locked with no network at all."""
    priv, pub, _ = _keys(tmp_path, "publisher")
    reg.repo.set_publishers("tiny-phi", [pub.read_bytes()], reg.keys, reg.registry)
    _publish(reg, tmp_path, "0.1.0", priv)
    mirror = reg.export(tmp_path / "mirror")
    root = reg.root()
    reg.close()  # the live registry is gone: verification must not need it
    home = tmp_path / "home"
    _pin(home, mirror.as_uri(), root, tmp_path)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "phi.toml").write_text(f'[project]\nregistries = ["{mirror.as_uri()}"]\n[models]\n"tiny-phi" = ">=0.1"\n'
                                      '[device-classes]\nedge = "pi-board"\n')
    env = {"PHI_GET_HOME": str(home), "PHI_GET_OFFLINE": "1"}
    locked = phi("lock", env=env, cwd=project)
    assert locked.returncode == 0, locked.stderr
    assert "unsigned-sources" not in (project / "phi.lock").read_text()
    out = phi("sync", "--locked", "--json", env=env, cwd=project)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["manifest"].startswith("sha256:")


def test_unsigned_source_is_recorded_in_lock_and_explanation(tmp_path: Path, reg: SignedRegistry) -> None:
    """An unsigned source the user accepted: phi.lock lists it under unsigned-sources, --explain says UNSIGNED."""
    _publish(reg, tmp_path, "0.1.0", None)
    mirror = reg.export(tmp_path / "mirror")
    shutil.rmtree(mirror / "v1" / "tuf")  # a mirror that serves no signed metadata at all
    home = tmp_path / "home"
    refused = phi("resolve", "tiny-phi", "--registry", mirror.as_uri(), env={"PHI_GET_HOME": str(home)})
    assert refused.returncode == 4 and "no root of trust is pinned" in refused.stderr, refused.stderr
    assert phi("trust", "allow-unsigned", mirror.as_uri(), "--home", str(home)).returncode == 0
    env = {"PHI_GET_HOME": str(home)}
    explained = phi("resolve", "tiny-phi", "--registry", mirror.as_uri(), "--explain", env=env)
    assert "UNSIGNED (accepted by the user)" in explained.stdout, explained.stdout + explained.stderr
    project = tmp_path / "proj"
    project.mkdir()
    (project / "phi.toml").write_text(f'[project]\nregistries = ["{mirror.as_uri()}"]\n[models]\n"tiny-phi" = ">=0.1"\n'
                                      '[device-classes]\nedge = "pi-board"\n')
    assert phi("lock", env=env, cwd=project).returncode == 0
    assert f'unsigned-sources = ["{mirror.as_uri()}"]' in (project / "phi.lock").read_text()


def test_offline_http_source_is_checked_against_its_verified_cache(reg: SignedRegistry, tmp_path: Path) -> None:
    """Offline, an http source is verified from the cached metadata (the registry is down); a cached index
    altered on disk is refused, with the warm record and without it (python-tuf over cached files only)."""
    from phi_get.resolver.trust import TrustError
    from trustkit import client_sources

    _publish(reg, tmp_path, "0.1.0", None)
    home = tmp_path / "home"
    url = reg.url
    assert client_sources(home, url, reg.root()).find_index("tiny-phi")[1].entries
    reg.close()
    for warm in (True, False):
        if not warm:
            for p in home.glob("trust/*/verified.json"):
                p.unlink()
        offline = client_sources(home, url, None, offline=True)
        assert [str(e.version) for e in offline.find_index("tiny-phi")[1].entries] == ["0.1.0"]
    cached = next(home.glob("cache/index/*/tiny-phi.json"))
    cached.write_bytes(cached.read_bytes().replace(b'"0.1.0"', b'"0.1.1"'))
    for warm in (True, False):
        if not warm:
            for p in home.glob("trust/*/verified.json"):
                p.unlink()
        with pytest.raises(TrustError, match="does not match its signed target"):
            client_sources(home, url, None, offline=True).find_index("tiny-phi")
