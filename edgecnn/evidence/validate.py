"""Compare a reference model and a candidate on the same images: accuracy, agreement, per class, gates.

:func:`compare` never loads a model: it takes both models' scores, so the same code judges a Keras model
against a TFLite one on a workstation, two TFLite models on a device without TensorFlow, or every attempt of
``convert --max-drop`` against one reference run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.errors import DatasetError, UsageError

if TYPE_CHECKING:
    from edgecnn.runtime.data import ImageStream, LoadedImages
    from edgecnn.runtime.runners import Runner

# Gates compare rounded figures; this keeps 1.0 pp from failing a 1.0 pp limit through float error.
_EPSILON = 1e-9


def default_reference_floor(truth: np.ndarray) -> float:
    """The reference accuracy a validation requires unless told otherwise: clearly better than guessing.

    The baseline is the share of the most common class among the images (what always answering that class
    scores; ``1 / classes`` on balanced data). The floor is twice the baseline, capped halfway between the
    baseline and 1: 20% for 10 balanced classes, 2/3 for three, 75% for two. A reference below it is no evidence
    about the candidate: most likely the images' class folders do not match the model's classes.
    """
    counts = np.bincount(np.asarray(truth, dtype=np.int64))
    baseline = float(counts.max() / counts.sum()) if counts.sum() else 0.0
    return min(2.0 * baseline, (1.0 + baseline) / 2.0)


def reference_floor_error(
    truth: np.ndarray, reference_scores: np.ndarray, min_reference_accuracy: float | None, *, model: str
) -> DatasetError | None:
    """The error for images the reference cannot classify (its accuracy below the floor), or None.

    For ``convert --max-drop``, which judges attempts against the reference: below the floor every attempt would
    fail the same gate, so nothing is converted and the message says why.

    Args:
        truth: the images' class indices.
        reference_scores: the reference's scores on them.
        min_reference_accuracy: the floor, a fraction (None: :func:`default_reference_floor`; 0: none).
        model: how the message names the reference.
    """
    floor = default_reference_floor(truth) if min_reference_accuracy is None else min_reference_accuracy
    accuracy = float(np.mean(np.asarray(reference_scores).argmax(axis=1) == truth)) if len(truth) else 0.0
    if floor <= 0 or accuracy + _EPSILON >= floor:
        return None
    return DatasetError(
        f"{model} classifies {accuracy:.1%} of --data's {len(truth)} images, below the reference-accuracy floor of "
        f"{floor:.1%}: no attempt can be judged on images it cannot classify; check that --data's class folders "
        "hold the classes they are named after (and the model's preprocessing), or set --min-reference-accuracy"
    )


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
        untested_labels: the model's classes with no images in the data, which the validation says nothing about.
        skipped: files left out (unreadable or not images), with reasons.
        candidate_target / candidate_runtime: where the candidate ran, and in which interpreter.
        stages: a :class:`~edgecnn.evidence.stages.StageReport` when asked for (``--stages``), else None.
        seconds: where the time went: ``open`` (loading both models), ``scan`` (listing the images), ``decode``
            (reading and decoding files), ``preprocess`` (resizing and scaling pixels), ``reference`` and
            ``candidate`` (each model's inference), and ``total`` (from opening the models to the report, stages
            included). Empty when the scores came from elsewhere.
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
    untested_labels: list[str] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)
    candidate_target: str = "host"
    candidate_runtime: str = ""
    stages: Any = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def accuracy_drop_pp(self) -> float:
        """Reference minus candidate top-1 accuracy, in percentage points (positive: the candidate is worse)."""
        return (self.reference_accuracy - self.candidate_accuracy) * 100.0

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return all(g.passed for g in self.gates)

    def messages(self) -> list[str]:
        """Each failed gate, for stderr (``gate failed: max-drop: accuracy drop 1.20 pp, allowed at most 1.00 pp``),
        then a note naming the labels no image tested."""
        failed = [f"gate failed: {g.describe()}" for g in self.gates if not g.passed]
        return failed + ([self.untested_note()] if self.untested_labels else [])

    def untested_note(self) -> str:
        """``note: 2 of 10 labels never tested (no images in the data): cat, dog`` (empty when every label was)."""
        if not self.untested_labels:
            return ""
        return (
            f"note: {len(self.untested_labels)} of {len(self.labels)} labels never tested (no images in the data): "
            + ", ".join(self.untested_labels)
        )

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
            "untested_labels": list(self.untested_labels),
            "per_class": [c.to_dict() for c in self.per_class],
            "largest_drops": [c.to_dict() for c in self.largest_drops()],
            "reference_confusion": self.reference_confusion,
            "candidate_confusion": self.candidate_confusion,
            "skipped": [s.to_dict() for s in self.skipped],
            **({"stages": self.stages.to_dict()} if self.stages is not None else {}),
            **({"seconds": {k: round(v, 4) for k, v in self.seconds.items()}} if self.seconds else {}),
        }


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true][predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def check_comparable(reference: Runner, candidate: Runner) -> None:
    """Refuse models that cannot be compared (other labels or preprocessing), before any work.

    Raises:
        UsageError: the two models disagree on labels or preprocessing.
    """
    if reference.info.labels != candidate.info.labels:
        raise UsageError("reference and candidate have different labels: compare models trained on the same classes")
    if reference.info.preprocessing != candidate.info.preprocessing:
        raise UsageError(
            "reference and candidate use different preprocessing (size, channels or scaling): "
            "convert the candidate from the reference"
        )


def check_gates(
    *, max_drop: float | None, min_agreement: float | None, min_reference_accuracy: float | None = None
) -> None:
    """Refuse gate thresholds that mean nothing, before any work.

    Raises:
        UsageError: a NaN or infinite threshold, a negative drop, or an agreement or accuracy outside [0, 1].
    """
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise UsageError(f"--max-drop is a number of percentage points, 0 or more, not {max_drop}")
    if min_agreement is not None and not (math.isfinite(min_agreement) and 0.0 <= min_agreement <= 1.0):
        raise UsageError(f"--min-agreement is a fraction between 0 and 1, not {min_agreement}")
    if min_reference_accuracy is not None and not (
        math.isfinite(min_reference_accuracy) and 0.0 <= min_reference_accuracy <= 1.0
    ):
        raise UsageError(
            "--min-reference-accuracy is a fraction between 0 and 1 (0 turns the floor off), "
            f"not {min_reference_accuracy}"
        )


def compare(
    labels: list[str],
    images: LoadedImages | ImageStream,
    reference_scores: np.ndarray,
    candidate_scores: np.ndarray,
    *,
    max_drop: float | None = 1.0,
    min_agreement: float | None = None,
    min_reference_accuracy: float | None = None,
) -> ValidationReport:
    """The report and gates from both models' scores on the same images.

    Callers that try several candidates against one reference (``convert --max-drop``) run the reference once.

    Args:
        labels: the models' classes, in output order.
        images: the images both models ran on, with their true labels.
        reference_scores / candidate_scores: each model's scores on them.
        max_drop: largest allowed accuracy drop in percentage points (None: no gate).
        min_agreement: smallest allowed top-1 agreement, a fraction (None: no gate).
        min_reference_accuracy: smallest allowed reference accuracy, a fraction: a reference that cannot classify
            the images says nothing about the candidate. None: :func:`default_reference_floor`; 0: no floor.

    Raises:
        UsageError: a gate threshold that means nothing (see :func:`check_gates`).
    """
    check_gates(max_drop=max_drop, min_agreement=min_agreement, min_reference_accuracy=min_reference_accuracy)
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
        untested_labels=[labels[c] for c in range(k) if support[c] == 0],
        skipped=list(images.skipped),
    )
    # First, because when it fails the other gates compare two models on images neither can classify.
    floor = default_reference_floor(truth) if min_reference_accuracy is None else min_reference_accuracy
    if floor > 0:
        report.gates.append(
            Gate(
                "min-reference-accuracy",
                report.reference_accuracy,
                floor,
                report.reference_accuracy + _EPSILON >= floor,
                "reference accuracy {value:.4f}, required at least {threshold:.4f} (below it the reference cannot "
                "classify these images: do DATA's class folders hold the classes they are named after?)",
            )
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
