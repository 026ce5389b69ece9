"""``edgecnn diagnose``: where int8 quantization loses accuracy, and whether the calibration set is to blame.

Per layer (TFLite's QuantizationDebugger, on real calibration images): the error of the quantized output
against the float one, relative to the quantization step (``rmse_scale``: about 0.29 is ideal rounding noise)
and to the float signal (``relative_error``), the range, scale and zero point, and whether one channel sets
the whole layer's range (``channel_range_ratio``, the classic outlier that starves every other channel).
The calibration set is checked too: size, class balance, images far from the data, and preprocessing.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.build.convert import (
    CalibrationSet,
    converted_quietly,
    converter_for,
    load_calibration,
    static_batch_model,
)
from edgecnn.errors import UsageError
from edgecnn.runtime.data import load_labelled
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.progress import Progress
from edgecnn.targets.base import Finding

# Thresholds of the findings. rmse/scale of plain rounding is 1/sqrt(12) = 0.29 steps.
HIGH_RELATIVE_ERROR = 0.25
OUTLIER_CHANNEL_RATIO = 20.0
FEW_CALIBRATION_IMAGES = 100
IMBALANCE_RATIO = 2.0
FAR_IMAGE_Z = 6.0
SHIFT_Z = 2.0


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one quantized operation's output.

    Attributes:
        name: the Keras layers fused into the operation (``block1_conv1+block1_bn1+block1_relu1``).
        op: the TFLite operation.
        tensor: the output tensor's name in the converted graph (what selective quantization keeps in float).
        rmse_scale: RMSE of quantized vs float output, in quantization steps.
        relative_error: RMSE relative to the standard deviation of the float output.
        channel_range_ratio: largest channel's absolute maximum over the median channel's.
        scale / zero_point: the output's int8 quantization; ``range`` the real interval it covers.
    """

    name: str
    op: str
    tensor: str
    rmse_scale: float
    relative_error: float
    channel_range_ratio: float
    scale: float
    zero_point: int
    range: tuple[float, float]

    @property
    def outlier(self) -> bool:
        """One channel sets the range of the whole tensor."""
        return self.channel_range_ratio >= OUTLIER_CHANNEL_RATIO

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "op": self.op,
            "tensor": self.tensor,
            "rmse_scale": self.rmse_scale,
            "relative_error": self.relative_error,
            "channel_range_ratio": self.channel_range_ratio,
            "outlier": self.outlier,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "range": list(self.range),
        }


@dataclass
class Diagnosis:
    """Per-layer errors (worst first) and the findings about layers and calibration."""

    model: Path
    layers: list[LayerError]
    causes: list[Finding] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    skipped: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """False when a finding is an error (``edgecnn diagnose`` then exits 1)."""
        return not any(c.severity == "error" for c in self.causes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (keys documented in the README)."""
        return {
            "model": str(self.model),
            "causes": [c.to_dict() for c in self.causes],
            "layers": [l.to_dict() for l in self.layers],
            "calibration": self.calibration,
            "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped],
        }


def rank_suspects(layers: list[LayerError]) -> list[LayerError]:
    """Layers to keep in float first: outlier ranges (largest ratio first), then by relative error."""
    return sorted(layers, key=lambda l: (not l.outlier, -l.channel_range_ratio * l.outlier, -l.relative_error))


def _channel_range_ratio(values: np.ndarray) -> float:
    """Largest channel peak over the median peak of the active channels (feature maps only)."""
    if values.ndim != 4:
        return 1.0  # scores and logits: one class standing out is the point, not an outlier
    peaks = np.abs(values).reshape(-1, values.shape[-1]).max(axis=0)
    active = peaks[peaks > 0]
    if len(active) < 4:  # too few live channels for one to stand out
        return 1.0
    return float(active.max() / np.median(active))


def _spread(values: np.ndarray, *, op: str, layer: Any) -> float:
    """Standard deviation of an operation's float output.

    A Dense layer with a softmax activation is two TFLite operations; the FULLY_CONNECTED one outputs logits,
    which are the log-probabilities up to a constant per image.
    """
    if op == "FULLY_CONNECTED" and getattr(getattr(layer, "activation", None), "__name__", "") == "softmax":
        logs = np.log(np.clip(values, 1e-12, None))
        return float(np.std(logs - logs.mean(axis=-1, keepdims=True)))
    return float(np.std(values))


def _fused_layers(tensor: str, layer_names: list[str]) -> list[str]:
    """The Keras layers a fused TFLite tensor came from, in model order."""
    return [n for n in layer_names if re.search(rf"(^|/){re.escape(n)}(_\d+)?(/|;|$)", tensor)]


def _float_outputs(model: Any, names: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    """The float outputs of the named Keras layers on the calibration images."""
    from edgecnn.build.keras_model import import_keras

    _, keras = import_keras()
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe.predict(images, batch_size=64, verbose=0)
    return dict(zip(names, outputs if isinstance(outputs, list) else [outputs]))


def layer_errors(
    model: Any, calibration: CalibrationSet, *, denylisted: list[str] | None = None
) -> tuple[list[LayerError], Any]:
    """Run TFLite's QuantizationDebugger over the calibration images.

    Returns:
        The layer errors (worst relative error first) and the debugger (for selective quantization).
    """
    from edgecnn.build.keras_model import import_keras

    tf, keras = import_keras()
    static = static_batch_model(keras, model)
    converter = converter_for(tf, static, "int8", calibration.representative, "int8")
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted or None)
    buffer = io.StringIO()

    def run() -> Any:
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=calibration.representative, debug_options=options
        )
        debugger.run()
        debugger.layer_statistics_dump(buffer)
        return debugger

    debugger = converted_quietly(run)
    names = [layer.name for layer in model.layers]
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    # The last Keras layer fused into each operation produces its output; the model's output ends the graph.
    producers = [(_fused_layers(r["tensor_name"], names) or [names[-1]])[-1] for r in rows]
    floats = _float_outputs(model, sorted(set(producers), key=names.index), calibration.images)
    layers = []
    for row, producer in zip(rows, producers):
        scale, zero_point = float(row["scale"]), int(float(row["zero_point"]))
        rmse = float(np.sqrt(float(row["mean_squared_error"])))
        spread = _spread(floats[producer], op=row["op_name"], layer=model.get_layer(producer))
        layers.append(
            LayerError(
                name="+".join(_fused_layers(row["tensor_name"], names)) or producer,
                op=row["op_name"],
                tensor=row["tensor_name"],
                rmse_scale=rmse / scale if scale else 0.0,
                relative_error=rmse / spread if spread > 0 else 0.0,
                channel_range_ratio=_channel_range_ratio(floats[producer]),
                scale=scale,
                zero_point=zero_point,
                # What an int8 tensor can represent: q in [-128, 127] maps to scale * (q - zero_point).
                range=(scale * (-128 - zero_point), scale * (127 - zero_point)),
            )
        )
    layers.sort(key=lambda l: -l.relative_error)
    return layers, debugger


def _pixel_stats(images: np.ndarray) -> np.ndarray:
    """Per image: mean and standard deviation of its preprocessed values."""
    flat = images.reshape(len(images), -1)
    return np.stack([flat.mean(axis=1), flat.std(axis=1)], axis=1)


def _robust_z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    median = np.median(reference, axis=0)
    mad = np.median(np.abs(reference - median), axis=0) * 1.4826  # MAD → standard deviation for normal data
    return np.abs(values - median) / np.where(mad > 0, mad, 1e-12)


def calibration_causes(
    calibration: CalibrationSet,
    *,
    data_images: np.ndarray | None,
    model_spec: Preprocessing,
    candidate_info: Any = None,
) -> tuple[list[Finding], dict[str, Any]]:
    """Findings about the calibration set: size, balance, images far from the data, preprocessing."""
    causes: list[Finding] = []
    count = len(calibration.images)
    groups = {name: calibration.groups.count(name) for name in sorted(set(calibration.groups))}
    summary: dict[str, Any] = {"num_images": count, "per_group": groups}
    if count < FEW_CALIBRATION_IMAGES:
        causes.append(
            Finding(
                "warning",
                "calibration-size",
                f"only {count} calibration images: ranges may miss the tails; use {FEW_CALIBRATION_IMAGES} or more "
                "(--calibration-size)",
            )
        )
    if len(groups) > 1 and max(groups.values()) > IMBALANCE_RATIO * min(groups.values()):
        causes.append(
            Finding(
                "warning",
                "calibration-balance",
                f"calibration classes are unbalanced ({min(groups.values())} to {max(groups.values())} images per "
                "class): add images of the thin classes",
            )
        )
    stats = _pixel_stats(calibration.images)
    reference = _pixel_stats(data_images) if data_images is not None and len(data_images) else stats
    z = _robust_z(stats, reference).max(axis=1)
    far = [i for i in np.argsort(-z) if z[i] > FAR_IMAGE_Z]
    summary["far_images"] = [{"path": str(calibration.paths[i]), "z": float(z[i])} for i in far[:20]]
    if data_images is not None and len(data_images):
        shift = _robust_z(np.median(stats, axis=0, keepdims=True), reference)[0]
        summary["median_shift_z"] = {"mean": float(shift[0]), "std": float(shift[1])}
        if shift.max() > SHIFT_Z:
            causes.append(
                Finding(
                    "error",
                    "calibration-distribution",
                    f"the calibration images are not from the data's distribution: their median brightness/contrast "
                    f"is {shift.max():.1f} robust standard deviations from the data's; calibrate on images like the "
                    "ones the model will see (for example the training folder)",
                )
            )
    if far and (data_images is None or len(far) < count // 2):
        causes.append(
            Finding(
                "warning",
                "calibration-outliers",
                f"{len(far)} calibration image(s) are far outside the data's distribution (robust z > {FAR_IMAGE_Z:g}; "
                f"worst {summary['far_images'][0]['path']}): they stretch the ranges; remove them",
            )
        )
    if candidate_info is not None:
        equal = candidate_info.preprocessing.fingerprint() == model_spec.fingerprint()
        summary["preprocessing_matches_candidate"] = equal
        if not equal:
            causes.append(
                Finding(
                    "error",
                    "preprocessing",
                    "the int8 model's preprocessing differs from the Keras model's: it was converted from another "
                    "model or with other settings; convert it again from this model",
                )
            )
    return causes, summary


def layer_causes(layers: list[LayerError]) -> list[Finding]:
    """Findings about layers: outlier ranges first, then layers with a large error."""
    causes = [
        Finding(
            "error",
            "outlier-range",
            f"{l.name} ({l.op}): one channel reaches {l.channel_range_ratio:.0f}x the median channel's range, so the "
            f"int8 step ({l.scale:.3g}) is too coarse for the others; keep it and its consumer in float or use 16-bit "
            "activations (edgecnn convert --max-drop ... --data ... recovers automatically)",
        )
        for l in sorted(layers, key=lambda l: -l.channel_range_ratio)
        if l.outlier
    ]
    causes += [
        Finding(
            "warning",
            "layer-error",
            f"{l.name} ({l.op}): quantized output off by {l.relative_error:.0%} of its float spread "
            f"({l.rmse_scale:.2f} steps RMS)",
        )
        for l in layers
        if l.relative_error > HIGH_RELATIVE_ERROR
    ]
    return causes


def diagnose(
    model_path: str | os.PathLike[str],
    calibration: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    candidate: str | os.PathLike[str] | None = None,
    calibration_size: int = 200,
    data_limit: int = 50,
    seed: int = 0,
    strict: bool = False,
    follow_links: bool = False,
    trust: bool = False,
    on_progress: Progress | None = None,
) -> Diagnosis:
    """Diagnose the int8 conversion of a ``.keras`` model on its calibration set.

    Args:
        model_path: the ``.keras`` model.
        calibration: the calibration images (as ``edgecnn convert --calibration``).
        data: a labelled folder of images the model will see, to compare the calibration set with.
        candidate: an int8 ``.tflite`` converted from the model, whose preprocessing is checked.
        calibration_size: calibration images, class-balanced and seeded as ``convert`` draws them.
        data_limit: images per class of ``data`` used for the comparison.
        seed: seed of the calibration draw.
        strict: fail on an unreadable image instead of skipping it.
        follow_links: follow symbolic links that lead outside ``calibration`` or ``data``.
        trust: load the model with Keras's safe mode off (``--trust-model``).
        on_progress: progress of loading images.
    """
    from edgecnn.build.keras_model import load_keras_model
    from edgecnn.runtime.bundle import read_tflite_info

    if calibration_size < 1 or data_limit < 1:
        raise UsageError(
            f"--calibration-size and --data-limit must be at least 1, not {calibration_size} and {data_limit}"
        )
    model, info = load_keras_model(model_path, trust=trust)
    spec = info.preprocessing
    candidate_info = read_tflite_info(candidate) if candidate is not None else None
    calibration_set = load_calibration(
        calibration,
        spec,
        size=calibration_size,
        seed=seed,
        strict=strict,
        follow_links=follow_links,
        on_progress=on_progress,
    )
    data_images = None
    skipped = list(calibration_set.skipped)
    if data is not None:
        loaded = load_labelled(
            data,
            info.labels,
            spec,
            limit_per_class=data_limit,
            strict=strict,
            follow_links=follow_links,
            on_progress=on_progress,
        )
        data_images, skipped = loaded.images, skipped + loaded.skipped
    layers, _ = layer_errors(model, calibration_set)
    causes, summary = calibration_causes(
        calibration_set,
        data_images=data_images,
        model_spec=spec,
        candidate_info=candidate_info,
    )
    return Diagnosis(Path(model_path), layers, layer_causes(layers) + causes, summary, skipped)
