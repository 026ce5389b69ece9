"""Quantization-aware training: fine-tune a trained edgecnn model with simulated int8, then convert it to int8.

For when post-training quantization (``edgecnn convert``) loses too much accuracy. TensorFlow Model
Optimization (tfmot) only accepts tf-keras (Keras 2) models, while ``edgecnn train`` writes Keras 3 models, so
the network is rebuilt layer by layer in tf-keras with the same names and weights, checked to give the same
outputs on real images, wrapped by ``tfmot.quantization.keras.quantize_model`` (its default 8-bit scheme keeps
Conv2D → BatchNormalization → ReLU as one quantized unit; the converter folds the batch normalization), fine-tuned
on the training split, and converted to a full-integer model with a static batch-1 input and the same sidecar as
``edgecnn convert``. TensorFlow, tf-keras and tfmot are imported inside functions only (extra ``qat``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.build.choices import IO_TYPES
from edgecnn.build.convert import (
    ConversionResult,
    load_calibration,
    run_converter,
    static_batch_model,
    write_bundle,
)
from edgecnn.build.train import EpochFn, compile_and_fit, fitted_on
from edgecnn.errors import MissingDependencyError, ModelFormatError, UsageError
from edgecnn.model.graph import read_graph
from edgecnn.runtime.bundle import check_bundle_output, read_keras_info
from edgecnn.runtime.data import LoadedImages, load_images, scan_folder, split_samples
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.progress import Progress, no_progress
from edgecnn.runtime.provenance import tool_versions

QAT_OPS = frozenset({"CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"})
"""The operators of edgecnn's default CNN after quantization-aware training (plus QUANTIZE/DEQUANTIZE for other I/O)."""

REBUILD_TOLERANCE = 1e-5
"""Largest difference allowed between the Keras 3 model's scores and its tf-keras rebuild's."""

_SUPPORTED = "Conv2D, BatchNormalization, ReLU, Activation, MaxPooling2D, GlobalAveragePooling2D, Dropout, Dense"
_SUPPORT_NOTE = f"quantization-aware training supports edgecnn's default CNN (a single chain of {_SUPPORTED})"


def import_qat() -> tuple[Any, Any, Any]:
    """Import TensorFlow, tf-keras and TensorFlow Model Optimization, or say which extra brings them.

    Returns:
        The ``tensorflow``, ``tf_keras`` and ``tensorflow_model_optimization`` modules.
    """
    from edgecnn.build.keras_model import import_keras

    tf, _ = import_keras()  # quietly, whichever TensorFlow wheel is installed
    with captured_native_stderr():
        try:
            # Both, explicitly: without tf_keras, tfmot falls back to Keras 3 and fails later, confusingly.
            import tensorflow_model_optimization as tfmot
            import tf_keras
        except ImportError:
            raise MissingDependencyError(
                "tensorflow-model-optimization", extra="qat", purpose="quantization-aware training"
            ) from None
    return tf, tf_keras, tfmot


def _tensor_sources(value: Any) -> list[str]:
    """Names of the layers whose outputs a serialized call (Keras 3 ``inbound_nodes``) takes, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [name for item in value.values() for name in _tensor_sources(item)]
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in _tensor_sources(item)]
    return []


def _layer_chain(model: Any) -> list[Any]:
    """The model's layers after its input, checked to form a single chain (each feeds only the next).

    Raises:
        UsageError: several inputs or outputs, or a layer that does not take the previous layer's output.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UsageError(f"model {model.name} has several inputs or outputs: {_SUPPORT_NOTE}")
    if type(model).__name__ == "Sequential":
        return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    config = model.get_config()
    entries = config["layers"]
    previous = entries[0]["name"]
    if entries[0]["class_name"] != "InputLayer":
        raise UsageError(f"model {model.name} does not start with its input layer: {_SUPPORT_NOTE}")
    for entry in entries[1:]:
        sources = _tensor_sources(entry.get("inbound_nodes", []))
        if sources != [previous]:
            raise UsageError(
                f"layer {entry['name']} takes {', '.join(sources) or 'no input'} instead of {previous} alone: "
                f"{_SUPPORT_NOTE}"
            )
        previous = entry["name"]
    output = config["output_layers"]
    if (output[0] if isinstance(output[0], list) else output)[0] != previous:
        raise UsageError(f"the output of model {model.name} is not its last layer: {_SUPPORT_NOTE}")
    return [model.get_layer(entry["name"]) for entry in entries[1:]]


def _rebuild_layer(layers: Any, layer: Any) -> Any:
    """The tf-keras twin of one Keras 3 layer (same class, settings and name; weights are copied later)."""
    kind, c = type(layer).__name__, layer.get_config()
    name = c["name"]
    if c.get("data_format", "channels_last") != "channels_last" or c.get("groups", 1) != 1:
        raise UsageError(f"layer {name} ({kind}) uses channels_first or grouped convolution: {_SUPPORT_NOTE}")
    if kind == "Conv2D":
        return layers.Conv2D(
            c["filters"],
            c["kernel_size"],
            strides=c["strides"],
            padding=c["padding"],
            dilation_rate=c["dilation_rate"],
            activation=c["activation"],
            use_bias=c["use_bias"],
            name=name,
        )
    if kind == "BatchNormalization":
        return layers.BatchNormalization(
            axis=c["axis"],
            momentum=c["momentum"],
            epsilon=c["epsilon"],
            center=c["center"],
            scale=c["scale"],
            name=name,
        )
    if kind == "ReLU":
        return layers.ReLU(
            max_value=c["max_value"], negative_slope=c["negative_slope"], threshold=c["threshold"], name=name
        )
    if kind == "Activation":
        return layers.Activation(c["activation"], name=name)
    if kind == "MaxPooling2D":
        return layers.MaxPooling2D(c["pool_size"], strides=c["strides"], padding=c["padding"], name=name)
    if kind == "GlobalAveragePooling2D":
        return layers.GlobalAveragePooling2D(keepdims=c.get("keepdims", False), name=name)
    if kind == "Dropout":
        return layers.Dropout(c["rate"], name=name)
    if kind == "Dense":
        return layers.Dense(c["units"], activation=c["activation"], use_bias=c["use_bias"], name=name)
    raise UsageError(f"layer {name} ({kind}) cannot be rebuilt for quantization-aware training: {_SUPPORT_NOTE}")


def rebuild_in_tf_keras(tf_keras: Any, model: Any) -> Any:
    """The same network in tf-keras: same layers, names and weights, input batch left free.

    Raises:
        UsageError: a layer type or topology outside edgecnn's default CNN.
    """
    chain = _layer_chain(model)
    input_name = model.inputs[0].name.split(":")[0]
    inputs = tf_keras.Input(shape=tuple(model.input_shape[1:]), name=input_name)
    x = inputs
    for layer in chain:
        twin = _rebuild_layer(tf_keras.layers, layer)
        x = twin(x)  # builds the layer, so it has weights to receive
        twin.set_weights(layer.get_weights())
    return tf_keras.Model(inputs, x, name=model.name)


def _check_rebuild(model: Any, rebuilt: Any, images: np.ndarray, source: str) -> None:
    """Fail loudly unless the rebuild gives the Keras 3 model's scores on real images."""
    expected = np.asarray(model(images, training=False), dtype=np.float32)
    actual = np.asarray(rebuilt(images, training=False), dtype=np.float32)
    worst = float(np.max(np.abs(expected - actual))) if expected.shape == actual.shape else float("inf")
    if not worst <= REBUILD_TOLERANCE:
        raise ModelFormatError(
            f"the tf-keras rebuild of {source} does not reproduce it (largest score difference {worst:.3g}, "
            f"allowed {REBUILD_TOLERANCE:g}): {_SUPPORT_NOTE}"
        )


def _check_graph(flatbuffer: bytes, shape: tuple[int, ...], io_type: str) -> None:
    """The converted model must be full-integer, with a static batch-1 input and only the expected operators."""
    graph = read_graph(flatbuffer)
    # uint8 I/O is requantized to and from int8 (QUANTIZE), float I/O quantized and dequantized at the edges.
    allowed = QAT_OPS | {"int8": set(), "uint8": {"QUANTIZE"}, "float32": {"QUANTIZE", "DEQUANTIZE"}}[io_type]
    problems = []
    if set(graph.ops) - allowed:
        problems.append(f"operators {', '.join(sorted(set(graph.ops) - allowed))}")
    if list(graph.inputs[0].signature) != [1, *shape]:
        problems.append(f"input shape {list(graph.inputs[0].signature)} instead of {[1, *shape]}")
    if graph.inputs[0].dtype != io_type or graph.outputs[0].dtype != io_type:
        problems.append(f"{graph.inputs[0].dtype} input / {graph.outputs[0].dtype} output")
    float_tensors = graph.tensor_dtypes.get("float32", 0)
    if float_tensors > (2 if io_type == "float32" else 0):
        problems.append(f"{float_tensors} float32 tensors")
    if problems:
        raise ModelFormatError(
            f"the quantization-aware model did not convert to full-integer int8 ({'; '.join(problems)}): "
            f"{_SUPPORT_NOTE}"
        )


def finetune_qat(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    epochs: int = 3,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    calibration_size: int = 200,
    io: str = "int8",
    seed: int = 0,
    limit_per_class: int | None = None,
    validation_fraction: float = 0.1,
    strict: bool = False,
    follow_links: bool = False,
    trust: bool = False,
    on_progress: Progress | None = None,
    on_epoch: EpochFn | None = None,
) -> ConversionResult:
    """Fine-tune a ``.keras`` model from ``edgecnn train`` with simulated int8 quantization and convert it to int8.

    The training split is the one ``edgecnn train`` uses for the same ``data``, ``limit_per_class``,
    ``validation_fraction`` and ``seed``. Runs with the same inputs and seed give a byte-identical ``.tflite``.

    Args:
        model_path: the ``.keras`` model written by ``edgecnn train``.
        data: labelled image folder ``DATA/<class>/<image>`` (class folders among the model's labels); also the
            source of the calibration images that fix the input/output quantization.
        out: the ``.tflite`` to write; its sidecar ``.json`` goes beside it.
        epochs: fine-tuning passes over the training split.
        batch_size: images per gradient step.
        learning_rate: Adam's learning rate (small: the weights are already trained).
        calibration_size: calibration images, drawn class-balanced and seeded from ``data``.
        io: input/output type: int8, uint8 or float32.
        seed: seed of the split, the shuffling and the calibration draw.
        limit_per_class: use only the first N images (by name) of each class.
        validation_fraction: share of each class held out to report validation accuracy (0 for none).
        strict: fail on an unreadable image instead of skipping it.
        follow_links: follow symbolic links that lead outside ``data``.
        trust: load the model with Keras's safe mode off (``--trust-model``).
        on_progress: progress of loading the images.
        on_epoch: called after each epoch with (epoch from 1, total, metrics).

    Returns:
        The conversion result; its sidecar's ``qat`` entry records the fine-tuning settings and final metrics.

    Raises:
        UsageError: bad options, output path or an architecture QAT cannot rebuild; ModelFormatError: bad model;
        DatasetError: bad data folder; MissingDependencyError: tf-keras or tfmot missing (extra ``qat``).
    """
    if io not in IO_TYPES:
        raise UsageError(f"unknown --io {io!r}: choose one of {', '.join(IO_TYPES)}")
    if min(epochs, batch_size, calibration_size) < 1 or not learning_rate > 0 or math.isinf(learning_rate):
        raise UsageError("--epochs, --batch-size and --calibration-size must be at least 1, --learning-rate above 0")
    out_path = check_bundle_output(out, inputs=[model_path, data])
    keras_info = read_keras_info(model_path)  # fails fast, before TensorFlow is imported
    spec = keras_info.preprocessing
    folder = scan_folder(data, limit_per_class=limit_per_class, labels=keras_info.labels, follow_links=follow_links)
    train_samples, val_samples = split_samples(folder.samples, validation_fraction=validation_fraction, seed=seed)
    tf, tf_keras, tfmot = import_qat()

    advance = (on_progress or no_progress)("loading images", len(folder.samples))
    train_set = load_images(train_samples, spec, strict=strict, skipped=folder.skipped, on_progress=advance)
    val_set: LoadedImages | None = (
        load_images(val_samples, spec, strict=strict, on_progress=advance) if val_samples else None
    )
    calibration = load_calibration(
        data, spec, size=calibration_size, seed=seed, strict=strict, follow_links=follow_links, on_progress=on_progress
    )

    from edgecnn.build.keras_model import import_keras, load_keras_model

    model, _ = load_keras_model(model_path, trust=trust)
    _, keras = import_keras()
    tf_keras.backend.clear_session()  # fresh automatic names: the converted bytes depend on them
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    float_model = rebuild_in_tf_keras(tf_keras, model)
    _check_rebuild(model, float_model, train_set.images[:8], Path(model_path).name)
    qat_model = tfmot.quantization.keras.quantize_model(float_model)
    fit_inputs = {"x": train_set.images, "y": train_set.labels, "batch_size": batch_size, "shuffle": True}
    metrics = compile_and_fit(
        tf_keras, qat_model, fit_inputs, learning_rate=learning_rate, epochs=epochs, validation=val_set,
        on_epoch=on_epoch,
    )  # fmt: skip

    flatbuffer = run_converter(tf, static_batch_model(tf_keras, qat_model), "int8", calibration.representative, io)
    _check_graph(flatbuffer, spec.shape, io)
    # The float size is the one ``edgecnn convert --quantize none`` reports for the source model.
    float_bytes = run_converter(tf, static_batch_model(keras, model), "none", None, "float32")
    record = {
        "source": Path(model_path).name,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "validation_fraction": validation_fraction,
        "limit_per_class": limit_per_class,
        **fitted_on(train_set, val_set, spec),
        "metrics": metrics,
    }
    tools = tool_versions(
        "tensorflow-cpu",
        "tensorflow",
        "keras",
        "tf-keras",
        "tensorflow-model-optimization",
        "numpy",
        "pillow",
        "ai-edge-litert",
    )
    result = write_bundle(
        out_path,
        flatbuffer,
        keras_info,
        model_path=Path(model_path),
        quantization="int8",
        calibration=calibration,
        float_size_bytes=len(float_bytes),
        extra={"qat": record, "tools": tools},
    )
    skipped = train_set.skipped + (val_set.skipped if val_set is not None else []) + calibration.skipped
    result.skipped = list(dict.fromkeys(skipped))  # calibration reads the same folder: each file once
    return result


__all__ = ["QAT_OPS", "finetune_qat", "import_qat", "rebuild_in_tf_keras"]
