"""How long work reports progress: the library calls these callbacks, the CLI draws them (or nothing)."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int], None]
"""Called with the number of items just finished."""

Progress = Callable[[str, int], ProgressFn]
"""Given a stage name and its total, returns the callback that advances that stage; the CLI draws a bar."""


def no_progress(name: str, total: int) -> ProgressFn:
    """A :data:`Progress` that shows nothing."""
    return lambda done: None
