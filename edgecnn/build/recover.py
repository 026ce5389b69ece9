"""``edgecnn convert --max-drop PP --data DATA``: when the int8 model misses the gate, recover automatically.

The attempts, in order, stopping at the first that passes:

1. int8 as asked;
2. int8 calibrated on more images (4x, or all there are);
3. the worst layers kept in float (selective quantization), fewest first: layers whose range one channel sets,
   then by relative error (see :mod:`edgecnn.build.diagnose`);
4. 16-bit activations with 8-bit weights.

Each attempt is validated against the Keras model on ``data`` and reported with its accuracy, size and the
targets it still runs on (Edge TPU and microcontrollers need a full-integer int8 model). When nothing
passes, the best attempt is written beside the requested path, named as such, and the gate fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.build.convert import (
    CalibrationSet,
    ConversionResult,
    ModelCard,
    converted_quietly,
    converter_for,
    load_calibration,
    load_source,
    run_converter,
    static_batch_model,
    write_bundle,
)
from edgecnn.build.outside import open_source, outside_info, source_record
from edgecnn.errors import UsageError
from edgecnn.model.graph import ModelGraph, read_graph
from edgecnn.runtime.bundle import check_bundle_output
from edgecnn.runtime.data import load_labelled, scan_images
from edgecnn.runtime.describe import described_by
from edgecnn.runtime.files import temporary_folder
from edgecnn.runtime.hints import InputHints
from edgecnn.runtime.progress import Progress

MORE_CALIBRATION = 4
"""Attempt 2 calibrates on this many times the requested images."""

INT8_ONLY_TARGETS = ("coral", "micro")
"""Targets that run only full-integer int8 models: no float layers, no 16-bit activations."""

MAX_FLOAT_LAYERS = 4
"""Selective quantization tries keeping 1, 2, ... up to this many layers in float."""


@dataclass(frozen=True)
class Attempt:
    """One conversion tried by the recovery, and how it did.

    Attributes:
        name: ``int8``, ``int8 (more calibration)``, ``int8 + float layers``, ``16x8``.
        detail: what was changed (calibration size, the layers kept in float).
        quantization: the sidecar's quantization label.
        reference_accuracy / accuracy: the Keras model's and this model's top-1 accuracy on the data.
        drop_pp: the accuracy drop in percentage points; passed: whether it meets the gate.
        size_bytes: the model's size.
        full_integer: every tensor inside the graph is an integer (float I/O aside).
        targets: target name → whether the model can run there.
    """

    name: str
    detail: str
    quantization: str
    reference_accuracy: float
    accuracy: float
    drop_pp: float
    passed: bool
    size_bytes: int
    full_integer: bool
    targets: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "detail": self.detail,
            "quantization": self.quantization,
            "reference_accuracy": self.reference_accuracy,
            "accuracy": self.accuracy,
            "drop_pp": self.drop_pp,
            "passed": self.passed,
            "size_bytes": self.size_bytes,
            "full_integer": self.full_integer,
            "targets": dict(self.targets),
        }


@dataclass
class RecoveryResult:
    """The attempts, and the conversion written: the first that passed, or the best one when none did."""

    conversion: ConversionResult
    attempts: list[Attempt]
    passed: bool
    max_drop: float
    skipped: list[Any] = field(default_factory=list)

    @property
    def chosen(self) -> Attempt:
        """The attempt that was written."""
        return _chosen(self.attempts, self.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the conversion's keys plus ``recovery``."""
        return {
            **self.conversion.to_dict(),
            "recovery": {
                "passed": self.passed,
                "max_drop": self.max_drop,
                "chosen": self.chosen.name,
                "attempts": [a.to_dict() for a in self.attempts],
            },
        }


def _chosen(attempts: list[Attempt], passed: bool) -> Attempt:
    """The first attempt that passed; when none did, the most accurate (the earliest, plainest, among equals)."""
    if passed:
        return next(a for a in attempts if a.passed)
    return max(attempts, key=lambda a: (a.accuracy, -attempts.index(a)))


def target_support(graph: ModelGraph, quantization: str) -> tuple[bool, dict[str, bool]]:
    """Whether a converted graph is full-integer, and the targets it can run on.

    The host and a Raspberry Pi run anything TFLite runs. The Edge TPU and TFLite Micro need every operation
    in int8: float operations left in (selective quantization) or 16-bit activations rule them out here.
    """
    io_floats = sum(t.dtype == "float32" for t in [*graph.inputs, *graph.outputs])
    inner_floats = graph.tensor_dtypes.get("float32", 0) - io_floats
    full_integer = inner_floats <= 0
    int8_only = full_integer and quantization == "int8" and "int16" not in graph.tensor_dtypes
    return full_integer, {"host": True, "rpi": True, "android": True, **{t: int8_only for t in INT8_ONLY_TARGETS}}


def convert_with_gate(
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    calibration: str | os.PathLike[str],
    data: str | os.PathLike[str],
    max_drop: float,
    calibration_size: int = 200,
    io: str = "int8",
    seed: int = 0,
    limit_per_class: int | None = None,
    min_reference_accuracy: float | None = None,
    strict: bool = False,
    target: str | None = None,
    hints: InputHints | None = None,
    card: ModelCard | None = None,
    follow_links: bool = False,
    trust: bool = False,
    on_progress: Progress | None = None,
) -> RecoveryResult:
    """Convert to int8 and, if the model misses ``max_drop`` on ``data``, try the recoveries in order.

    Args:
        model_path: the ``.keras`` model (from ``edgecnn train``, or from elsewhere with ``hints``: also ``.h5`` or a
            SavedModel folder, for which the float-layer attempt is left out: it has no layers to keep in float).
        out: the ``.tflite`` to write when an attempt passes. When none does, the best attempt is written to
            ``<stem>.best-attempt.tflite`` beside it instead, and ``out`` is left alone.
        calibration: calibration images.
        data: labelled images to validate each attempt on (the held-out set the gate is about).
        max_drop: largest allowed accuracy drop against the Keras model, in percentage points.
        calibration_size, io, seed, strict: as for :func:`edgecnn.build.convert.convert`.
        limit_per_class: use only the first N images of each class of ``data``.
        min_reference_accuracy: the Keras model's accuracy on ``data`` must reach this fraction (None: clearly
            above chance, :func:`~edgecnn.evidence.validate.default_reference_floor`; 0: no floor), or nothing is
            converted: below it the images cannot tell a good attempt from a bad one.
        target: the target the model is for: an attempt passes only if it runs there, and for targets that
            need full int8 (:data:`INT8_ONLY_TARGETS`) the float-layer and 16x8 attempts are not tried.
        hints / card / follow_links / trust: as for :func:`edgecnn.build.convert.convert` (``follow_links``
            also for ``data``).
        on_progress: progress of loading images.

    Raises:
        UsageError: bad options, or a ``.tflite`` source (recovery re-converts the model it came from);
        ModelFormatError: bad model; DatasetError: bad images, or images the Keras model cannot classify (its
        accuracy on them is below ``min_reference_accuracy``).
    """
    from edgecnn.build.diagnose import layer_errors, rank_suspects
    from edgecnn.build.keras_model import KerasRunner, SavedModelFunction, import_keras
    from edgecnn.evidence.validate import check_gates, compare, reference_floor_error
    from edgecnn.runtime.interpreter import TFLiteRunner
    from edgecnn.runtime.runners import predict_all

    check_gates(max_drop=max_drop, min_agreement=None, min_reference_accuracy=min_reference_accuracy)
    out_path = check_bundle_output(out, inputs=[model_path, calibration, data])
    source = open_source(model_path)
    if source.kind == "tflite":
        raise UsageError(
            f"--max-drop recovers by converting {source.name}'s source model again (more calibration, float layers, "
            "16x8): give the Keras model or SavedModel it came from, or drop --max-drop and check it with "
            "edgecnn validate"
        )
    hints = hints or InputHints()
    model, described = load_source(source, hints, trust=trust)
    tf, keras = import_keras()
    static = static_batch_model(keras, model)
    float_bytes = run_converter(tf, static, "none", None, "float32")
    info = described if described is not None else outside_info(read_graph(float_bytes), source=source, hints=hints)
    record = source_record(source, info=info, described=described_by(None, hints))
    images = load_labelled(data, info.labels, info.preprocessing, limit_per_class=limit_per_class, strict=strict,
                           follow_links=follow_links, on_progress=on_progress)  # fmt: skip
    reference = KerasRunner(source.path, info=info, model=model)
    reference_scores = predict_all(reference, images.images)  # once: every attempt is compared with it
    # Before any attempt: on images the reference cannot classify, every attempt would fail the same gate.
    floor_error = reference_floor_error(images.labels, reference_scores, min_reference_accuracy, model=source.name)
    if floor_error is not None:
        raise floor_error
    float_size = len(float_bytes)
    attempts: list[Attempt] = []
    built: list[tuple[bytes, str, CalibrationSet, dict[str, Any]]] = []  # what each attempt wrote, in order

    def load(size: int) -> CalibrationSet:
        return load_calibration(calibration, info.preprocessing, size=size, seed=seed, strict=strict,
                                follow_links=follow_links, on_progress=on_progress)  # fmt: skip

    with temporary_folder("recover-") as folder:

        def attempt(name: str, detail: str, flatbuffer: bytes, quantization: str, calib: CalibrationSet,
                    extra: dict[str, Any]) -> bool:  # fmt: skip
            path = Path(folder) / f"attempt{len(attempts)}.tflite"
            write_bundle(path, flatbuffer, info, model_path=source.path, quantization=quantization,
                         calibration=calib, float_size_bytes=float_size, extra=extra, source=record,
                         card=card)  # fmt: skip
            candidate = TFLiteRunner(path)
            try:
                scores = predict_all(candidate, images.images)
            finally:
                candidate.close()
            report = compare(info.labels, images, reference_scores, scores, max_drop=max_drop, min_reference_accuracy=0)
            full_integer, targets = target_support(read_graph(flatbuffer), quantization)
            passed = report.passed and (target is None or targets.get(target, True))
            attempts.append(
                Attempt(name, detail, quantization, report.reference_accuracy, report.candidate_accuracy,
                        report.accuracy_drop_pp, passed, len(flatbuffer), full_integer, targets)
            )  # fmt: skip
            built.append((flatbuffer, quantization, calib, extra))
            return passed

        def convert_int8(calib: CalibrationSet, quantize: str = "int8", io_type: str = io) -> bytes:
            return run_converter(tf, static, quantize, calib.representative, io_type)

        calib = load(calibration_size)
        passed = attempt("int8", f"{len(calib.images)} calibration images", convert_int8(calib), "int8", calib, {})
        if not passed:
            available = len(scan_images(calibration, follow_links=follow_links).samples)
            more = min(available, calibration_size * MORE_CALIBRATION)
            if more > len(calib.images):
                calib = load(more)
                passed = attempt("int8 (more calibration)", f"{len(calib.images)} calibration images",
                                 convert_int8(calib), "int8", calib, {})  # fmt: skip
        int8_only = target in INT8_ONLY_TARGETS
        if not passed and not int8_only and not isinstance(model, SavedModelFunction):
            layers, _ = layer_errors(model, calib)
            suspects = [l for l in rank_suspects(layers) if l.op not in ("SOFTMAX", "MAX_POOL_2D")]
            for count in range(1, min(MAX_FLOAT_LAYERS, len(suspects)) + 1):
                chosen = suspects[:count]
                flatbuffer = _selective(tf, static, calib, [l.tensor for l in chosen], io)
                names = [l.name for l in chosen]
                if attempt("int8 + float layers", f"float: {', '.join(names)}", flatbuffer, "int8-mixed", calib,
                           {"float_layers": names}):  # fmt: skip
                    passed = True
                    break
        if not passed and not int8_only:
            passed = attempt("16x8", "16-bit activations, 8-bit weights, float32 I/O",
                             convert_int8(calib, "16x8", "float32"), "16x8", calib, {})  # fmt: skip
    flatbuffer, quantization, calib, extra = built[attempts.index(_chosen(attempts, passed))]
    target = out_path if passed else out_path.with_name(f"{out_path.stem}.best-attempt.tflite")
    summary = {"max_drop": max_drop, "passed": passed, "attempts": [a.to_dict() for a in attempts]}
    conversion = write_bundle(target, flatbuffer, info, model_path=source.path, quantization=quantization,
                              calibration=calib, float_size_bytes=float_size,
                              extra={**extra, "recovery": summary}, source=record, card=card)  # fmt: skip
    return RecoveryResult(conversion, attempts, passed, max_drop, list(images.skipped))


def _selective(tf: Any, static: Any, calib: CalibrationSet, tensors: list[str], io_type: str) -> bytes:
    """Int8 with the named tensors' operations kept in float (TFLite's QuantizationDebugger denylist)."""
    converter = converter_for(tf, static, "int8", calib.representative, io_type)
    # Float operations need the float builtins next to the int8 ones.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=tensors)

    def build() -> bytes:
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=calib.representative, debug_options=options
        )
        return bytes(debugger.get_nondebug_quantized_model())

    return bytes(converted_quietly(build))
