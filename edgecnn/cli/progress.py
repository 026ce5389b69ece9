"""Progress on stderr, drawn by click's progress bar: only on a terminal, and never with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from edgecnn.runtime.progress import Progress, ProgressFn


def progress_enabled(quiet: bool) -> bool:
    """Progress is for people: only when stderr is a terminal and --quiet was not given."""
    return not quiet and sys.stderr.isatty()


def stage_progress(quiet: bool) -> Progress:
    """A factory of progress bars: given a stage name and a total, returns the callback that advances it."""

    def start(name: str, total: int) -> ProgressFn:
        if not progress_enabled(quiet) or total <= 0:
            return lambda done: None
        bar = click.progressbar(length=total, label=name, file=sys.stderr, show_pos=True)
        bar.__enter__()
        finished = False

        def advance(done: int) -> None:
            nonlocal finished
            if finished:
                return
            bar.update(done)
            if bar.pos >= total:
                finished = True
                bar.__exit__(None, None, None)

        return advance

    return start


def stage_printer(quiet: bool) -> Callable[[str], None]:
    """The demo's stages: one ``== name`` line each on stderr."""

    def show(name: str) -> None:
        if progress_enabled(quiet):
            click.echo(f"== {name}", err=True)

    return show


def epoch_printer(quiet: bool) -> Callable[[int, int, dict[str, float]], None]:
    """Training progress: one line per epoch on stderr."""

    def report(epoch: int, total: int, metrics: dict[str, float]) -> None:
        if progress_enabled(quiet):
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            click.echo(f"epoch {epoch}/{total}  {shown}", err=True)

    return report


def progress_callbacks(quiet: bool) -> dict[str, Any]:
    """``on_progress`` and ``on_epoch`` for the library functions that train."""
    return {"on_progress": stage_progress(quiet), "on_epoch": epoch_printer(quiet)}
