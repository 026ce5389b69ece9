"""What any ``.tflite`` file holds, read from the file alone: a text Netron.

``edgecnn inspect`` must describe a model edgecnn never saw: one from another converter, with several inputs and
outputs, without edgecnn's sidecar, on a machine with no interpreter. So everything here comes from the
flatbuffer itself, through the bounds-checked reader of :mod:`edgecnn.model.flatbuffer`: the file (size, SHA-256,
description, schema version), the inputs and outputs (shape, dtype, quantization per tensor or per channel), the
operators (count and versions per kind), the parameters and the multiply-accumulates per inference, and the
TFLite Metadata when the file carries some.

A file that is not a TFLite model (missing, a folder, truncated, another format) raises :class:`ModelFormatError`
or :class:`UsageError` with one line that says what is wrong, never a lower-level exception.

Figures are for the main subgraph (subgraph 0), the one the interpreter runs; control flow (``IF``, ``WHILE``)
keeps more subgraphs, which are counted but not described.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model import flatbuffer
from edgecnn.model.flatbuffer import FlatModel, TensorRecord, multiply_accumulates

# Field slots (schema.fbs, declaration order) of what FlatModel does not carry: the schema version, the
# quantization's scale count and axis, and the size of the buffers that hold constant values.
_MODEL_VERSION, _MODEL_SUBGRAPHS, _MODEL_BUFFERS = 0, 2, 4
_SUBGRAPH_TENSORS = 0
_TENSOR_BUFFER, _TENSOR_QUANTIZATION = 2, 4
_QUANT_SCALE, _QUANT_DIMENSION = 2, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2

_IDENTIFIER = b"TFL3"
_FIX = flatbuffer.FIX

# Constants of these dtypes are weights whatever their quantization; integer constants are weights only when
# quantized (int8 kernels, int32 biases), otherwise operands such as a reshape's new shape or a reduction's axes.
_FLOAT_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16"})

# The first bytes of formats people mistake for a .tflite, so the error can say what the file is instead.
_SIGNATURES = (
    (b"PK\x03\x04", "a zip archive (a .keras model, a PyTorch checkpoint?)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)"),
    (b"{", "a JSON file (an edgecnn sidecar?)"),
)


@dataclass(frozen=True)
class Quantization:
    """How a tensor's integers stand for real values (``real = scale * (q - zero_point)``).

    Attributes:
        per_channel: whether each slice along ``axis`` has its own scale (weights); else one scale for all.
        scale: the first (for per-tensor quantization, the only) scale.
        zero_point: the first zero point.
        scales: how many scales the tensor has.
        axis: the quantized dimension of a per-channel tensor; None for a per-tensor one.
    """

    per_channel: bool
    scale: float
    zero_point: int
    scales: int
    axis: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a scale that is not finite, which only a damaged file holds, as null: JSON has no NaN)."""
        return {
            "scheme": "per-channel" if self.per_channel else "per-tensor",
            "scale": self.scale if math.isfinite(self.scale) else None,
            "zero_point": self.zero_point,
            "scales": self.scales,
            "axis": self.axis,
        }


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output.

    Attributes:
        index: the tensor's index in the main subgraph.
        name: its name.
        shape: the static shape (1 where a dimension is only known at run time).
        signature: the shape signature, -1 where a dimension is dynamic.
        dtype: the lowercase TensorType name (``int8``, ``float32``...).
        quantization: its quantization, None when it holds plain values.
        layout: ``NHWC`` or ``NCHW`` for a 4-D tensor (a guess: see :func:`guess_layout`), else None.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    quantization: Quantization | None
    layout: str | None

    @property
    def dynamic(self) -> bool:
        """True when a dimension is only known at run time."""
        return any(d < 0 for d in self.signature)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "index": self.index,
            "name": self.name,
            "shape": list(self.shape),
            "signature": list(self.signature),
            "dynamic": self.dynamic,
            "dtype": self.dtype,
            "quantization": None if self.quantization is None else self.quantization.to_dict(),
            "layout": self.layout,
        }


@dataclass(frozen=True)
class OperatorKind:
    """All operators of one kind in the main subgraph.

    Attributes:
        name: the builtin name (``CONV_2D``...) or a custom operator's custom code.
        count: how many operators of this kind run per inference.
        versions: the operator versions the file asks for, ascending.
        custom: whether it is a custom operator (the runtime needs a kernel registered for it).
        macs: their multiply-accumulates per inference, together.
    """

    name: str
    count: int
    versions: tuple[int, ...]
    custom: bool
    macs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "count": self.count,
            "versions": list(self.versions),
            "custom": self.custom,
            "macs": self.macs,
        }


@dataclass(frozen=True)
class Parameters:
    """The model's weights: constant tensors of a float dtype, or quantized ones (kernels, biases).

    Attributes:
        values: how many weight values the constant tensors hold. TensorFlow's converter merges identical
            constants into one tensor and drops an all-zero bias, so this can be less than Keras's
            ``count_params()`` (two layers with the same weights, an untrained model).
        tensors: how many constant tensors hold them.
        bytes: what the file spends on them, each buffer counted once.
        dtypes: values per dtype, in dtype order.
        per_channel: how many of the tensors are quantized per channel (int8 convolution kernels usually are).
    """

    values: int
    tensors: int
    bytes: int
    dtypes: dict[str, int]
    per_channel: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "values": self.values,
            "tensors": self.tensors,
            "bytes": self.bytes,
            "dtypes": dict(self.dtypes),
            "per_channel": self.per_channel,
        }


@dataclass(frozen=True)
class Inspection:
    """Everything ``edgecnn inspect`` shows about one ``.tflite`` file.

    Attributes:
        path: the file.
        size_bytes / sha256: its size and SHA-256 (hex).
        description: the model's description string (the converter's, such as ``MLIR Converted.``).
        schema_version: the TFLite schema version the file was written with.
        subgraphs: how many subgraphs the file holds (the figures here are the main one's).
        inputs / outputs: the model's inputs and outputs, in the interpreter's order.
        layout: the layout guessed for the first 4-D input (the image), None when no input is 4-D.
        operators: one entry per operator kind, in order of first execution.
        parameters: the weights' count and size.
        macs: multiply-accumulates per inference (convolutions and fully connected layers).
        metadata: the TFLite Metadata (``ModelMetadata.to_dict()``), None when the file has none.
        metadata_error: why the file's metadata could not be read (the rest of the model still was), else None.
        sidecar: edgecnn's sidecar beside the file (same stem, ``.json``) when there is one; never required.
    """

    path: Path
    size_bytes: int
    sha256: str
    description: str
    schema_version: int
    subgraphs: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    layout: str | None
    operators: list[OperatorKind]
    parameters: Parameters
    macs: int
    metadata: dict[str, Any] | None
    metadata_error: str | None
    sidecar: Path | None

    @property
    def operator_count(self) -> int:
        """How many operators the main subgraph runs per inference."""
        return sum(kind.count for kind in self.operators)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, keys in a stable order."""
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "description": self.description,
            "schema_version": self.schema_version,
            "subgraphs": self.subgraphs,
            "sidecar": None if self.sidecar is None else str(self.sidecar),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "layout": self.layout,
            "operators": [op.to_dict() for op in self.operators],
            "operator_count": self.operator_count,
            "parameters": self.parameters.to_dict(),
            "macs": self.macs,
            "metadata": self.metadata,
            "metadata_error": self.metadata_error,
        }

    def messages(self) -> list[str]:
        """Nothing to add on stderr: an inspection has no verdict and says everything in its output."""
        return []


def guess_layout(shape: Sequence[int]) -> str | None:
    """Guess whether a 4-D image tensor is NHWC or NCHW.

    ``[1, C, H, W]`` with C of 1 or 3 and a last dimension that is not is NCHW (a model exported from PyTorch);
    anything else 4-D is NHWC, TFLite's own layout.

    Returns:
        ``NHWC``, ``NCHW``, or None when the tensor is not 4-D.
    """
    if len(shape) != 4:
        return None
    return "NCHW" if shape[1] in (1, 3) and shape[3] not in (1, 3) else "NHWC"


class _File(flatbuffer._File):
    """The flatbuffer reader, with an error that fits any model: inspect reads files edgecnn did not convert, so
    "re-run edgecnn convert" would be the wrong advice."""

    def error(self, problem: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where} is not a valid TFLite model ({problem}): {_FIX}")


def _what_it_is(content: bytes) -> str:
    """What a file that is not a TFLite model seems to be, for the error message."""
    if not content:
        return "the file is empty"
    if len(content) < 8:
        return f"only {len(content)} bytes"
    for magic, what in _SIGNATURES:
        if content.startswith(magic):
            return f"it looks like {what}"
    return f"no {_IDENTIFIER.decode()} identifier at bytes 4-8"


def _read_file(path: Path) -> bytes:
    """The file's bytes, once it is known to be a readable regular file that starts like a TFLite model."""
    if not path.exists():
        raise ModelFormatError(f"{path} does not exist: check the path")
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a model: give the path of a .tflite file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise UsageError(f"{path} is not a regular file: give the path of a .tflite file")
    try:
        # Judged by its first bytes and its size before it is read whole: a huge file that is no model costs nothing.
        with path.open("rb") as stream:
            head, size = stream.read(64), os.fstat(stream.fileno()).st_size
            if len(head) < 8 or head[4:8] != _IDENTIFIER:
                raise ModelFormatError(f"{path} is not a TFLite model ({_what_it_is(head)}): give a .tflite file")
            if size > flatbuffer.MAX_MODEL_BYTES:
                raise ModelFormatError(
                    f"{path} is {size:,} bytes, over the {flatbuffer.MAX_MODEL_BYTES:,}-byte FlatBuffers limit of a "
                    "TFLite model: it is not one"
                )
            stream.seek(0)
            return stream.read(flatbuffer.MAX_MODEL_BYTES + 1)
    except OSError as exc:
        raise ModelFormatError(
            f"cannot read {path} ({exc.strerror or exc}): check the path and its permissions"
        ) from None


def _scale_count(table: flatbuffer._Table) -> int:
    """How many quantization scales a tensor has (0 when it is not quantized)."""
    quantization = table.table(_TENSOR_QUANTIZATION, "quantization")
    return 0 if quantization is None else quantization.vector(_QUANT_SCALE, 4, "scale")[1]


def _quantization(table: flatbuffer._Table, tensor: TensorRecord) -> Quantization | None:
    """A tensor's quantization with its scale count and axis (FlatModel keeps only the first scale)."""
    quantization = table.table(_TENSOR_QUANTIZATION, "quantization")
    if quantization is None or not tensor.quantized:
        return None
    scales = quantization.vector(_QUANT_SCALE, 4, "scale")[1]
    per_channel = scales > 1
    axis = quantization.scalar(_QUANT_DIMENSION, "i", 0, "quantized dimension") if per_channel else None
    return Quantization(per_channel, tensor.scale, tensor.zero_point, scales, axis)


def _io(tensors: flatbuffer._Tables, records: list[TensorRecord]) -> list[TensorInfo]:
    return [
        TensorInfo(
            index=t.index,
            name=t.name,
            shape=t.shape,
            signature=t.signature,
            dtype=t.dtype,
            quantization=_quantization(tensors[t.index], t),
            layout=guess_layout(t.shape),
        )
        for t in records
    ]


def _operators(flat: FlatModel) -> list[OperatorKind]:
    """One entry per operator kind, in order of first execution."""
    kinds: dict[str, dict[str, Any]] = {}
    for op in flat.operators:
        kind = kinds.setdefault(op.name, {"count": 0, "versions": set(), "custom": op.custom, "macs": 0})
        kind["count"] += 1
        kind["versions"].add(op.version)
        kind["macs"] += multiply_accumulates(op)
    return [
        OperatorKind(name, k["count"], tuple(sorted(k["versions"])), k["custom"], k["macs"])
        for name, k in kinds.items()
    ]


def _element_count(shape: tuple[int, ...]) -> int:
    count = 1
    for d in shape:
        count *= max(d, 0)
    return count


def _buffer_bytes(buffer: flatbuffer._Table) -> int:
    """The bytes a buffer stores: inline, or (models over 2 GB) after the flatbuffer at ``offset``."""
    _, length = buffer.vector(_BUFFER_DATA, 1, "data")
    # Offsets 0 and 1 both mean "no external data" (the converter writes 1 as a placeholder).
    if buffer.scalar(_BUFFER_OFFSET, "Q", 0, "offset") > 1:
        return int(buffer.scalar(_BUFFER_SIZE, "Q", 0, "size"))
    return length


def _parameters(flat: FlatModel, tensors: flatbuffer._Tables, buffers: flatbuffer._Tables) -> Parameters:
    weights = [t for t in flat.tensors if t.constant and (t.dtype in _FLOAT_DTYPES or t.quantized)]
    dtypes: dict[str, int] = {}
    for t in weights:
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + _element_count(t.shape)
    # read_flatbuffer already checked that a constant tensor's buffer index lies inside the buffer list.
    used = {tensors[t.index].scalar(_TENSOR_BUFFER, "I", 0, "buffer") for t in weights}
    return Parameters(
        values=sum(dtypes.values()),
        tensors=len(weights),
        bytes=sum(_buffer_bytes(buffers[b]) for b in sorted(used)),
        dtypes=dict(sorted(dtypes.items())),
        per_channel=sum(_scale_count(tensors[t.index]) > 1 for t in weights),
    )


def _metadata(content: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The TFLite Metadata as a dict (None when the file has none), and why it could not be read, if so."""
    from edgecnn.model.metadata import read_metadata

    try:
        metadata = read_metadata(content)
    except ModelFormatError as exc:
        # A damaged metadata buffer does not hide the graph, which is what inspect is for.
        return None, str(exc)
    return (None if metadata is None else metadata.to_dict()), None


def _sidecar(path: Path) -> Path | None:
    sidecar = path.with_suffix(".json")
    return sidecar if sidecar != path and sidecar.is_file() else None


def inspect_model(path: str | os.PathLike[str]) -> Inspection:
    """Describe any ``.tflite`` file without running it.

    Args:
        path: the ``.tflite`` file (any converter's; no sidecar needed).

    Returns:
        The file's identity, its inputs and outputs, operators, parameters, multiply-accumulates, the layout of
        its image input, its TFLite Metadata and edgecnn sidecar when present.

    Raises:
        ModelFormatError: the file is missing, unreadable, not a TFLite model, truncated or corrupt.
        UsageError: the path is a folder or not a regular file.
    """
    model = Path(path)
    content = _read_file(model)
    file = _File(content, str(model))
    flat = flatbuffer._read(file)
    root = file.table(file.follow(0, "the root offset"), "the model")
    tensors = root.tables(_MODEL_SUBGRAPHS, "subgraph")[0].tables(_SUBGRAPH_TENSORS, "tensor")
    inputs = _io(tensors, flat.inputs)
    metadata, metadata_error = _metadata(content)
    return Inspection(
        path=model,
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        description=flat.description,
        schema_version=int(root.scalar(_MODEL_VERSION, "I", 0, "version")),
        subgraphs=flat.subgraphs,
        inputs=inputs,
        outputs=_io(tensors, flat.outputs),
        layout=next((t.layout for t in inputs if t.layout is not None), None),
        operators=_operators(flat),
        parameters=_parameters(flat, tensors, root.tables(_MODEL_BUFFERS, "buffer")),
        macs=sum(multiply_accumulates(op) for op in flat.operators),
        metadata=metadata,
        metadata_error=metadata_error,
        sidecar=_sidecar(model),
    )
