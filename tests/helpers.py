"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


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
