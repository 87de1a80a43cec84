"""A failed toolchain step keeps its full log, and its error names that log and the failing frame.

A toolchain step (the genai model builder, ``optimum-cli``, ``mlx_lm
convert``, a check driver, or a backend's own Python code) that fails after
minutes must leave more than its exception's last line (the mlx
check's ``IndexError: list index out of range`` was all there was).  So:

- :func:`run_step` runs a subprocess; on failure it writes the command, exit
  status, stdout and stderr to ``LOG``, and raises :class:`ToolchainError`
  with the exit status, the last traceback frame found in stderr (file, line,
  function), the last line of stderr and the log's path.
- :func:`in_process_failure` does the same for an exception raised inside
  phi-get (its formatted traceback goes to the log).

Logs go to ``OUT/.work/<source>/logs/<variant>.<step>.log`` (:func:`log_path`),
beside the shared work, so they outlive the variant's removed temporary folder;
a later failure of the same step replaces its log.  Standard library only.
"""

from __future__ import annotations

import re
import subprocess
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .errors import BuildError

__all__ = ["Frame", "ToolchainError", "in_process_failure", "last_frame", "log_path", "run_step"]

#: A frame line of a CPython traceback.
_FRAME: Final = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)', re.MULTILINE)


@dataclass(frozen=True, kw_only=True, slots=True)
class Frame:
    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.function} ({self.file}:{self.line})"


class ToolchainError(BuildError):
    """A toolchain step failed; ``log`` holds its full output, ``frame`` where it failed (if a traceback said)."""

    def __init__(self, message: str, *, log: Path, frame: Frame | None) -> None:
        super().__init__(message)
        self.log = log
        self.frame = frame


def last_frame(text: str) -> Frame | None:
    """The innermost frame of the last Python traceback in ``text``, or None."""
    frames = list(_FRAME.finditer(text))
    if not frames:
        return None
    m = frames[-1]
    return Frame(file=m["file"], line=int(m["line"]), function=m["function"])


def log_path(work: Path, variant: str, step: str) -> Path:
    """Where ``variant``'s ``step`` keeps its log under a source's work folder."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", step).strip("-") or "step"
    return work / "logs" / f"{variant}.{slug}.log"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "(no output)"


def _write(log: Path, text: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text, encoding="utf-8", errors="replace")


def run_step(cmd: list[str], what: str, log: Path, *, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 3600) -> str:
    """Run ``cmd``; its stdout, or a ToolchainError whose full log is in ``log``."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False, env=env,
                              errors="replace")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        _write(log, f"command: {cmd}\ntimed out after {timeout:g} s\n\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
        raise ToolchainError(f"{what} timed out after {timeout:g} s; full log: {log}", log=log,
                             frame=last_frame(err)) from None
    if proc.returncode == 0:
        return proc.stdout
    _write(log, f"command: {cmd}\ncwd: {cwd}\nexit status: {proc.returncode}\n\n--- stdout ---\n{proc.stdout}\n"
                f"--- stderr ---\n{proc.stderr}")
    text = proc.stderr or proc.stdout
    frame = last_frame(text)
    where = f" in {frame}" if frame else ""
    raise ToolchainError(f"{what} failed (exit {proc.returncode}){where}: {_last_line(text)}; full log: {log}",
                         log=log, frame=frame)


def in_process_failure(exc: BaseException, what: str, log: Path) -> ToolchainError:
    """A ToolchainError for ``exc`` raised in phi-get's own code; its traceback is written to ``log``."""
    text = "".join(traceback.format_exception(exc))
    _write(log, f"{what} raised in process\n\n{text}")
    tb = traceback.extract_tb(exc.__traceback__)
    frame = Frame(file=tb[-1].filename, line=tb[-1].lineno or 0, function=tb[-1].name) if tb else None
    where = f" in {frame}" if frame else ""
    return ToolchainError(f"{what} failed{where}: {type(exc).__name__}: {exc}; full log: {log}", log=log, frame=frame)
