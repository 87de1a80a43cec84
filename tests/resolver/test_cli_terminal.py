"""What a terminal sees: Ctrl-C during an install under a real pty, progress when piped."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from phi_get.manifests.errors import ExitCode

HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while wanted not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the pty
                break
            if not chunk:
                break
            out += chunk
    return out


def test_ctrl_c_during_install_restores_the_cursor_and_says_how_to_resume(served: Any, home: Path) -> None:
    """Ctrl-C mid-download left the cursor hidden and said nothing about resuming; the next run resumes."""
    served.faults.slow = 0.05  # 64 KiB every 50 ms: the 800 kB file takes about half a second or more
    args = [sys.executable, "-m", "phi_get", "install", "tiny-model", "--registry", served.url,
            "--device", "pi-board"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        os.execve(sys.executable, args, {**os.environ, "PHI_GET_HOME": str(home), "TERM": "xterm", "COLUMNS": "100"})
    out = _read_until(fd, HIDE, 60)  # rich hides the cursor when the bars start
    assert HIDE in out, out
    time.sleep(0.3)
    os.write(fd, b"\x03")  # Ctrl-C as a terminal sends it: SIGINT to the foreground process group
    out += _read_until(fd, b"resume", 30)
    out += _read_until(fd, b"\x00never", 3)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == ExitCode.INTERRUPTED, out
    assert b"run the same command again to resume" in out and b"Traceback" not in out
    assert out.rfind(SHOW) > out.rfind(HIDE), "the cursor is left hidden"
    served.faults.slow = 0.0
    again = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=120, check=False,
                           env={**os.environ, "PHI_GET_HOME": str(home)})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == "0.2.0"


def test_no_progress_bars_when_stderr_is_a_pipe(served: Any, home: Path) -> None:
    """Progress is for terminals: piped, install writes no escape sequences or carriage returns."""
    out = subprocess.run([sys.executable, "-m", "phi_get", "install", "tiny-model", "--registry", served.url,
                          "--device", "pi-board"], capture_output=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert b"\x1b[" not in out.stderr + out.stdout and b"\r" not in out.stderr + out.stdout


def test_ctrl_c_during_resolve_exits_130_without_a_traceback(served: Any, home: Path) -> None:
    """Ctrl-C during resolve (its own argparse path) printed a traceback instead of exiting 130."""
    served.faults.down = False
    proc = subprocess.Popen([sys.executable, "-c", ("import signal, os, sys\n"
                             "from phi_get.resolver import resolve_command\n"
                             "orig = resolve_command.run_resolve\n"
                             "def slow(argv):\n    os.kill(os.getpid(), signal.SIGINT)\n    orig(argv)\n"
                             "resolve_command.run_resolve = slow\n"
                             f"sys.exit(resolve_command.main(['tiny-model', '--registry', '{served.url}']))")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED and b"Traceback" not in err, err
