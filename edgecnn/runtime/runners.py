"""What validation and inference run on: anything with ``info``, ``predict`` and ``close``.

A ``.tflite`` becomes a :class:`~edgecnn.runtime.interpreter.TFLiteRunner` here or a target's runner; a ``.keras``
becomes a Keras runner on the build side. Code that scores images takes a :class:`Runner` and never cares which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from edgecnn.runtime.bundle import ModelInfo
    from edgecnn.runtime.progress import ProgressFn


class Runner(Protocol):
    """A loaded model: preprocessed float NHWC images in, float scores out."""

    info: ModelInfo

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` for images ``(N, H, W, C)``."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


def predict_all(
    runner: Runner, images: np.ndarray, *, batch_size: int = 64, on_progress: ProgressFn | None = None
) -> np.ndarray:
    """Scores of ``runner`` for all ``images``, ``batch_size`` at a time, reporting progress per batch.

    Returns:
        float32 scores ``(N, classes)``.
    """
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        outputs.append(np.asarray(runner.predict(chunk), dtype=np.float32))
        if on_progress is not None:
            on_progress(len(chunk))
    if not outputs:
        return np.zeros((0, len(runner.info.labels)), dtype=np.float32)
    return np.concatenate(outputs)
