"""Keras pieces shared by training and conversion: importing TensorFlow, the network, loading, running."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import MissingDependencyError, ModelFormatError
from edgecnn.runtime.bundle import ModelInfo, check_model_file, read_keras_info
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.preprocess import fitting_images


def import_keras() -> tuple[Any, Any]:
    """Import TensorFlow and Keras quietly, or say which extra brings them.

    Returns:
        The ``tensorflow`` and ``keras`` modules.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ INFO/WARNING lines out
    try:
        # The full ``tensorflow`` wheel (the qat extra pulls it in beside tensorflow-cpu) probes for CUDA when it
        # loads and when it first lists devices, and says so on the C-level stderr whatever TF_CPP_MIN_LOG_LEVEL
        # is: do both here, with that stream captured (it is replayed only if the import fails).
        with captured_native_stderr(on_error=sys.stderr.write):
            import keras
            import tensorflow as tf

            tf.config.list_physical_devices()
    except ImportError:
        raise MissingDependencyError(
            "tensorflow", extra="train", purpose="train, convert or run .keras models"
        ) from None
    return tf, keras


def count_blocks(image_size: int) -> int:
    """Number of conv-conv-pool blocks: halve the image while at least 2 pixels remain, at most 3 times."""
    return max(1, min(3, int(math.log2(max(image_size, 2))) - 1))


def build_model(input_shape: tuple[int, int, int], num_classes: int, *, filters: int = 32, dropout: float = 0.2) -> Any:
    """The classic image classifier: (conv → ReLU → conv → ReLU → max pool) × blocks, then a dense softmax.

    Each convolution is followed by batch normalization (it trains faster and more reliably on small data, and
    TFLite folds it into the convolution, so the exported graph is plain CONV_2D → ReLU).
    A global-average-pooling head (rather than Flatten) keeps the parameter count small and lets a
    batch-1 TFLite model be resized to any batch. Every layer is named explicitly, because TFLite's bytes
    depend on layer names and Keras's automatic names change between sessions.

    Args:
        input_shape: (height, width, channels).
        num_classes: number of output classes.
        filters: filters in the first block; each further block doubles them.
        dropout: dropout rate before the classifier.
    """
    _, keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for block in range(1, count_blocks(min(input_shape[:2])) + 1):
        width = filters * 2 ** (block - 1)
        for conv in (1, 2):
            # No bias: the batch normalization that follows has its own shift, and folds into the conv on export.
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="edgecnn_cnn")


def load_keras_model(model_path: str | os.PathLike[str]) -> tuple[Any, ModelInfo]:
    """Load a ``.keras`` model written by ``edgecnn train`` with Keras's safe mode on.

    Raises:
        ModelFormatError: not a Keras model, no edgecnn metadata, or input not matching the metadata.
    """
    model_file = check_model_file(model_path, suffixes=(".keras",))
    info = read_keras_info(model_file)
    _, keras = import_keras()
    try:
        model = keras.models.load_model(model_file, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad archive; all mean the same here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"{model_file} is not a loadable Keras model ({reason})") from None
    shape = tuple(model.input_shape[1:])
    if shape != info.preprocessing.shape:
        raise ModelFormatError(
            f"{model_file.name} takes inputs {shape} but its metadata says {info.preprocessing.shape}: retrain it"
        )
    return model, info


class KerasRunner:
    """Runs a ``.keras`` model on preprocessed float images (the float reference for validation)."""

    def __init__(self, model_path: str | os.PathLike[str], *, batch_size: int = 256) -> None:
        self.path = Path(model_path)
        self.model, self.info = load_keras_model(self.path)
        self._batch_size = batch_size

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` for float images ``(N, H, W, C)``."""
        images = fitting_images(images, self.info.preprocessing, model=self.path.name)
        chunks = [
            np.asarray(self.model(images[i : i + self._batch_size], training=False), dtype=np.float32)
            for i in range(0, len(images), self._batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.info.labels)), np.float32)

    def close(self) -> None:
        """Drop the model."""
        self.model = None
