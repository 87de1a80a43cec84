"""Air-gapped bundles carry publisher signatures (with signed metadata), against real parts.

A signed live registry on loopback (tests/kit/trustkit.py: TUF set up by
the operator code, a publisher key listed for the model) serves an artifact
signed with ``model_signing``; ``phi-get lock`` and ``phi-get bundle export``
run through the real command line; the registry is then stopped and every
install is ``phi-get sync --locked --from DIR`` with no network.  The bundle
carries the source's TUF metadata, which the client verifies against the root
it pinned.  The bundle is attacked on disk as a USB stick could
be: its signature layer dropped, or replaced by a signature (and public key)
of another key; its TUF metadata tampered with, removed, or older than what
the client already verified.  The skopeo round trip uses the CNCF
distribution registry (Debian ``docker-registry``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.oci import FILEPATH, PUBLISHER_KEY, SIGNATURE_LAYER

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("model_signing") is None,
    reason="the registry or the signing dependencies are not installed")]

from trustkit import SignedRegistry  # noqa: E402 - after the skip: it imports the registry (fastapi)

TARGETS = ("cpu-x86_64", "cpu-arm64")
PROJECT = ('[project]\nregistries = ["{url}"]\n[models]\n"tiny-phi" = ">=0.1"\n'
           '[device-classes]\nedge = "pi-board"\n')


def phi(*args: str, home: Path, cwd: Path | None = None, offline: bool = False,
        unsigned: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHI_GET_")}
    env.update(PHI_GET_HOME=str(home), PHI_GET_DEVICE="pi-board", **({"PHI_GET_OFFLINE": "1"} if offline else {}),
               **({"PHI_GET_UNSIGNED": unsigned} if unsigned else {}))
    r = subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                       env=env, cwd=cwd, timeout=180)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


@dataclass
class Signed:
    """What the online side made before the registry stopped: a lock, its bundle, the locker's trust store."""

    project: Path
    bundle: Path
    locker: Path          # PHI_GET_HOME that pinned the root, locked and exported (its trust/ has the TUF cache)
    artifact: Path        # the published folder (files, manifest.json, model.sig)
    key_id: str
    top: Path
    url: str              # the lock's (stopped) source
    ahead: Path           # a trust store that verified the source after it re-signed (a newer publish)


def _keys(folder: Path, name: str) -> tuple[Path, Path, str]:
    from phi_get.registry.artifact_sign import create_publisher_key

    priv = folder / f"{name}.pem"
    pub, key_id = create_publisher_key(priv)
    return priv, pub, key_id


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    from phi_get.registry.artifact_sign import sign_artifact
    from phi_get.registry.client import publish_tree
    from phi_get.registry.testing import write_artifact

    top = tmp_path_factory.mktemp("signed")
    reg = SignedRegistry(top / "r")
    try:
        priv, pub, key_id = _keys(top, "publisher")
        reg.repo.set_publishers("tiny-phi", [pub.read_bytes()], reg.keys, reg.registry)
        artifact = top / "art"
        write_artifact(artifact, {"model.gguf": b"weights " * 4000, "tokenizer.json": b"{}"}, version="0.1.0",
                       targets=TARGETS)  # type: ignore[arg-type]
        sign_artifact(artifact, priv)
        publish_tree(artifact, reg.url, reg.token)
        locker = top / "locker"
        (top / "root.json").write_bytes(reg.root())
        assert phi("trust", "add", reg.url, str(top / "root.json"), home=locker).returncode == 0
        project = top / "proj"
        project.mkdir()
        (project / "phi.toml").write_text(PROJECT.format(url=reg.url))
        locked = phi("lock", home=locker, cwd=project)
        assert locked.returncode == 0, locked.stderr
        bundle = top / "bundle"
        made = phi("bundle", "export", "--lock", str(project / "phi.lock"), str(bundle), "--json", home=locker)
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["signatures"] == 1
        (top / "export.json").write_text(made.stdout)
        # the registry re-signs for a newer publish; a client that verified that is "ahead" of the bundle
        reg.publish("0.2.0", sign_key=priv)
        ahead = top / "ahead"
        shutil.copytree(locker / "trust", ahead / "trust")
        from phi_get.resolver.sources import sources_from

        assert sources_from([reg.url], ahead, environ={}).find_index("tiny-phi")[1] is not None
    finally:
        reg.close()  # from here on there is no registry: every install below is offline
    yield Signed(project=project, bundle=bundle, locker=locker, artifact=artifact, key_id=key_id, top=top,
                 url=reg.url, ahead=ahead)


def _home(signed: Signed, kind: str, where: Path) -> Path:
    """A fresh store; "cached": with the locker's trust store (TUF cache of the lock's source); "pinned": only
    the operator's root pinned (the air-gapped side); "ahead": a trust store newer than the bundle; "bare" and
    "unsigned": nothing (_sync accepts the lock's source unsigned for "unsigned")."""
    from phi_get.resolver.trust import add_root

    home = where / f"home-{kind}"
    if kind in ("cached", "ahead"):
        shutil.copytree((signed.locker if kind == "cached" else signed.ahead) / "trust", home / "trust")
    elif kind == "pinned":
        add_root(home, signed.url, (signed.top / "root.json").read_bytes())
    return home


def _image(bundle: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    index = json.loads((bundle / "index.json").read_bytes())
    assert len(index["manifests"]) == 1
    return index, json.loads((bundle / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())


def _rewrite(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the variant's image manifest on disk and point index.json at the edited one (as an attacker would)."""
    index, doc = _image(bundle)
    change(doc)
    data = json.dumps(doc, separators=(",", ":")).encode()
    hex_ = hashlib.sha256(data).hexdigest()
    (bundle / "blobs/sha256" / hex_).write_bytes(data)
    index["manifests"][0].update(digest=f"sha256:{hex_}", size=len(data))
    (bundle / "index.json").write_text(json.dumps(index))


def _sync(signed: Signed, bundle: Path, home: Path, project: Path | None = None) -> subprocess.CompletedProcess[str]:
    return phi("sync", "--locked", "--from", str(bundle), "--project", str(project or signed.project), "--json",
               home=home, offline=True, unsigned=signed.url if home.name == "home-unsigned" else "")


def _tuf(bundle: Path) -> Path:
    """The bundle's copy of the source's TUF metadata (one source)."""
    (folder,) = (bundle / "tuf").iterdir()
    return folder / "v1" / "tuf"


def _verified_from_the_bundle(signed: Signed, home: Path) -> bool:
    from phi_get.resolver.trust_store import trust_dir

    return (trust_dir(home, signed.url) / "metadata" / "timestamp.json").is_file()


def _nothing_installed(home: Path) -> bool:
    return not list(home.rglob("manifest.json"))


def test_lock_records_the_signer_and_the_bundle_carries_the_publishers_signature(signed: Signed) -> None:
    """Provenance kept across the air gap: phi.lock records the signing key id (lock-version 1.1), the bundle
    carries the source's TUF metadata, and its image manifest holds model.sig as a layer, byte for byte the
    publisher's, with the public key."""
    lock = (signed.project / "phi.lock").read_text()
    assert f'publisher-key = "{signed.key_id}"' in lock and 'lock-version = "1.1"' in lock, lock
    assert "unsigned-sources" not in lock
    # the source's TUF metadata goes with it: root chain, timestamp, snapshot, targets, bins
    assert json.loads((signed.top / "export.json").read_text()).get("signed_sources") == [signed.url]
    names = sorted(p.name for p in _tuf(signed.bundle).iterdir())
    assert "timestamp.json" in names and "1.root.json" in names and any(".bins-" in n for n in names), names
    assert any(n.endswith(".snapshot.json") for n in names) and any(n.endswith(".targets.json") for n in names)
    _index, image = _image(signed.bundle)
    layers = [layer for layer in image["layers"] if layer["mediaType"] == SIGNATURE_LAYER]
    assert len(layers) == 1 and layers[0]["annotations"][FILEPATH] == "model.sig"
    sig = (signed.bundle / "blobs/sha256" / layers[0]["digest"][7:]).read_bytes()
    assert sig == (signed.artifact / "model.sig").read_bytes()
    assert hashlib.sha256(layers[0]["annotations"][PUBLISHER_KEY].encode()).hexdigest() == signed.key_id
    # a ModelPack-style unpack (each layer to its filepath) is a folder the model_signing CLI verifies as it is
    unpacked = signed.top / "unpacked"
    for layer in image["layers"]:
        target = unpacked / layer["annotations"][FILEPATH]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((signed.bundle / "blobs/sha256" / layer["digest"][7:]).read_bytes())
    (signed.top / "publisher.pub.pem").write_text(layers[0]["annotations"][PUBLISHER_KEY])
    tool = shutil.which("model_signing", path=str(Path(sys.executable).parent))
    assert tool is not None
    ok = subprocess.run([tool, "verify", "key", str(unpacked), "--signature", str(unpacked / "model.sig"),
                         "--public_key", str(signed.top / "publisher.pub.pem")], capture_output=True, text=True,
                        timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("kind", ["cached", "pinned"])
def test_a_signed_bundle_installs_offline_with_the_registry_stopped(signed: Signed, tmp_path: Path, kind: str) -> None:
    """Air gap: with the registry gone and no network, sync --locked --from runs TUF's update workflow over the
    bundle's metadata against the pinned root (the verified metadata lands in the client's trust store), checks
    the manifest and the publisher signature as signed targets, and installs, without `trust allow-unsigned`."""
    home = _home(signed, kind, tmp_path)
    r = _sync(signed, signed.bundle, home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["name"] == "tiny-phi"
    assert _verified_from_the_bundle(signed, home) and "unsigned" not in r.stderr


@pytest.mark.parametrize("kind", ["bare", "unsigned"])
def test_a_signed_bundle_on_a_client_without_the_root_needs_unsigned_accepted(signed: Signed, tmp_path: Path,
                                                                              kind: str) -> None:
    """No trust on first use, bundles included: with no root pinned the bundle is refused (the hint says to pin
    it), unless the user accepts the lock's source unsigned; then it installs (the lock's publisher key still
    checked) and says it was unsigned."""
    home = _home(signed, kind, tmp_path)
    r = _sync(signed, signed.bundle, home)
    if kind == "bare":
        assert r.returncode == 4 and "TUF metadata, but no root of it is pinned here" in r.stderr, r.stderr
        assert f"phi-get trust add {signed.url} root.json" in r.stderr
        assert _nothing_installed(home)
    else:
        assert r.returncode == 0, r.stderr
        assert "installed unsigned" in r.stderr and signed.url in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["cached", "pinned", "unsigned", "trust-only"])
def test_a_bundle_with_its_signature_removed_is_refused(signed: Signed, tmp_path: Path, kind: str) -> None:
    """Signature stripping: a bundle whose signature layer was dropped is refused, naming the key the lock
    records; "trust-only": a lock without publisher-key, the client's cached signed metadata still demands it."""
    bundle = tmp_path / "bundle"
    shutil.copytree(signed.bundle, bundle)
    _rewrite(bundle, lambda doc: doc.update(layers=[x for x in doc["layers"] if x["mediaType"] != SIGNATURE_LAYER]))
    project = signed.project
    if kind == "trust-only":
        project = tmp_path / "proj"
        shutil.copytree(signed.project, project)
        lock = project / "phi.lock"
        lock.write_text("".join(line for line in lock.read_text().splitlines(keepends=True)
                                if not line.startswith("publisher-key")))
    home = _home(signed, "cached" if kind == "trust-only" else kind, tmp_path)
    r = _sync(signed, bundle, home, project)
    assert r.returncode == 4 and "carries no publisher signature of tiny-phi 0.1.0" in r.stderr, r.stderr
    assert signed.key_id in r.stderr if kind != "trust-only" else "lists publisher keys for tiny-phi" in r.stderr
    assert _nothing_installed(home)


@pytest.mark.parametrize("kind", ["cached", "pinned", "unsigned"])
def test_a_bundle_resigned_by_another_key_is_refused_naming_that_key(signed: Signed, tmp_path: Path,
                                                                     kind: str) -> None:
    """Impersonation on the USB stick: the signature layer replaced by a valid model-signing signature of the
    same files by another key, with that key's PEM beside it: refused, the attacker's key id named."""
    from phi_get.registry.artifact_sign import sign_artifact

    evil_priv, evil_pub, evil_id = _keys(tmp_path, "attacker")
    forged = tmp_path / "forged"
    shutil.copytree(signed.artifact, forged)
    (forged / "model.sig").unlink()
    sign_artifact(forged, evil_priv)
    sig = (forged / "model.sig").read_bytes()
    bundle = tmp_path / "bundle"
    shutil.copytree(signed.bundle, bundle)
    hex_ = hashlib.sha256(sig).hexdigest()
    (bundle / "blobs/sha256" / hex_).write_bytes(sig)

    def swap(doc: dict[str, Any]) -> None:
        layer = next(x for x in doc["layers"] if x["mediaType"] == SIGNATURE_LAYER)
        layer.update(digest=f"sha256:{hex_}", size=len(sig))
        layer["annotations"][PUBLISHER_KEY] = evil_pub.read_text()

    _rewrite(bundle, swap)
    home = _home(signed, kind, tmp_path)
    r = _sync(signed, bundle, home)
    assert r.returncode == 4 and f"signed by key {evil_id}" in r.stderr and signed.key_id in r.stderr, r.stderr
    assert _nothing_installed(home)


def test_skopeo_round_trip_keeps_the_signature(signed: Signed, tmp_path: Path) -> None:
    """Interop: skopeo copies the bundle into the distribution registry and back into a new layout; the signature
    layer comes back byte for byte and the copy installs offline with its signature verified."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo (Debian package) is not installed; .ci/run installs it")
    from ocikit import oci_registry

    def skopeo(*args: str) -> None:
        done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr

    index, image = _image(signed.bundle)
    ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    back = tmp_path / "back"
    with oci_registry(tmp_path / "reg") as reg:
        dest = f"docker://{reg.host}/bundled/tiny-phi:{ref.rpartition('_')[2]}"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{signed.bundle}:{ref}", dest)
        skopeo("copy", "--src-tls-verify=false", dest, f"oci:{back}:{ref}")
    _index, copied = _image(back)
    assert copied == image
    layer = next(x for x in copied["layers"] if x["mediaType"] == SIGNATURE_LAYER)
    assert (back / "blobs/sha256" / layer["digest"][7:]).read_bytes() == (signed.artifact / "model.sig").read_bytes()
    # skopeo copies images, not the bundle's TUF folder: usable unsigned, refused where the root is pinned
    home = _home(signed, "unsigned", tmp_path)
    r = _sync(signed, back, home)
    assert r.returncode == 0 and "installed unsigned" in r.stderr, r.stderr
    home = _home(signed, "pinned", tmp_path)
    r = _sync(signed, back, home)
    assert r.returncode == 4 and f"carries no TUF metadata of {signed.url}" in r.stderr, r.stderr


def _bump_timestamp(tuf: Path) -> None:
    doc = json.loads((tuf / "timestamp.json").read_bytes())
    doc["signed"]["version"] += 1  # a "newer" timestamp, with the old signatures
    (tuf / "timestamp.json").write_text(json.dumps(doc))


def _drop_bins(tuf: Path) -> None:
    for path in tuf.glob("*.bins-*.json"):
        path.unlink()


@pytest.mark.parametrize(("attack", "expected"), [
    ("tampered", "signed metadata lacks its threshold of valid signatures"),
    ("bins-missing", "could not be read"),
    ("tuf-removed", "the bundle carries no TUF metadata of"),
    ("rolled-back", "signed metadata went back a version"),
])
def test_a_bundle_whose_tuf_metadata_was_attacked_is_refused(signed: Signed, tmp_path: Path, attack: str,
                                                             expected: str) -> None:
    """TUF attacks on the USB stick: a timestamp edited (its signatures no longer verify), the bins that list
    the manifest removed (the refusal names the file), the whole metadata folder removed, and a bundle older
    than the metadata the client has already verified (rollback): each refused, exit 4, nothing installed."""
    bundle = tmp_path / "bundle"
    shutil.copytree(signed.bundle, bundle)
    if attack == "tampered":
        _bump_timestamp(_tuf(bundle))
    elif attack == "bins-missing":
        _drop_bins(_tuf(bundle))
    elif attack == "tuf-removed":
        shutil.rmtree(bundle / "tuf")
    home = _home(signed, "ahead" if attack == "rolled-back" else "pinned", tmp_path)
    r = _sync(signed, bundle, home)
    assert r.returncode == 4 and expected in r.stderr, r.stderr
    if attack == "bins-missing":
        assert ".bins-" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and _nothing_installed(home)
