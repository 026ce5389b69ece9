"""The one place a model path becomes a runner: a ``.keras`` through the build side (TensorFlow), a ``.tflite``
on a target or in this process's interpreter (runtime side, no TensorFlow)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.runtime.bundle import check_model_file

if TYPE_CHECKING:
    from edgecnn.runtime.runners import Runner
    from edgecnn.targets.base import Target


def open_model(
    model_path: str | os.PathLike[str],
    *,
    target: Target | None = None,
    num_threads: int | None = None,
    reference_kernels: bool = False,
) -> Runner:
    """Load a model as a :class:`~edgecnn.runtime.runners.Runner`.

    Args:
        model_path: a ``.tflite`` bundle, or (here or on the host target) a ``.keras`` model from ``edgecnn train``.
        target: run the ``.tflite`` there (None: in this process).
        num_threads: interpreter threads here (a target owns its own).
        reference_kernels: TFLite's reference kernels here (what TensorFlow Lite Micro computes).

    Raises:
        ModelFormatError: missing, corrupt, not matching its sidecar, or a ``.keras`` given for a device target.
        MissingDependencyError: a ``.keras`` model without TensorFlow installed.
    """
    here = target is None or target.name == "host"
    model = check_model_file(model_path, suffixes=(".tflite", ".keras") if here else (".tflite",))
    if model.suffix.lower() == ".keras":
        from edgecnn.build.keras_model import KerasRunner

        return KerasRunner(Path(model))
    if target is not None:
        return target.open(Path(model))
    from edgecnn.runtime.interpreter import TFLiteRunner

    return TFLiteRunner(model, num_threads=num_threads, reference_kernels=reference_kernels)
