"""The standard TFLite Metadata of a model: what it is, its labels and how its input is normalized.

This is the metadata of tflite-support and MediaPipe Tasks (schema ``metadata_schema.fbs``, file identifier
``M001``). A model carries it in two places:

- a ``ModelMetadata`` flatbuffer in one of the model's buffers, named by the ``Model.metadata`` entry
  ``TFLITE_METADATA``;
- its associated files (the ``labels.txt`` of a classifier) in a zip archive appended after the model's
  flatbuffer, which the interpreter never reads and MediaPipe finds from the end of the file.

How edgecnn's classifiers use it (:func:`edgecnn.build.metadata.with_metadata` writes it so; models from elsewhere
read the same way):

- the input's ``TensorMetadata`` has ``ImageProperties`` content (its color space) and a ``NormalizationOptions``
  process unit: ``value = (pixel - mean) / std`` per channel, the pixel on its raw 0..255 scale (the metadata's
  convention, whatever the model's own preprocessing writes it as). The schema allows one value per channel, but
  MediaPipe Tasks (checked with mediapipe 1.2.3) refuses per-channel values that differ: one value for all channels
  is what every reader takes;
- the output's ``TensorMetadata`` carries the labels as an associated file of type ``TENSOR_AXIS_LABELS`` (one
  label a line), and says what its scores are by its name, tflite-support's convention for classifiers:
  ``probability`` (what its image-classifier writer calls it) for probabilities, ``logit`` for unnormalized
  scores (``logits``, ``probabilities`` read the same); any other name leaves :attr:`ModelMetadata.score` unset.

The reader is edgecnn's bounds-checked flatbuffer reader (:mod:`edgecnn.model.flatbuffer`), not the module flatc
generates from the schema (``metadata_schema_py_generated``): that module needs the ``flatbuffers`` package, which
a device with only tflite-runtime lacks, and it trusts every offset (a negative one silently reads from the end of
the buffer). Every offset, length and size is checked here, and anything malformed (a corrupt buffer, a missing or
corrupt zip, a label file that is not UTF-8, absurd sizes) raises :class:`ModelFormatError`. Only the standard
library is needed.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from dataclasses import asdict, dataclass
from typing import Any

from edgecnn.errors import ModelFormatError
from edgecnn.model import flatbuffer

METADATA_NAME = "TFLITE_METADATA"
"""The ``Model.metadata`` entry whose buffer holds the TFLite Metadata (tflite-support's ``METADATA_FIELD_NAME``)."""

IDENTIFIER = b"M001"
"""The metadata flatbuffer's file identifier (``file_identifier`` of ``metadata_schema.fbs``)."""

LABELS_FILE = "labels.txt"
"""The name edgecnn gives the labels file in the appended zip."""

MAX_LABELS_BYTES = 4 * 1024 * 1024
"""The largest labels file read (4 MiB: 100,000 labels of 40 bytes fit)."""

MAX_LABELS = 100_000
"""The most labels read."""

SCORES = ("probability", "logit")
"""What an output's scores can be: probabilities (they sum to 1), or logits (a softmax gives probabilities)."""

COLOR_SPACES = ("RGB", "GRAYSCALE")
"""The color spaces an image input can declare."""

_WHERE = f"the model's {METADATA_NAME} buffer"
_FIX = "re-run edgecnn convert to write it again"

# Field slots of metadata_schema.fbs's tables, in declaration order (a union takes two: its type, then its value).
# tests/model/test_metadata.py checks them against tflite-support's own generated reader.
_MODEL_NAME, _MODEL_DESCRIPTION, _MODEL_VERSION, _MODEL_SUBGRAPHS, _MODEL_AUTHOR, _MODEL_LICENSE = 0, 1, 2, 3, 4, 5
_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 2, 3
_TENSOR_NAME, _TENSOR_CONTENT, _TENSOR_PROCESS_UNITS, _TENSOR_ASSOCIATED_FILES = 0, 3, 4, 6
_CONTENT_PROPERTIES_TYPE, _CONTENT_PROPERTIES = 0, 1
_IMAGE_COLOR_SPACE = 0
_UNIT_OPTIONS_TYPE, _UNIT_OPTIONS = 0, 1
_NORMALIZATION_MEAN, _NORMALIZATION_STD = 0, 1
_FILE_NAME, _FILE_TYPE = 0, 2

# Enum values of metadata_schema.fbs (the same test checks them against the generated module's).
_CONTENT_IMAGE = 2  # ContentProperties.ImageProperties
_UNIT_NORMALIZATION = 1  # ProcessUnitOptions.NormalizationOptions
_FILE_TENSOR_AXIS_LABELS = 2  # AssociatedFileType.TENSOR_AXIS_LABELS
_COLOR_SPACE_NAMES = {1: "RGB", 2: "GRAYSCALE"}  # ColorSpaceType; 0 is UNKNOWN

# A classifier has one input and one output; looking further than this many tensor entries for the image input and
# the labelled output only lets a hostile buffer make the reader slow.
_MAX_TENSORS = 64
# Normalization has one value, or one per channel.
_MAX_CHANNELS = 16
# An output tensor's name says what its scores are.
_SCORE_NAMES = {"probability": "probability", "probabilities": "probability", "logit": "logit", "logits": "logit"}

# What a damaged zip can make zipfile raise, besides its own BadZipFile (a bad header: struct.error, ValueError;
# a bad deflate stream: zlib.error; an encrypted member: RuntimeError; a member it cannot decompress:
# NotImplementedError; a truncated one: EOFError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    struct.error,
    zlib.error,
    ValueError,
    RuntimeError,
    NotImplementedError,
    EOFError,
    OSError,
)


@dataclass(frozen=True)
class ModelMetadata:
    """A classifier's TFLite Metadata, as edgecnn writes and reads it.

    Attributes:
        name / description / version / author / license: the model's own fields ("" when absent).
        labels: the class names, in output order (the output's ``TENSOR_AXIS_LABELS`` file), None without one.
        mean / std: the input's normalization, ``value = (pixel - mean) / std`` with pixels on the 0..255 scale;
            one value for all channels, or one per channel. None without a ``NormalizationOptions`` unit.
        color_space: the input image's color space (``RGB`` or ``GRAYSCALE``), None when not stated.
        score: what the output holds, ``probability`` or ``logit`` (see :data:`SCORES`); None when not stated.
    """

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    labels: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color_space: str | None = None
    score: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples as lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


class _MetadataFile(flatbuffer._File):
    """The bounds-checked flatbuffer reader, with errors that name the metadata rather than the model."""

    def error(self, problem: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where} is not valid TFLite Metadata ({problem}): {_FIX}")


def read_metadata(model: bytes) -> ModelMetadata | None:
    """Read the standard TFLite Metadata of a model, with the labels from its appended zip.

    Args:
        model: the whole ``.tflite`` file's bytes (the labels live in a zip after the flatbuffer).

    Returns:
        The metadata, or None when the model has no ``TFLITE_METADATA`` entry.

    Raises:
        ModelFormatError: the model is not a TFLite model; or its metadata buffer is not a TFLite Metadata
            flatbuffer (no ``M001`` identifier, an offset or length outside it, an impossible normalization); or the
            labels file it names is missing from the appended zip, the zip is damaged, or the file is not UTF-8
            text or is too large.
    """
    content = bytes(model)
    buffer = flatbuffer.metadata_buffers(content).get(METADATA_NAME)
    if buffer is None:
        return None
    if len(buffer) < 8 or buffer[4:8] != IDENTIFIER:
        what = "it is empty" if not buffer else f"no {IDENTIFIER.decode()} identifier at bytes 4-8"
        raise ModelFormatError(f"{_WHERE} is not TFLite Metadata ({what}): {_FIX}")
    file = _MetadataFile(buffer, _WHERE)
    root = file.table(file.follow(0, "the root offset"), "the metadata")
    image, output = _tensors(root)
    mean, std = _normalization(file, image)
    labels_file = _labels_file_name(output)
    return ModelMetadata(
        name=root.string(_MODEL_NAME, "name"),
        description=root.string(_MODEL_DESCRIPTION, "description"),
        version=root.string(_MODEL_VERSION, "version"),
        author=root.string(_MODEL_AUTHOR, "author"),
        license=root.string(_MODEL_LICENSE, "license"),
        labels=None if labels_file is None else _labels(content, labels_file),
        mean=mean,
        std=std,
        color_space=_color_space(image),
        score=None if output is None else _SCORE_NAMES.get(output.string(_TENSOR_NAME, "name").strip().lower()),
    )


def _tensors(root: flatbuffer._Table) -> tuple[flatbuffer._Table | None, flatbuffer._Table | None]:
    """The image input's and the labelled output's TensorMetadata of the main subgraph (None when absent).

    The image input is the first input with ``ImageProperties`` content; the labelled output the first output with
    a ``TENSOR_AXIS_LABELS`` file, else the first output.
    """
    subgraphs = root.tables(_MODEL_SUBGRAPHS, "subgraph metadata")
    if not len(subgraphs):
        return None, None
    subgraph = subgraphs[0]  # the schema: "The 0th is assumed to be the main subgraph"
    image = None
    for tensor in _first(subgraph.tables(_SUBGRAPH_INPUTS, "input tensor metadata")):
        content = tensor.table(_TENSOR_CONTENT, "content")
        if content is not None and content.scalar(_CONTENT_PROPERTIES_TYPE, "B", 0, "content type") == _CONTENT_IMAGE:
            image = tensor
            break
    outputs = list(_first(subgraph.tables(_SUBGRAPH_OUTPUTS, "output tensor metadata")))
    labelled = [t for t in outputs if _labels_file_name(t) is not None]
    return image, (labelled or outputs or [None])[0]


def _first(tables: flatbuffer._Tables) -> list[flatbuffer._Table]:
    return [tables[i] for i in range(min(len(tables), _MAX_TENSORS))]


def _color_space(image: flatbuffer._Table | None) -> str | None:
    if image is None:
        return None
    content = image.table(_TENSOR_CONTENT, "content")
    properties = None if content is None else content.table(_CONTENT_PROPERTIES, "image properties")
    if properties is None:
        return None
    return _COLOR_SPACE_NAMES.get(properties.scalar(_IMAGE_COLOR_SPACE, "b", 0, "color space"))


def _normalization(
    file: _MetadataFile, image: flatbuffer._Table | None
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The image input's first ``NormalizationOptions``: (mean, std), both None when it has none."""
    if image is None:
        return None, None
    for unit in _first(image.tables(_TENSOR_PROCESS_UNITS, "process unit")):
        if unit.scalar(_UNIT_OPTIONS_TYPE, "B", 0, "options type") != _UNIT_NORMALIZATION:
            continue
        options = unit.table(_UNIT_OPTIONS, "normalization options")
        if options is None:
            raise file.error("a normalization process unit has no options")
        mean = options.scalars(_NORMALIZATION_MEAN, "f", "mean")
        std = options.scalars(_NORMALIZATION_STD, "f", "std")
        # Whatever applies these divides by std for every channel: anything else cannot be a normalization.
        if not 1 <= len(mean) <= _MAX_CHANNELS or len(std) != len(mean):
            raise file.error(f"normalization mean and std have {len(mean)} and {len(std)} values")
        if not all(math.isfinite(v) for v in (*mean, *std)) or any(v <= 0 for v in std):
            raise file.error(f"normalization mean {list(mean)} / std {list(std)} are not finite with std > 0")
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return None, None


def _labels_file_name(tensor: flatbuffer._Table | None) -> str | None:
    """The name of the tensor's first ``TENSOR_AXIS_LABELS`` associated file, None when it has none."""
    if tensor is None:
        return None
    for associated in _first(tensor.tables(_TENSOR_ASSOCIATED_FILES, "associated file")):
        if associated.scalar(_FILE_TYPE, "b", 0, "type") == _FILE_TENSOR_AXIS_LABELS:
            return associated.string(_FILE_NAME, "name")
    return None


def _labels(content: bytes, name: str) -> tuple[str, ...]:
    """The labels in the associated file ``name`` of the zip appended to the model, one a line."""
    fix = "re-run edgecnn convert to embed the labels again"
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise ModelFormatError(
                    f"the model's metadata names the labels file {name!r}, but its appended zip has no such file: {fix}"
                ) from None
            # MediaPipe reads only stored members; deflated ones are common elsewhere. Other methods (bzip2, lzma)
            # would run decompressors whose errors are not the zip's, for files no TFLite tool writes.
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ModelFormatError(
                    f"the model's labels file {name!r} is compressed with zip method {info.compress_type}, which no "
                    f"TFLite tool writes (stored or deflated expected): {fix}"
                )
            if info.file_size > MAX_LABELS_BYTES:
                raise ModelFormatError(
                    f"the model's labels file {name!r} holds {info.file_size} bytes, more than the "
                    f"{MAX_LABELS_BYTES} edgecnn reads: {fix}"
                )
            with archive.open(info) as member:
                data = member.read(MAX_LABELS_BYTES + 1)  # never trust the declared size alone
    except _ZIP_ERRORS as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFormatError(
            f"the model's metadata names the labels file {name!r}, but the zip appended to the model cannot be "
            f"read ({problem}): {fix}"
        ) from None
    if len(data) > MAX_LABELS_BYTES:
        raise ModelFormatError(f"the model's labels file {name!r} is larger than {MAX_LABELS_BYTES} bytes: {fix}")
    return _split_labels(data, name, fix)


def _split_labels(data: bytes, name: str, fix: str) -> tuple[str, ...]:
    """One label a line, as MediaPipe splits them: a final newline ends the last label, it starts no empty one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(
            f"the model's labels file {name!r} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}): {fix}"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise ModelFormatError(f"the model's labels file {name!r} is empty: {fix}")
    if len(lines) > MAX_LABELS:
        raise ModelFormatError(f"the model's labels file {name!r} has {len(lines)} labels, over {MAX_LABELS}: {fix}")
    return tuple(line.removesuffix("\r") for line in lines)
