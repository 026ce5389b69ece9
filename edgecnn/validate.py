"""Compare a reference model and a candidate on the same images: accuracy, agreement, per class, gates.

:func:`validate` never loads a model: it takes two runners, so the same code validates a Keras model
against a TFLite one on a workstation, or two TFLite models on a device without TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import LoadedImages, Progress, ProgressFn, load_labelled, no_progress
from edgecnn.errors import UsageError
from edgecnn.runners import Runner, open_on, open_runner
from edgecnn.targets.base import Target

# Gates compare rounded figures; this keeps 1.0 pp from failing a 1.0 pp limit through float error.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Gate:
    """One pass/fail check: ``value`` against ``threshold``."""

    name: str
    value: float
    threshold: float
    passed: bool
    rule: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
            "rule": self.rule,
        }

    def describe(self) -> str:
        """One line such as ``accuracy drop 1.20 pp > max 1.00 pp``."""
        return f"{self.name}: {self.rule.format(value=self.value, threshold=self.threshold)}"


@dataclass(frozen=True)
class ClassResult:
    """Accuracy of both models on one class."""

    label: str
    support: int
    reference_accuracy: float
    candidate_accuracy: float

    @property
    def drop_pp(self) -> float:
        """Reference minus candidate accuracy, in percentage points."""
        return (self.reference_accuracy - self.candidate_accuracy) * 100.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "label": self.label,
            "support": self.support,
            "reference_accuracy": self.reference_accuracy,
            "candidate_accuracy": self.candidate_accuracy,
            "drop_pp": self.drop_pp,
        }


@dataclass
class ValidationReport:
    """Everything :func:`validate` measured. Accuracies and agreement are fractions in [0, 1].

    Attributes:
        labels: class names, in model output order.
        num_images: images both models ran on.
        reference_accuracy / candidate_accuracy: top-1 accuracy of each model.
        agreement: share of images where both models' top-1 class is the same.
        per_class: per-class accuracy of both models (classes with no images are left out).
        reference_confusion / candidate_confusion: ``[true][predicted]`` counts.
        gates: the checks applied, each with its verdict.
        skipped: files left out (unreadable or not images), with reasons.
        candidate_target / candidate_runtime: where the candidate ran, and in which interpreter.
        stages: a :class:`~edgecnn.stages.StageReport` when asked for (``--stages``), else None.
    """

    labels: list[str]
    num_images: int
    reference_accuracy: float
    candidate_accuracy: float
    agreement: float
    per_class: list[ClassResult]
    reference_confusion: list[list[int]]
    candidate_confusion: list[list[int]]
    gates: list[Gate] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)
    candidate_target: str = "host"
    candidate_runtime: str = ""
    stages: Any = None

    @property
    def accuracy_drop_pp(self) -> float:
        """Reference minus candidate top-1 accuracy, in percentage points (positive: the candidate is worse)."""
        return (self.reference_accuracy - self.candidate_accuracy) * 100.0

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return all(g.passed for g in self.gates)

    def largest_drops(self, count: int = 3) -> list[ClassResult]:
        """The classes whose accuracy dropped most (only those that dropped)."""
        dropped = [c for c in self.per_class if c.drop_pp > 0]
        return sorted(dropped, key=lambda c: (-c.drop_pp, c.label))[:count]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the keys are documented in the README."""
        return {
            "passed": self.passed,
            "num_images": self.num_images,
            "num_skipped": len(self.skipped),
            "reference_accuracy": self.reference_accuracy,
            "candidate_accuracy": self.candidate_accuracy,
            "accuracy_drop_pp": self.accuracy_drop_pp,
            "agreement": self.agreement,
            "candidate_target": self.candidate_target,
            "candidate_runtime": self.candidate_runtime,
            "gates": [g.to_dict() for g in self.gates],
            "labels": self.labels,
            "per_class": [c.to_dict() for c in self.per_class],
            "largest_drops": [c.to_dict() for c in self.largest_drops()],
            "reference_confusion": self.reference_confusion,
            "candidate_confusion": self.candidate_confusion,
            "skipped": [s.to_dict() for s in self.skipped],
            **({"stages": self.stages.to_dict()} if self.stages is not None else {}),
        }


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true][predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def predict_all(runner: Runner, images: np.ndarray, batch_size: int, on_progress: ProgressFn | None) -> np.ndarray:
    """Scores of ``runner`` for all ``images``, ``batch_size`` at a time, reporting progress per batch."""
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        outputs.append(np.asarray(runner.predict(chunk)))
        if on_progress is not None:
            on_progress(len(chunk))
    return np.concatenate(outputs)


def _check_pair(reference: Runner, candidate: Runner, *, max_drop: float | None, min_agreement: float | None) -> None:
    """Refuse models that cannot be compared, and gate thresholds out of range, before any work."""
    if reference.info.labels != candidate.info.labels:
        raise UsageError("reference and candidate have different labels: compare models trained on the same classes")
    if reference.info.preprocessing != candidate.info.preprocessing:
        raise UsageError(
            "reference and candidate use different preprocessing (size, channels or scaling): "
            "convert the candidate from the reference"
        )
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise UsageError(f"--min-agreement is a fraction between 0 and 1, not {min_agreement}")
    if max_drop is not None and max_drop < 0:
        raise UsageError(f"--max-drop is in percentage points and cannot be negative, not {max_drop}")


def compare(
    labels: list[str],
    images: LoadedImages,
    reference_scores: np.ndarray,
    candidate_scores: np.ndarray,
    *,
    max_drop: float | None = 1.0,
    min_agreement: float | None = None,
) -> ValidationReport:
    """The report and gates from both models' scores on the same images (:func:`validate` without running them).

    Callers that try several candidates against one reference (``convert --max-drop``) run the reference once.
    """
    ref_pred = np.asarray(reference_scores).argmax(axis=1)
    cand_pred = np.asarray(candidate_scores).argmax(axis=1)
    truth = images.labels
    k = len(labels)
    ref_cm = confusion_matrix(truth, ref_pred, k)
    cand_cm = confusion_matrix(truth, cand_pred, k)
    support = ref_cm.sum(axis=1)
    per_class = [
        ClassResult(labels[c], int(support[c]), float(ref_cm[c, c] / support[c]), float(cand_cm[c, c] / support[c]))
        for c in range(k)
        if support[c] > 0
    ]
    report = ValidationReport(
        labels=list(labels),
        num_images=len(truth),
        reference_accuracy=float(np.mean(ref_pred == truth)),
        candidate_accuracy=float(np.mean(cand_pred == truth)),
        agreement=float(np.mean(ref_pred == cand_pred)),
        per_class=per_class,
        reference_confusion=ref_cm.tolist(),
        candidate_confusion=cand_cm.tolist(),
        skipped=list(images.skipped),
    )
    if max_drop is not None:
        drop = report.accuracy_drop_pp
        report.gates.append(
            Gate(
                "max-drop",
                drop,
                max_drop,
                drop <= max_drop + _EPSILON,
                "accuracy drop {value:.2f} pp, allowed at most {threshold:.2f} pp",
            )
        )
    if min_agreement is not None:
        report.gates.append(
            Gate(
                "min-agreement",
                report.agreement,
                min_agreement,
                report.agreement + _EPSILON >= min_agreement,
                "top-1 agreement {value:.4f}, required at least {threshold:.4f}",
            )
        )
    return report


def validate(
    reference: Runner,
    candidate: Runner,
    images: LoadedImages,
    *,
    max_drop: float | None = 1.0,
    min_agreement: float | None = None,
    batch_size: int = 64,
    on_progress: ProgressFn | None = None,
) -> ValidationReport:
    """Run both models on the same preprocessed images and apply the gates.

    Args:
        reference: the model that was validated (usually float).
        candidate: the model that will ship (usually int8).
        images: preprocessed images with labels indexing ``candidate.info.labels``.
        max_drop: largest allowed accuracy drop in percentage points (None: no gate).
        min_agreement: smallest allowed top-1 agreement, a fraction in [0, 1] (None: no gate).
        batch_size: images per call to each runner.
        on_progress: called with the number of images done, twice per image (once per model).

    Raises:
        UsageError: the two models disagree on labels or preprocessing, or a gate threshold is out of range.
    """
    _check_pair(reference, candidate, max_drop=max_drop, min_agreement=min_agreement)
    return compare(
        candidate.info.labels,
        images,
        predict_all(reference, images.images, batch_size, on_progress),
        predict_all(candidate, images.images, batch_size, on_progress),
        max_drop=max_drop,
        min_agreement=min_agreement,
    )


def validate_models(
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    max_drop: float | None = 1.0,
    min_agreement: float | None = None,
    limit_per_class: int | None = None,
    strict: bool = False,
    batch_size: int = 64,
    num_threads: int | None = None,
    target: Target | None = None,
    stages: bool = False,
    on_progress: Progress | None = None,
) -> ValidationReport:
    """Load both models and an image folder, then :func:`validate`.

    Args:
        reference_path: ``.keras`` or float ``.tflite`` model, run here.
        candidate_path: ``.tflite`` model.
        data: labelled image folder whose class folders are (a subset of) the candidate's labels.
        num_threads: interpreter threads here.
        target: where the candidate runs (None: here). The images are read and preprocessed here once, and
            the same arrays go to both models.
        stages: also run the images through every stage from Keras to the int8 reference kernels, here
            (:func:`edgecnn.stages.run_stages`), to show where the error enters.
        on_progress: progress of loading the images and of running the models.

    Other arguments are those of :func:`validate` and :func:`edgecnn.data.scan_folder`.
    """
    if Path(candidate_path).suffix.lower() != ".tflite":
        raise UsageError(f"--candidate {candidate_path} must be a .tflite model (the one that ships)")
    candidate = open_on(target, candidate_path, num_threads=num_threads)
    try:
        reference = open_runner(reference_path, num_threads=num_threads)
        try:
            _check_pair(reference, candidate, max_drop=max_drop, min_agreement=min_agreement)
            stage = on_progress or no_progress
            loaded = load_labelled(
                data,
                candidate.info.labels,
                candidate.info.preprocessing,
                limit_per_class=limit_per_class,
                strict=strict,
                on_progress=on_progress,
            )
            advance = stage("running both models", 2 * len(loaded))
            reference_scores = predict_all(reference, loaded.images, batch_size, advance)
            candidate_scores = predict_all(candidate, loaded.images, batch_size, advance)
            report = compare(
                candidate.info.labels,
                loaded,
                reference_scores,
                candidate_scores,
                max_drop=max_drop,
                min_agreement=min_agreement,
            )
            if stages:
                from edgecnn.stages import run_stages

                report.stages = run_stages(
                    reference_path,
                    candidate_path,
                    loaded,
                    batch_size=batch_size,
                    reference_scores=reference_scores,
                    # The candidate's default-kernel stage is the run above only when it ran here.
                    candidate_scores=candidate_scores if target is None else None,
                    on_progress=on_progress,
                )
            report.candidate_target = target.where if target is not None else "host"
            report.candidate_runtime = str(getattr(candidate, "runtime", ""))
            return report
        finally:
            reference.close()
    finally:
        candidate.close()
