"""What validation and inference run on: anything with ``info``, ``predict`` and ``close``.

A ``.tflite`` becomes a :class:`~edgecnn.runtime.interpreter.TFLiteRunner` here or a target's runner; a ``.keras``
becomes a Keras runner on the build side. Code that scores images takes a :class:`Runner` and never cares which.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
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


def score_stream(
    runners: Mapping[str, Runner],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    seconds: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Scores of every runner on a stream of ``(images, labels)`` batches, in one pass.

    Each batch goes to every runner in turn and is then dropped, so memory holds one batch of images (and the
    scores) whatever the number of images.

    Args:
        runners: name → model.
        batches: the images, a batch at a time (e.g. an :class:`~edgecnn.runtime.data.ImageStream`).
        seconds: when given, each runner's time in ``predict`` is added to its name's entry.

    Returns:
        name → float32 scores ``(N, classes)``.
    """
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    for images, _ in batches:
        for name, runner in runners.items():
            start = time.perf_counter()
            outputs[name].append(np.asarray(runner.predict(images), dtype=np.float32))
            if seconds is not None:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return {
        name: np.concatenate(chunks) if chunks else np.zeros((0, len(runners[name].info.labels)), dtype=np.float32)
        for name, chunks in outputs.items()
    }
