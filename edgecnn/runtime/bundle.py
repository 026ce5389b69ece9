"""The model artifact: a ``.tflite`` file plus its sidecar ``.json`` (or a ``.keras`` with the same metadata).

The metadata carries everything needed to feed the model exactly as it was validated: labels, preprocessing,
input/output shapes and quantization, and a sha256 that ties the sidecar to the model bytes. A Keras model
keeps the same metadata inside its ``.keras`` archive (entry ``edgecnn.json``), so ``model.keras`` and the
``model.json`` of its converted ``model.tflite`` can live side by side.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.graph import ModelGraph, TensorSpec, read_graph
from edgecnn.runtime.files import (
    atomic_paths,
    check_output_path,
    dumps_json,
    refuse_inputs,
    sha256_bytes,
    sha256_file,
    sidecar_path,
)
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams

FORMAT = "edgecnn.model/1"
KERAS_ENTRY = "edgecnn.json"


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a trained or converted model.

    Attributes:
        labels: class names, in output order.
        preprocessing: how images become inputs.
        input_shape: model input shape, batch first (``[1, H, W, C]`` for converted models).
        input: dtype and quantization of the input tensor.
        output: dtype and quantization of the output tensor.
        quantization: ``none``, ``float16``, ``dynamic`` or ``int8`` (``keras`` for a trained Keras model).
        model_sha256: sha256 of the model file (empty for Keras models, whose archive embeds this).
        extra: provenance: source model hash, calibration fingerprint, tool versions, training settings.
    """

    labels: list[str]
    preprocessing: Preprocessing
    input_shape: list[int]
    input: QuantParams
    output: QuantParams
    quantization: str
    model_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the sidecar's content)."""
        return {
            "format": FORMAT,
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "input_shape": list(self.input_shape),
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "quantization": self.quantization,
            "model_sha256": self.model_sha256,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Path, fix: str = "re-run edgecnn convert") -> ModelInfo:
        """Parse metadata strictly (see :func:`parse_metadata`); ``source`` names the file and ``fix`` the remedy.

        Raises:
            ModelFormatError: another format, a missing field, or a field of the wrong type or out of range.
        """
        return parse_metadata(data, source=source, fix=fix)


# --- the metadata's schema ---------------------------------------------------------------------------------------
# Sidecars come from elsewhere too, and their model_sha256 vouches only for the model's bytes, never for the
# sidecar's own fields: every field is checked here for type and range, and against the graph by check_model_io.

MAX_METADATA_BYTES = 16 * 1024 * 1024
"""The largest sidecar (or ``edgecnn.json`` entry) read: real ones are a few kilobytes."""

MAX_METADATA_DEPTH = 32
"""The deepest nesting of JSON arrays and objects accepted: the format nests 3 deep, provenance a few more."""

MAX_INT_DIGITS = 20
"""The longest JSON integer accepted: int64 has 19 digits; longer ones only cost time to convert."""

QUANTIZATIONS = ("none", "float16", "dynamic", "int8", "int8-mixed", "16x8", "int16x8", "keras")
"""The ``quantization`` values edgecnn writes (``keras``: a trained model; ``int8-mixed`` and ``16x8``: what
``convert --max-drop`` recovery writes, some layers in float or 16-bit activations; ``int16x8``: a graph from
elsewhere read as 16x8)."""

IO_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")
"""The model I/O dtypes metadata may name (the numpy names, which are also TFLite's TensorType names)."""

RESIZE_FILTERS = ("nearest", "bilinear", "bicubic", "area")
"""The resampling filters :class:`Preprocessing` knows."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PREPROCESSING_KEYS = frozenset({"height", "width", "channels", "resize", "mean", "std", "bgr", "layout"})
_QUANT_KEYS = frozenset({"dtype", "scale", "zero_point"})
_KNOWN_KEYS = frozenset(
    {"format", "labels", "preprocessing", "input_shape", "input", "output", "quantization", "model_sha256"}
)


class _Invalid(Exception):
    """One field of the metadata is wrong; the message names the field and what it should be."""


def parse_metadata(data: Any, *, source: Path, fix: str) -> ModelInfo:
    """The one strict reader of edgecnn metadata (a parsed sidecar or ``edgecnn.json``).

    Types are exact: a label is a non-empty string and labels are unique; an image size is an ``int`` (not a bool,
    a string or a float); mean and std are finite, std positive; a zero point lies in its dtype's range.

    Args:
        data: the parsed JSON.
        source: the file it came from, named in errors.
        fix: the remedy named in errors.

    Raises:
        ModelFormatError: not edgecnn metadata, or one field wrong (named, with what it should be).
    """
    if not isinstance(data, dict):
        raise ModelFormatError(f"{source} is not edgecnn metadata (not a JSON object): {fix}")
    if data.get("format") != FORMAT:
        raise ModelFormatError(
            f"{source} is not edgecnn metadata (format {_show(data.get('format'))}, expected {FORMAT!r}): {fix}"
        )
    try:
        return ModelInfo(
            labels=_labels(_field(data, "labels")),
            preprocessing=_preprocessing(_field(data, "preprocessing")),
            input_shape=_input_shape(_field(data, "input_shape")),
            input=_quant_params(_field(data, "input"), "input"),
            output=_quant_params(_field(data, "output"), "output"),
            quantization=_choice(_field(data, "quantization"), "quantization", QUANTIZATIONS),
            model_sha256=_sha256(data.get("model_sha256", "")),
            extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        )
    except _Invalid as exc:
        raise ModelFormatError(f"{source} has invalid edgecnn metadata ({exc}): {fix}") from None


def _show(value: Any) -> str:
    """A value for an error message, cut short (a hostile file may hold megabytes in one field)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field(data: dict[str, Any], key: str, where: str = "") -> Any:
    if key not in data:
        raise _Invalid(f"missing {where + key!r}")
    return data[key]


def _only_keys(data: Any, allowed: frozenset[str], name: str) -> dict[str, Any]:
    """``data`` as an object whose keys are all known: a misspelt optional key would otherwise be ignored."""
    if not isinstance(data, dict):
        raise _Invalid(f"{name} must be an object, not {_show(data)}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _Invalid(f"{name} has unknown key {_show(unknown[0])}")
    return data


def _is_int(value: Any) -> bool:
    # bool is a subclass of int, and True is not an image height.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _positive_int(value: Any, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise _Invalid(f"{name} must be a positive integer, not {_show(value)}")
    return int(value)


def _choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    # Same type as well as equal: 3.0 == 3 and True == 1 in Python, but neither is a channel count.
    if not any(type(value) is type(c) and value == c for c in choices):
        raise _Invalid(f"{name} must be one of {', '.join(map(str, choices))}, not {_show(value)}")
    return value


def _labels(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _Invalid(f"labels must be a non-empty list of names, not {_show(value)}")
    for label in value:
        if not isinstance(label, str) or not label:
            raise _Invalid(f"every label must be a non-empty string, not {_show(label)}")
    seen: set[str] = set()
    for label in value:
        if label in seen:
            raise _Invalid(f"label {_show(label)} is listed twice (each class needs its own name)")
        seen.add(label)
    return list(value)


def _numbers(value: Any, name: str, channels: int) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) not in (1, channels) or not all(_is_number(v) for v in value):
        raise _Invalid(f"preprocessing.{name} must be a list of 1 or {channels} finite numbers, not {_show(value)}")
    return tuple(float(v) for v in value)


def _preprocessing(value: Any) -> Preprocessing:
    data = _only_keys(value, _PREPROCESSING_KEYS, "preprocessing")
    height = _positive_int(_field(data, "height", "preprocessing."), "preprocessing.height")
    width = _positive_int(_field(data, "width", "preprocessing."), "preprocessing.width")
    channels = _choice(_field(data, "channels", "preprocessing."), "preprocessing.channels", (1, 3))
    resize = _choice(_field(data, "resize", "preprocessing."), "preprocessing.resize", RESIZE_FILTERS)
    mean = _numbers(_field(data, "mean", "preprocessing."), "mean", channels)
    std = _numbers(_field(data, "std", "preprocessing."), "std", channels)
    if any(s <= 0 for s in std):
        raise _Invalid(f"preprocessing.std must be positive, not {list(std)}")
    bgr = _choice(data.get("bgr", False), "preprocessing.bgr", (False, True))
    layout = _choice(data.get("layout", "NHWC"), "preprocessing.layout", ("NHWC", "NCHW"))
    try:
        return Preprocessing(height, width, channels, resize, mean, std, bgr=bgr, layout=layout)
    except ValueError as exc:  # what only the combination rules out (BGR of one channel)
        raise _Invalid(f"preprocessing: {exc}") from None


def _input_shape(value: Any) -> list[int]:
    # The batch may be -1 (a Keras model's, any batch); every other dimension is a size.
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 8
        or not all(_is_int(d) and (d >= 1 or (i == 0 and d == -1)) for i, d in enumerate(value))
    ):
        raise _Invalid(f"input_shape must be a list of positive integers (batch first), not {_show(value)}")
    return list(value)


def _quant_params(value: Any, name: str) -> QuantParams:
    data = _only_keys(value, _QUANT_KEYS, name)
    dtype = _choice(_field(data, "dtype", f"{name}."), f"{name}.dtype", IO_DTYPES)
    scale = _field(data, "scale", f"{name}.")
    if not _is_number(scale) or scale < 0:
        raise _Invalid(f"{name}.scale must be a finite number >= 0, not {_show(scale)}")
    zero_point = _field(data, "zero_point", f"{name}.")
    kind = np.dtype(dtype)
    low, high = (np.iinfo(kind).min, np.iinfo(kind).max) if kind.kind in "iu" else (-(2**31), 2**31 - 1)
    if not _is_int(zero_point) or not low <= zero_point <= high:
        raise _Invalid(f"{name}.zero_point must be an integer in {low}..{high} for {dtype}, not {_show(zero_point)}")
    return QuantParams(dtype, float(scale), int(zero_point))


def _sha256(value: Any) -> str:
    # Empty in a Keras archive's metadata; anything else must be a sha256, or it vouches for nothing.
    if not isinstance(value, str) or (value and not _SHA256.fullmatch(value)):
        raise _Invalid(f"model_sha256 must be 64 lowercase hex digits, not {_show(value)}")
    return value


# --- reading JSON that may be hostile ----------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# What each byte does to the nesting depth: +1 for [ and {, -1 for ] and }, 0 for anything else.
_NESTING = np.zeros(256, dtype=np.int8)
_NESTING[list(b"[{")] = 1
_NESTING[list(b"]}")] = -1


def load_metadata_json(content: bytes, *, source: Path, fix: str) -> Any:
    """Parse metadata JSON that may come from anywhere: bounded in size, depth and number length.

    Raises:
        ModelFormatError: too large, not JSON (NaN and Infinity are not JSON), nested too deep, or an integer too
            long.
    """
    if len(content) > MAX_METADATA_BYTES:
        raise _too_large(source, len(content), fix)
    if _depth(content) > MAX_METADATA_DEPTH:
        raise ModelFormatError(
            f"{source} nests JSON more than {MAX_METADATA_DEPTH} levels deep, which edgecnn metadata never does: {fix}"
        )
    try:
        return json.loads(content, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except _Invalid as exc:
        raise ModelFormatError(f"{source} is not valid edgecnn metadata ({exc}): {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{source} is not valid JSON ({exc}): {fix}") from None
    except (RecursionError, ValueError) as exc:  # a depth or number the checks above did not foresee
        raise ModelFormatError(f"{source} is not valid JSON ({type(exc).__name__}): {fix}") from None


def _too_large(source: Path, size: int, fix: str) -> ModelFormatError:
    return ModelFormatError(
        f"{source} is {size} bytes, more than the {MAX_METADATA_BYTES // (1024 * 1024)} MB edgecnn metadata can be: "
        f"{fix}"
    )


def _depth(content: bytes) -> int:
    """How deep JSON arrays and objects nest in ``content``, counted before parsing (the parser recurses)."""
    # Brackets inside strings do not count: blank the strings out first.
    structure = np.frombuffer(_JSON_STRING.sub(b'""', content), dtype=np.uint8)
    if structure.size == 0:
        return 0
    return int(np.cumsum(_NESTING[structure], dtype=np.int32).max())


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Invalid(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise _Invalid(f"a number out of range ({text[:20]})")
    return value


def _refuse_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not a JSON number")


def _parse_info(content: bytes, source: Path, fix: str) -> ModelInfo:
    return parse_metadata(load_metadata_json(content, source=source, fix=fix), source=source, fix=fix)


# --- the metadata against the model ------------------------------------------------------------------------------

_SCALE_TOLERANCE = 1e-6
"""Relative: a scale written through float64 JSON and read back from a float32 field may differ in the last bits."""


def check_model_io(info: ModelInfo, graph: ModelGraph, *, model: str) -> None:
    """The one check that metadata describes the graph it sits beside: one image input and one score output, the
    input's shape (the batch may differ where the graph's is dynamic) and the preprocessing's image shape, both
    tensors' dtypes, scales and zero points, and one label per score.

    Args:
        info: the sidecar's metadata.
        graph: the model's graph (:func:`edgecnn.model.graph.read_graph`).
        model: the model's name, for messages.

    Raises:
        ModelFormatError: naming what the model has and what the sidecar says.
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelFormatError(
            f"{model} has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs, but its sidecar describes an "
            "image classifier (one image input, one score output): the sidecar belongs to another model"
        )
    inp, out = graph.inputs[0], graph.outputs[0]
    if not _same_shape(info.input_shape, inp) or info.input.dtype != inp.dtype:
        raise ModelFormatError(
            f"input of {model} is {inp.dtype} {list(inp.shape)} but its sidecar says {info.input.dtype} "
            f"{list(info.input_shape)}: the sidecar belongs to another model; re-run edgecnn convert"
        )
    image = tuple(inp.shape[1:])
    if info.preprocessing.shape != image:
        spec = info.preprocessing
        raise ModelFormatError(
            f"the sidecar of {model} preprocesses images to {spec.height}x{spec.width}x{spec.channels} "
            f"({spec.layout} {list(spec.shape)}) but the model's input takes {list(image)} per image: "
            "the sidecar belongs to another model; re-run edgecnn convert"
        )
    _check_quantization("input", info.input, inp, model)
    _check_quantization("output", info.output, out, model)
    scores = _scores(out)
    if scores != len(info.labels):
        raise ModelFormatError(
            f"{model} outputs {scores} scores but its sidecar lists {len(info.labels)} labels: "
            "the sidecar belongs to another model; re-run edgecnn convert"
        )


def _same_shape(shape: Sequence[int], tensor: TensorSpec) -> bool:
    """The sidecar's input shape is the tensor's; its batch may differ only where the graph's batch is dynamic."""
    if len(shape) != len(tensor.shape) or not shape:
        return False
    dynamic_batch = bool(tensor.signature) and tensor.signature[0] < 0
    return list(shape[1:]) == list(tensor.shape[1:]) and (dynamic_batch or shape[0] == tensor.shape[0])


def _check_quantization(name: str, params: QuantParams, tensor: TensorSpec, model: str) -> None:
    same_scale = math.isclose(params.scale, tensor.scale, rel_tol=_SCALE_TOLERANCE, abs_tol=0.0)
    if params.dtype != tensor.dtype or not same_scale or params.zero_point != tensor.zero_point:
        raise ModelFormatError(
            f"{name} of {model} is {tensor.dtype} scale {tensor.scale:.9g} zero point {tensor.zero_point} but its "
            f"sidecar says {params.dtype} scale {params.scale:.9g} zero point {params.zero_point}: the sidecar "
            "belongs to another model; re-run edgecnn convert"
        )


def _scores(output: TensorSpec) -> int:
    """How many scores one image gets: the output's size past the batch (``[1, classes]``, ``[classes]``...)."""
    count = 1
    for d in output.shape[1:] if len(output.shape) > 1 else output.shape:
        count *= max(int(d), 1)
    return count


def bundle_files(model_path: str | os.PathLike[str]) -> list[Path]:
    """The files a model is made of: a ``.tflite`` and its sidecar, or the ``.keras`` archive alone."""
    model = Path(model_path)
    return [model, sidecar_path(model)] if model.suffix.lower() == ".tflite" else [model]


def check_bundle_output(out: str | os.PathLike[str], *, inputs: Sequence[str | os.PathLike[str] | None] = ()) -> Path:
    """Check, before any work, that a ``.tflite`` bundle can be written at ``out``: the model and its sidecar.

    Raises:
        UsageError: not a ``.tflite`` path, a folder (the model's path or its sidecar's), a folder that cannot be
            made, or a file that would overwrite one of ``inputs`` (or lie inside an input folder).
    """
    path = check_output_path(out, suffixes=(".tflite",))
    side = sidecar_path(path)
    if side.is_dir():
        raise UsageError(
            f"output {path} needs its sidecar at {side}, which is a folder: move the folder or choose another --out"
        )
    refuse_inputs([path, side], inputs)
    return path


_CONVERT_FIX = "re-run edgecnn convert to regenerate it"
_TRAIN_FIX = "retrain the model with edgecnn train"


def check_model_file(path: str | os.PathLike[str], *, suffixes: tuple[str, ...]) -> Path:
    """Check that a model path exists, is a file and has one of ``suffixes``."""
    model = Path(path)
    if not model.exists():
        raise ModelFormatError(f"model {model} does not exist: check the path")
    if not model.is_file():
        raise ModelFormatError(f"model {model} is not a file")
    if model.suffix.lower() not in suffixes:
        raise ModelFormatError(f"model {model} must be a {' or '.join(suffixes)} file")
    return model


def read_tflite_info(model_path: str | os.PathLike[str]) -> ModelInfo:
    """Read and verify the sidecar of a ``.tflite`` model.

    Raises:
        ModelFormatError: the sidecar is missing or invalid, or was written for other model bytes.
    """
    info = sidecar_info(model_path)
    if info is None:
        side = sidecar_path(model_path)
        raise ModelFormatError(
            f"{model_path} has no sidecar {side.name} (labels and preprocessing): give them with --labels and "
            "--input-range (or --mean/--std), or convert the model with edgecnn convert, which writes both"
        )
    return info


def sidecar_info(model_path: str | os.PathLike[str]) -> ModelInfo | None:
    """Read and verify the sidecar of a ``.tflite`` model; None when it has none (a model from elsewhere).

    Verified means: a sidecar of bounded size (:data:`MAX_METADATA_BYTES`) that passes :func:`parse_metadata`,
    whose ``model_sha256`` is the model's, and that describes the model's graph (:func:`check_model_io`). A
    sidecar whose sha256 was updated to match other bytes is still refused if its fields contradict the model.

    Raises:
        ModelFormatError: the model is missing or unreadable, or the sidecar is invalid, was written for other model
            bytes, or contradicts the model.
    """
    model = check_model_file(model_path, suffixes=(".tflite",))
    side = sidecar_path(model)
    if not side.is_file():
        return None
    info = _parse_info(_read_sidecar(side), side, _CONVERT_FIX)
    actual = sha256_file(model)
    if info.model_sha256 != actual:
        raise ModelFormatError(
            f"{side.name} was written for another model (sha256 {info.model_sha256[:12]}..., "
            f"{model.name} is {actual[:12]}...): re-run edgecnn convert to regenerate both"
        )
    check_model_io(info, read_graph(model), model=model.name)
    return info


def _read_sidecar(side: Path) -> bytes:
    """The sidecar's bytes, refused unread when larger than metadata can be."""
    try:
        size = side.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise _too_large(side, size, _CONVERT_FIX)
        with open(side, "rb") as f:
            # Read one byte past the limit: a file that grew since stat() is still caught.
            return f.read(MAX_METADATA_BYTES + 1)
    except OSError as exc:
        raise ModelFormatError(f"cannot read {side} ({exc.strerror or exc}): check its permissions") from None


def write_tflite(model_path: str | os.PathLike[str], flatbuffer: bytes, info: ModelInfo) -> ModelInfo:
    """Write a ``.tflite`` model and its sidecar: both, or neither (an existing pair is then left as it was).

    Both are written to temporary files in their folder first, then renamed over the final names together
    (:func:`edgecnn.runtime.files.atomic_paths`); the sidecar records the model's sha256.

    Returns:
        The metadata as written (with ``model_sha256`` filled in).

    Raises:
        UsageError: the model's or the sidecar's path is a folder.
    """
    written = replace(info, model_sha256=sha256_bytes(flatbuffer))
    # Model first, sidecar second, in the renames too: a sidecar never describes bytes that are not on disk.
    with atomic_paths(model_path, sidecar_path(model_path)) as (model_tmp, sidecar_tmp):
        model_tmp.write_bytes(flatbuffer)
        sidecar_tmp.write_text(dumps_json(written.to_dict()))
    return written


def has_edgecnn_metadata(model_path: str | os.PathLike[str]) -> bool:
    """A ``.keras`` written by ``edgecnn train`` (it carries its labels and preprocessing), as opposed to any other
    Keras model; False for anything that is not a readable zip archive (the Keras loader then says what it is)."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            return KERAS_ENTRY in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def read_keras_info(model_path: str | os.PathLike[str]) -> ModelInfo:
    """Read the metadata stored inside a ``.keras`` archive by ``edgecnn train``.

    Raises:
        ModelFormatError: not a ``.keras`` archive, or one without edgecnn metadata.
    """
    model = check_model_file(model_path, suffixes=(".keras",))
    if not zipfile.is_zipfile(model):
        raise ModelFormatError(f"{model} is not a Keras model (not a .keras zip archive): check the file")
    with zipfile.ZipFile(model) as archive:
        if KERAS_ENTRY not in archive.namelist():
            raise ModelFormatError(
                f"{model} has no edgecnn metadata (labels, preprocessing): train it with edgecnn train"
            )
        entry = archive.getinfo(KERAS_ENTRY)
        if entry.file_size > MAX_METADATA_BYTES:  # as the zip declares it; a liar is cut at the limit below
            raise _too_large(model, entry.file_size, _TRAIN_FIX)
        try:
            with archive.open(entry) as f:
                content = f.read(MAX_METADATA_BYTES + 1)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a bad CRC, a truncated entry
            raise ModelFormatError(f"{model} has a corrupt {KERAS_ENTRY} ({exc}): {_TRAIN_FIX}") from None
    info = _parse_info(content, model, _TRAIN_FIX)
    _check_input_shape_matches(info, source=model)
    return info


def _check_input_shape_matches(info: ModelInfo, *, source: Path) -> None:
    """A Keras model's metadata has no graph to be checked against: its two shapes must at least agree."""
    if tuple(info.input_shape[1:]) != info.preprocessing.shape:
        raise ModelFormatError(
            f"{source} has invalid edgecnn metadata (input_shape {info.input_shape} but preprocessing makes "
            f"{list(info.preprocessing.shape)} per image): {_TRAIN_FIX}"
        )


def embed_keras_info(archive_path: str | os.PathLike[str], info: ModelInfo) -> None:
    """Add the metadata to a ``.keras`` archive written by Keras (Keras ignores unknown entries)."""
    with zipfile.ZipFile(archive_path, "a") as archive:
        archive.writestr(KERAS_ENTRY, dumps_json(info.to_dict()))
