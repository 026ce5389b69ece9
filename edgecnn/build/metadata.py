"""Embed the standard TFLite Metadata in a classifier: the layout tflite-support writes and MediaPipe Tasks reads.

:func:`with_metadata` returns the model with

- a ``ModelMetadata`` flatbuffer (identifier ``M001``, one ``SubGraphMetadata``) in a buffer named by the
  ``Model.metadata`` entry ``TFLITE_METADATA``, replacing any earlier one;
- the labels as ``labels.txt`` in a zip appended after the model's flatbuffer. Members are stored, not deflated:
  MediaPipe hands out each associated file as a view into the model's bytes and refuses compressed ones.

What goes where (and how :func:`edgecnn.model.metadata.read_metadata` reads it back) is described in
:mod:`edgecnn.model.metadata`. Both flatbuffers are built with code generated from the official schemas: the model's
object API from ``ai_edge_litert.schema_py_generated``, the metadata's from
:mod:`edgecnn.model.metadata_schema_py_generated` (flatc output, see ``tools/generate_metadata_schema.sh``).

The result is byte-deterministic (same model and metadata, same bytes) and embedding again gives the same bytes.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from collections.abc import Sequence

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model import metadata_schema_py_generated as meta_fb
from edgecnn.model.flatbuffer import FlatModel, TensorRecord, read_flatbuffer
from edgecnn.model.metadata import COLOR_SPACES, IDENTIFIER, LABELS_FILE, METADATA_NAME, SCORES, ModelMetadata

MIN_PARSER_VERSION = "1.0.0"
"""The metadata parser version these fields need. tflite-support's populator computes it from the fields used
(``GetMinimumMetadataParserVersion``): everything written here dates from schema 1.0.0 (nothing from the later
tokenizer, tensor-group, audio, file-version or custom-metadata additions), which gives 1.0.0."""

_MODEL_IDENTIFIER = b"TFL3"
_FIX = "re-run edgecnn convert"
# TFLite's schema asks for buffers aligned to 16 bytes (``force_align: 16``) so that readers may use weights where they
# lie (TFLite Micro does); the generated Python object API aligns them to 1 byte only, so they are aligned here.
_BUFFER_ALIGNMENT = 16
# Fixed zip entry fields, so that the archive's bytes depend on its content only.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_UNIX = 3
_ZIP_MODE = 0o100644 << 16  # a regular file, rw-r--r--
_PIXEL_MIN, _PIXEL_MAX = 0.0, 255.0
_UINT8_MIN, _UINT8_MAX = 0.0, 255.0
_COLOR_SPACE_CHANNELS = {"RGB": 3, "GRAYSCALE": 1}
UNKNOWN_COLOR_SPACE = "UNKNOWN"
"""The schema's word for channels that are neither RGB nor grayscale (a BGR model): readers then take no side."""
_SCORE_DESCRIPTIONS = {
    "probability": "Probabilities of the {n} labels respectively.",
    "logit": "Logits (unnormalized scores; a softmax gives probabilities) of the {n} labels respectively.",
    None: "Scores of the {n} labels respectively.",
}


def with_metadata(model: bytes, meta: ModelMetadata, *, input_index: int = 0, output_index: int = 0) -> bytes:
    """Return ``model`` with ``meta`` embedded as standard TFLite Metadata (and its labels as ``labels.txt``).

    Args:
        model: a ``.tflite`` file's bytes; metadata and associated files it already has are replaced.
        meta: what to embed. ``labels`` (one per output class) become the output's ``TENSOR_AXIS_LABELS`` file;
            ``mean``/``std`` (pixel scale 0..255; one value each, or one per channel each) the input's
            normalization, stored as float32 (MediaPipe Tasks refuses per-channel values that differ);
            ``color_space`` the input's ``ImageProperties`` (from its channels when None); ``score`` the output's
            name (``probability``, ``logit``, or ``score`` when None).
        input_index: which model input is the image.
        output_index: which model output holds the class scores.

    Returns:
        The new model bytes: the flatbuffer, then (when there are labels) the zip of associated files.

    Raises:
        ModelFormatError: ``model`` is not a readable TFLite model.
        UsageError: ``meta`` does not fit the model (empty labels, or not one per class; a label that is empty or
            holds a line break; ``mean``/``std`` of another length than 1 or the channels, or of different lengths,
            or a std that is not positive; an unknown color space or score; a color space that contradicts the
            channels), or an index is out of range, or the model keeps its weights outside the flatbuffer (over
            2 GB).
    """
    flat = read_flatbuffer(model)  # bounds-checked, so that a corrupt model is a ModelFormatError, not a crash
    image = _pick(flat.inputs, input_index, "input")
    scores = _pick(flat.outputs, output_index, "output")
    _check(meta, image, scores)
    metadata = _metadata_flatbuffer(meta, flat, input_index, output_index)
    flatbuffer = _model_with_buffer(model, metadata)
    files = {} if meta.labels is None else {LABELS_FILE: ("\n".join(meta.labels) + "\n").encode("utf-8")}
    return _append_zip(flatbuffer, files)


def _pick(tensors: list[TensorRecord], index: int, what: str) -> TensorRecord:
    if not 0 <= index < len(tensors):
        raise UsageError(f"{what} index {index} is out of range: the model has {len(tensors)} {what}s")
    return tensors[index]


def _channels(image: TensorRecord) -> int | None:
    """The channels of an NHWC image input, None when the input is not 4-D."""
    return image.shape[-1] if len(image.shape) == 4 else None


def _check(meta: ModelMetadata, image: TensorRecord, scores: TensorRecord) -> None:
    """Raise UsageError when ``meta`` cannot describe this input and output."""
    if meta.labels is not None:
        _check_labels(meta.labels, scores)
    channels = _channels(image)
    if (meta.mean is None) != (meta.std is None):
        raise UsageError("give both mean and std for the input's normalization, or neither")
    if meta.mean is not None and meta.std is not None:
        wanted = {1, channels} if channels else {1}
        for name, values in (("mean", meta.mean), ("std", meta.std)):
            if len(values) not in wanted:
                raise UsageError(
                    f"normalization {name} has {len(values)} values: give 1, or one per channel "
                    f"({channels} for input {image.name!r} of shape {list(image.shape)})"
                )
            if not all(math.isfinite(v) for v in values):
                raise UsageError(f"normalization {name} {list(values)} must be finite numbers")
        if len(meta.mean) != len(meta.std):
            raise UsageError(
                f"normalization mean and std have {len(meta.mean)} and {len(meta.std)} values: give as many"
            )
        if any(v <= 0 for v in meta.std):
            raise UsageError(f"normalization std {list(meta.std)} must be positive: pixels are divided by it")
    if meta.color_space is not None and meta.color_space != UNKNOWN_COLOR_SPACE:
        if meta.color_space not in COLOR_SPACES:
            raise UsageError(f"color space {meta.color_space!r} is not one of {', '.join(COLOR_SPACES)}")
        if channels is not None and channels != _COLOR_SPACE_CHANNELS[meta.color_space]:
            raise UsageError(f"color space {meta.color_space} does not fit input {image.name!r} of {channels} channels")
    if meta.score is not None and meta.score not in SCORES:
        raise UsageError(f"score {meta.score!r} is not one of {', '.join(SCORES)}")


def _check_labels(labels: Sequence[str], scores: TensorRecord) -> None:
    if not labels:
        raise UsageError("the labels are empty: give one label per class, or none")
    for index, label in enumerate(labels):
        # Readers split the labels file on line breaks and drop a last empty line: such labels would shift.
        if not label.strip() or "\n" in label or "\r" in label:
            raise UsageError(f"label {index} ({label!r}) is empty or holds a line break")
    classes = scores.shape[-1] if scores.shape else 1
    if len(labels) != classes:
        raise UsageError(
            f"{len(labels)} labels for output {scores.name!r} of shape {list(scores.shape)}: "
            f"give one per class ({classes})"
        )


def _metadata_flatbuffer(meta: ModelMetadata, flat: FlatModel, input_index: int, output_index: int) -> bytes:
    """The ``ModelMetadata`` flatbuffer: model fields, and one TensorMetadata per model input and output."""
    model = meta_fb.ModelMetadataT()
    model.name = meta.name or None  # an empty field is left out, and reads back as ""
    model.description = meta.description or None
    model.version = meta.version or None
    model.author = meta.author or None
    model.license = meta.license or None
    model.minParserVersion = MIN_PARSER_VERSION
    subgraph = meta_fb.SubGraphMetadataT()
    # tflite-support's populator requires one TensorMetadata per model input and output, in the model's order.
    subgraph.inputTensorMetadata = [
        _image_metadata(meta, t) if i == input_index else _plain_metadata(t) for i, t in enumerate(flat.inputs)
    ]
    subgraph.outputTensorMetadata = [
        _scores_metadata(meta, t) if i == output_index else _plain_metadata(t) for i, t in enumerate(flat.outputs)
    ]
    model.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def _plain_metadata(tensor: TensorRecord) -> meta_fb.TensorMetadataT:
    """A placeholder for an input or output this metadata says nothing about (tflite-support writes the same)."""
    entry = meta_fb.TensorMetadataT()
    entry.name = tensor.name or None
    entry.content = meta_fb.ContentT()
    entry.content.contentPropertiesType = meta_fb.ContentProperties.FeatureProperties
    entry.content.contentProperties = meta_fb.FeaturePropertiesT()
    return entry


def _image_metadata(meta: ModelMetadata, image: TensorRecord) -> meta_fb.TensorMetadataT:
    """The image input: ImageProperties, the normalization, and its value range (as tflite-support gives it)."""
    entry = meta_fb.TensorMetadataT()
    entry.name = "image"
    entry.description = "Input image to be classified."
    properties = meta_fb.ImagePropertiesT()
    color_space = meta.color_space or {3: "RGB", 1: "GRAYSCALE"}.get(_channels(image) or 0)
    properties.colorSpace = getattr(meta_fb.ColorSpaceType, color_space or "UNKNOWN")
    entry.content = meta_fb.ContentT()
    entry.content.contentPropertiesType = meta_fb.ContentProperties.ImageProperties
    entry.content.contentProperties = properties
    if meta.mean is not None and meta.std is not None:
        mean, std = [float(v) for v in meta.mean], [float(v) for v in meta.std]  # stored as float32
        options = meta_fb.NormalizationOptionsT()
        options.mean, options.std = mean, std
        unit = meta_fb.ProcessUnitT()
        unit.optionsType = meta_fb.ProcessUnitOptions.NormalizationOptions
        unit.options = options
        entry.processUnits = [unit]
        if image.dtype == "float32":  # the range the normalized pixels span, as tflite-support's writer states it
            low = [(_PIXEL_MIN - m) / s for m, s in zip(mean, std)]
            high = [(_PIXEL_MAX - m) / s for m, s in zip(mean, std)]
            entry.stats = _stats(low, high)
    if image.dtype == "uint8":
        entry.stats = _stats([_UINT8_MIN], [_UINT8_MAX])
    return entry


def _scores_metadata(meta: ModelMetadata, scores: TensorRecord) -> meta_fb.TensorMetadataT:
    """The class scores: named for what they are, with the labels file and, for probabilities, their range."""
    entry = meta_fb.TensorMetadataT()
    entry.name = meta.score or "score"
    classes = scores.shape[-1] if scores.shape else 1
    entry.description = _SCORE_DESCRIPTIONS[meta.score].format(n=classes)
    entry.content = meta_fb.ContentT()
    entry.content.contentPropertiesType = meta_fb.ContentProperties.FeatureProperties
    entry.content.contentProperties = meta_fb.FeaturePropertiesT()
    # As tflite-support's classifier writer: float probabilities lie in 0..1, uint8 outputs in 0..255.
    if scores.dtype == "float32" and meta.score == "probability":
        entry.stats = _stats([0.0], [1.0])
    elif scores.dtype == "uint8":
        entry.stats = _stats([_UINT8_MIN], [_UINT8_MAX])
    if meta.labels is not None:
        labels = meta_fb.AssociatedFileT()
        labels.name = LABELS_FILE
        labels.description = "Labels for the classes the model can recognize, one a line, in output order."
        labels.type = meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS
        entry.associatedFiles = [labels]
    return entry


def _stats(minimum: list[float], maximum: list[float]) -> meta_fb.StatsT:
    stats = meta_fb.StatsT()
    stats.min, stats.max = minimum, maximum
    return stats


class _AlignedBufferT(schema.BufferT):
    """A model buffer that packs its data 16-byte aligned, as the schema asks (``force_align: 16``)."""

    def __init__(self, data: bytes | None, offset: int = 0, size: int = 0) -> None:
        super().__init__(data=data, offset=offset, size=size)

    def Pack(self, builder: flatbuffers.Builder) -> int:  # the generated object API's name
        data = None
        if self.data is not None:
            raw = self.data
            payload = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes) else np.asarray(raw, np.uint8)
            builder.Prep(_BUFFER_ALIGNMENT, len(payload))  # the bytes written next start on a 16-byte boundary
            data = builder.CreateNumpyVector(payload)
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _model_with_buffer(model: bytes, metadata: bytes) -> bytes:
    """The model's flatbuffer (without anything appended) with ``metadata`` as its one TFLITE_METADATA buffer."""
    try:
        root = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    except (IndexError, struct.error, ValueError, TypeError) as exc:  # the generated reader checks no offset
        raise ModelFormatError(f"the model is not a valid TFLite model ({type(exc).__name__}: {exc}): {_FIX}") from None
    buffers = root.buffers or []
    if any(b.offset > 1 for b in buffers):  # data after the flatbuffer, which repacking would orphan
        raise UsageError("the model keeps its weights outside the flatbuffer (over 2 GB): metadata cannot be added")
    entries = [m for m in root.metadata or [] if _name(m.name) == METADATA_NAME]
    used = _tensor_buffers(root)
    # Reuse the earlier metadata's buffer where nothing else uses it, so that embedding again gives the same bytes.
    reusable = [m.buffer for m in entries if 0 < m.buffer < len(buffers) and m.buffer not in used]
    index = reusable[0] if reusable else len(buffers)
    for stale in reusable[1:]:
        buffers[stale] = schema.BufferT()  # another copy of old metadata: emptied (renumbering would move tensors)
    aligned = [_AlignedBufferT(b.data, b.offset, b.size) for b in buffers]
    if index == len(aligned):
        aligned.append(_AlignedBufferT(metadata))
    else:
        aligned[index] = _AlignedBufferT(metadata)
    root.buffers = aligned
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, index
    kept = [m for m in root.metadata or [] if _name(m.name) != METADATA_NAME]
    root.metadata = [*kept, entry]
    builder = flatbuffers.Builder(0)
    builder.Finish(root.Pack(builder), file_identifier=_MODEL_IDENTIFIER)
    return bytes(builder.Output())


def _name(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value or ""


def _tensor_buffers(root: schema.ModelT) -> set[int]:
    """The buffers some tensor of some subgraph stores its values in."""
    return {int(t.buffer) for g in root.subgraphs or [] for t in g.tensors or [] if t.buffer}


def _append_zip(flatbuffer: bytes, files: dict[str, bytes]) -> bytes:
    """``flatbuffer`` followed by a deterministic zip of ``files`` (sorted, stored, fixed dates); alone without files.

    tflite-support appends with ``zipfile`` in append mode, so the archive's offsets count from the start of the
    model file; these do too (readers that find the archive from the end of the file accept either).
    """
    if not files:
        return flatbuffer
    out = io.BytesIO()
    out.write(flatbuffer)  # mode "w" writes from here on without reading what is before
    with zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = _ZIP_UNIX
            info.external_attr = _ZIP_MODE
            archive.writestr(info, files[name])
    return out.getvalue()
