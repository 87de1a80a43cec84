"""Stored bytes are trusted only when verified (SECURITY.md: stored bytes changed after they were verified): planted corruption and symlinks in a real store.

Each test installs from the loopback server into a real store, then
damages the store the way bit rot, an editor writing through a hard link,
or an attacker with write access to the store would, and installs again
(``install`` or ``sync --locked``): what ends up installed must be the
manifest's bytes, in regular files of the store, and exit 0 (the damage
is repaired by downloading afresh, and the reporter says so).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import phi_get
import pytest
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.resolver.fetch import NullReporter
from phi_get.resolver.install import install_digest
from phi_get.resolver.lock import lock_project, sync_locked
from phi_get.resolver.sources import sources_from
from phi_get.resolver.store import Store
from wirekit import ONE_CLASS_PROJECT

DEVICE = "pi-board"  # its CPU (cpu-arm64) is one the test artifacts target


class Notes(NullReporter):
    """A reporter that keeps the notes (what the CLI's progress display prints)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def _entry(manifest: Any, path: str) -> Any:
    return next(f for f in manifest.files if f.path == path)


def _scribble(path: Path, offset: int = 1000) -> None:
    """Flip one byte in place (same size), through whatever link ``path`` is, and put the mtime back as it was."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide it from a check of size and mtime


def _phi(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PHI_GET_HOME": str(home)}, check=False)


def test_a_same_size_corrupted_blob_is_not_reused(served: Any, home: Path, mirror: Any) -> None:
    """Class 1, bit rot / tampering of a stored blob: the real CLI re-verifies it on reuse and downloads it afresh."""
    old = mirror[1][0]
    store = Store(home)
    assert _phi(home, "install", "tiny-model==0.1.0", "--registry", served.url, "--device", DEVICE).returncode == 0
    store.remove_ref(next(store.installed()))  # uninstalled; its blobs stay in the store until gc
    blob = store.blob(_entry(old, "model.bin").sha256)
    _scribble(blob)
    out = _phi(home, "install", "tiny-model==0.1.0", "--registry", served.url, "--device", DEVICE, "--json")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    load_artifact_folder(store.find("tiny-model").path)  # every file's sha256 matches the manifest
    assert blob.read_bytes() == (mirror[0] / "v1" / "blobs" / "sha256" / blob.name).read_bytes()


def test_an_editor_writing_through_a_hard_link_is_caught(served: Any, home: Path) -> None:
    """Class 1, an installed file changed in place (it shares its inode with the blob): 'already installed' checks."""
    path = phi_get.install("tiny-model", registry=served.url, device=DEVICE)
    _scribble(path / "model.bin")
    notes = Notes()
    again = phi_get.install("tiny-model", registry=served.url, device=DEVICE, reporter=notes)
    assert again == path
    load_artifact_folder(again)
    assert any("is damaged" in n and "model.bin" in n for n in notes.notes), notes.notes
    assert any("cannot be trusted" in n and "sha256" in n for n in notes.notes), notes.notes  # the blob, too


def test_a_blob_replaced_by_a_symlink_is_never_installed(served: Any, home: Path, mirror: Any,
                                                         tmp_path: Path) -> None:
    """Class 1, a planted symlink: an installed file is never a link to (or a hard link of) a file outside the store."""
    old = mirror[1][0]
    phi_get.install("tiny-model==0.1.0", registry=served.url, device=DEVICE)
    store = Store(home)
    store.remove_ref(next(store.installed()))
    entry = _entry(old, "model.bin")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"X" * entry.size)  # same size, the attacker's bytes
    blob = store.blob(entry.sha256)
    blob.unlink()
    blob.symlink_to(outside)
    notes = Notes()
    path = phi_get.install("tiny-model==0.1.0", registry=served.url, device=DEVICE, reporter=notes)
    installed = path / "model.bin"
    assert stat.S_ISREG(os.lstat(installed).st_mode)
    assert os.lstat(installed).st_ino != os.stat(outside).st_ino
    assert not blob.is_symlink()
    load_artifact_folder(path)
    assert outside.read_bytes() == b"X" * entry.size  # left alone
    assert any("not a regular file (a symlink)" in n for n in notes.notes), notes.notes


def test_a_blob_swapped_for_a_symlink_before_it_is_linked_is_fetched_again(served: Any, home: Path, mirror: Any,
                                                                           tmp_path: Path) -> None:
    """Class 1, the moment between fetch and link: place_artifact links only the regular file it vouched for."""
    new = mirror[1][1]
    store = Store(home).ensure()
    outside = tmp_path / "outside.json"
    outside.write_bytes((mirror[0] / "v1" / "blobs" / "sha256" / _entry(new, "tokenizer.json").sha256).read_bytes())
    blob = store.blob(_entry(new, "tokenizer.json").sha256)

    class SwapWhenAllAreIn(Notes):
        done = 0

        def finish(self, label: str) -> None:  # called as each download's blob is placed
            self.done += 1
            if self.done == len({f.sha256 for f in new.files}):  # all placed, none linked yet
                blob.unlink()
                blob.symlink_to(outside)  # the right bytes, even: a link is still refused

    rep = SwapWhenAllAreIn()
    result = install_digest(store, sources_from([served.url], home), new.digest, reporter=rep)
    installed = result.path / "tokenizer.json"
    assert stat.S_ISREG(os.lstat(installed).st_mode) and os.lstat(installed).st_ino != os.stat(outside).st_ino
    load_artifact_folder(result.path)
    assert any("fetching it again" in n for n in rep.notes), rep.notes


def test_a_fresh_download_is_recorded_without_a_second_hash(served: Any, home: Path, mirror: Any) -> None:
    """Class 1, the verified record: written as a download is placed (no read-back), it lets a shared blob be reused."""
    old, new = mirror[1]
    store = Store(home)
    sources = sources_from([served.url], home)
    first = install_digest(store, sources, old.digest)
    assert all(s.read_back == 0 for s in first.files.values())  # hashed from memory only
    for entry in old.files:
        assert store.record(entry.sha256).is_file(), entry.path
    second = install_digest(store, sources, new.digest)
    shared = second.files["tokenizer.json"]
    assert shared.reused and shared.read_back == 0  # the record vouched for it: not hashed again
    _scribble(store.blob(_entry(new, "tokenizer.json").sha256))
    store.remove_ref(next(i for i in store.installed() if i.digest == new.digest))
    third = install_digest(store, sources, new.digest)
    assert not third.files["tokenizer.json"].reused  # the record no longer matches: hashed, refused, fetched
    load_artifact_folder(third.path)


def test_sync_locked_checks_the_stored_bytes_too(served: Any, home: Path, tmp_path: Path) -> None:
    """Class 1 through ``sync --locked``: a corrupted installed file is found and replaced, not passed as installed."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "phi.toml").write_text(ONE_CLASS_PROJECT.format(url=served.url))
    lock_project(folder, home)
    path = sync_locked(folder, home, device_class="edge")[0].path
    _scribble(path / "tokenizer.json", offset=10)
    results = sync_locked(folder, home, device_class="edge")
    assert not results[0].already_installed
    load_artifact_folder(results[0].path)


@pytest.mark.skipif(os.name == "nt", reason="symlinked folders need privileges on Windows")
def test_an_installed_folder_reached_through_a_link_is_not_trusted(served: Any, home: Path, tmp_path: Path) -> None:
    """Class 1, a link out of an artifact folder: a sub-folder replaced by a symlink to a copy outside is refused."""
    path = phi_get.install("tiny-model", registry=served.url, device=DEVICE)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_bytes((path / "sub" / "config.json").read_bytes())  # the right bytes, elsewhere
    os.unlink(path / "sub" / "config.json")
    (path / "sub").rmdir()
    (path / "sub").symlink_to(outside, target_is_directory=True)
    again = phi_get.install("tiny-model", registry=served.url, device=DEVICE)
    assert not (again / "sub").is_symlink()
    load_artifact_folder(again)
