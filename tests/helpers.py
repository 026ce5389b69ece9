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
