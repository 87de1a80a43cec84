"""Progress bars and tables for people, drawn with rich.

:class:`RichReporter` (a :class:`~.fetch.Reporter` on stderr) is used by the
CLI only when stderr is a terminal and neither ``--json`` nor ``--quiet`` was
given; :meth:`RichReporter.close` stops it and gives the terminal its cursor
back (an interrupted install calls it before it says how to resume).
:func:`print_table` draws a table with rich on a terminal and as the plain
text of :func:`phi_get.manifests.display.format_table` otherwise.  Imports
rich (a light, pure-Python dependency of phi-get), the standard library and
:mod:`phi_get.manifests`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

from phi_get.manifests.display import format_table
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

__all__ = ["RichReporter", "print_table"]


class RichReporter:
    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), console=Console(stderr=True), transient=False)
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._started = False

    def start(self, label: str, total: int) -> None:
        with self._lock:
            if not self._started:
                self._progress.start()
                self._started = True
            self._tasks[label] = self._progress.add_task(label, total=total)

    def advance(self, label: str, n: int) -> None:
        task = self._tasks.get(label)
        if task is not None:
            self._progress.advance(task, n)

    def finish(self, label: str) -> None:
        with self._lock:
            task = self._tasks.pop(label, None)
            if task is not None:
                self._progress.update(task, completed=self._progress.tasks[task].total)
            if not self._tasks and self._started:
                self._progress.stop()
                self._started = False

    def note(self, message: str) -> None:
        self._progress.console.print(message)

    def close(self) -> None:
        """Stop drawing (an interrupted or failed install): the bars stay as they were, the cursor comes back."""
        with self._lock:
            self._tasks.clear()
            if self._started:
                self._progress.stop()
                self._started = False
            self._progress.console.show_cursor(True)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[str] = ()) -> None:
    """A table on stdout: rich's on a terminal, plain aligned text in a pipe (same columns, same header)."""
    if not sys.stdout.isatty():
        print(format_table(headers, rows))
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h, justify="right" if h in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*("-" if c is None else str(c) for c in row))
    Console().print(table)
