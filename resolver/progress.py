"""Progress bars for people: a :class:`~.fetch.Reporter` drawn with rich on stderr.

Used by the CLI only when stderr is a terminal and neither ``--json`` nor
``--quiet`` was given.  Imports rich (a light, pure-Python dependency of
phi-get) and the standard library.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

__all__ = ["RichReporter"]


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
