"""The one atomic write (manifests/atomic.py): a failed write changes nothing and leaves nothing.

Faults: a write cut short by the filesystem (the file-size limit, as a full
disk cuts it), a writer interrupted by Ctrl-C, a process killed mid-write;
each must leave the old file whole and, where the process lives on, no temp
file beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from phi_get.manifests.atomic import replacing, temp_beside, write_atomic

OLD = b"old bytes, whole\n"


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_cut_short_by_the_filesystem_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    """Fault: the filesystem refuses the rest of a write (RLIMIT_FSIZE gives EFBIG, as a full disk gives ENOSPC)."""
    target = tmp_path / "refs" / "model"
    target.parent.mkdir()
    target.write_bytes(OLD)
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from phi_get.manifests.atomic import write_atomic\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    write_atomic(Path(sys.argv[1]), b'n' * 1_000_000)\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused")
    assert target.read_bytes() == OLD
    assert _listing(target.parent) == ["model"]


def test_interrupted_writer_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    """Fault: Ctrl-C (KeyboardInterrupt) while a writer fills the temp file, for a file and for a folder."""
    target = tmp_path / "model.gguf"
    target.write_bytes(OLD)
    with pytest.raises(KeyboardInterrupt), replacing(target) as tmp:
        tmp.write_bytes(b"half a model")
        raise KeyboardInterrupt
    assert target.read_bytes() == OLD
    assert _listing(tmp_path) == ["model.gguf"]

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_bytes(OLD)
    with pytest.raises(RuntimeError), replacing(folder, folder=True) as tmp:
        (tmp / "config.json").write_bytes(b"half")
        raise RuntimeError("tokenizer training failed")
    assert (folder / "config.json").read_bytes() == OLD
    assert _listing(tmp_path) == ["checkpoint", "model.gguf"]


def test_success_replaces_whole(tmp_path: Path) -> None:
    """The clean path: the new bytes (or folder) in place, nothing else beside them."""
    target = tmp_path / "index.json"
    target.write_bytes(OLD)
    write_atomic(target, b"new")
    with replacing(tmp_path / "model.gguf") as tmp:
        tmp.write_bytes(b"gguf")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "stale.bin").write_bytes(OLD)
    with replacing(folder, folder=True) as tmp:
        (tmp / "config.json").write_bytes(b"{}")
    assert target.read_bytes() == b"new" and (tmp_path / "model.gguf").read_bytes() == b"gguf"
    assert _listing(folder) == ["config.json"]
    assert _listing(tmp_path) == ["checkpoint", "index.json", "model.gguf"]


_HANGING_WRITER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from phi_get.manifests.atomic import replacing\n"
    "with replacing(Path(sys.argv[1])) as tmp, open(tmp, 'wb') as fh:\n"
    "    fh.write(b'partial'); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
)


def _writer_killed_mid_write(target: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _HANGING_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_process_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """Fault: the process is killed (SIGKILL) while writing: the target still holds the old bytes, whole.

    No cleanup can run in a killed process; what it leaves is one hidden
    ``.<name>.<host>-<pid>-<random>.tmp`` beside the target, never a torn target.
    """
    target = tmp_path / "catalog.json"
    target.write_bytes(OLD)
    _writer_killed_mid_write(target)
    assert target.read_bytes() == OLD
    leftovers = [n for n in _listing(tmp_path) if n != "catalog.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".catalog.json.") and leftovers[0].endswith(".tmp")


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    """Fault: a writer killed mid-write (a GGUF conversion's 15 GB intermediate, at real scale) left its temp.

    The next write of the same target removes it; a live writer's temp of
    that target, and a dead writer's temp of another target, stay.
    """
    target, other = tmp_path / "model-f32.gguf", tmp_path / "model-f32.gguf.sha"
    _writer_killed_mid_write(target)
    _writer_killed_mid_write(other)
    (dead,) = [n for n in _listing(tmp_path) if n.startswith(".model-f32.gguf.") and "sha" not in n]
    (other_dead,) = [n for n in _listing(tmp_path) if n.startswith(".model-f32.gguf.sha.")]
    live = temp_beside(target)  # this process's own: alive
    live.write_bytes(b"in progress")
    with replacing(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(_listing(tmp_path)) == sorted([target.name, other_dead, live.name]), dead


def test_a_secret_is_private_from_its_first_byte(tmp_path: Path) -> None:
    """Exposure: a key written with mode 0o600 is created so, temp file included (no chmod after the fact)."""
    key = tmp_path / "online.key"
    write_atomic(key, b"-----BEGIN PRIVATE KEY-----", mode=0o600)
    assert key.stat().st_mode & 0o777 == 0o600
