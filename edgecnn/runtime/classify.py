"""Classification: the top classes of each image, from any runner and the labels and preprocessing it carries."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import DatasetError, UsageError
from edgecnn.runtime.data import Sample, Skipped, collect_images, load_images
from edgecnn.runtime.progress import Progress, no_progress
from edgecnn.runtime.runners import Runner


@dataclass(frozen=True)
class Prediction:
    """The top classes for one image, best first, as (label, probability)."""

    path: Path
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": str(self.path), "top": [{"label": l, "score": s} for l, s in self.top]}


@dataclass
class ClassifyResult:
    """Predictions for every readable image, and the files left out."""

    model: Path
    runtime: str
    predictions: list[Prediction]
    skipped: list[Skipped] = field(default_factory=list)
    target: str = "host"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model": str(self.model),
            "target": self.target,
            "runtime": self.runtime,
            "num_images": len(self.predictions),
            "num_skipped": len(self.skipped),
            "predictions": [p.to_dict() for p in self.predictions],
            "skipped": [s.to_dict() for s in self.skipped],
        }


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` best (label, score) pairs of each row; ties keep the lower class index first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(labels[i], float(row[i])) for i in idx] for row, idx in zip(scores, order)]


def classify_runner(
    runner: Runner,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    k: int = 3,
    strict: bool = False,
    follow_links: bool = False,
    on_progress: Progress | None = None,
) -> tuple[list[Prediction], list[Skipped]]:
    """Classify image files and folders with an open runner (``follow_links``: as for
    :func:`~edgecnn.runtime.data.collect_images`)."""
    if k < 1:
        raise UsageError(f"--top-k must be at least 1, not {k}")
    paths, skipped = collect_images(inputs, follow_links=follow_links)
    try:
        loaded = load_images(
            [Sample(p, -1) for p in paths],
            runner.info.preprocessing,
            strict=strict,
            skipped=skipped,
            on_progress=(on_progress or no_progress)("loading images", len(paths)),
        )
    except DatasetError as exc:
        if len(paths) == 1 and not strict:
            raise DatasetError(f"{paths[0]} is not a readable image: check the file") from exc
        raise
    scores = runner.predict(loaded.images)
    best = top_k(scores, runner.info.labels, min(k, len(runner.info.labels)))
    return [Prediction(p, t) for p, t in zip(loaded.paths, best)], loaded.skipped
