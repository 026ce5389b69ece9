"""What ``edgecnn validate --report DIR --junit FILE`` adds to a validation: sizes, latencies, per-layer error,
and the files themselves (:mod:`edgecnn.report`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgecnn.data import Progress
from edgecnn.validate import ValidationReport

LATENCY_RUNS = 30
"""Timed runs behind each latency in the report (p50, batch 1, on this machine)."""


def check_outputs(*, report_dir: str | os.PathLike[str] | None, junit: str | os.PathLike[str] | None) -> None:
    """Fail at once, before a long validation, when a report or JUnit file cannot be written.

    Raises:
        UsageError: a folder that cannot be used, or a JUnit path in a missing folder.
    """
    from edgecnn.fileio import check_output_path
    from edgecnn.report import check_report_dir

    if report_dir is not None:
        check_report_dir(report_dir)
    if junit is not None:
        check_output_path(junit)


def report_payload(
    report: ValidationReport,
    *,
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    calibration: str | os.PathLike[str] | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """The validation's JSON plus ``sizes``, ``latency_ms`` (p50 here, ``.tflite`` models) and ``layers``.

    ``layers`` (per-layer quantization error, worst first) needs a ``.keras`` reference and the calibration
    images: it describes the int8 conversion of the reference on them (:mod:`edgecnn.convert.diagnose`).
    """
    from edgecnn.bench import benchmark

    payload = report.to_dict()
    paths = {"reference": Path(reference_path), "candidate": Path(candidate_path)}
    payload["sizes"] = {name: path.stat().st_size for name, path in paths.items()}
    payload["latency_ms"] = {
        name: benchmark(path, runs=LATENCY_RUNS, warmup=3).latency_ms["p50"] if path.suffix == ".tflite" else None
        for name, path in paths.items()
    }
    if calibration is not None and paths["reference"].suffix.lower() == ".keras":
        from edgecnn.convert.diagnose import layer_errors
        from edgecnn.convert.tflite import load_calibration
        from edgecnn.train.keras_model import load_keras_model

        model, info = load_keras_model(paths["reference"])
        images = load_calibration(calibration, info.preprocessing, size=200, seed=0, on_progress=on_progress)
        payload["layers"] = [layer.to_dict() for layer in layer_errors(model, images)[0]]
    return payload


def write_evidence(
    payload: dict[str, Any],
    *,
    report_dir: str | os.PathLike[str] | None,
    junit: str | os.PathLike[str] | None,
) -> list[Path]:
    """Write ``report.html`` (with its PNGs) and the JUnit XML that were asked for; returns what was written."""
    from edgecnn.report import write_junit, write_report

    written = []
    if report_dir is not None:
        written.append(write_report(payload, report_dir))
    if junit is not None:
        written.append(write_junit(payload, junit))
    return written
