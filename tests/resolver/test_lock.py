"""phi.toml -> phi.lock -> sync --locked, against a static mirror and a loopback server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.manifests.lockfile import parse_lock
from phi_get.resolver.errors import IntegrityError, LockMismatchError
from phi_get.resolver.lock import lock_project, sync_locked
from phi_get.resolver.store import Store

PROJECT = """
[project]
name = "fleet"
registries = ["{url}"]

[models]
"tiny-model" = ">=0.1"

[device-classes]
edge = "pi-board"
server = "profiles/server.json"
"""


@pytest.fixture()
def project(tmp_path: Path, served: Any) -> Path:
    folder = tmp_path / "proj"
    (folder / "profiles").mkdir(parents=True)
    shutil.copy(Path(__file__).parents[2] / "resolver" / "profiles" / "gpu-server.json",
                folder / "profiles" / "server.json")
    (folder / "phi.toml").write_text(PROJECT.format(url=served.url))
    return folder


def test_lock_is_byte_identical_and_complete(project: Path, home: Path, mirror: Any) -> None:
    path, lock = lock_project(project, home)
    first = path.read_bytes()
    path.unlink()
    lock_project(project, home)
    assert path.read_bytes() == first
    parsed = parse_lock(first)
    assert parsed == lock
    art = parsed.for_class("edge")[0]
    newest = mirror[1][1]
    assert (art.version, art.manifest, art.target) == ("0.2.0", newest.digest, "cpu-arm64")
    assert {f.sha256 for f in art.files} == {f.sha256 for f in newest.files}
    assert all(f.url.startswith("http://127.0.0.1:") for f in art.files)
    assert parsed.for_class("server")[0].target == "cpu-x86_64"


def test_sync_installs_exactly_the_lock_offline_from_a_mirror(project: Path, home: Path, mirror: Any,
                                                              served: Any) -> None:
    lock_project(project, home)
    served.faults.down = True  # the registry is gone: a static mirror on disk serves the same bytes
    results = sync_locked(project, home, device_class="edge", registries=[mirror[0].as_uri()])
    assert [r.manifest.digest for r in results] == [mirror[1][1].digest]
    load_artifact_folder(results[0].path)


def test_no_registry_answer_overrides_a_pinned_digest(project: Path, home: Path, mirror: Any, kit: Any) -> None:
    lock_project(project, home)
    # The registry now serves a different 0.2.0 (new bytes, new manifest, same version and variant).
    files: dict[str, bytes | Path] = {"model.bin": b"evil" * 1000}
    evil = kit.make_manifest("tiny-model", "0.2.0", "safetensors-fp32", files)
    kit.write_mirror(mirror[0], [(evil, files)])
    results = sync_locked(project, home, device_class="edge")
    assert results[0].manifest.digest == mirror[1][1].digest


def test_sync_refuses_a_stale_lock(project: Path, home: Path) -> None:
    lock_project(project, home)
    toml = (project / "phi.toml").read_text().replace('">=0.1"', '">=0.2"')
    (project / "phi.toml").write_text(toml)
    with pytest.raises(LockMismatchError, match=r"phi\.lock no longer matches phi\.toml") as exc:
        sync_locked(project, home, device_class="edge")
    assert exc.value.exit_code == 6


def test_sync_refuses_a_changed_device_profile(project: Path, home: Path) -> None:
    lock_project(project, home)
    prof = project / "profiles" / "server.json"
    prof.write_text(prof.read_text().replace("274877906944", "274877906945"))
    with pytest.raises(LockMismatchError):
        sync_locked(project, home, device_class="server")


def test_sync_detects_a_tampered_manifest_in_the_mirror(project: Path, home: Path, mirror: Any) -> None:
    lock_project(project, home)
    digest = mirror[1][1].digest.removeprefix("sha256:")
    mpath = mirror[0] / "v1" / "manifests" / "sha256" / f"{digest}.json"
    mpath.write_bytes(mpath.read_bytes().replace(b'"builder":"test"', b'"builder":"evil"'))
    with pytest.raises(IntegrityError, match="manifest from .* does not match"):
        sync_locked(project, home, device_class="edge", registries=[mirror[0].as_uri()])
    assert not list(Store(home).installed())


def test_lock_and_sync_commands(project: Path, home: Path, mirror: Any) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PHI_GET_HOME": str(home)}

    def phi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, env=env,
                              cwd=project, timeout=120, check=False)

    out = phi("lock")
    assert out.returncode == 0, out.stderr
    assert "edge: tiny-model 0.2.0 safetensors-fp32 on cpu-arm64" in out.stdout
    first = (project / "phi.lock").read_bytes()
    assert phi("lock").returncode == 0 and (project / "phi.lock").read_bytes() == first
    out = phi("sync", "--locked", "--device-class", "server", "--registry", mirror[0].as_uri(), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["manifest"] == mirror[1][1].digest
    out = phi("sync", "--locked", "--device-class", "nope")
    assert out.returncode == 6 and "error: phi.lock has no device class 'nope'" in out.stderr


def test_sync_without_a_class_picks_the_one_this_device_runs(project: Path, home: Path) -> None:
    from phi_get.resolver.lock import _pick_class

    _path, lock = lock_project(project, home)
    assert _pick_class(lock, None, "gpu-server") == "server"  # x86: edge's cpu-arm64 does not run here
    assert _pick_class(lock, None, "snapdragon-laptop") == "edge"
    results = sync_locked(project, home, device="gpu-server")
    assert results and results[0].path.exists()


def test_sync_warns_about_a_newer_minor_lock(project: Path, home: Path) -> None:
    lock_project(project, home)
    lock = project / "phi.lock"
    lock.write_text(lock.read_text().replace('lock-version = "1.0"', 'lock-version = "1.3"'))
    heard: list[str] = []
    sync_locked(project, home, device_class="edge", warn=heard.append)
    assert len(heard) == 1 and "written by a newer phi-get" in heard[0] and "lock-version 1.3" in heard[0]
