"""A ``.tflite`` file's operators as the flatbuffer stores them: names, versions, tensors and options.

The interpreter lists a graph's operations but not their versions, the constant-ness of their inputs or their
options (fused activations, dilations...). Accelerator pre-flights (the Edge TPU's) need those, and must not need
the accelerator's compiler, nor even an interpreter: this module reads the file itself.

It is a small reader of the FlatBuffers binary format for the part of the TFLite schema (``schema.fbs``) edgecnn
needs, in pure Python. Not the schema module ai-edge-litert generates: that module is missing where only
tflite-runtime is installed (a Raspberry Pi), and it trusts every offset in the file. Here every offset, length
and index is checked against the file, so a truncated or corrupt model raises :class:`ModelFormatError` instead of
an ``IndexError``, a ``struct.error`` or a read of unrelated bytes.

The FlatBuffers layout, as far as it matters here (all little-endian):

- byte 0 holds the root table's position (a ``uoffset``, u32); bytes 4..8 the file identifier ``TFL3``;
- a table starts with an ``soffset`` (i32) to its vtable, which lies at ``table - soffset``;
- a vtable is ``[vtable size u16, table size u16, field offsets u16...]``: field slot ``k`` (in schema order,
  from 0) is at byte ``4 + 2k`` of the vtable, its value the field's offset in the table, 0 when the field is
  absent (it then has the schema's default);
- scalars are stored in the table; tables, vectors and strings are referenced by a ``uoffset`` counted from the
  field's own position: references only point forward, so the reader cannot loop;
- vectors and strings are a u32 element count followed by the elements (a vector of tables holds uoffsets);
- a union is two fields: a u8 type and a table reference.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edgecnn.errors import ModelFormatError

FIX = "it is truncated or corrupt, or not a TFLite model: export or copy it again"
_FIX = FIX
_IDENTIFIER = b"TFL3"

MAX_MODEL_BYTES = 2**31 - 1
"""The largest model file read: FlatBuffers' own limit (``FLATBUFFERS_MAX_BUFFER_SIZE``, offsets are 32-bit).

TFLite can keep the buffers of a model over 2 GB after the flatbuffer (``Buffer.offset``); no model edgecnn targets
comes near that size, and refusing it lets a file be judged from its first 8 bytes and its size, never read whole
first (a 3 GiB file of zeros named ``.tflite`` is refused at once).
"""

# Field slots of the schema's tables (schema.fbs), in declaration order.
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS = 1, 2, 3, 4
_MODEL_METADATA = 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 0, 1, 2, 3
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_NAME, _TENSOR_QUANTIZATION, _TENSOR_SIGNATURE = 0, 1, 2, 3, 4, 7
_QUANT_SCALE, _QUANT_ZERO_POINT = 2, 3
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_CODE_DEPRECATED_BUILTIN, _CODE_CUSTOM, _CODE_VERSION, _CODE_BUILTIN = 0, 1, 2, 3
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS, _OP_OPTIONS_TYPE, _OP_OPTIONS = 0, 1, 2, 3, 4

# An operator input of -1 is an optional input left out (a convolution without bias...).
_OPTIONAL_TENSOR = -1

# Enum TensorType, by value.
_TENSOR_TYPES = """
float32 float16 int32 uint8 int64 string bool int16 complex64 int8 float64 complex128 uint64 resource variant uint32
uint16 int4 bfloat16 int2 uint4 float8_e4m3fn float8_e5m2
""".split()  # noqa: SIM905 - 23 names read better as words than one a line

# Enum BuiltinOperator, by value.
_BUILTIN_OPERATORS = """
ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP FLOOR
FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC
LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH
SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER
BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE
BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM
ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE
TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK
LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL
FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL
REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND
HARD_SWISH IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM
BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS
HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE
ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU
DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2
UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE
STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE
STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE
STABLEHLO_ABS STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG
STABLEHLO_MINIMUM STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER STABLEHLO_RSQRT
STABLEHLO_SELECT STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER STABLEHLO_COMPARE STABLEHLO_CONVERT
STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_PAD STABLEHLO_IOTA STABLEHLO_DOT_GENERAL
STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE
STABLEHLO_RNG_BIT_GENERATOR REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE
""".split()  # noqa: SIM905 - 210 names read better as words than one a line
_CUSTOM = _BUILTIN_OPERATORS.index("CUSTOM")

# Enum ActivationFunctionType, by value: options give the name, which is what a reader compares against.
_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")

# The builtin options union (Operator.builtin_options): member number -> table name and the table's scalar
# fields, in slot order. A field is "name:type" or "name:type=default" (the default is 0 otherwise), "-" a
# deprecated slot. Types: b int8, B uint8, ? bool, i int32, I uint32, q int64, f float32. Vector fields (a
# reshape's new_shape...) are left out: options carry plain values. Members not listed read as no options.
_OPTION_TABLES: dict[int, tuple[str, str]] = {
    1: (
        "Conv2DOptions",
        "padding:b stride_w:i stride_h:i fused_activation_function:b dilation_w_factor:i=1 dilation_h_factor:i=1 "
        "quantized_bias_type:b",
    ),
    2: (
        "DepthwiseConv2DOptions",
        "padding:b stride_w:i stride_h:i depth_multiplier:i fused_activation_function:b dilation_w_factor:i=1 "
        "dilation_h_factor:i=1",
    ),
    4: ("LSHProjectionOptions", "type:b"),
    5: (
        "Pool2DOptions",
        "padding:b stride_w:i stride_h:i filter_width:i filter_height:i fused_activation_function:b",
    ),
    6: ("SVDFOptions", "rank:i fused_activation_function:b asymmetric_quantize_inputs:?"),
    7: ("RNNOptions", "fused_activation_function:b asymmetric_quantize_inputs:?"),
    8: (
        "FullyConnectedOptions",
        "fused_activation_function:b weights_format:b keep_num_dims:? asymmetric_quantize_inputs:? "
        "quantized_bias_type:b",
    ),
    9: ("SoftmaxOptions", "beta:f"),
    10: ("ConcatenationOptions", "axis:i fused_activation_function:b"),
    11: ("AddOptions", "fused_activation_function:b pot_scale_int16:?=1"),
    12: ("L2NormOptions", "fused_activation_function:b"),
    13: ("LocalResponseNormalizationOptions", "radius:i bias:f alpha:f beta:f"),
    14: (
        "LSTMOptions",
        "fused_activation_function:b cell_clip:f proj_clip:f kernel_type:b asymmetric_quantize_inputs:?",
    ),
    15: ("ResizeBilinearOptions", "- - align_corners:? half_pixel_centers:?"),
    16: ("CallOptions", "subgraph:I"),
    17: ("ReshapeOptions", ""),
    18: ("SkipGramOptions", "ngram_size:i max_skip_size:i include_all_ngrams:?"),
    19: ("SpaceToDepthOptions", "block_size:i"),
    20: ("EmbeddingLookupSparseOptions", "combiner:b"),
    21: ("MulOptions", "fused_activation_function:b"),
    23: ("GatherOptions", "axis:i batch_dims:i"),
    27: ("ReducerOptions", "keep_dims:?"),
    28: ("SubOptions", "fused_activation_function:b pot_scale_int16:?=1"),
    29: ("DivOptions", "fused_activation_function:b"),
    31: ("SequenceRNNOptions", "time_major:? fused_activation_function:b asymmetric_quantize_inputs:?"),
    32: (
        "StridedSliceOptions",
        "begin_mask:i end_mask:i ellipsis_mask:i new_axis_mask:i shrink_axis_mask:i offset:?",
    ),
    35: ("SplitOptions", "num_splits:i"),
    37: ("CastOptions", "in_data_type:b out_data_type:b"),
    40: ("ArgMaxOptions", "output_type:b"),
    49: ("TransposeConvOptions", "padding:b stride_w:i stride_h:i fused_activation_function:b quantized_bias_type:b"),
    50: ("SparseToDenseOptions", "validate_indices:?"),
    55: ("ShapeOptions", "out_type:b"),
    57: ("ArgMinOptions", "output_type:b"),
    58: ("FakeQuantOptions", "min:f max:f num_bits:i narrow_range:?"),
    59: ("PackOptions", "values_count:i axis:i"),
    61: ("OneHotOptions", "axis:i"),
    64: ("UnpackOptions", "num:i axis:i"),
    69: (
        "BidirectionalSequenceLSTMOptions",
        "fused_activation_function:b cell_clip:f proj_clip:f merge_outputs:? time_major:?=1 "
        "asymmetric_quantize_inputs:?",
    ),
    70: (
        "BidirectionalSequenceRNNOptions",
        "time_major:? fused_activation_function:b merge_outputs:? asymmetric_quantize_inputs:?",
    ),
    71: (
        "UnidirectionalSequenceLSTMOptions",
        "fused_activation_function:b cell_clip:f proj_clip:f time_major:? asymmetric_quantize_inputs:? "
        "diagonal_recurrent_tensors:?",
    ),
    74: ("ResizeNearestNeighborOptions", "align_corners:? half_pixel_centers:?"),
    75: ("LeakyReluOptions", "alpha:f"),
    77: ("MirrorPadOptions", "mode:b"),
    79: ("SplitVOptions", "num_splits:i"),
    80: ("UniqueOptions", "idx_out_type:b=2"),
    87: ("ReverseSequenceOptions", "seq_dim:i batch_dim:i"),
    92: ("IfOptions", "then_subgraph_index:i else_subgraph_index:i"),
    93: ("WhileOptions", "cond_subgraph_index:i body_subgraph_index:i"),
    94: ("DepthToSpaceOptions", "block_size:i"),
    101: ("BatchMatMulOptions", "adj_x:? adj_y:? asymmetric_quantize_inputs:?"),
    102: ("CumsumOptions", "exclusive:? reverse:?"),
    103: ("CallOnceOptions", "init_subgraph_index:i"),
    106: (
        "Conv3DOptions",
        "padding:b stride_d:i stride_w:i stride_h:i fused_activation_function:b dilation_d_factor:i=1 "
        "dilation_w_factor:i=1 dilation_h_factor:i=1",
    ),
    107: ("HashtableOptions", "table_id:i key_dtype:b value_dtype:b"),
    114: ("RandomOptions", "seed:q seed2:q"),
    116: ("GeluOptions", "approximate:?"),
}

# Little-endian layouts by struct code, compiled once: the reader unpacks thousands of fields per model.
_STRUCTS = {code: struct.Struct("<" + code) for code in "bB?hHiIqQf"}
_U16 = _STRUCTS["H"]


@dataclass(frozen=True)
class _OptionField:
    slot: int
    name: str
    code: str
    default: Any


def _option_fields(spec: str) -> tuple[_OptionField, ...]:
    fields = []
    for slot, item in enumerate(spec.split()):
        if item == "-":
            continue
        name, _, rest = item.partition(":")
        code, _, default = rest.partition("=")
        value: Any = float(default or 0) if code == "f" else int(default or 0)
        fields.append(_OptionField(slot, name, code, bool(value) if code == "?" else value))
    return tuple(fields)


_OPTIONS = {number: (table, _option_fields(spec)) for number, (table, spec) in _OPTION_TABLES.items()}


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of the main subgraph.

    Attributes:
        index: its position in the subgraph's tensor list (what operators refer to).
        name: its name (bytes that are not UTF-8 are replaced).
        shape: the static shape (1 where a dimension is only known at run time).
        signature: the shape signature, -1 where a dimension is dynamic (the shape when the file has none).
        dtype: the lowercase TensorType name (``int8``, ``float32``, ``uint8``...; ``unknown`` for a newer type).
        quantized: whether the tensor has quantization scales (per tensor or per channel).
        constant: whether its values are stored in the file (weights, biases, constant operands).
        scale: the first quantization scale (the per-tensor one for activations and model I/O); 0.0 when none.
        zero_point: the first quantization zero point; 0 when none.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    quantized: bool
    constant: bool
    scale: float = 0.0
    zero_point: int = 0

    @property
    def dynamic(self) -> bool:
        """True when a dimension is only known at run time."""
        return any(d < 0 for d in self.signature)


@dataclass(frozen=True)
class OperatorRecord:
    """One operator in execution order.

    Attributes:
        index: its position in the execution order.
        name: the builtin operator's name (``CONV_2D``...), or the custom code of a custom operator.
        version: the operator version the file asks for.
        custom: whether it is a custom operator.
        inputs / outputs: its tensors (optional inputs left out are skipped).
        options: the builtin options' plain fields in snake_case (``fused_activation_function`` as its name,
            ``"RELU6"``...; other enums as their numbers); empty for options this reader does not decode.
    """

    index: int
    name: str
    version: int
    custom: bool
    inputs: tuple[TensorRecord, ...]
    outputs: tuple[TensorRecord, ...]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def activations(self) -> tuple[TensorRecord, ...]:
        """The tensors computed at run time that the operator reads or writes (not its weights or constants)."""
        return tuple(t for t in (*self.inputs, *self.outputs) if not t.constant)


@dataclass(frozen=True)
class FlatModel:
    """The main subgraph (subgraph 0) of a ``.tflite`` file.

    Attributes:
        operators: its operators in execution order.
        inputs / outputs: the model's input and output tensors.
        subgraphs: how many subgraphs the file holds (control flow adds some).
        size_bytes: the file's size.
        tensors: every tensor of the main subgraph, by index.
        description: the model's description string (the converter's name, usually).
    """

    operators: list[OperatorRecord]
    inputs: list[TensorRecord]
    outputs: list[TensorRecord]
    subgraphs: int
    size_bytes: int
    tensors: list[TensorRecord] = field(default_factory=list)
    description: str = ""


class _File:
    """The model's bytes, with bounds-checked reads that raise :class:`ModelFormatError`.

    ``strict`` adds what the FlatBuffers verifier that LiteRT runs also checks (:mod:`edgecnn.model.verify` sets it):
    every scalar, offset, table and vtable aligned to its size, and every string NUL-terminated. The plain reader
    leaves them out because a misaligned but in-bounds read is harmless in Python; a native runtime that trusts the
    file is another matter.
    """

    def __init__(self, content: bytes, where: str, *, strict: bool = False) -> None:
        self.content = content
        self.size = len(content)
        self.where = where
        self.strict = strict

    def error(self, problem: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where} is not a valid TFLite model ({problem}): {_FIX}")

    def need(self, pos: int, size: int, what: str) -> None:
        """Check that ``size`` bytes at ``pos`` lie inside the file."""
        if pos < 0 or size < 0 or pos + size > self.size:
            raise self.error(f"{what} at byte {pos} ({size} bytes) lies outside the {self.size}-byte file")

    def aligned(self, pos: int, size: int, what: str) -> None:
        """In strict mode, check that ``pos`` is a multiple of ``size`` (FlatBuffers aligns every value to its size)."""
        if self.strict and pos % size:
            raise self.error(f"{what} at byte {pos} is not aligned to {size} bytes")

    def scalar(self, code: str, pos: int, what: str) -> Any:
        layout = _STRUCTS[code]
        self.need(pos, layout.size, what)
        self.aligned(pos, layout.size, what)
        return layout.unpack_from(self.content, pos)[0]

    def follow(self, pos: int, what: str) -> int:
        """The position a ``uoffset`` at ``pos`` points to (always after ``pos``: references cannot loop)."""
        return pos + self.scalar("I", pos, what)

    def table(self, pos: int, what: str) -> _Table:
        return _Table(self, pos, what)


class _Table:
    """One table: its fields, by slot, with the schema's defaults for absent ones."""

    __slots__ = ("file", "pos", "size", "vtable", "vtable_size", "what")

    def __init__(self, file: _File, pos: int, what: str) -> None:
        self.file, self.pos, self.what = file, pos, what
        self.vtable = pos - file.scalar("i", pos, what)
        self.vtable_size = file.scalar("H", self.vtable, f"{what}'s vtable")
        self.size = file.scalar("H", self.vtable + 2, f"{what}'s vtable")
        if self.vtable_size < 4 or self.vtable_size % 2:
            raise file.error(f"{what}'s vtable has an impossible size of {self.vtable_size} bytes")
        if self.size < 4:
            raise file.error(f"{what} has an impossible size of {self.size} bytes")
        file.need(self.vtable, self.vtable_size, f"{what}'s vtable")
        file.need(pos, self.size, what)

    def _field(self, slot: int, size: int, name: str) -> int | None:
        """The position of field ``slot`` (``size`` bytes), None when the table does not store it."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vtable_size:  # written by an older schema: the field is absent
            return None
        offset = _U16.unpack_from(self.file.content, self.vtable + entry)[0]
        if offset == 0:
            return None
        # The soffset takes the table's first 4 bytes; a field must lie after it and inside the table.
        if offset < 4 or offset + size > self.size:
            raise self.file.error(f"{self.what}'s {name} lies outside the table")
        self.file.aligned(self.pos + offset, size, f"{self.what}'s {name}")
        return self.pos + offset

    def scalar(self, slot: int, code: str, default: Any, name: str) -> Any:
        pos = self._field(slot, _STRUCTS[code].size, name)
        return default if pos is None else _STRUCTS[code].unpack_from(self.file.content, pos)[0]

    def table(self, slot: int, name: str) -> _Table | None:
        pos = self._field(slot, 4, name)
        return None if pos is None else self.file.table(self.file.follow(pos, name), f"{self.what}'s {name}")

    def vector(self, slot: int, element_size: int, name: str) -> tuple[int, int]:
        """The position of the first element and the element count of a vector field (0, 0 when absent)."""
        pos = self._field(slot, 4, name)
        if pos is None:
            return 0, 0
        start = self.file.follow(pos, name)
        count = self.file.scalar("I", start, f"{self.what}'s {name}")
        self.file.need(start + 4, count * element_size, f"{self.what}'s {name} ({count} elements)")
        return start + 4, count

    def scalars(self, slot: int, code: str, name: str) -> tuple[Any, ...]:
        start, count = self.vector(slot, _STRUCTS[code].size, name)
        return struct.unpack_from(f"<{count}{code}", self.file.content, start) if count else ()

    def string(self, slot: int, name: str) -> str:
        start, count = self.vector(slot, 1, name)
        # C++ readers take strings as C strings: in strict mode, the terminating NUL must be there too.
        if self.file.strict and count:
            self.file.need(start + count, 1, f"{self.what}'s {name}'s terminating NUL")
            if self.file.content[start + count] != 0:
                raise self.file.error(f"{self.what}'s {name} is not NUL-terminated")
        text = self.file.content[start : start + count]
        if self.file.strict:
            try:  # FlatBuffers strings are UTF-8; the runtimes' Python wrappers decode names and fail otherwise
                return text.decode("utf-8")
            except UnicodeDecodeError:
                raise self.file.error(f"{self.what}'s {name} is not UTF-8 text") from None
        return text.decode("utf-8", errors="replace")

    def tables(self, slot: int, name: str) -> _Tables:
        start, count = self.vector(slot, 4, name)
        return _Tables(self.file, start, count, name)


class _Tables:
    """A vector of tables, each read when asked for."""

    def __init__(self, file: _File, start: int, count: int, what: str) -> None:
        self.file, self.start, self.count, self.what = file, start, count, what

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> _Table:
        pos = self.start + 4 * index
        return self.file.table(self.file.follow(pos, f"{self.what} {index}"), f"{self.what} {index}")

    def __iter__(self) -> Iterator[_Table]:
        return (self[i] for i in range(self.count))


@dataclass(frozen=True)
class _OperatorCode:
    name: str
    version: int
    custom: bool


def _operator_code(table: _Table) -> _OperatorCode:
    deprecated = table.scalar(_CODE_DEPRECATED_BUILTIN, "b", 0, "deprecated builtin code")
    builtin = table.scalar(_CODE_BUILTIN, "i", 0, "builtin code")
    version = table.scalar(_CODE_VERSION, "i", 1, "version")
    # The schema keeps codes under 127 in a byte for old readers: the real code is the larger of the two.
    code = max(builtin, deprecated)
    if code == _CUSTOM:
        return _OperatorCode(table.string(_CODE_CUSTOM, "custom code"), version, True)
    name = _BUILTIN_OPERATORS[code] if 0 <= code < len(_BUILTIN_OPERATORS) else f"BUILTIN_{code}"
    return _OperatorCode(name, version, False)


def _buffer_holds_data(file: _File, buffer: _Table) -> bool:
    """Whether a buffer stores values: inline, or (models over 2 GB) after the flatbuffer at ``offset``."""
    _, length = buffer.vector(_BUFFER_DATA, 1, "data")
    offset = buffer.scalar(_BUFFER_OFFSET, "Q", 0, "offset")
    # Offsets 0 and 1 both mean "no external data" (the converter writes 1 as a placeholder).
    if offset > 1:
        size = buffer.scalar(_BUFFER_SIZE, "Q", 0, "size")
        file.need(offset, size, f"{buffer.what}'s data")
        return True
    return length > 0


def _tensor(file: _File, table: _Table, index: int, constants: list[bool]) -> TensorRecord:
    what = f"tensor {index}"
    shape = tuple(table.scalars(_TENSOR_SHAPE, "i", "shape"))
    signature = tuple(table.scalars(_TENSOR_SIGNATURE, "i", "shape signature")) or shape
    # -1 marks a dimension known only at run time; anything below cannot be a size.
    if any(d < -1 for d in (*shape, *signature)):
        raise file.error(f"{what} has a negative dimension in {list(shape)} / {list(signature)}")
    buffer = table.scalar(_TENSOR_BUFFER, "I", 0, "buffer")
    # Buffer 0 is the schema's empty sentinel: a tensor pointing there has no stored values, buffers or not.
    if buffer >= len(constants) and buffer != 0:
        raise file.error(f"{what} refers to buffer {buffer}, but the file has {len(constants)} buffers")
    type_code = table.scalar(_TENSOR_TYPE, "b", 0, "type")
    scale, zero_point, quantized = 0.0, 0, False
    quantization = table.table(_TENSOR_QUANTIZATION, "quantization")
    if quantization is not None:
        scales_at, scales = quantization.vector(_QUANT_SCALE, 4, "scale")
        zeros_at, zeros = quantization.vector(_QUANT_ZERO_POINT, 8, "zero point")
        quantized = scales > 0
        scale = float(_STRUCTS["f"].unpack_from(file.content, scales_at)[0]) if scales else 0.0
        zero_point = int(_STRUCTS["q"].unpack_from(file.content, zeros_at)[0]) if zeros else 0
    return TensorRecord(
        index=index,
        name=table.string(_TENSOR_NAME, "name"),
        shape=shape,
        signature=signature,
        dtype=_TENSOR_TYPES[type_code] if 0 <= type_code < len(_TENSOR_TYPES) else "unknown",
        quantized=quantized,
        constant=buffer > 0 and constants[buffer],
        scale=scale,
        zero_point=zero_point,
    )


def _options(table: _Table) -> dict[str, Any]:
    """The builtin options' plain fields (``fused_activation_function``, ``dilation_h_factor``...)."""
    known = _OPTIONS.get(table.scalar(_OP_OPTIONS_TYPE, "B", 0, "builtin options type"))
    if known is None:
        return {}
    options = table.table(_OP_OPTIONS, "builtin options")
    if options is None:
        return {}
    values = {f.name: options.scalar(f.slot, f.code, f.default, f.name) for f in known[1]}
    if "fused_activation_function" in values:
        code = values["fused_activation_function"]
        values["fused_activation_function"] = _ACTIVATIONS[code] if 0 <= code < len(_ACTIVATIONS) else "UNKNOWN"
    return values


def _pick(file: _File, indices: tuple[int, ...], tensors: list[TensorRecord], what: str) -> list[TensorRecord]:
    """The tensors at ``indices``, skipping optional inputs left out (-1)."""
    picked = []
    for i in indices:
        if i == _OPTIONAL_TENSOR:
            continue
        if not 0 <= i < len(tensors):
            raise file.error(f"{what} refers to tensor {i}, but the subgraph has {len(tensors)} tensors")
        picked.append(tensors[i])
    return picked


def _read(file: _File) -> FlatModel:
    root = file.table(file.follow(0, "the root offset"), "the model")
    codes = [_operator_code(t) for t in root.tables(_MODEL_OPERATOR_CODES, "operator code")]
    subgraphs = root.tables(_MODEL_SUBGRAPHS, "subgraph")
    if not len(subgraphs):
        raise ModelFormatError(f"{file.where} has no subgraph: {_FIX}")
    constants = [_buffer_holds_data(file, b) for b in root.tables(_MODEL_BUFFERS, "buffer")]
    graph = subgraphs[0]
    tensors = [_tensor(file, t, i, constants) for i, t in enumerate(graph.tables(_SUBGRAPH_TENSORS, "tensor"))]
    operators = []
    for index, op in enumerate(graph.tables(_SUBGRAPH_OPERATORS, "operator")):
        what = f"operator {index}"
        opcode = op.scalar(_OP_OPCODE, "I", 0, "opcode index")
        if opcode >= len(codes):
            raise file.error(f"{what} uses operator code {opcode}, but the file has {len(codes)}")
        code = codes[opcode]
        operators.append(
            OperatorRecord(
                index=index,
                name=code.name,
                version=code.version,
                custom=code.custom,
                inputs=tuple(_pick(file, op.scalars(_OP_INPUTS, "i", "inputs"), tensors, what)),
                outputs=tuple(_pick(file, op.scalars(_OP_OUTPUTS, "i", "outputs"), tensors, what)),
                options=_options(op),
            )
        )
    return FlatModel(
        operators=operators,
        inputs=_pick(file, graph.scalars(_SUBGRAPH_INPUTS, "i", "inputs"), tensors, "the subgraph's input list"),
        outputs=_pick(file, graph.scalars(_SUBGRAPH_OUTPUTS, "i", "outputs"), tensors, "the subgraph's output list"),
        subgraphs=len(subgraphs),
        size_bytes=file.size,
        tensors=tensors,
        description=root.string(_MODEL_DESCRIPTION, "description"),
    )


def read_flatbuffer(model: bytes | str | os.PathLike[str]) -> FlatModel:
    """Read the operators, tensors and options of a ``.tflite`` flatbuffer (bytes) or file.

    Args:
        model: the flatbuffer's bytes, or the path of a ``.tflite`` file.

    Returns:
        The main subgraph (subgraph 0): its operators, tensors, inputs and outputs.

    Raises:
        ModelFormatError: the file cannot be read, or is not a TFLite model (no ``TFL3`` identifier, no
            subgraph), or is larger than :data:`MAX_MODEL_BYTES`, or is truncated or corrupt (an offset, length or
            index outside what the file holds).
    """
    content, where = model_content(model)
    return _read(_File(content, where))


def model_content(model: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """A model's bytes and how messages name it, once its identifier and size say it may be a TFLite model.

    A file is judged from its first 8 bytes and its size before it is read whole, so a huge file that is not a
    model (or one over the FlatBuffers limit) costs nothing.

    Raises:
        ModelFormatError: unreadable, no ``TFL3`` identifier at bytes 4..8, or over :data:`MAX_MODEL_BYTES`.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        content = bytes(model)
        _check_header(content[:8], len(content), "the model")
        return content, "the model"
    where = str(model)
    try:
        with open(model, "rb") as stream:
            _check_header(stream.read(8), os.fstat(stream.fileno()).st_size, where)
            stream.seek(0)
            return stream.read(MAX_MODEL_BYTES + 1), where
    except OSError as exc:
        raise ModelFormatError(f"cannot read {where} ({exc.strerror or exc}): check the path") from None


def _check_header(head: bytes, size: int, where: str) -> None:
    # TFLite files carry the identifier "TFL3" at bytes 4..8; anything else is not a model.
    if len(head) < 8 or head[4:8] != _IDENTIFIER:
        raise ModelFormatError(f"{where} is not a TFLite model (no TFL3 identifier): {_FIX}")
    if size > MAX_MODEL_BYTES:
        raise ModelFormatError(
            f"{where} is {size:,} bytes, over the {MAX_MODEL_BYTES:,}-byte limit of a TFLite flatbuffer: "
            "edgecnn reads models up to 2 GiB; give a smaller model"
        )


def metadata_buffers(model: bytes) -> dict[str, bytes]:
    """The model's metadata entries (``Model.metadata``): each entry's name and the bytes of the buffer it names.

    TFLite keeps named blobs beside the graph this way: ``min_runtime_version``, ``CONVERSION_METADATA``, and the
    standard TFLite Metadata under ``TFLITE_METADATA`` (read by :mod:`edgecnn.model.metadata`).

    Args:
        model: the flatbuffer's bytes (anything appended after it, such as an associated-files zip, is ignored).

    Returns:
        Name -> buffer bytes, in the file's order. Where two entries share a name the first wins, as in
        tflite-support's and MediaPipe's readers. Names that are not UTF-8 have their bad bytes replaced.

    Raises:
        ModelFormatError: the bytes are not a TFLite model, or an entry, its name or its buffer lies outside them, or
            an entry names a buffer the model does not have.
    """
    content = bytes(model)
    if len(content) < 8 or content[4:8] != _IDENTIFIER:
        raise ModelFormatError(f"the model is not a TFLite model (no TFL3 identifier): {_FIX}")
    file = _File(content, "the model")
    root = file.table(file.follow(0, "the root offset"), "the model")
    buffers = root.tables(_MODEL_BUFFERS, "buffer")
    found: dict[str, bytes] = {}
    for index, entry in enumerate(root.tables(_MODEL_METADATA, "metadata entry")):
        name = entry.string(_METADATA_NAME, "name")
        buffer = entry.scalar(_METADATA_BUFFER, "I", 0, "buffer")
        if name in found:
            continue
        if buffer >= len(buffers):
            raise file.error(f"metadata entry {index} ({name!r}) names buffer {buffer} of {len(buffers)}")
        found[name] = _buffer_bytes(file, buffers[buffer])
    return found


def _buffer_bytes(file: _File, buffer: _Table) -> bytes:
    """A buffer's bytes: inline, or (models over 2 GB) at ``offset`` from the file's start."""
    start, length = buffer.vector(_BUFFER_DATA, 1, "data")
    offset = buffer.scalar(_BUFFER_OFFSET, "Q", 0, "offset")
    if offset > 1:  # 0 and 1 both mean "inline" (see _buffer_holds_data)
        size = buffer.scalar(_BUFFER_SIZE, "Q", 0, "size")
        file.need(offset, size, f"{buffer.what}'s data")
        return file.content[offset : offset + size]
    return file.content[start : start + length]


def multiply_accumulates(op: OperatorRecord) -> int:
    """Multiply-accumulates one run of ``op`` costs (0 for operations without a weight product).

    Convolutions: one MAC per output element per kernel tap per input channel; depthwise convolutions have no
    input-channel sum; fully connected layers one per weight per batch row.
    """
    if not op.inputs or not op.outputs:
        return 0
    out = op.outputs[0].shape
    if op.name == "CONV_2D" and len(op.inputs) > 1 and len(op.inputs[1].shape) == 4:
        _, kh, kw, cin = op.inputs[1].shape  # filters are [out_channels, kh, kw, in_channels]
        return _product(out) * kh * kw * cin
    if op.name == "DEPTHWISE_CONV_2D" and len(op.inputs) > 1 and len(op.inputs[1].shape) == 4:
        _, kh, kw, _ = op.inputs[1].shape  # [1, kh, kw, channels * multiplier]
        return _product(out) * kh * kw
    if op.name == "TRANSPOSE_CONV" and len(op.inputs) > 2 and len(op.inputs[1].shape) == 4:
        _, kh, kw, cin = op.inputs[1].shape
        return _product(op.inputs[2].shape) * kh * kw * op.inputs[1].shape[0]
    if op.name == "FULLY_CONNECTED" and len(op.inputs) > 1 and len(op.inputs[1].shape) == 2:
        units, depth = op.inputs[1].shape  # weights are [units, depth]
        rows = _product(op.inputs[0].shape) // max(depth, 1)
        return rows * units * depth
    return 0


def _product(shape: tuple[int, ...]) -> int:
    total = 1
    for d in shape:
        total *= max(int(d), 1)
    return total
