"""Where a ``.tflite``'s labels and preprocessing come from: its sidecar, else its TFLite Metadata, else the options.

Precedence (README, "Models from elsewhere"): the edgecnn sidecar (``model.json``); else standard TFLite Metadata
inside the ``.tflite`` (labels as a TENSOR_AXIS_LABELS file, normalization); else ``--labels`` and
``--input-range``/``--mean``/``--std`` given to the command; else a refusal naming those options. Sources that both
speak must agree: a sidecar and metadata (or an option) that disagree are reported, never silently ranked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.graph import ModelGraph, TensorSpec, read_graph
from edgecnn.runtime.bundle import ModelInfo, check_model_file, sidecar_info
from edgecnn.runtime.files import sha256_bytes
from edgecnn.runtime.hints import LABELS_OPTION, NORMALIZATION_OPTIONS, InputHints, image_preprocessing
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams

# TFLite Metadata stores mean/std as float32 on the 0..255 scale; after dividing by 255 they match the sidecar's
# float64 values only to float32 precision.
_TOLERANCE = 1e-5


def check_classifier(graph: ModelGraph, *, model: str) -> tuple[TensorSpec, TensorSpec]:
    """The image input and score output of an image classifier: one input, one output that is one vector of scores.

    Raises:
        UsageError: several inputs or outputs (a detector, a multi-head model), or an output that is not
            ``[classes]``/``[1, classes]`` (boxes, masks, embeddings of several positions).
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UsageError(
            f"{model} has {len(graph.inputs)} input(s) and {len(graph.outputs)} output(s): edgecnn classifies with "
            "one image input and one vector of class scores (detectors and multi-head models are not classifiers); "
            "inspect, check and bench work on it"
        )
    out = graph.outputs[0]
    dims = [d for d in out.shape[1:]] if len(out.shape) > 1 else list(out.shape)
    if (len(out.shape) > 1 and out.shape[0] != 1) or len([d for d in dims if d != 1]) > 1 or not dims:
        raise UsageError(
            f"{model}'s output has shape {list(out.shape)}, not one vector of class scores [1, classes] "
            "(a detector or segmenter is not a classifier): inspect, check and bench work on it"
        )
    return graph.inputs[0], out


def num_classes(output: TensorSpec) -> int:
    """The number of class scores of a classifier's output ``[1, classes]`` (``[classes]``, ``[1, 1, 1, classes]``)."""
    count = 1
    for d in output.shape[1:] if len(output.shape) > 1 else output.shape:
        count *= max(int(d), 1)
    return count


def tflite_info(
    model_path: str | os.PathLike[str], *, hints: InputHints | None = None, fallback: ModelInfo | None = None
) -> ModelInfo:
    """The labels, preprocessing and I/O of a ``.tflite`` classifier, from the first source that has them.

    Args:
        model_path: any ``.tflite`` image classifier.
        hints: what the user gave as options (``--labels``, ``--input-range`` ...).
        fallback: labels and normalization to use last (the candidate's, for a reference from elsewhere).

    Raises:
        ModelFormatError: unreadable model, sidecar or metadata.
        UsageError: not a classifier, a missing piece (naming the option that supplies it), or sources that disagree.
    """
    hints = hints or InputHints()
    model = check_model_file(model_path, suffixes=(".tflite",))
    graph = read_graph(model)
    content = _read(model)
    inp, out = check_classifier(graph, model=model.name)
    sidecar = sidecar_info(model)
    if sidecar is not None:
        # The sidecar's sha256 vouches for these bytes, so the sidecar is the source; metadata only has to agree
        # where it can be read (a tool that rewrites the flatbuffer, as a compiler does, may drop the labels zip).
        try:
            metadata = _metadata(content)
        except ModelFormatError:
            metadata = None
        if metadata is not None:
            _agree(sidecar.labels, metadata.labels, sidecar.preprocessing, metadata, model, other="its TFLite Metadata")
        agree_with_hints(sidecar.labels, sidecar.preprocessing, hints, model, source=f"its sidecar {model.stem}.json")
        return sidecar
    metadata = _metadata(content)
    return classifier_info(
        list(inp.shape),
        QuantParams(inp.dtype, inp.scale, inp.zero_point),
        QuantParams(out.dtype, out.scale, out.zero_point),
        classes=num_classes(out),
        hints=hints,
        metadata=metadata,
        fallback=fallback,
        model=model.name,
        extra={"source": {"model": model.name, "described_by": described_by(metadata, hints)}},
        model_sha256=sha256_bytes(content),
    )


def classifier_info(
    input_shape: Sequence[int],
    input_params: QuantParams,
    output_params: QuantParams,
    *,
    classes: int,
    hints: InputHints,
    metadata: Any = None,
    fallback: ModelInfo | None = None,
    model: str,
    extra: dict[str, Any] | None = None,
    model_sha256: str = "",
) -> ModelInfo:
    """Describe a classifier that carries no sidecar: labels and normalization from its metadata, else the options,
    else ``fallback`` (the model it is compared with); image size, channels and layout from its input shape.

    Raises:
        UsageError: a missing piece (naming the option that supplies it), disagreeing sources, or labels that do
            not match the number of scores.
    """
    labels = _pick(
        _usable_labels(metadata, hints, model=model),
        hints.labels,
        fallback.labels if fallback is not None else None,
        model=model,
        what="labels",
        option=LABELS_OPTION,
        hint_source=hints.labels_source,
    )
    normalization = _pick(
        _metadata_normalization(metadata),
        (hints.mean, hints.std) if hints.mean is not None else None,
        (fallback.preprocessing.mean, fallback.preprocessing.std) if fallback is not None else None,
        model=model,
        what="input normalization",
        option=NORMALIZATION_OPTIONS,
        hint_source=hints.normalization_source,
        same=_same_normalization,
    )
    bgr = hints.bgr or (fallback is not None and fallback.preprocessing.bgr)
    spec = image_preprocessing(
        input_shape, mean=normalization[0], std=normalization[1], bgr=bgr, layout=hints.layout, model=model
    )
    if len(labels) != classes:
        raise UsageError(
            f"{model} outputs {classes} class scores but {len(labels)} labels were given: give one label per score"
        )
    quantization = (
        "int8" if output_params.dtype in ("int8", "uint8") or input_params.dtype in ("int8", "uint8") else "none"
    )
    return ModelInfo(
        labels=list(labels),
        preprocessing=spec,
        input_shape=[int(d) for d in input_shape],
        input=input_params,
        output=output_params,
        quantization=quantization,
        model_sha256=model_sha256,
        extra=extra or {},
    )


def _read(model: Path) -> bytes:
    try:
        return model.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read {model} ({exc.strerror or exc}): check the path") from None


def _metadata(content: bytes) -> Any:
    from edgecnn.model.metadata import read_metadata

    return read_metadata(content)


def _usable_labels(metadata: Any, hints: InputHints, *, model: str) -> tuple[str, ...] | None:
    """The metadata's labels, when they can name classes: unique and non-empty. Third-party label files repeat names
    (ImageNet's has "crane" and "maillot" twice), which would merge classes; ``--labels`` then replaces them."""
    if metadata is None or metadata.labels is None:
        return None
    labels = tuple(metadata.labels)
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if not repeated and all(label.strip() for label in labels):
        return labels
    if hints.labels is not None:
        return None  # the user's unique labels stand in for them
    problem = f"repeat {', '.join(repr(r) for r in repeated[:3])}" if repeated else "include a blank one"
    raise UsageError(
        f"{model}'s TFLite Metadata labels {problem}, which would merge classes: give {LABELS_OPTION} with one "
        "unique name per line"
    )


def _metadata_normalization(metadata: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if metadata is None or metadata.mean is None or metadata.std is None:
        return None
    # The metadata's convention is the raw 0..255 pixel: (pixel - mean) / std; edgecnn's is the 0..1 scale.
    return tuple(m / 255.0 for m in metadata.mean), tuple(s / 255.0 for s in metadata.std)


def described_by(metadata: Any, hints: InputHints) -> list[str]:
    """Where a model's labels and preprocessing came from: ``tflite-metadata``, ``options``, or both."""
    sources = []
    if metadata is not None and (metadata.labels is not None or metadata.mean is not None):
        sources.append("tflite-metadata")
    if not hints.empty:
        sources.append("options")
    return sources


def _pick(
    from_metadata: Any,
    from_hints: Any,
    from_fallback: Any,
    *,
    model: str,
    what: str,
    option: str,
    hint_source: str,
    same: Any = None,
) -> Any:
    equal = same or (lambda a, b: list(a) == list(b))
    if from_metadata is not None and from_hints is not None and not equal(from_metadata, from_hints):
        raise UsageError(
            f"{model}'s TFLite Metadata gives other {what} than {hint_source}: drop the option, or fix the model"
        )
    for value in (from_metadata, from_hints, from_fallback):
        if value is not None:
            return value
    raise UsageError(
        f"{model} does not carry its {what} (no edgecnn sidecar or TFLite Metadata gives them): give {option}"
    )


def _same_normalization(a: Any, b: Any) -> bool:
    return _close(a[0], b[0]) and _close(a[1], b[1])


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    # One value stands for every channel: (0.5,) equals (0.5, 0.5, 0.5).
    width = max(len(a), len(b))
    if len(a) not in (1, width) or len(b) not in (1, width):
        return False
    wide_a = list(a) * width if len(a) == 1 else list(a)
    wide_b = list(b) * width if len(b) == 1 else list(b)
    return all(math.isclose(x, y, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE) for x, y in zip(wide_a, wide_b))


def _agree(
    labels: Sequence[str], other_labels: Any, spec: Preprocessing, metadata: Any, model: Path, *, other: str
) -> None:
    """A sidecar and the model's metadata must say the same, or the user must choose (exit 2)."""
    side = f"its sidecar {model.stem}.json"
    if other_labels is not None and list(other_labels) != list(labels):
        raise UsageError(
            f"{model.name}: {side} and {other} list different labels: re-run edgecnn convert, or remove the stale one"
        )
    normalization = _metadata_normalization(metadata)
    if normalization is not None and not _same_normalization(normalization, (spec.mean, spec.std)):
        raise UsageError(
            f"{model.name}: {side} and {other} give different input normalization: re-run edgecnn convert, "
            "or remove the stale one"
        )


def agree_with_hints(
    labels: Sequence[str], spec: Preprocessing, hints: InputHints, model: Path, *, source: str
) -> None:
    """Options given for a model that carries its labels and preprocessing must say the same.

    Raises:
        UsageError: an option that contradicts ``source``, naming the option to drop.
    """
    if hints.labels is not None and list(hints.labels) != list(labels):
        raise UsageError(f"{model.name}: {source} lists other labels than {hints.labels_source}: drop --labels")
    if hints.mean is not None and not _same_normalization((hints.mean, hints.std), (spec.mean, spec.std)):
        raise UsageError(
            f"{model.name}: {source} gives another input normalization than {hints.normalization_source}: drop it"
        )
    if hints.bgr != spec.bgr and hints.bgr:
        raise UsageError(f"{model.name}: {source} says RGB input: drop --bgr")
    if hints.layout is not None and hints.layout != spec.layout:
        raise UsageError(f"{model.name}: {source} says {spec.layout} input: drop --layout")
