"""Progress reporting for long steps: rich bars on a terminal, silence otherwise.

Stages take a :class:`Progress` and never decide themselves whether to draw: the CLI builds one
that draws only on a TTY and without ``--quiet``; tests and the Python API get the silent one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress as RichProgress,
    TextColumn,
    TimeElapsedColumn,
)


class Step(Protocol):
    def advance(self, n: float = 1) -> None: ...


class _NullStep:
    def advance(self, n: float = 1) -> None:
        return None


class Progress:
    """Silent progress: the default for the Python API and for non-terminals."""

    @contextmanager
    def step(self, description: str, total: float | None = None) -> Iterator[Step]:
        """A unit of long work; ``total`` in the unit you ``advance`` by (``None``: unknown)."""
        yield _NullStep()


class _RichStep:
    def __init__(self, bar: RichProgress, task: int) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: float = 1) -> None:
        self._bar.advance(self._task, n)


class TerminalProgress(Progress):
    """Draws a rich progress bar per step on the given console (stderr by default)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    @contextmanager
    def step(self, description: str, total: float | None = None) -> Iterator[Step]:
        bar = RichProgress(
            TextColumn("{task.description}", markup=False),  # file names are data, not markup
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield _RichStep(bar, task)


def progress_for(*, quiet: bool, console: Console | None = None) -> Progress:
    """A drawing progress on an interactive terminal unless ``quiet``; silent otherwise."""
    console = console or Console(stderr=True)
    if quiet or not console.is_terminal:
        return Progress()
    return TerminalProgress(console)
