"""``edgecnn convert``: a ``.keras`` model to ``.tflite`` (float, float16, dynamic-range or full int8) + sidecar."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.build.choices import IO_TYPES, QUANTIZE_MODES
from edgecnn.errors import UsageError
from edgecnn.model.graph import read_graph
from edgecnn.runtime.bundle import ModelInfo, check_bundle_output, write_tflite
from edgecnn.runtime.data import balanced_subset, load_images, scan_images
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.progress import Progress, no_progress
from edgecnn.runtime.provenance import images_fingerprint, tool_versions
from edgecnn.runtime.quant import QuantParams


@dataclass
class ConversionResult:
    """What a conversion wrote and how it compares with the float model.

    Attributes:
        path: the ``.tflite`` written (its sidecar is beside it).
        info: the sidecar's metadata.
        size_bytes: size of the written model.
        float_size_bytes: size of the same model converted without quantization.
        ops: operator name → count in the written model.
        skipped: calibration files that could not be read.
    """

    path: Path
    info: ModelInfo
    size_bytes: int
    float_size_bytes: int
    ops: dict[str, int]
    skipped: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model": str(self.path),
            "sidecar": str(self.path.with_suffix(".json")),
            "quantization": self.info.quantization,
            "size_bytes": self.size_bytes,
            "float_size_bytes": self.float_size_bytes,
            "size_ratio": round(self.size_bytes / self.float_size_bytes, 4),
            "ops": self.ops,
            "input": self.info.input.to_dict(),
            "output": self.info.output.to_dict(),
            "model_sha256": self.info.model_sha256,
            "calibration": self.info.extra.get("calibration"),
            "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped],
            # Quantization-aware fine-tuning (edgecnn finetune) records its settings and final metrics.
            **({"qat": self.info.extra["qat"]} if "qat" in self.info.extra else {}),
        }


def static_batch_model(keras: Any, model: Any) -> Any:
    """The same network with a batch-1 input: no SHAPE/STRIDED_SLICE ops, as micro and Edge TPU need.

    The model is called on a new fixed-batch ``Input`` (the weights are shared, not copied); the names
    stay fixed so the converted bytes do not depend on Keras's automatic naming.
    """
    inputs = keras.Input(batch_shape=(1, *model.input_shape[1:]), name=model.inputs[0].name.split(":")[0])
    return keras.Model(inputs, model(inputs), name=f"{model.name}_batch1")


def convert(
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    quantize: str = "int8",
    calibration: str | os.PathLike[str] | None = None,
    calibration_size: int = 200,
    io: str | None = None,
    seed: int = 0,
    strict: bool = False,
    on_progress: Progress | None = None,
) -> ConversionResult:
    """Convert a ``.keras`` model written by ``edgecnn train`` to TFLite with a static batch-1 input.

    ``int8`` is full-integer post-training quantization: weights and activations in int8, integer-only
    builtin operators, ranges calibrated on ``calibration_size`` real images drawn class-balanced (seeded)
    from ``calibration`` through the model's own preprocessing. The same inputs give byte-identical output.

    Args:
        model_path: the ``.keras`` model.
        out: the ``.tflite`` to write; ``model.json`` is written beside it.
        quantize: one of :data:`QUANTIZE_MODES`.
        calibration: folder of real images for int8 calibration (required for int8): class sub-folders,
            which the subset is balanced over, or just images.
        calibration_size: number of calibration images.
        io: input/output type for int8 models: int8 (default), uint8 or float32.
        seed: seed for choosing the calibration images.
        strict: fail on an unreadable calibration image instead of skipping it.
        on_progress: progress of loading the calibration images.

    Raises:
        UsageError: bad options or output path; ModelFormatError: bad model; DatasetError: bad calibration data.
    """
    if quantize not in QUANTIZE_MODES:
        raise UsageError(f"unknown --quantize {quantize!r}: choose one of {', '.join(QUANTIZE_MODES)}")
    io_type = io or ("int8" if quantize == "int8" else "float32")
    if io_type not in IO_TYPES:
        raise UsageError(f"unknown --io {io_type!r}: choose one of {', '.join(IO_TYPES)}")
    if quantize != "int8" and io_type != "float32":
        raise UsageError(f"--io {io_type} needs --quantize int8 (other modes keep float32 input and output)")
    if quantize == "int8" and calibration is None:
        raise UsageError(
            "--quantize int8 needs calibration images: add --calibration DATA (a folder of real images, "
            "for example the training folder)"
        )
    if calibration_size < 1:
        raise UsageError(f"--calibration-size must be at least 1, not {calibration_size}")
    out_path = check_bundle_output(out, inputs=[model_path, calibration])

    from edgecnn.build.keras_model import import_keras, load_keras_model

    model, keras_info = load_keras_model(model_path)
    spec = keras_info.preprocessing
    calibration_set = (
        load_calibration(calibration, spec, size=calibration_size, seed=seed, strict=strict, on_progress=on_progress)
        if quantize == "int8"
        else None
    )
    tf, keras = import_keras()
    static = static_batch_model(keras, model)
    float_bytes = run_converter(tf, static, "none", None, "float32")
    representative = calibration_set.representative if calibration_set else None
    flatbuffer = float_bytes if quantize == "none" else run_converter(tf, static, quantize, representative, io_type)
    return write_bundle(
        out_path,
        flatbuffer,
        keras_info,
        model_path=Path(model_path),
        quantization=quantize,
        calibration=calibration_set,
        float_size_bytes=len(float_bytes),
    )


@dataclass
class CalibrationSet:
    """Calibration images, preprocessed, with the record the sidecar keeps of them.

    Attributes:
        images: float32 ``(N, H, W, C)`` through the model's preprocessing.
        record: count, requested size, seed, skipped count and fingerprint (images + preprocessing).
        skipped: files that could not be read.
        paths / groups: the file and the top folder (class) of each image.
    """

    images: np.ndarray
    record: dict[str, Any]
    skipped: list[Any]
    paths: list[Path] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def representative(self) -> Iterator[list[np.ndarray]]:
        """The converter's representative dataset: one image per step, in order."""
        for i in range(len(self.images)):
            yield [self.images[i : i + 1]]


def load_calibration(
    calibration: str | os.PathLike[str],
    spec: Any,
    *,
    size: int,
    seed: int,
    strict: bool = False,
    on_progress: Progress | None = None,
) -> CalibrationSet:
    """Draw ``size`` calibration images, class-balanced and seeded, and preprocess them with ``spec``."""
    folder = scan_images(calibration)
    chosen = balanced_subset(folder.samples, size, seed=seed)
    advance = (on_progress or no_progress)("loading calibration images", len(chosen))
    loaded = load_images(chosen, spec, strict=strict, skipped=folder.skipped, on_progress=advance)
    read = set(loaded.paths)  # once, not per sample: calibration sets can hold thousands of images
    record = {
        "num_images": len(loaded),
        "requested": size,
        "seed": seed,
        "num_skipped": len(loaded.skipped),
        "fingerprint": images_fingerprint([s for s in chosen if s.path in read], spec),
    }
    groups = [folder.classes[s.label] for s in chosen if s.path in read]
    return CalibrationSet(loaded.images, record, loaded.skipped, list(loaded.paths), groups)


def write_bundle(
    out_path: Path,
    flatbuffer: bytes,
    keras_info: ModelInfo,
    *,
    model_path: Path,
    quantization: str,
    calibration: CalibrationSet | None,
    float_size_bytes: int,
    extra: dict[str, Any] | None = None,
) -> ConversionResult:
    """Describe a converted flatbuffer (I/O, shape, operators), write it with its sidecar, and summarise it."""
    graph = read_graph(flatbuffer)
    inp, out = graph.inputs[0], graph.outputs[0]
    info = replace(
        keras_info,
        input_shape=list(inp.shape),
        input=QuantParams(inp.dtype, inp.scale, inp.zero_point),
        output=QuantParams(out.dtype, out.scale, out.zero_point),
        quantization=quantization,
        extra={
            # The file name only: where the model was built must not change the sidecar's bytes.
            "source": {"model": model_path.name, "training": keras_info.extra.get("training")},
            "calibration": calibration.record if calibration else None,
            "tools": tool_versions("tensorflow-cpu", "tensorflow", "keras", "numpy", "pillow", "ai-edge-litert"),
            **(extra or {}),
        },
    )
    written = write_tflite(out_path, flatbuffer, info)
    return ConversionResult(
        path=out_path,
        info=written,
        size_bytes=len(flatbuffer),
        float_size_bytes=float_size_bytes,
        ops=graph.ops,
        skipped=calibration.skipped if calibration else [],
    )


def converter_for(tf: Any, model: Any, quantize: str, representative: Any, io_type: str) -> Any:
    """A TFLiteConverter configured for one quantization mode (``none``, ``float16``, ``dynamic``, ``int8``,
    ``16x8``); the QuantizationDebugger and selective quantization start from it too."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize in ("int8", "16x8"):
        converter.representative_dataset = representative
        # Integer-only builtins: conversion fails rather than leaving a float op in the graph.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if quantize == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    return converter


def converted_quietly(action: Callable[[], Any]) -> Any:
    """Run a conversion step with Keras's stdout and the converter's C-level log kept off the console."""
    # Keras's export prints its SavedModel signature on stdout and the converter logs on the C-level stderr.
    with (
        contextlib.redirect_stdout(io.StringIO()),
        captured_native_stderr(on_error=sys.stderr.write),
        warnings.catch_warnings(),
    ):
        # Raised for every int8-I/O conversion: the input range comes from the representative dataset.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        # The QuantizationDebugger runs models in tf.lite.Interpreter, which warns that it is deprecated.
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        return action()


def run_converter(tf: Any, model: Any, quantize: str, representative: Any, io_type: str) -> bytes:
    """Configure TFLiteConverter for one quantization mode and convert, keeping its log off the console."""
    converter = converter_for(tf, model, quantize, representative, io_type)
    return bytes(converted_quietly(converter.convert))
