"""What a command shows as it goes, on stderr: each problem as one line, and on a terminal a
progress display (stdout carries only the output)."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from fhirstudy.errors import Problem


def report(problem: Problem) -> None:
    """One line on stderr: ``warning: ...`` or ``error: ...`` with the problem's place."""
    level = "warning" if problem.severity == "warning" else "error"
    print(f"{level}: {problem}", file=sys.stderr)


@contextmanager
def progress(label: str) -> Iterator:
    """A progress display on stderr when stderr is a terminal; a no-op in pipes and files.
    Nothing of it goes to stdout, which carries the output alone.  Yields ``tick()``."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} records"),
                  TimeElapsedColumn(), console=console, transient=True, redirect_stdout=False) as bar:
        task = bar.add_task(label, total=None)
        yield lambda: bar.advance(task)


class Bar:
    """A progress bar with a total once it is known (``bar.total(n)``; ``bar.tick()`` per item) on
    stderr when stderr is a terminal; silent elsewhere. Use as a context manager."""

    def __init__(self, label: str):
        self.label, self._bar, self._task = label, None, None

    def __enter__(self) -> "Bar":
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True,
                                 redirect_stdout=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def total(self, n: int | None) -> None:
        if self._bar is not None and n is not None:
            self._bar.update(self._task, total=n)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
