"""Where quantization error enters: the same images through each step from the Keras model to the int8 kernels.

Keras float → TFLite float (conversion) → TFLite int8 with the default kernels (quantization) → TFLite int8 with
the reference kernels (what TensorFlow Lite Micro computes). Between consecutive stages: top-1 agreement,
accuracy change, and how far the scores moved (mean absolute error, cosine similarity, relative L2 error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Stage:
    """One step of the chain: its model and its top-1 accuracy on the images."""

    name: str
    model: str
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "model": self.model, "accuracy": self.accuracy}


@dataclass(frozen=True)
class StageComparison:
    """How the scores changed from stage ``source`` to stage ``target`` on the same images.

    Attributes:
        agreement: share of images with the same top-1 class.
        accuracy_change_pp: target minus source accuracy, in percentage points.
        mae: mean absolute difference of the scores.
        cosine: mean over images of the cosine similarity of the two score vectors.
        l2_relative: ``||target - source|| / ||source||`` over all scores.
    """

    source: str
    target: str
    agreement: float
    accuracy_change_pp: float
    mae: float
    cosine: float
    l2_relative: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "from": self.source,
            "to": self.target,
            "agreement": self.agreement,
            "accuracy_change_pp": self.accuracy_change_pp,
            "mae": self.mae,
            "cosine": self.cosine,
            "l2_relative": self.l2_relative,
        }


@dataclass(frozen=True)
class StageReport:
    """The stages in order and the comparison of each with the next."""

    stages: list[Stage]
    comparisons: list[StageComparison]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``stages`` key of ``edgecnn validate --json``)."""
        return {"stages": [s.to_dict() for s in self.stages], "comparisons": [c.to_dict() for c in self.comparisons]}


def compare_scores(
    source: np.ndarray, target: np.ndarray, truth: np.ndarray, *, names: tuple[str, str]
) -> StageComparison:
    """Compare two stages' scores ``(N, classes)`` on the same images with labels ``truth``."""
    a = np.asarray(source, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    # An all-zero score row has no direction: count it as similar only to another all-zero row.
    cosine = np.where(norms > 0, np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0), (a == b).all(axis=1))
    total = np.linalg.norm(a)
    accuracy_a = float(np.mean(a.argmax(1) == truth))
    accuracy_b = float(np.mean(b.argmax(1) == truth))
    return StageComparison(
        source=names[0],
        target=names[1],
        agreement=float(np.mean(a.argmax(1) == b.argmax(1))),
        accuracy_change_pp=(accuracy_b - accuracy_a) * 100.0,
        mae=float(np.mean(np.abs(a - b))),
        cosine=float(np.mean(cosine)),
        l2_relative=float(np.linalg.norm(a - b) / total) if total > 0 else float(np.linalg.norm(b) > 0),
    )


def stage_report(chain: list[tuple[str, str, np.ndarray]], truth: np.ndarray) -> StageReport:
    """Each stage's accuracy and the comparison of each stage with the next.

    Args:
        chain: the stages in order, each ``(name, model shown, scores (N, classes))`` on the same images.
        truth: the images' class indices.
    """
    stages = [Stage(name, model, float(np.mean(np.asarray(s).argmax(1) == truth))) for name, model, s in chain]
    comparisons = [
        compare_scores(chain[i][2], chain[i + 1][2], truth, names=(chain[i][0], chain[i + 1][0]))
        for i in range(len(chain) - 1)
    ]
    return StageReport(stages, comparisons)
