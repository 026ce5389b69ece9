"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""The class folder of each digit, indexed by the digit."""

PHOTO_CLASSES = sorted(DIGIT_NAMES)
"""The photos' labels as the library orders them (folders sorted by name): eight, five, four, nine, one, ... zero.
Not the digits' order, so a label-order bug shows."""


def write_photos(root: Path, *, test_fraction: float = 0.2, seed: int = 0) -> tuple[Path, Path]:
    """Write scikit-learn's 1,797 handwritten digits as a small photo-like image-folder dataset; return train, test.

    Each 8x8 digit is upscaled to 32x32 with Pillow (bilinear), drawn in a random foreground colour on a random
    darker background (seeded per image, so the three channels differ), given a little sensor noise and saved as a
    JPEG (quality 90) in ``root/<split>/<class word>/NNNN.jpg``: files numbered from 0000 in each class folder, in
    the digits' order. The split is seeded and per class (20% of each class in ``test``). The pixels are written
    here with Pillow directly, not by the code under test; only the train/test split uses edgecnn's
    ``split_samples``.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    from edgecnn.runtime.data import Sample, split_samples

    digits = load_digits()
    ink = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    samples = [Sample(Path(f"{i:04d}"), int(t)) for i, t in enumerate(digits.target)]
    folders = []
    for split, chosen in zip(("train", "test"), split_samples(samples, validation_fraction=test_fraction, seed=seed)):
        numbered: dict[int, int] = {}
        for sample in chosen:
            index, digit = int(sample.path.name), sample.label
            rng = np.random.default_rng([seed, index])
            background = rng.uniform(0, 110, 3)
            foreground = rng.uniform(150, 255, 3)
            shape = Image.fromarray(ink[index], mode="L").resize((32, 32), Image.Resampling.BILINEAR)
            share = np.asarray(shape, dtype=np.float64)[..., None] / 255.0
            pixels = background + share * (foreground - background) + rng.normal(0, 6, (32, 32, 3))
            folder = root / split / DIGIT_NAMES[digit]
            folder.mkdir(parents=True, exist_ok=True)
            number = numbered.get(digit, 0)
            numbered[digit] = number + 1
            image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")
            image.save(folder / f"{number:04d}.jpg", format="JPEG", quality=90)
        folders.append(root / split)
    return folders[0], folders[1]


def copy_subset(source: Path, dest: Path, *, per_class: int, classes: list[str] | None = None) -> Path:
    """Copy the first ``per_class`` images of each class (sorted names) into ``dest``, a writable folder."""
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        if classes is not None and class_dir.name not in classes:
            continue
        target = dest / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            shutil.copyfile(image, target / image.name)
    return dest


def run_cli(*args: str | Path) -> Any:
    """Invoke the edgecnn CLI in-process and return click's result (stdout and stderr kept apart)."""
    from click.testing import CliRunner

    from edgecnn.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def float_bundle(path: Path, flatbuffer: bytes, *, shape: list[int], labels: list[str], template: Path) -> Path:
    """Write a float graph built in a test as a bundle whose sidecar describes it (labels, NHWC shape, float I/O).

    ``template`` is any valid bundle, whose sidecar supplies the fields the test does not care about.
    """
    from dataclasses import replace

    from edgecnn.runtime.bundle import read_tflite_info, write_tflite
    from edgecnn.runtime.preprocess import Preprocessing
    from edgecnn.runtime.quant import QuantParams

    info = replace(
        read_tflite_info(template),
        labels=labels,
        preprocessing=Preprocessing(height=shape[1], width=shape[2], channels=shape[3]),
        input_shape=shape,
        input=QuantParams("float32", 0.0, 0),
        output=QuantParams("float32", 0.0, 0),
        quantization="none",
    )
    write_tflite(path, flatbuffer, info)
    return path


def custom_op_bundle(path: Path, *, template: Path) -> Path:
    """A graph with Erfinv, which no TFLite runtime has a builtin kernel for: converted as a custom op."""
    import tensorflow as tf

    from edgecnn.build.convert import converted_quietly

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def graph(x: tf.Tensor) -> tf.Tensor:
        y = tf.math.erfinv(tf.clip_by_value(x, -0.5, 0.5))
        return tf.nn.softmax(tf.reshape(tf.reduce_mean(y, axis=[1, 2]), [1, 1]))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()], graph)
    converter.allow_custom_ops = True
    return float_bundle(path, converted_quietly(converter.convert), shape=[1, 8, 8, 1], labels=["x"], template=template)


def read_folder(folder: Path, *, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An image folder read with Pillow alone, as an outside user's own training script would: uint8 RGB pixels
    ``(N, H, W, 3)``, integer labels, and the class names (sorted folder names)."""
    from PIL import Image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    pixels, labels = [], []
    for index, name in enumerate(classes):
        for image in sorted((folder / name).iterdir())[:per_class]:
            with Image.open(image) as opened:
                pixels.append(np.asarray(opened.convert("RGB"), dtype=np.uint8))
            labels.append(index)
    return np.stack(pixels), np.asarray(labels), classes


def outside_classifier(x: np.ndarray, y: np.ndarray, classes: int, *, nchw: bool = False, epochs: int = 4) -> Any:
    """A small CNN trained the way a user outside edgecnn would: plain Keras, inputs scaled to [-1, 1] by the user's
    own code, named layers; ``nchw`` takes channels-first input as a PyTorch export does."""
    import keras

    keras.utils.set_random_seed(0)
    height, width = x.shape[1:3]
    shape = (3, height, width) if nchw else (height, width, 3)
    inputs = keras.Input(shape=shape, name="pixels")
    h = keras.layers.Permute((2, 3, 1), name="to_nhwc")(inputs) if nchw else inputs
    h = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(h)
    h = keras.layers.MaxPooling2D(2, name="pool1")(h)
    h = keras.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2, name="pool2")(h)
    h = keras.layers.Flatten(name="flat")(h)
    outputs = keras.layers.Dense(classes, activation="softmax", name="scores")(h)
    model = keras.Model(inputs, outputs, name="outside")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(outside_inputs(x, nchw=nchw), y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model


def outside_inputs(x: np.ndarray, *, nchw: bool = False) -> np.ndarray:
    """The outside user's preprocessing: pixels 0..255 to [-1, 1], channels first for an NCHW model."""
    values = x.astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(np.moveaxis(values, -1, 1)) if nchw else values


def tflite_from_keras(model: Any) -> bytes:
    """TensorFlow's own converter on a Keras model, no edgecnn code: a float ``.tflite`` with a batch-1 input."""
    import keras
    import tensorflow as tf

    fixed = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="pixels")
    static = keras.Model(fixed, model(fixed), name="outside_batch1")
    return bytes(tf.lite.TFLiteConverter.from_keras_model(static).convert())


def keras_weights(path: Path) -> list[Any]:
    """The weights of a saved ``.keras`` model, in layer order (to compare two trainings bit for bit)."""
    from edgecnn.build.keras_model import import_keras

    _, keras = import_keras()
    return keras.models.load_model(path, compile=False).get_weights()
