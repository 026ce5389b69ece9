"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def copy_subset(source: Path, dest: Path, *, per_class: int, classes: list[str] | None = None) -> Path:
    """Copy the first ``per_class`` images of each class (sorted names) into ``dest``, a writable folder."""
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        if classes is not None and class_dir.name not in classes:
            continue
        target = dest / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            shutil.copyfile(image, target / image.name)
    return dest


def run_cli(*args: str | Path) -> Any:
    """Invoke the edgecnn CLI in-process and return click's result (stdout and stderr kept apart)."""
    from click.testing import CliRunner

    from edgecnn.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
