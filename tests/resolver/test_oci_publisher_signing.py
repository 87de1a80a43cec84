"""Publisher signatures through an OCI registry, against real programs on loopback.

The registry is the CNCF distribution registry (tests/kit/ocikit.py).  An
artifact signed with ``phi-get sign`` (OpenSSF model-signing) is pushed with
``phi-get publish --to oci://``, which carries ``model.sig`` as a layer; a
client that pinned the publisher's key (``phi-get trust add-publisher``)
installs it only with a signature by that key.  An OCI registry serves no TUF
metadata, so the source stays "accepted unsigned" (no freshness or rollback
protection): the publisher signature is what binds the bytes to their author.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("model_signing") is None,
                                                   reason="the signing dependencies are not installed")]

sys.path.insert(0, str(Path(__file__).parents[1] / "kit"))
from ocikit import OciRegistry, oci_registry  # noqa: E402

PHI_GET = str(Path(sys.executable).parent / "phi-get")


def phi(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHI_GET_", "DOCKER_CONFIG"))}
    env.update(PHI_GET_HOME=str(home), DOCKER_CONFIG=str(home / "no-docker"), PHI_GET_DEVICE="pi-board",
               PHI_GET_UNSIGNED="*", PHI_GET_MIN_RATE="0")  # OCI sources serve no TUF metadata
    r = subprocess.run([PHI_GET, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


@dataclass
class Pushed:
    reg: OciRegistry
    pub: Path          # the publisher's public key, as handed over out of band
    key_id: str
    evil_id: str       # the key the "forged" namespace's artifact is signed by


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    """Namespaces: "models" (signed by the publisher), "forged" (the same files re-signed by another key),
    "plain" (no signature); each pushed with the real `phi-get publish --to`."""
    from phi_get.registry.artifact_sign import create_publisher_key, sign_artifact
    from phi_get.registry.testing import write_artifact

    top = tmp_path_factory.mktemp("ocisig")
    priv, pub, key_id = top / "publisher.pem", *create_publisher_key(top / "publisher.pem")
    evil_pub, evil_id = create_publisher_key(top / "attacker.pem")
    plain = top / "plain"
    write_artifact(plain, {"model.gguf": b"weights " * 4000}, targets=("cpu-x86_64", "cpu-arm64"))  # type: ignore[arg-type]
    signed, forged = top / "signed", top / "forged"
    shutil.copytree(plain, signed)
    sign_artifact(signed, priv)
    shutil.copytree(plain, forged)
    sign_artifact(forged, top / "attacker.pem")
    with oci_registry(top / "reg") as reg:
        for folder, namespace in ((signed, "models"), (forged, "forged"), (plain, "plain")):
            r = phi("publish", str(folder), "--to", reg.url(namespace), home=top / "pusher")
            assert r.returncode == 0 and "published tiny-phi" in r.stdout, r.stderr
        yield Pushed(reg=reg, pub=pub, key_id=key_id, evil_id=evil_id)


def _pinned(pushed: Pushed, home: Path, namespace: str) -> None:
    r = phi("trust", "add-publisher", pushed.reg.url(namespace), "tiny-phi", str(pushed.pub), home=home)
    assert r.returncode == 0 and pushed.key_id in r.stdout, r.stderr


def test_a_signed_oci_artifact_installs_with_its_signature_verified_and_the_lock_records_the_key(
        pushed: Pushed, tmp_path: Path) -> None:
    """The signature travels with the artifact: pinned key, signature layer found and verified, installed; the
    lock records the signing key id and that the source was unsigned (no TUF: no freshness or rollback
    protection)."""
    home = tmp_path / "home"
    _pinned(pushed, home, "models")
    r = phi("install", "tiny-phi", "--registry", pushed.reg.url(), "--json", home=home)
    assert r.returncode == 0, r.stderr
    project = tmp_path / "proj"
    project.mkdir()
    (project / "phi.toml").write_text(f'[project]\nregistries = ["{pushed.reg.url()}"]\n[models]\n'
                                      f'"tiny-phi" = ">=0.1"\n[device-classes]\nedge = "pi-board"\n')
    locked = phi("lock", home=home, cwd=project)
    assert locked.returncode == 0, locked.stderr
    lock = (project / "phi.lock").read_text()
    assert f'publisher-key = "{pushed.key_id}"' in lock and "unsigned-sources" in lock, lock


def test_an_oci_artifact_resigned_by_another_key_is_refused_naming_that_key(pushed: Pushed, tmp_path: Path) -> None:
    """Impersonation through the registry: the same files with a valid signature by another key: refused
    (exit 4) naming the attacker's key id and the pinned one; nothing installed."""
    home = tmp_path / "home"
    _pinned(pushed, home, "forged")
    r = phi("install", "tiny-phi", "--registry", pushed.reg.url("forged"), home=home)
    assert r.returncode == 4 and f"signed by key {pushed.evil_id}" in r.stderr and pushed.key_id in r.stderr, r.stderr
    assert not list(home.rglob("manifest.json"))


def test_an_unsigned_oci_artifact_is_refused_where_a_publisher_key_is_pinned(pushed: Pushed, tmp_path: Path) -> None:
    """Signature stripping: an artifact pushed without model.sig, a key pinned for the model: refused; without a
    pinned key the same artifact installs (accepted unsigned), so the pin is what demands it."""
    home = tmp_path / "home"
    _pinned(pushed, home, "plain")
    r = phi("install", "tiny-phi", "--registry", pushed.reg.url("plain"), home=home)
    assert r.returncode == 4 and "has no publisher signature" in r.stderr and pushed.key_id in r.stderr, r.stderr
    other = tmp_path / "other"
    ok = phi("install", "tiny-phi", "--registry", pushed.reg.url("plain"), "--json", home=other)
    assert ok.returncode == 0 and json.loads(ok.stdout)["name"] == "tiny-phi", ok.stderr
