"""Progress on stderr: shown only on a terminal and without --quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from edgecnn.data import Progress, ProgressFn, no_progress


def progress_enabled(quiet: bool) -> bool:
    """Progress is for people: only when stderr is a terminal and --quiet was not given."""
    return not quiet and sys.stderr.isatty()


def stage_progress(quiet: bool) -> Progress:
    """A factory of progress bars: given a stage name and a total, returns the callback that advances it."""

    def start(name: str, total: int) -> ProgressFn:
        done = 0
        if not progress_enabled(quiet) or total <= 0:
            return no_progress(name, total)

        def advance(n: int) -> None:
            nonlocal done
            done = min(total, done + n)
            filled = int(30 * done / total)
            end = "\n" if done >= total else ""
            click.echo(f"\r{name} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{end}", err=True, nl=False)

        return advance

    return start


def epoch_printer(quiet: bool) -> Callable[[int, int, dict[str, float]], None]:
    """Training progress: one line per epoch on stderr."""

    def report(epoch: int, total: int, metrics: dict[str, float]) -> None:
        if progress_enabled(quiet):
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            click.echo(f"epoch {epoch}/{total}  {shown}", err=True)

    return report


def warn_skipped(skipped: list[Any]) -> None:
    """Skipped files are never silent: the count goes to stderr as well as into the report."""
    if skipped:
        click.echo(
            f"edgecnn: warning: skipped {len(skipped)} unreadable or non-image file(s), listed in the report "
            "(--strict makes this an error)",
            err=True,
        )
