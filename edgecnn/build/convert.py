"""``edgecnn convert``: a model to ``.tflite`` (float, float16, dynamic-range or full int8) + sidecar.

The model is a ``.keras`` from ``edgecnn train``, or one trained elsewhere (:mod:`edgecnn.build.outside`): any
``.keras``/``.h5``, a SavedModel folder, or a float ``.tflite`` (quantized by :mod:`edgecnn.build.quantize_tflite`).
Every ``.tflite`` written carries standard TFLite Metadata (labels, normalization, name...), and its sidecar
describes the final bytes.
"""

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
from edgecnn.build.outside import (
    ModelSource,
    open_source,
    outside_info,
    source_record,
)
from edgecnn.errors import UsageError
from edgecnn.model.flatbuffer import read_flatbuffer
from edgecnn.model.graph import read_graph
from edgecnn.runtime.bundle import ModelInfo, check_bundle_output, sidecar_path, write_tflite
from edgecnn.runtime.data import balanced_subset, load_images, scan_images
from edgecnn.runtime.describe import agree_with_hints, described_by
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.hints import InputHints
from edgecnn.runtime.progress import Progress, no_progress
from edgecnn.runtime.provenance import images_fingerprint, tool_versions
from edgecnn.runtime.quant import QuantParams

DEFAULT_DESCRIPTION = "Image classifier converted by edgecnn"
"""The TFLite Metadata description of a model converted without ``--description``."""

DEFAULT_VERSION = "1"
"""The TFLite Metadata version of a model converted without ``--model-version``."""

APP_IO_WARNING = (
    "warning: {model} has int8 input and output, which app libraries (MediaPipe Tasks, the TFLite Task Library) "
    "cannot load: use --io uint8 for an Android app"
)


def app_library_warnings(info: ModelInfo, *, model: str) -> list[str]:
    """Why MediaPipe Tasks or the TFLite Task Library could not load ``model``, or would feed it other values than
    edgecnn validated it with; empty when an Android app can use it as it is.

    Those libraries take uint8 or float32 I/O, 3-channel (or 1-channel) NHWC RGB images, one normalization for every
    channel, and feed a uint8 input the raw pixels: its quantization must then turn pixel values into what the
    model was trained on, ``(pixel / 255 - mean) / std``, to within half an input step.
    """
    if "int8" in (info.input.dtype, info.output.dtype):
        return [APP_IO_WARNING.format(model=model)]
    spec = info.preprocessing
    found = []
    if spec.layout != "NHWC" or spec.bgr:
        found.append(
            f"warning: {model} takes {'BGR' if spec.bgr else 'RGB'} {spec.layout} input; app libraries feed RGB "
            "NHWC images"
        )
    if len(set(spec.mean)) > 1 or len(set(spec.std)) > 1:
        found.append(
            f"warning: {model} normalizes each channel differently; MediaPipe Tasks refuse per-channel "
            "normalization (one --mean/--std value, or --input-range, works everywhere)"
        )
    if info.input.dtype == "uint8" and info.input.scale > 0:
        # An app feeds q = pixel, which the model reads as scale * (pixel - zero_point); edgecnn feeds the rounded
        # quantization of (pixel / 255 - mean) / std. The two differ most at pixels 0 and 255 (both are linear).
        worst = max(
            abs(info.input.scale * (pixel - info.input.zero_point) - (pixel / 255.0 - mean) / std)
            for pixel in (0.0, 255.0)
            for mean, std in zip(spec.mean, spec.std)
        )
        if worst > 0.5 * info.input.scale * (1 + 1e-6):
            steps = worst / info.input.scale
            found.append(
                f"warning: app libraries feed {model}'s uint8 input the raw pixels, which its input quantization "
                f"(scale {info.input.scale:.6g}, zero point {info.input.zero_point}) reads up to {steps:.1f} steps "
                "away from edgecnn's preprocessing: calibrate on images that span the whole pixel range 0..255"
            )
    return found


@dataclass(frozen=True)
class ModelCard:
    """What the embedded TFLite Metadata says about the model besides its labels and normalization.

    None means the default: the source's own TFLite Metadata when it has the field, else the source model's stem
    (name; not the output's, so that the same model converted to two paths gives the same bytes),
    :data:`DEFAULT_DESCRIPTION`, :data:`DEFAULT_VERSION`, and empty author and license.
    """

    name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None


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

    def messages(self) -> list[str]:
        """For stderr: what would stop the app libraries from loading or feeding the model as edgecnn does."""
        return app_library_warnings(self.info, model=self.path.name)

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
            "source": self.info.extra.get("source"),
            "calibration": self.info.extra.get("calibration"),
            "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped],
            # Quantization-aware fine-tuning (edgecnn finetune) records its settings and final metrics.
            **({"qat": self.info.extra["qat"]} if "qat" in self.info.extra else {}),
        }


def static_batch_model(keras: Any, model: Any) -> Any:
    """The same network with a batch-1 input: no SHAPE/STRIDED_SLICE ops, as micro and Edge TPU need.

    The model is called on a new fixed-batch ``Input`` (the weights are shared, not copied); the names
    stay fixed so the converted bytes do not depend on Keras's automatic naming. A SavedModel
    (:class:`~edgecnn.build.keras_model.SavedModelFunction`) is converted from its own batch-1 function.
    """
    from edgecnn.build.keras_model import SavedModelFunction

    if isinstance(model, SavedModelFunction):
        return model
    if len(model.inputs) == 1:
        inputs = keras.Input(batch_shape=(1, *model.input_shape[1:]), name=model.inputs[0].name.split(":")[0])
    else:  # not a classifier: converted anyway, so that the check of its graph says what it is
        inputs = [keras.Input(batch_shape=(1, *t.shape[1:]), name=t.name.split(":")[0]) for t in model.inputs]
    return keras.Model(inputs, model(inputs), name=f"{model.name}_batch1")


def check_conversion_options(*, quantize: str, io: str | None, calibration: Any, calibration_size: int) -> str:
    """Check the options every conversion takes, before any work; returns the I/O type.

    Raises:
        UsageError: an unknown mode or I/O type, I/O types for a float mode, int8 without calibration images.
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
    return io_type


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
    hints: InputHints | None = None,
    card: ModelCard | None = None,
    follow_links: bool = False,
    trust: bool = False,
    on_progress: Progress | None = None,
) -> ConversionResult:
    """Convert a model to TFLite with a static batch-1 input, standard TFLite Metadata and a sidecar.

    ``int8`` is full-integer post-training quantization: weights and activations in int8, integer-only
    builtin operators, ranges calibrated on ``calibration_size`` real images drawn class-balanced (seeded)
    from ``calibration`` through the model's own preprocessing. The same inputs give byte-identical output.

    Args:
        model_path: a ``.keras`` from ``edgecnn train``; or from elsewhere a ``.keras``, ``.h5``, SavedModel
            folder or float ``.tflite`` (quantized by ai-edge-quantizer), described by ``hints`` or its metadata.
        out: the ``.tflite`` to write; ``model.json`` is written beside it.
        quantize: one of :data:`QUANTIZE_MODES`; ``none`` re-bundles a ``.tflite`` as it is.
        calibration: folder of real images for int8 calibration (required for int8): class sub-folders,
            which the subset is balanced over, or just images.
        calibration_size: number of calibration images.
        io: input/output type for int8 models: int8 (default), uint8 or float32.
        seed: seed for choosing the calibration images.
        strict: fail on an unreadable calibration image instead of skipping it.
        hints: labels and preprocessing of a model from elsewhere (``--labels``, ``--input-range`` ...).
        card: name, description, version, author and license for the TFLite Metadata.
        follow_links: follow symbolic links that lead outside the ``calibration`` folder.
        trust: load a Keras model with safe mode off, ``Lambda`` layers included (``--trust-model``).
        on_progress: progress of loading the calibration images.

    Raises:
        UsageError: bad options or output path, a model that is not a classifier, or labels or normalization
            missing (naming the option); ModelFormatError: bad model; DatasetError: bad calibration data.
    """
    io_type = check_conversion_options(
        quantize=quantize, io=io, calibration=calibration, calibration_size=calibration_size
    )
    out_path = check_bundle_output(out, inputs=[model_path, calibration])
    source = open_source(model_path)
    hints = hints or InputHints()
    calibrated = quantize == "int8"
    # The options as given, for the sidecar's `conversion` entry: what reproduces this build.
    options = {
        "quantize": quantize,
        "io": io_type,
        "calibration_size": calibration_size if calibrated else None,
        "seed": seed if calibrated else None,
    }

    def calibrate(spec: Any) -> CalibrationSet | None:
        if quantize != "int8" or calibration is None:
            return None
        return load_calibration(calibration, spec, size=calibration_size, seed=seed, strict=strict,
                                follow_links=follow_links, on_progress=on_progress)  # fmt: skip

    if source.kind == "tflite":
        return _convert_tflite(source, out_path, quantize=quantize, io_type=io_type, hints=hints, card=card,
                               calibrate=calibrate, options=options)  # fmt: skip
    from edgecnn.build.keras_model import import_keras

    model, info = load_source(source, hints, trust=trust)
    tf, keras = import_keras()
    static = static_batch_model(keras, model)
    float_bytes = run_converter(tf, static, "none", None, "float32")
    if info is None:
        info = outside_info(read_graph(float_bytes), source=source, hints=hints)
    calibration_set = calibrate(info.preprocessing)
    representative = calibration_set.representative if calibration_set else None
    flatbuffer = float_bytes if quantize == "none" else run_converter(tf, static, quantize, representative, io_type)
    return write_bundle(
        out_path,
        flatbuffer,
        info,
        model_path=source.path,
        quantization=quantize,
        calibration=calibration_set,
        float_size_bytes=len(float_bytes),
        source=source_record(source, info=info, described=described_by(None, hints)),
        card=card,
        options=options,
    )


def load_source(source: ModelSource, hints: InputHints, *, trust: bool = False) -> tuple[Any, ModelInfo | None]:
    """Load a Keras model or SavedModel to convert, with edgecnn's metadata (None for a model from elsewhere);
    ``trust`` loads it with Keras's safe mode off.

    Raises:
        UsageError: input options that contradict a model from ``edgecnn train``; ModelFormatError: an unloadable
            model.
    """
    from edgecnn.build.keras_model import load_keras_model, load_outside_keras

    if source.kind == "edgecnn":
        model, info = load_keras_model(source.path, trust=trust)
        agree_with_hints(info.labels, info.preprocessing, hints, source.path, source="its edgecnn metadata")
        return model, info
    return load_outside_keras(source.path, trust=trust), None


def _convert_tflite(
    source: ModelSource,
    out_path: Path,
    *,
    quantize: str,
    io_type: str,
    hints: InputHints,
    card: ModelCard | None,
    calibrate: Callable[[Any], CalibrationSet | None],
    options: dict[str, Any] | None = None,
) -> ConversionResult:
    """A ``.tflite``: described by its sidecar, TFLite Metadata or the options (:func:`tflite_info`), then quantized
    by ai-edge-quantizer, or re-bundled as it is with ``none``."""
    from edgecnn.build.quantize_tflite import check_float_model, quantize_tflite
    from edgecnn.model.metadata import read_metadata
    from edgecnn.runtime.describe import tflite_info
    from edgecnn.targets.facts import graph_quantization

    info = tflite_info(source.path, hints=hints)
    original = source.path.read_bytes()
    flat = read_flatbuffer(original)
    metadata = read_metadata(original)
    described = ["sidecar"] if sidecar_path(source.path).is_file() else described_by(metadata, hints)
    if quantize == "none":
        flatbuffer, quantization, calibration_set = original, graph_quantization(flat), None
    else:
        check_float_model(flat, model=source.name)
        calibration_set = calibrate(info.preprocessing)
        images = calibration_set.images if calibration_set is not None else None
        flatbuffer = quantize_tflite(original, quantize=quantize, io_type=io_type, images=images, model=source.name)
        quantization = quantize
    return write_bundle(
        out_path,
        flatbuffer,
        info,
        model_path=source.path,
        quantization=quantization,
        calibration=calibration_set,
        float_size_bytes=len(original),
        source=source_record(source, info=info, described=described),
        card=_card_from(metadata, card),
        extra={"tools": tool_versions("ai-edge-quantizer", "ai-edge-litert", "numpy", "pillow")},
        options=options,
    )


def _card_from(metadata: Any, card: ModelCard | None) -> ModelCard:
    """The options' card, with the source's own TFLite Metadata filling what the options left out."""
    card = card or ModelCard()
    if metadata is None:
        return card
    fields = ("name", "description", "version", "author", "license")
    return replace(card, **{f: getattr(metadata, f) or None for f in fields if getattr(card, f) is None})


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
    follow_links: bool = False,
    on_progress: Progress | None = None,
) -> CalibrationSet:
    """Draw ``size`` calibration images, class-balanced and seeded, and preprocess them with ``spec`` (links that
    lead outside ``calibration`` are followed only with ``follow_links``)."""
    folder = scan_images(calibration, follow_links=follow_links)
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
    source: dict[str, Any] | None = None,
    card: ModelCard | None = None,
    options: dict[str, Any] | None = None,
) -> ConversionResult:
    """Describe a converted flatbuffer (I/O, shape, operators), embed its TFLite Metadata, write it with its sidecar,
    and summarise it.

    The sidecar records what reproduces the build and nothing that depends on where or when it ran (no times,
    absolute paths or host names): the source model, the conversion options, the calibration record and the tool
    versions.

    Args:
        source: the sidecar's ``source`` entry (default: the model's file name and the training record).
        card: the metadata's name, description... (default: :class:`ModelCard`'s defaults).
        options: the sidecar's ``conversion`` entry, the options as given (default: ``quantize``, ``io``,
            ``calibration_size`` and ``seed`` as this model was built: its quantization, its input type, and the
            calibration's requested size and seed, None without calibration).
    """
    graph = read_graph(flatbuffer)
    inp, out = graph.inputs[0], graph.outputs[0]
    calibrated = calibration.record if calibration else {}
    conversion = options or {
        "quantize": quantization,
        "io": inp.dtype,
        "calibration_size": calibrated.get("requested"),
        "seed": calibrated.get("seed"),
    }
    # One TensorFlow: the `tensorflow` and `tensorflow-cpu` wheels install the same module (the qat extra brings
    # the first beside the second), and which of them is installed must not change the sidecar's bytes.
    tensorflow = "tensorflow" if tool_versions("tensorflow").get("tensorflow") else "tensorflow-cpu"
    info = replace(
        keras_info,
        input_shape=list(inp.shape),
        input=QuantParams(inp.dtype, inp.scale, inp.zero_point),
        output=QuantParams(out.dtype, out.scale, out.zero_point),
        quantization=quantization,
        extra={
            # The file name only: where the model was built must not change the sidecar's bytes.
            "source": source or {"model": model_path.name, "training": keras_info.extra.get("training")},
            "conversion": conversion,
            "calibration": calibration.record if calibration else None,
            # edgecnn's own version and Python's are always in it (tool_versions).
            "tools": tool_versions(tensorflow, "keras", "numpy", "pillow", "ai-edge-litert"),
            **(extra or {}),
        },
    )
    final = embed_metadata(flatbuffer, info, card=card, default_name=model_path.stem)
    written = write_tflite(out_path, final, info)  # the sidecar's sha256 is of these, the final bytes
    return ConversionResult(
        path=out_path,
        info=written,
        size_bytes=len(final),
        # Compared like with like: the float model would carry the same metadata (a small model's ratio shows it).
        float_size_bytes=float_size_bytes + len(final) - len(flatbuffer),
        ops=graph.ops,
        skipped=calibration.skipped if calibration else [],
    )


def embed_metadata(flatbuffer: bytes, info: ModelInfo, *, card: ModelCard | None, default_name: str) -> bytes:
    """The model with standard TFLite Metadata: labels, normalization, score kind, and the card's fields.

    The normalization goes in (on the metadata's 0..255 pixel scale) only for RGB or grayscale channels-last inputs:
    the metadata has no word for BGR or channels-first, and its readers would feed such a model wrong pixels. The
    sidecar describes those models fully.
    """
    from edgecnn.build.metadata import UNKNOWN_COLOR_SPACE, with_metadata
    from edgecnn.model.metadata import ModelMetadata

    card = card or ModelCard()
    spec = info.preprocessing
    described = spec.layout == "NHWC" and not spec.bgr
    meta = ModelMetadata(
        name=card.name if card.name is not None else default_name,
        description=card.description if card.description is not None else DEFAULT_DESCRIPTION,
        version=card.version if card.version is not None else DEFAULT_VERSION,
        author=card.author or "",
        license=card.license or "",
        labels=tuple(info.labels),
        mean=tuple(m * 255.0 for m in spec.mean) if described else None,
        std=tuple(s * 255.0 for s in spec.std) if described else None,
        score=score_kind(flatbuffer),
        # BGR is not RGB: say unknown rather than let a reader feed the channels swapped.
        color_space=UNKNOWN_COLOR_SPACE if spec.bgr else None,
    )
    return with_metadata(flatbuffer, meta)


# Operations that pass scores through unchanged in meaning: the score kind is that of what feeds them.
_PASS_THROUGH = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"})


def score_kind(flatbuffer: bytes) -> str:
    """``probability`` when the output comes from a SOFTMAX (through any QUANTIZE/DEQUANTIZE/RESHAPE), else
    ``logit``: what the TFLite Metadata says the scores are."""
    flat = read_flatbuffer(flatbuffer)
    producers = {t.index: op for op in flat.operators for t in op.outputs}
    op = producers.get(flat.outputs[0].index) if flat.outputs else None
    while op is not None and op.name in _PASS_THROUGH and op.inputs:
        op = producers.get(op.inputs[0].index)
    return "probability" if op is not None and op.name == "SOFTMAX" else "logit"


def converter_for(tf: Any, model: Any, quantize: str, representative: Any, io_type: str) -> Any:
    """A TFLiteConverter configured for one quantization mode (``none``, ``float16``, ``dynamic``, ``int8``,
    ``16x8``); the QuantizationDebugger and selective quantization start from it too."""
    from edgecnn.build.keras_model import SavedModelFunction

    if isinstance(model, SavedModelFunction):
        converter = model.tflite_converter(tf)
    else:
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
