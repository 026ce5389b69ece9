"""``edgecnn demo``: the whole spine on the embedded digits, start to finish, with no network.

Writes the digits as image folders, trains the default CNN, converts it to full int8, validates the int8
model against the float model on the held-out split, and classifies a few held-out images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.build.convert import ConversionResult, convert
from edgecnn.build.train import EpochFn, TrainResult, train
from edgecnn.errors import UsageError
from edgecnn.evidence.validate import ValidationReport
from edgecnn.runtime.classify import Prediction
from edgecnn.runtime.data import write_digits
from edgecnn.runtime.files import check_folder
from edgecnn.runtime.progress import Progress
from edgecnn.workflows.run import classify
from edgecnn.workflows.validate import validate_models

DEMO_IMAGE_SIZE = 8  # the digits are 8x8: train at their own size
DEMO_EPOCHS = 30


@dataclass
class DemoResult:
    """Paths and figures of one demo run."""

    out: Path
    train_dir: Path
    test_dir: Path
    training: TrainResult
    conversion: ConversionResult
    report: ValidationReport
    predictions: list[Prediction]
    seconds: float

    @property
    def passed(self) -> bool:
        """True when the int8 model passed the validation gate."""
        return self.report.passed

    def messages(self) -> list[str]:
        """Each failed gate, for stderr."""
        return self.report.messages()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "out": str(self.out),
            "data": {"train": str(self.train_dir), "test": str(self.test_dir)},
            "training": self.training.to_dict(),
            "conversion": self.conversion.to_dict(),
            "validation": self.report.to_dict(),
            "predictions": [p.to_dict() for p in self.predictions],
            "seconds": round(self.seconds, 1),
        }


def run_demo(
    out: str | os.PathLike[str] = "edgecnn-demo",
    *,
    epochs: int = DEMO_EPOCHS,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: EpochFn | None = None,
    on_progress: Progress | None = None,
) -> DemoResult:
    """Run train → int8 convert → validate → run on the embedded digits under ``out``.

    Args:
        out: folder for the data, the models and nothing else (created if missing).
        epochs: training epochs.
        seed: seed for the split, training and calibration.
        on_stage: told the name of each stage as it starts.
        on_epoch: called after each training epoch.
        on_progress: progress of each stage that loads or runs images.
    """
    started = time.perf_counter()
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, not {epochs}")
    folder = check_folder(out, what="--out folder")
    stage = on_stage or (lambda name: None)

    stage("writing the embedded digits (scikit-learn) as PNG folders")
    train_dir, test_dir = write_digits(folder / "digits", seed=seed)
    stage("training the float CNN")
    training = train(
        train_dir,
        folder / "model.keras",
        image_size=DEMO_IMAGE_SIZE,
        channels=1,
        epochs=epochs,
        seed=seed,
        on_progress=on_progress,
        on_epoch=on_epoch,
    )
    stage("converting to full-integer int8 TFLite")
    conversion = convert(
        training.path,
        folder / "model_int8.tflite",
        quantize="int8",
        calibration=train_dir,
        seed=seed,
        on_progress=on_progress,
    )
    stage("validating int8 against float on the held-out digits")
    report = validate_models(training.path, conversion.path, test_dir, max_drop=0.5, on_progress=on_progress)
    stage("classifying a few held-out images")
    samples = [min((test_dir / str(d)).iterdir()) for d in range(0, 10, 3)]
    predictions = classify(conversion.path, samples, k=1, on_progress=on_progress).predictions
    return DemoResult(
        out=folder,
        train_dir=train_dir,
        test_dir=test_dir,
        training=training,
        conversion=conversion,
        report=report,
        predictions=predictions,
        seconds=time.perf_counter() - started,
    )
