"""Where quantization error enters: the same images through each step from the Keras model to the int8 kernels.

Keras float → TFLite float (conversion) → TFLite int8 with the default kernels (quantization) → TFLite int8 with
the reference kernels (what TensorFlow Lite Micro computes). Between consecutive stages: top-1 agreement,
accuracy change, and how far the scores moved (mean absolute error, cosine similarity, relative L2 error).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import LoadedImages, Progress, no_progress
from edgecnn.runners import Runner, open_runner


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


def run_stages(
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    images: LoadedImages,
    *,
    batch_size: int = 64,
    reference_scores: np.ndarray | None = None,
    candidate_scores: np.ndarray | None = None,
    on_progress: Progress | None = None,
) -> StageReport:
    """Run the images through every stage, here, and compare consecutive stages.

    With a ``.keras`` reference the chain is Keras float → TFLite float (converted from it, in a temporary
    folder) → the candidate with the default kernels → the candidate with the reference kernels. With a float
    ``.tflite`` reference the chain starts at TFLite float.

    Args:
        reference_scores / candidate_scores: the reference's and the candidate's (default kernels) scores on
            these images when already computed (by validation): those stages are not run again.

    Raises:
        MissingDependencyError: a ``.keras`` reference without TensorFlow installed.
    """
    from edgecnn.interpreter import TFLiteRunner

    candidate = Path(candidate_path)
    reference = Path(reference_path)
    converted = "(converted from the reference)"
    with tempfile.TemporaryDirectory(prefix="edgecnn-stages-") as folder:
        # (name, model shown, how to open it, scores already known)
        chain: list[tuple[str, str, Callable[[], Runner], np.ndarray | None]] = []
        if reference.suffix.lower() == ".keras":
            from edgecnn.convert import convert

            float_model = convert(reference, Path(folder) / "float.tflite", quantize="none").path
            chain.append(("keras float", str(reference), lambda: open_runner(reference), reference_scores))
            chain.append(("tflite float", converted, lambda: TFLiteRunner(float_model), None))
        else:
            chain.append(("tflite float", str(reference), lambda: open_runner(reference), reference_scores))
        chain.append(("tflite int8", str(candidate), lambda: TFLiteRunner(candidate), candidate_scores))
        chain.append(
            (
                "tflite int8 (reference kernels)",
                str(candidate),
                lambda: TFLiteRunner(candidate, reference_kernels=True),
                None,
            )
        )
        to_run = sum(known is None for *_, known in chain)
        advance = (on_progress or no_progress)("running the stages", to_run * len(images))
        scores = [known if known is not None else _scores(make(), images.images, batch_size, advance)
                  for _, _, make, known in chain]  # fmt: skip
    stages = [
        Stage(name, model, float(np.mean(s.argmax(1) == images.labels)))
        for (name, model, _, _), s in zip(chain, scores)
    ]
    comparisons = [
        compare_scores(scores[i], scores[i + 1], images.labels, names=(chain[i][0], chain[i + 1][0]))
        for i in range(len(chain) - 1)
    ]
    return StageReport(stages, comparisons)


def _scores(runner: Runner, images: np.ndarray, batch_size: int, advance: Callable[[int], None]) -> np.ndarray:
    from edgecnn.validate import predict_all

    try:
        return predict_all(runner, images, batch_size, advance).astype(np.float32)
    finally:
        runner.close()
