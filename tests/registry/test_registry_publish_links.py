"""Publishing never follows a symbolic link out of an artifact folder (SECURITY.md: links out of an artifact folder at publish).

A file listed in ``manifest.json`` that is a link (or sits in a linked
folder) could point anywhere on the publisher's machine: ``phi-get publish``
would upload it and the registry serve it to everyone.  The real command is
run against a real registry on loopback; the refusal names the file and
nothing reaches the registry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from phi_get.manifests.artifact import MANIFEST_FILENAME, file_entry
from phi_get.registry.testing import RunningRegistry, make_manifest, registry_server
from phi_get.registry.tokens import mint_token

SECRET = b"not for publishing: the publisher's private file\n"


@pytest.fixture()
def srv(tmp_path: Path) -> Iterator[RunningRegistry]:
    with registry_server(tmp_path / "registry") as running:
        yield running


def _folder_with_link(tmp_path: Path, how: str) -> Path:
    """An artifact folder whose listed file ``weights/model.gguf`` reaches SECRET through a link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.gguf").write_bytes(SECRET)
    folder = tmp_path / "out" / "tiny-phi" / "0.1.0" / "gguf-q4_k_m"
    folder.mkdir(parents=True)
    if how == "file":
        (folder / "weights").mkdir()
        os.symlink(outside / "model.gguf", folder / "weights" / "model.gguf")
    else:  # a linked folder on the way
        os.symlink(outside, folder / "weights")
    entry = file_entry(folder, "weights/model.gguf")  # hashes through the link: the sha256 matches
    (folder / MANIFEST_FILENAME).write_bytes(make_manifest([(entry.path, entry.size, entry.sha256)]).to_bytes())
    return folder


@pytest.mark.parametrize("how", ["file", "folder"])
def test_publish_refuses_a_linked_file(srv: RunningRegistry, tmp_path: Path, how: str) -> None:
    """Class 8: publish follows symlinks out of the artifact folder."""
    _folder_with_link(tmp_path, how)
    token = mint_token(srv.registry.engine, ["publish:tiny-phi"])
    proc = subprocess.run([sys.executable, "-m", "phi_get", "publish", str(tmp_path / "out"), "--registry", srv.url],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PHI_GET_TOKEN": token})
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    assert "files[0].path" in proc.stderr and "symbolic link" in proc.stderr, proc.stderr
    assert "weights/model.gguf" in proc.stderr and "Traceback" not in proc.stderr
    blobs = [p for p in srv.storage.rglob("*") if p.is_file()]
    assert not any(p.read_bytes() == SECRET for p in blobs), "the linked file reached the registry"
    assert srv.registry.model_names() == []


def test_a_stray_linked_folder_is_refused(tmp_path: Path) -> None:
    """Class 8: a link to a folder beside the listed files is a stray entry, not silently skipped."""
    from phi_get.manifests.artifact import ArtifactFolderError, load_artifact_folder
    from phi_get.registry.testing import write_artifact

    folder = tmp_path / "art"
    write_artifact(folder, {"model.gguf": b"GGUF" + b"\0" * 60})
    os.symlink(tmp_path, folder / "extra")
    with pytest.raises(ArtifactFolderError, match="file on disk is not listed in the manifest .got 'extra'"):
        load_artifact_folder(folder)
