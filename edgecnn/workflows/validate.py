"""``edgecnn validate``: both models on the same images, the gates, and the evidence files a CI keeps.

The reference (``.keras`` or float ``.tflite``) runs here; the candidate here or on a target. Images are read and
preprocessed once, and the same arrays go to both. With ``stages`` the images also go through every step from
the Keras model to the int8 reference kernels; ``report_dir`` writes ``report.html`` (and implies the stages),
``junit`` the gates as JUnit XML, ``json_out`` the JSON document: all written also when a gate fails.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.errors import UsageError
from edgecnn.evidence.stages import StageReport, stage_report
from edgecnn.evidence.validate import ValidationReport, check_comparable, check_gates, compare
from edgecnn.runtime.bundle import ModelInfo, bundle_files, has_edgecnn_metadata
from edgecnn.runtime.data import ImageStream, stream_labelled
from edgecnn.runtime.files import check_output_path, refuse_inputs, temporary_folder, write_json_atomic
from edgecnn.runtime.hints import InputHints
from edgecnn.runtime.progress import Progress, ProgressFn, no_progress
from edgecnn.runtime.runners import Runner, score_stream
from edgecnn.workflows.models import is_keras_model, open_model

if TYPE_CHECKING:
    import numpy as np

    from edgecnn.targets.base import Target

LATENCY_RUNS = 30
"""Timed runs behind each latency in the report (p50, batch 1, on this machine)."""


@dataclass
class Validation:
    """A validation and what was written from it.

    Attributes:
        report: the comparison and its gates.
        payload: the JSON document (the report's keys, plus ``sizes``, ``latency_ms`` and ``layers`` when a report
            or JUnit file was asked for).
        written: the evidence files written (report.html, JUnit XML, JSON file).
    """

    report: ValidationReport
    payload: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return self.report.passed

    @property
    def skipped(self) -> list[Any]:
        """Files left out while reading the images."""
        return list(self.report.skipped)

    def messages(self) -> list[str]:
        """What was written, then each failed gate, for stderr."""
        return [f"wrote {path}" for path in self.written] + self.report.messages()

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``edgecnn validate --json``)."""
        return self.payload


def validate_models(
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    max_drop: float | None = 1.0,
    min_agreement: float | None = None,
    min_reference_accuracy: float | None = None,
    limit_per_class: int | None = None,
    strict: bool = False,
    batch_size: int = 64,
    target: Target | None = None,
    stages: bool = False,
    hints: InputHints | None = None,
    follow_links: bool = False,
    trust: bool = False,
    on_progress: Progress | None = None,
) -> ValidationReport:
    """Load both models and an image folder, run both on the same images and apply the gates.

    Args:
        reference_path: ``.keras`` or float ``.tflite`` model, run here.
        candidate_path: ``.tflite`` model.
        data: labelled image folder whose class folders are (a subset of) the candidate's labels.
        max_drop: largest allowed accuracy drop in percentage points (None: no gate).
        min_agreement: smallest allowed top-1 agreement, a fraction in [0, 1] (None: no gate).
        min_reference_accuracy: smallest allowed reference accuracy, a fraction in [0, 1] (None: twice what always
            answering the most common class scores, see :func:`~edgecnn.evidence.validate.default_reference_floor`;
            0: no floor).
        limit_per_class: use only the first N images (by name) of each class.
        strict: fail on an unreadable image instead of skipping it.
        batch_size: images per call to each model.
        target: where the candidate runs (None: here); its thread count also applies to the reference here.
        stages: also run the images through every stage from Keras to the int8 reference kernels, here, to show
            where the error enters.
        hints: labels and preprocessing given as options, for models that carry neither sidecar nor metadata; a
            reference from elsewhere otherwise takes the candidate's.
        follow_links: follow symbolic links that lead outside ``data``.
        trust: load a Keras reference with safe mode off (``--trust-model``).
        on_progress: progress of loading the images and of running the models.

    Raises:
        UsageError: bad options, or models that cannot be compared.
        ModelFormatError / DatasetError: bad models or images.
    """
    if Path(candidate_path).suffix.lower() != ".tflite":
        raise UsageError(f"--candidate {candidate_path} must be a .tflite model (the one that ships)")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    check_gates(max_drop=max_drop, min_agreement=min_agreement, min_reference_accuracy=min_reference_accuracy)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    candidate = open_model(candidate_path, target=target, hints=hints)
    try:
        reference = open_model(
            reference_path,
            num_threads=getattr(target, "threads", None),
            hints=hints,
            fallback=candidate.info,
            trust=trust,
        )
        try:
            check_comparable(reference, candidate)
            seconds["open"] = time.perf_counter() - started
            scanned = time.perf_counter()
            # Streamed: a batch is decoded, goes through both models and is dropped, so memory does not grow
            # with the number of images (10,000 CIFAR-10 images would otherwise hold 123 MB of float32 pixels).
            images = stream_labelled(
                data,
                candidate.info.labels,
                candidate.info.preprocessing,
                batch_size=batch_size,
                limit_per_class=limit_per_class,
                strict=strict,
                follow_links=follow_links,
                on_progress=on_progress,
                progress_label="running both models",
            )
            seconds["scan"] = time.perf_counter() - scanned
            scores = score_stream({"reference": reference, "candidate": candidate}, images, seconds=seconds)
            report = compare(
                candidate.info.labels,
                images,
                scores["reference"],
                scores["candidate"],
                max_drop=max_drop,
                min_agreement=min_agreement,
                min_reference_accuracy=min_reference_accuracy,
            )
            report.candidate_target = target.where if target is not None else "host"
            report.candidate_runtime = str(getattr(candidate, "runtime", ""))
            candidate_info = candidate.info
        finally:
            reference.close()
    finally:
        candidate.close()
    if stages:
        report.stages = run_stages(
            reference_path,
            candidate_path,
            images,
            reference_scores=scores["reference"],
            hints=hints,
            fallback=candidate_info,
            # The candidate's default-kernel stage is the run above only when it ran here, with the default kernels.
            candidate_scores=scores["candidate"] if _here_with_default_kernels(target) else None,
            trust=trust,
            on_progress=on_progress,
        )
    seconds.update(images.seconds)
    seconds["total"] = time.perf_counter() - started
    report.seconds = seconds
    return report


def _here_with_default_kernels(target: Target | None) -> bool:
    """Whether the candidate ran in this process's interpreter with its default kernels (no ``--kernels``)."""
    return target is None or (target.name == "host" and getattr(target, "kernels", "default") == "default")


def run_stages(
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    images: ImageStream,
    *,
    reference_scores: np.ndarray | None = None,
    candidate_scores: np.ndarray | None = None,
    hints: InputHints | None = None,
    fallback: ModelInfo | None = None,
    trust: bool = False,
    on_progress: Progress | None = None,
) -> StageReport:
    """Run the images through every stage, here, and compare consecutive stages.

    With a ``.keras`` reference the chain is Keras float → TFLite float (converted from it, in a temporary
    folder) → the candidate with the default kernels → the candidate with the reference kernels. With a float
    ``.tflite`` reference the chain starts at TFLite float.

    Args:
        images: the images validation read (after its pass): read again, a batch at a time.
        reference_scores / candidate_scores: the reference's and the candidate's (default kernels) scores on
            these images when already computed (by validation): those stages are not run again.
        hints / fallback: labels and preprocessing for models from elsewhere, as in :func:`validate_models`.
        trust: load a Keras reference with safe mode off (``--trust-model``).

    Raises:
        MissingDependencyError: a ``.keras`` reference without TensorFlow installed.
    """
    candidate = Path(candidate_path)
    reference = Path(reference_path)
    with temporary_folder("stages-") as folder:
        # (name, model shown, how to open it, scores already known)
        chain: list[tuple[str, str, Callable[[], Runner], np.ndarray | None]] = []

        def opener(path: Path, **more: Any) -> Callable[[], Runner]:
            return lambda: open_model(path, hints=hints, fallback=fallback, trust=trust, **more)

        if is_keras_model(reference):
            from edgecnn.build.convert import convert

            # A model from elsewhere converts with the labels and preprocessing the candidate was validated with.
            convert_hints = (
                None
                if has_edgecnn_metadata(reference)
                else (hints if hints and not hints.empty else _as_hints(fallback))
            )
            float_model = convert(
                reference, Path(folder) / "float.tflite", quantize="none", hints=convert_hints, trust=trust
            ).path
            chain.append(("keras float", str(reference), opener(reference), reference_scores))
            chain.append(("tflite float", "(converted from the reference)", opener(float_model), None))
        else:
            chain.append(("tflite float", str(reference), opener(reference), reference_scores))
        chain.append(("tflite int8", str(candidate), opener(candidate), candidate_scores))
        chain.append(
            ("tflite int8 (reference kernels)", str(candidate), opener(candidate, reference_kernels=True), None)
        )
        to_run = [(name, make) for name, _, make, known in chain if known is None]
        advance = (on_progress or no_progress)("running the stages", len(images))
        computed: dict[str, np.ndarray] = {}
        with contextlib.ExitStack() as stack:
            runners = {}
            for name, make in to_run:
                runner = make()
                stack.callback(runner.close)
                runners[name] = runner
            # One more pass over the same files, every stage's model on each batch: memory stays one batch.
            if runners:
                computed = score_stream(runners, _advancing(images, advance))
        scored = [(name, model, known if known is not None else computed[name]) for name, model, _, known in chain]
    return stage_report(scored, images.labels)


def _advancing(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], advance: ProgressFn
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``batches``, reporting each one's images as done once the next is asked for (its models have run)."""
    for images, labels in batches:
        yield images, labels
        advance(len(labels))


def _as_hints(info: ModelInfo | None) -> InputHints | None:
    """A described model's labels and preprocessing, as if given as options."""
    if info is None:
        return None
    spec = info.preprocessing
    return InputHints(
        labels=tuple(info.labels),
        labels_source="the candidate's labels",
        mean=spec.mean,
        std=spec.std,
        normalization_source="the candidate's preprocessing",
        bgr=spec.bgr,
        layout=spec.layout,
    )


def validate(
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    report_dir: str | os.PathLike[str] | None = None,
    junit: str | os.PathLike[str] | None = None,
    json_out: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    stages: bool = False,
    on_progress: Progress | None = None,
    **options: Any,
) -> Validation:
    """``edgecnn validate``: :func:`validate_models`, then the evidence files that were asked for.

    Every output is checked before any work (its folder is created; an output that is one of the inputs is
    refused), and written also when a gate fails, each atomically.

    Args:
        report_dir: write ``report.html`` and its charts there (implies ``stages``).
        junit: write the gates as JUnit XML test cases there.
        json_out: write the JSON document there.
        calibration: calibration images: the report then shows the per-layer quantization error of the
            ``.keras`` reference's int8 conversion (needs ``report_dir``).
        stages: compare every step from Keras to the int8 reference kernels.
        options: those of :func:`validate_models`.

    Raises:
        UsageError: options that do not go together, or an output that cannot be written or is an input.
    """
    from edgecnn.evidence.report import check_report_dir

    if calibration is not None and report_dir is None:
        raise UsageError("--calibration adds the per-layer errors to --report: use it with --report DIR")
    hints = options.get("hints")
    labels_file = getattr(hints, "labels_source", "") if hints is not None else ""
    inputs = [
        *bundle_files(reference_path),
        *bundle_files(candidate_path),
        data,
        calibration,
        labels_file if labels_file and Path(labels_file).is_file() else None,
    ]
    outputs = [p for p in (junit, json_out) if p is not None]
    refuse_inputs([*outputs, *([report_dir] if report_dir is not None else [])], inputs)
    if junit is not None and json_out is not None and Path(junit).resolve() == Path(json_out).resolve():
        raise UsageError(f"--junit and --json-out are both {json_out}: give each its own file")
    if report_dir is not None:
        check_report_dir(report_dir)
    for path in outputs:
        check_output_path(path)
    report = validate_models(
        reference_path,
        candidate_path,
        data,
        stages=stages or report_dir is not None,  # the report shows where the error enters
        on_progress=on_progress,
        **options,
    )
    payload = report.to_dict()
    if report_dir is not None or junit is not None:
        # The JSON then carries everything the report shows (sizes, latencies, per-layer errors).
        payload = report_payload(
            report,
            reference_path=reference_path,
            candidate_path=candidate_path,
            calibration=calibration,
            follow_links=bool(options.get("follow_links")),
            trust=bool(options.get("trust")),
            on_progress=on_progress,
        )
    written = write_evidence(payload, report_dir=report_dir, junit=junit)
    if json_out is not None:
        write_json_atomic(json_out, payload)
        written.append(Path(json_out))
    return Validation(report, payload, written)


def report_payload(
    report: ValidationReport,
    *,
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    calibration: str | os.PathLike[str] | None = None,
    follow_links: bool = False,
    trust: bool = False,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """The validation's JSON plus ``sizes``, ``latency_ms`` (p50 here, ``.tflite`` models) and ``layers``.

    ``layers`` (per-layer quantization error, worst first) needs a ``.keras`` reference and the calibration
    images: it describes the int8 conversion of the reference on them (:mod:`edgecnn.build.diagnose`).
    """
    from edgecnn.runtime.bench import benchmark

    payload = report.to_dict()
    paths = {"reference": Path(reference_path), "candidate": Path(candidate_path)}
    payload["sizes"] = {name: path.stat().st_size for name, path in paths.items()}
    payload["latency_ms"] = {
        name: benchmark(path, runs=LATENCY_RUNS, warmup=3).latency_ms["p50"] if path.suffix == ".tflite" else None
        for name, path in paths.items()
    }
    if (
        calibration is not None
        and paths["reference"].suffix.lower() == ".keras"
        and has_edgecnn_metadata(paths["reference"])
    ):
        from edgecnn.build.convert import load_calibration
        from edgecnn.build.diagnose import layer_errors
        from edgecnn.build.keras_model import load_keras_model

        model, info = load_keras_model(paths["reference"], trust=trust)
        images = load_calibration(
            calibration, info.preprocessing, size=200, seed=0, follow_links=follow_links, on_progress=on_progress
        )
        payload["layers"] = [layer.to_dict() for layer in layer_errors(model, images)[0]]
    return payload


def write_evidence(
    payload: dict[str, Any],
    *,
    report_dir: str | os.PathLike[str] | None,
    junit: str | os.PathLike[str] | None,
) -> list[Path]:
    """Write ``report.html`` (with its PNGs) and the JUnit XML that were asked for; returns what was written."""
    from edgecnn.evidence.report import write_junit, write_report

    written = []
    if report_dir is not None:
        written.append(write_report(payload, report_dir))
    if junit is not None:
        written.append(write_junit(payload, junit))
    return written
