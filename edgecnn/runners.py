"""What validation and inference run on: anything with ``info``, ``predict`` and ``close``.

A ``.tflite`` becomes a :class:`~edgecnn.interpreter.TFLiteRunner` on the runtime side; a ``.keras`` becomes a
Keras runner on the TensorFlow side, imported only when one is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edgecnn.bundle import ModelInfo, check_model_file

if TYPE_CHECKING:
    from edgecnn.targets.base import Target


class Runner(Protocol):
    """A loaded model: preprocessed float NHWC images in, float scores out."""

    info: ModelInfo

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` for images ``(N, H, W, C)``."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


def open_runner(
    model_path: str | os.PathLike[str],
    *,
    num_threads: int | None = None,
    reference_kernels: bool = False,
) -> Runner:
    """Load a ``.tflite`` or ``.keras`` model as a :class:`Runner`.

    Raises:
        ModelFormatError: missing, corrupt, or not matching its metadata.
        MissingDependencyError: a ``.keras`` model without TensorFlow installed.
    """
    model = check_model_file(model_path, suffixes=(".tflite", ".keras"))
    if model.suffix.lower() == ".keras":
        from edgecnn.train.keras_model import KerasRunner

        return KerasRunner(Path(model))
    from edgecnn.interpreter import TFLiteRunner

    return TFLiteRunner(model, num_threads=num_threads, reference_kernels=reference_kernels)


def open_on(target: Target | None, model_path: str | os.PathLike[str], *, num_threads: int | None = None) -> Runner:
    """Open a model on ``target`` (a ``.tflite`` bundle), or here with :func:`open_runner` when None.

    Raises:
        ModelFormatError: missing or corrupt model, or not a ``.tflite`` for a target.
    """
    if target is None:
        return open_runner(model_path, num_threads=num_threads)
    model = check_model_file(model_path, suffixes=(".tflite",))
    return target.open(Path(model))
