"""``edgecnn run``: classify image files with a model, on a target or here, with its labels and preprocessing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.runtime.classify import ClassifyResult, classify_runner
from edgecnn.workflows.models import open_model

if TYPE_CHECKING:
    from edgecnn.runtime.hints import InputHints
    from edgecnn.runtime.progress import Progress
    from edgecnn.targets.base import Target


def classify(
    model_path: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    *,
    k: int = 3,
    strict: bool = False,
    target: Target | None = None,
    hints: InputHints | None = None,
    follow_links: bool = False,
    trust: bool = False,
    on_progress: Progress | None = None,
) -> ClassifyResult:
    """Classify image files and folders (searched recursively) with a ``.tflite`` or ``.keras`` model.

    Unreadable files are skipped and listed (or an error with ``strict``).

    Args:
        model_path: the model; its sidecar (or the ``.keras`` archive), else its TFLite Metadata, else ``hints`` give
            labels and preprocessing.
        inputs: image files and folders.
        k: classes per image, best first.
        strict: fail on an unreadable image instead of skipping it.
        target: where the ``.tflite`` model runs, with the target's threads (None: here, with the runtime's defaults).
        hints: labels and preprocessing given as options, for a model that carries neither sidecar nor metadata.
        follow_links: follow symbolic links that lead outside a folder in ``inputs``.
        trust: load a Keras model with safe mode off (``--trust-model``).
        on_progress: progress of loading the images.
    """
    runner = open_model(model_path, target=target, hints=hints, trust=trust)
    try:
        predictions, skipped = classify_runner(
            runner, inputs, k=k, strict=strict, follow_links=follow_links, on_progress=on_progress
        )
    finally:
        runner.close()
    where = target.where if target is not None else "host"
    return ClassifyResult(Path(model_path), getattr(runner, "runtime", "keras"), predictions, skipped, where)
