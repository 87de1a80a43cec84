"""The device side against the real registry (`phi-get registry serve`), as processes only.

The resolver may not import phi_get.registry; this test drives both through
the CLI: publish an artifact folder, resolve and install it over HTTP,
export a static mirror, lock against the registry, and sync that lock from
the exported mirror (file://).  Skipped where the registry's dependencies are not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phi_get.manifests.artifact import MANIFEST_FILENAME, load_artifact_folder
from serve import registry_serve  # tests/kit: on sys.path from conftest.py

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("phi_get.registry.cli") is None,
    reason="the registry part or its dependencies are not installed")]


def phi(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    storage = tmp_path / "registry-data"
    with registry_serve("--storage", str(storage), log=tmp_path / "serve.log") as server:
        yield server.url, storage


def _artifact_folder(root: Path, kit: Any) -> Any:
    files: dict[str, bytes | Path] = {"model.bin": os.urandom(3 << 20), "tokenizer.json": b'{"v": 1}'}
    m = kit.make_manifest("interop-model", "1.0.0", "safetensors-fp32", files, runtime=("transformers", ">=4.40"))
    folder = root / "interop-model" / "1.0.0" / m.variant
    folder.mkdir(parents=True)
    for path, content in files.items():
        (folder / path).write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    (folder / MANIFEST_FILENAME).write_bytes(m.to_bytes())
    return m


def test_publish_install_export_sync(registry: tuple[str, Path], tmp_path: Path, kit: Any) -> None:
    url, storage = registry
    m = _artifact_folder(tmp_path / "built", kit)
    token = phi("registry", "token", "create", "--scope", "publish:*", "--storage", str(storage))
    assert token.returncode == 0, token.stderr
    pub = phi("publish", str(tmp_path / "built"), "--registry", url, "--quiet",
              env={"PHI_GET_TOKEN": token.stdout.strip()})
    assert pub.returncode == 0, pub.stderr
    home = tmp_path / "home"
    env = {"PHI_GET_HOME": str(home), "PHI_GET_DEVICE": "pi-board"}
    out = phi("install", "interop-model", "--registry", url, "--json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["manifest"] == m.digest
    load_artifact_folder(doc["path"])
    mirror = tmp_path / "mirror"
    exp = phi("registry", "export", str(mirror), "--storage", str(storage))
    assert exp.returncode == 0, exp.stderr
    project = tmp_path / "proj"
    project.mkdir()
    (project / "phi.toml").write_text(f'[project]\nregistries = ["{url}"]\n[models]\n"interop-model" = ">=1"\n'
                                      '[device-classes]\nedge = "pi-board"\n')
    assert phi("lock", env=env, cwd=project).returncode == 0
    phi("remove", "interop-model", env=env)
    phi("gc", env=env)
    out = phi("sync", "--locked", "--registry", mirror.as_uri(), "--json", env=env, cwd=project)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["manifest"] == m.digest
