"""``gc`` racing ``install`` (SECURITY.md: gc racing an install): a real gc, in the moment and in a loop of its own process.

The moment that mattered: a blob is downloaded (or an old unreferenced one
is found in the store) but not yet linked into the artifact folder, so no
ref reaches it.  A gc run then must leave it (the install's pin names it),
and an install must finish correctly whatever gc does, with no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import phi_get
import pytest
from phi_get.manifests.artifact import load_artifact_folder
from phi_get.resolver.fetch import NullReporter
from phi_get.resolver.install import install_digest
from phi_get.resolver.maintenance import gc_store
from phi_get.resolver.sources import sources_from
from phi_get.resolver.store import Store

DEVICE = "pi-board"


class GcWhenPlaced(NullReporter):
    """A reporter that runs a real gc as soon as ``after`` downloads have placed their blobs (none linked yet)."""

    def __init__(self, store: Store, after: int) -> None:
        self.store, self.after, self.placed = store, after, 0
        self.removed: list[str] = []
        self.notes: list[str] = []

    def finish(self, label: str) -> None:
        self.placed += 1
        if self.placed == self.after:
            self.removed += gc_store(self.store).removed

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_gc_between_download_and_link_keeps_the_fresh_blobs(served: Any, home: Path, mirror: Any) -> None:
    """Class 3: blobs downloaded but not yet linked are pinned by the install; gc run at that moment leaves them."""
    new = mirror[1][1]
    store = Store(home)
    rep = GcWhenPlaced(store, after=len({f.sha256 for f in new.files}))
    result = install_digest(store, sources_from([served.url], home), new.digest, reporter=rep)
    load_artifact_folder(result.path)
    assert not any(r.startswith("blobs/") for r in rep.removed), rep.removed
    assert not list((home / "pins").iterdir())  # the pin goes with the install
    assert gc_store(store).removed == []  # and now the ref keeps everything


def test_gc_keeps_an_old_unreferenced_blob_an_install_is_reusing(served: Any, home: Path, mirror: Any) -> None:
    """Class 3: blobs left by a removed version, found and reused by a new install, are pinned too."""
    old, new = mirror[1]
    store = Store(home)
    sources = sources_from([served.url], home)
    install_digest(store, sources, old.digest)
    store.remove_ref(next(store.installed()))  # 0.1.0's blobs are garbage now; 0.2.0 shares two of them
    shared = {f.sha256 for f in old.files} & {f.sha256 for f in new.files}
    assert shared
    rep = GcWhenPlaced(store, after=1)  # 0.2.0 downloads one blob; gc runs once it is placed
    result = install_digest(store, sources, new.digest, reporter=rep)
    assert all(result.files[f.path].reused for f in new.files if f.sha256 in shared)
    load_artifact_folder(result.path)
    assert any(r.startswith("blobs/") for r in rep.removed)  # gc did run and removed 0.1.0's own blob
    assert not any(r.removeprefix("blobs/sha256/") in shared for r in rep.removed), rep.removed


_GC_LOOP = """
import sys, time
from pathlib import Path
from phi_get.resolver.maintenance import gc_store
from phi_get.resolver.store import Store
store, stop = Store(Path(sys.argv[1])), Path(sys.argv[2])
runs = 0
while not stop.exists():
    gc_store(store)
    runs += 1
print(runs)
"""


@pytest.fixture()
def gc_loop(home: Path, tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    Store(home).ensure()
    stop = tmp_path / "stop-gc"
    proc = subprocess.Popen([sys.executable, "-c", _GC_LOOP, str(home), str(stop)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    yield stop, proc
    stop.touch()
    proc.communicate(timeout=60)


@pytest.mark.slow
def test_installs_while_gc_runs_in_a_loop_in_another_process(served: Any, home: Path, mirror: Any,
                                                             gc_loop: Any) -> None:
    """Class 3, a real concurrent gc: installs and removals in a loop, every one correct, no traceback."""
    stop, proc = gc_loop
    served.faults.slow = 0.003  # the weights take a while: small blobs wait, unlinked, for the large one
    store = Store(home)
    for round_ in range(6):
        version = ("0.1.0", "0.2.0")[round_ % 2]
        path = phi_get.install(f"tiny-model=={version}", registry=served.url, device=DEVICE)
        load_artifact_folder(path)
        assert path.exists()
        store.remove_ref(next(i for i in store.installed() if i.version == version))
    out = subprocess.run([sys.executable, "-m", "phi_get", "install", "tiny-model", "--registry", served.url,
                          "--device", DEVICE], capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "PHI_GET_HOME": str(home)})
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    stop.touch()
    runs, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert int(runs) > 6, "gc did not run while the installs did"
    gc_store(store)  # the loop is done: one last gc leaves the installed artifact whole
    load_artifact_folder(store.find("tiny-model").path)
    assert not list((home / "pins").iterdir())
