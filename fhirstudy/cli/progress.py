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
