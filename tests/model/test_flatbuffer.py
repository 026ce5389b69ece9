"""edgecnn's own ``.tflite`` reader against the official one, and against corrupt files.

The official reader (``ai_edge_litert.schema_py_generated``, generated from the TFLite schema) is the oracle:
whatever edgecnn decodes must equal what it reads. Small models are written here by hand with a minimal
FlatBuffers builder (fast, no TensorFlow, and able to write what a converter never would: out-of-range indices,
names that are not UTF-8...); the tests marked slow convert plain Keras models the way an outside user would.
"""

from __future__ import annotations

import random
import struct
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecnn.errors import ModelFormatError
from edgecnn.model import flatbuffer
from edgecnn.model.flatbuffer import FlatModel, read_flatbuffer
from edgecnn.model.graph import read_graph

# ---------------------------------------------------------------------------------------------------------------
# A minimal FlatBuffers builder. It lays objects out front to back: a table's vtable, then the table, then what its
# fields refer to (references are unsigned offsets, so they must point forward).
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Vec:
    """A vector of scalars of one struct code (``i`` int32, ``f`` float32, ``q`` int64, ``B`` uint8...)."""

    code: str
    values: list[Any]


@dataclass
class Table:
    """A table: slot -> ``(code, value)`` scalar, :class:`Table`, :class:`Vec`, ``list[Table]`` or ``bytes``."""

    fields: dict[int, Any]


def build(root: Table, identifier: bytes = b"TFL3") -> bytes:
    """Serialize ``root`` as a FlatBuffer with ``identifier``."""
    out = bytearray(8)
    out[4:8] = identifier
    struct.pack_into("<I", out, 0, _emit(out, root))
    return bytes(out)


def _pad(out: bytearray, alignment: int, ahead: int = 0) -> None:
    while (len(out) + ahead) % alignment:
        out.append(0)


def _emit(out: bytearray, value: Any) -> int:
    if isinstance(value, Table):
        return _emit_table(out, value)
    if isinstance(value, Vec):
        width = struct.calcsize("<" + value.code)
        _pad(out, max(width, 4), ahead=4)  # the elements, after the count, aligned to their size
        pos = len(out)
        out += struct.pack(f"<I{len(value.values)}{value.code}", len(value.values), *value.values)
        return pos
    if isinstance(value, bytes):  # a string: count, bytes, and the terminating zero FlatBuffers adds
        _pad(out, 4)
        pos = len(out)
        out += struct.pack("<I", len(value)) + value + b"\0"
        return pos
    if isinstance(value, list):  # a vector of tables
        _pad(out, 4)
        pos = len(out)
        out += struct.pack(f"<I{len(value)}I", len(value), *[0] * len(value))
        for i, item in enumerate(value):
            slot = pos + 4 + 4 * i
            struct.pack_into("<I", out, slot, _emit(out, item) - slot)
        return pos
    raise TypeError(value)


def _emit_table(out: bytearray, table: Table) -> int:
    layout, size = [], 4  # the soffset to the vtable comes first
    for slot, value in sorted(table.fields.items()):
        width = struct.calcsize("<" + value[0]) if isinstance(value, tuple) else 4
        size += -size % width
        layout.append((slot, size, value))
        size += width
    slots = max(table.fields) + 1 if table.fields else 0
    offsets = [0] * slots
    for slot, offset, _ in layout:
        offsets[slot] = offset
    _pad(out, 2)
    vtable = len(out)
    out += struct.pack(f"<{2 + slots}H", 4 + 2 * slots, size, *offsets)
    _pad(out, 8)
    pos = len(out)
    out += bytes(size)
    struct.pack_into("<i", out, pos, pos - vtable)
    for _, offset, value in layout:
        if isinstance(value, tuple):
            struct.pack_into("<" + value[0], out, pos + offset, value[1])
        else:
            struct.pack_into("<I", out, pos + offset, _emit(out, value) - (pos + offset))
    return pos


# Schema slots the hand-made models use (schema.fbs; the reader has its own copy, these are written independently).
MODEL_VERSION, MODEL_CODES, MODEL_SUBGRAPHS, MODEL_DESCRIPTION, MODEL_BUFFERS = 0, 1, 2, 3, 4
GRAPH_TENSORS, GRAPH_INPUTS, GRAPH_OUTPUTS, GRAPH_OPERATORS, GRAPH_NAME = 0, 1, 2, 3, 4
TENSOR_SHAPE, TENSOR_TYPE, TENSOR_BUFFER, TENSOR_NAME, TENSOR_QUANT, TENSOR_SIGNATURE = 0, 1, 2, 3, 4, 7
OP_CODE, OP_INPUTS, OP_OUTPUTS, OP_OPTIONS_TYPE, OP_OPTIONS = 0, 1, 2, 3, 4
INT8, INT32, FLOAT32 = 9, 2, 0


def tensor(name: bytes, shape: list[int], dtype: int, *, buffer: int = 0, **extra: Any) -> Table:
    fields: dict[int, Any] = {TENSOR_SHAPE: Vec("i", shape), TENSOR_TYPE: ("b", dtype), TENSOR_NAME: name}
    if buffer:
        fields[TENSOR_BUFFER] = ("I", buffer)
    if "signature" in extra:
        fields[TENSOR_SIGNATURE] = Vec("i", extra["signature"])
    if "scale" in extra:
        fields[TENSOR_QUANT] = Table({2: Vec("f", extra["scale"]), 3: Vec("q", extra["zero_point"]), 6: ("i", 0)})
    return Table(fields)


def hand_model() -> Table:
    """A small int8 graph: a dilated CONV_2D, a GELU (code above 127) and a custom operation with an optional input
    left out; every kind of field the reader decodes, written the way the converter writes them."""
    codes = [
        Table({0: ("b", 3), 2: ("i", 3), 3: ("i", 3)}),  # CONV_2D v3
        Table({0: ("b", 127), 3: ("i", 150)}),  # GELU: the byte holds the placeholder, version defaults to 1
        Table({0: ("b", 32), 1: b"MyCustomOp", 2: ("i", 2), 3: ("i", 32)}),
    ]
    tensors = [
        tensor(b"input", [1, 4, 4, 1], INT8, signature=[-1, 4, 4, 1], scale=[0.5], zero_point=[-3]),
        tensor(b"weights", [2, 3, 3, 1], INT8, buffer=1, scale=[0.125, 0.25], zero_point=[0, 0]),
        tensor(b"bias", [2], INT32, buffer=2, scale=[0.0625, 0.125], zero_point=[0, 0]),
        tensor(b"conv", [1, 4, 4, 2], INT8, scale=[0.25], zero_point=[1]),
        tensor(b"gelu", [1, 4, 4, 2], INT8, buffer=3, scale=[0.25], zero_point=[2]),
        tensor(b"scores", [1, 4, 4, 2], FLOAT32),
    ]
    conv_options = Table({0: ("b", 1), 1: ("i", 1), 2: ("i", 2), 3: ("b", 3), 4: ("i", 1), 5: ("i", 2)})
    operators = [
        Table(
            {
                OP_CODE: ("I", 0),
                OP_INPUTS: Vec("i", [0, 1, 2]),
                OP_OUTPUTS: Vec("i", [3]),
                OP_OPTIONS_TYPE: ("B", 1),
                OP_OPTIONS: conv_options,
            }
        ),
        Table(
            {
                OP_CODE: ("I", 1),
                OP_INPUTS: Vec("i", [3]),
                OP_OUTPUTS: Vec("i", [4]),
                OP_OPTIONS_TYPE: ("B", 116),
                OP_OPTIONS: Table({0: ("?", True)}),
            }
        ),
        Table({OP_CODE: ("I", 2), OP_INPUTS: Vec("i", [4, -1]), OP_OUTPUTS: Vec("i", [5])}),
    ]
    graph = Table(
        {
            GRAPH_TENSORS: tensors,
            GRAPH_INPUTS: Vec("i", [0]),
            GRAPH_OUTPUTS: Vec("i", [5]),
            GRAPH_OPERATORS: operators,
            GRAPH_NAME: b"main",
        }
    )
    buffers = [
        Table({}),  # buffer 0: the schema's empty sentinel
        Table({0: Vec("B", list(range(18)))}),
        Table({0: Vec("B", [1, 0, 0, 0, 2, 0, 0, 0])}),
        Table({1: ("Q", 1), 2: ("Q", 0)}),  # offset 1: the converter's placeholder, no data
    ]
    return Table(
        {
            MODEL_VERSION: ("I", 3),
            MODEL_CODES: codes,
            MODEL_SUBGRAPHS: [graph],
            MODEL_DESCRIPTION: b"hand-made",
            MODEL_BUFFERS: buffers,
        }
    )


def graph_of(model: Table) -> Table:
    return model.fields[MODEL_SUBGRAPHS][0]


# ---------------------------------------------------------------------------------------------------------------
# The oracle: the official generated reader.
# ---------------------------------------------------------------------------------------------------------------


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _enum(schema: Any, name: str) -> dict[int, str]:
    return {v: k for k, v in vars(getattr(schema, name)).items() if not k.startswith("_") and isinstance(v, int)}


def _text(value: bytes | str | None) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else (value or "")


def _ints(values: Any) -> tuple[int, ...]:
    return () if values is None or isinstance(values, int) else tuple(int(v) for v in values)


def assert_matches_oracle(content: bytes) -> FlatModel:
    """Read ``content`` with edgecnn and with the official reader, and check every decoded field is equal."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flat = read_flatbuffer(content)
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = model.subgraphs[0]
    buffers = model.buffers or []
    types, builtins = _enum(schema, "TensorType"), _enum(schema, "BuiltinOperator")
    activations = _enum(schema, "ActivationFunctionType")

    assert flat.subgraphs == len(model.subgraphs)
    assert flat.size_bytes == len(content)
    assert flat.description == _text(model.description)
    assert len(flat.tensors) == len(graph.tensors or [])
    for index, (record, expected) in enumerate(zip(flat.tensors, graph.tensors or [], strict=True)):
        shape = _ints(expected.shape)
        signature = _ints(expected.shapeSignature) or shape
        quant = expected.quantization
        scales = [] if quant is None or quant.scale is None or isinstance(quant.scale, int) else list(quant.scale)
        zeros = [] if quant is None or quant.zeroPoint is None or isinstance(quant.zeroPoint, int) else quant.zeroPoint
        buffer = buffers[expected.buffer] if 0 < expected.buffer < len(buffers) else None
        constant = buffer is not None and (
            (buffer.data is not None and len(buffer.data) > 0) or (buffer.offset or 0) > 1
        )
        assert record.index == index
        assert record.name == _text(expected.name)
        assert record.shape == shape
        assert record.signature == signature
        assert record.dtype == types[expected.type].lower()
        assert record.quantized == bool(scales)
        assert record.scale == (float(scales[0]) if scales else 0.0)
        assert record.zero_point == (int(zeros[0]) if len(zeros) else 0)
        assert record.constant == constant
        assert record.dynamic == any(d < 0 for d in signature)

    assert [t.index for t in flat.inputs] == list(graph.inputs)
    assert [t.index for t in flat.outputs] == list(graph.outputs)
    assert len(flat.operators) == len(graph.operators or [])
    for index, (record, op) in enumerate(zip(flat.operators, graph.operators or [], strict=True)):
        code = model.operatorCodes[op.opcodeIndex]
        number = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = builtins[number] == "CUSTOM"
        assert record.index == index
        assert record.custom == custom
        assert record.name == (_text(code.customCode) if custom else builtins[number])
        assert record.version == code.version
        assert [t.index for t in record.inputs] == [i for i in _ints(op.inputs) if i != -1]
        assert [t.index for t in record.outputs] == [i for i in _ints(op.outputs) if i != -1]
        assert all(t is flat.tensors[t.index] for t in (*record.inputs, *record.outputs))
        options = {}
        if op.builtinOptions is not None:
            options = {_snake(k): v for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, float))}
        if "fused_activation_function" in options:
            options["fused_activation_function"] = activations.get(options["fused_activation_function"], "UNKNOWN")
        assert record.options == options, (record.name, record.options, options)
    return flat


# ---------------------------------------------------------------------------------------------------------------
# Hand-made models: fast, no TensorFlow.
# ---------------------------------------------------------------------------------------------------------------


def test_hand_made_model_matches_the_official_reader() -> None:
    flat = assert_matches_oracle(build(hand_model()))
    conv, gelu, custom = flat.operators
    assert (conv.name, conv.version, conv.custom) == ("CONV_2D", 3, False)
    assert conv.options == {
        "padding": 1,
        "stride_w": 1,
        "stride_h": 2,
        "fused_activation_function": "RELU6",
        "dilation_w_factor": 1,
        "dilation_h_factor": 2,
        "quantized_bias_type": 0,
    }
    assert (gelu.name, gelu.version, gelu.options) == ("GELU", 1, {"approximate": True})
    assert (custom.name, custom.version, custom.custom, custom.options) == ("MyCustomOp", 2, True, {})
    assert [t.name for t in custom.inputs] == ["gelu"]  # the optional input (-1) is left out
    assert [t.name for t in conv.activations] == ["input", "conv"]
    weights = flat.tensors[1]
    assert weights.constant and weights.quantized and (weights.scale, weights.zero_point) == (0.125, 0)
    assert not flat.tensors[4].constant  # buffer offset 1 is a placeholder, not data
    (inp,) = flat.inputs
    assert (inp.shape, inp.signature, inp.dynamic, inp.dtype) == ((1, 4, 4, 1), (-1, 4, 4, 1), True, "int8")
    assert (inp.scale, inp.zero_point) == (0.5, -3)
    assert flat.description == "hand-made"
    assert flatbuffer.multiply_accumulates(conv) == 1 * 4 * 4 * 2 * 3 * 3 * 1


def test_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(build(hand_model()))
    assert read_flatbuffer(path).size_bytes == path.stat().st_size
    assert read_flatbuffer(str(path)).operators[0].name == "CONV_2D"


def test_graph_describes_the_model() -> None:
    graph = read_graph(build(hand_model()))
    assert graph.ops == {"CONV_2D": 1, "GELU": 1, "MyCustomOp": 1}
    assert graph.tensor_dtypes == {"float32": 1, "int32": 1, "int8": 4}
    (inp,), (out,) = graph.inputs, graph.outputs
    assert inp.to_dict() == {
        "name": "input",
        "shape": [1, 4, 4, 1],
        "signature": [-1, 4, 4, 1],
        "dtype": "int8",
        "scale": 0.5,
        "zero_point": -3,
    }
    assert inp.quantized and inp.dynamic
    assert not out.quantized and not out.dynamic and out.dtype == "float32"


def test_defaults_of_absent_fields() -> None:
    """A writer may leave out any field (older schemas, or values equal to the default): the reader uses the
    schema's defaults, and agrees with the official reader on them."""
    model = hand_model()
    graph = graph_of(model)
    conv = graph.fields[GRAPH_OPERATORS][0]
    conv.fields[OP_OPTIONS] = Table({})  # every Conv2DOptions field at its default
    del graph.fields[GRAPH_TENSORS][3].fields[TENSOR_QUANT]
    del graph.fields[GRAPH_TENSORS][0].fields[TENSOR_SIGNATURE]
    del model.fields[MODEL_DESCRIPTION]
    flat = assert_matches_oracle(build(model))
    assert flat.operators[0].options["dilation_h_factor"] == 1
    assert flat.operators[0].options["fused_activation_function"] == "NONE"
    assert (flat.tensors[3].quantized, flat.tensors[3].scale, flat.tensors[3].zero_point) == (False, 0.0, 0)
    assert flat.tensors[0].signature == flat.tensors[0].shape
    assert flat.description == ""


def test_every_decoded_options_table_matches_the_official_reader() -> None:
    """Each options table the reader decodes, written with every field set (seeded values) and with none set:
    same slots, types, names and defaults as the official reader."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    rng = random.Random(0)
    ranges = {
        "b": (-128, 127),
        "B": (0, 255),
        "i": (-(2**31), 2**31 - 1),
        "I": (0, 2**32 - 1),
        "q": (-(2**63), 2**63 - 1),
    }
    for number, (name, fields) in flatbuffer._OPTIONS.items():
        assert getattr(schema.BuiltinOptions, name) == number, name
        values: dict[int, Any] = {}
        for f in fields:
            if f.code == "?":
                values[f.slot] = ("?", rng.random() < 0.5)
            elif f.code == "f":
                values[f.slot] = ("f", rng.randint(-4000, 4000) / 8)  # exact in float32
            else:
                values[f.slot] = (f.code, rng.randint(*ranges[f.code]))
        if any(f.name == "fused_activation_function" for f in fields):  # a known activation, by name
            values[next(f.slot for f in fields if f.name == "fused_activation_function")] = ("b", rng.randint(0, 5))
        for options in (Table(values), Table({})):
            model = hand_model()
            op = graph_of(model).fields[GRAPH_OPERATORS][1]
            op.fields[OP_OPTIONS_TYPE], op.fields[OP_OPTIONS] = ("B", number), options
            flat = assert_matches_oracle(build(model))
            assert set(flat.operators[1].options) == {f.name for f in fields}, name


def test_unknown_options_table_reads_as_no_options() -> None:
    model = hand_model()
    op = graph_of(model).fields[GRAPH_OPERATORS][1]
    op.fields[OP_OPTIONS_TYPE] = ("B", 250)  # a union member from a future schema
    assert read_flatbuffer(build(model)).operators[1].options == {}


def test_name_that_is_not_utf8_is_decoded_with_replacement() -> None:
    model = hand_model()
    graph_of(model).fields[GRAPH_TENSORS][0].fields[TENSOR_NAME] = b"in\xffput\xc3"
    flat = read_flatbuffer(build(model))
    assert flat.inputs[0].name == "in\ufffdput\ufffd"
    assert read_graph(build(model)).inputs[0].name == "in\ufffdput\ufffd"


def test_external_buffer_data() -> None:
    """Models over 2 GB keep constants after the flatbuffer (buffer offset and size): they count as constants, and
    must lie inside the file."""
    model = hand_model()
    model.fields[MODEL_BUFFERS][3] = Table({1: ("Q", 16), 2: ("Q", 8)})
    assert read_flatbuffer(build(model)).tensors[4].constant
    model.fields[MODEL_BUFFERS][3] = Table({1: ("Q", 10**6), 2: ("Q", 8)})
    with pytest.raises(ModelFormatError, match="buffer 3's data"):
        read_flatbuffer(build(model))


# ---------------------------------------------------------------------------------------------------------------
# Corrupt input: always ModelFormatError, one line, with the fix.
# ---------------------------------------------------------------------------------------------------------------


def assert_format_error(content: bytes, match: str | None = None) -> ModelFormatError:
    with pytest.raises(ModelFormatError, match=match) as info:
        read_flatbuffer(content)
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith(": it is truncated or corrupt, or not a TFLite model: export or copy it again"), message
    return info.value


@pytest.mark.parametrize(
    "content",
    [b"", b"TFL3", b"\x00" * 7, b"\x10\x00\x00\x00TFL2" + bytes(64), b"\x89PNG\r\n\x1a\n" + bytes(64)],
    ids=["empty", "short", "zeros", "wrong-identifier", "png"],
)
def test_not_a_model(content: bytes) -> None:
    assert_format_error(content, "not a TFLite model")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="cannot read"):
        read_flatbuffer(tmp_path / "missing.tflite")


def test_no_subgraph() -> None:
    model = hand_model()
    model.fields[MODEL_SUBGRAPHS] = []
    assert_format_error(build(model), "has no subgraph")
    del model.fields[MODEL_SUBGRAPHS]
    assert_format_error(build(model), "has no subgraph")


def test_every_truncation_of_a_model_is_refused() -> None:
    content = build(hand_model())
    for length in range(len(content)):
        assert_format_error(content[:length])


def test_random_bit_flips_never_escape_as_another_error() -> None:
    content = build(hand_model())
    rng = random.Random(1234)
    outcomes = Counter()
    for _ in range(3000):
        damaged = bytearray(content)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        try:
            read_flatbuffer(bytes(damaged))
            outcomes["read"] += 1
        except ModelFormatError as exc:
            assert str(exc).endswith(": it is truncated or corrupt, or not a TFLite model: export or copy it again")
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["read"] > 0  # both happen: a flip in weights is harmless


def _root_vtable(content: bytes) -> tuple[int, int]:
    root = struct.unpack_from("<I", content, 0)[0]
    return root, root - struct.unpack_from("<i", content, root)[0]


def test_offsets_pointing_outside_the_file() -> None:
    content = build(hand_model())
    root, vtable = _root_vtable(content)
    patched = bytearray(content)
    struct.pack_into("<I", patched, 0, len(content) + 100)  # the root table past the end
    assert_format_error(bytes(patched), "outside")
    patched = bytearray(content)
    struct.pack_into("<i", patched, root, -(2**30))  # the vtable past the end
    assert_format_error(bytes(patched), "vtable")
    patched = bytearray(content)
    struct.pack_into("<i", patched, root, root + 4)  # the vtable before the start
    assert_format_error(bytes(patched), "vtable")
    patched = bytearray(content)
    subgraphs_field = root + struct.unpack_from("<H", content, vtable + 4 + 2 * MODEL_SUBGRAPHS)[0]
    struct.pack_into("<I", patched, subgraphs_field, 2**31)  # the subgraphs vector past the end
    assert_format_error(bytes(patched), "subgraph")


def test_vtable_that_does_not_fit() -> None:
    content = build(hand_model())
    _, vtable = _root_vtable(content)
    for vtable_size, table_size in [(3, 8), (7, 8), (0xFFFE, 8), (12, 2), (12, 0xFFFF)]:
        patched = bytearray(content)
        struct.pack_into("<HH", patched, vtable, vtable_size, table_size)
        assert_format_error(bytes(patched))
    patched = bytearray(content)
    struct.pack_into("<H", patched, vtable + 4 + 2 * MODEL_SUBGRAPHS, 0xFFF0)  # a field outside its table
    assert_format_error(bytes(patched), "lies outside the table")


def test_vector_longer_than_the_file() -> None:
    content = build(hand_model())
    root, vtable = _root_vtable(content)
    field = root + struct.unpack_from("<H", content, vtable + 4 + 2 * MODEL_BUFFERS)[0]
    vector = field + struct.unpack_from("<I", content, field)[0]
    patched = bytearray(content)
    struct.pack_into("<I", patched, vector, 2**32 - 1)
    assert_format_error(bytes(patched), "buffer")


@pytest.mark.parametrize("index", [6, 1000, -2, -(2**31)])
def test_operator_tensor_index_out_of_range(index: int) -> None:
    model = hand_model()
    graph_of(model).fields[GRAPH_OPERATORS][0].fields[OP_INPUTS] = Vec("i", [0, index, 2])
    assert_format_error(build(model), f"operator 0 refers to tensor {index}")
    model = hand_model()
    graph_of(model).fields[GRAPH_OPERATORS][2].fields[OP_OUTPUTS] = Vec("i", [index])
    assert_format_error(build(model), f"operator 2 refers to tensor {index}")


@pytest.mark.parametrize("slot", [GRAPH_INPUTS, GRAPH_OUTPUTS])
def test_model_io_index_out_of_range(slot: int) -> None:
    model = hand_model()
    graph_of(model).fields[slot] = Vec("i", [6])
    assert_format_error(build(model), "refers to tensor 6")


def test_opcode_index_out_of_range() -> None:
    model = hand_model()
    graph_of(model).fields[GRAPH_OPERATORS][1].fields[OP_CODE] = ("I", 3)
    assert_format_error(build(model), "operator 1 uses operator code 3")


def test_buffer_index_out_of_range() -> None:
    model = hand_model()
    graph_of(model).fields[GRAPH_TENSORS][1].fields[TENSOR_BUFFER] = ("I", 4)
    assert_format_error(build(model), "tensor 1 refers to buffer 4")
    del model.fields[MODEL_BUFFERS]  # no buffers at all: only the sentinel 0 may be referred to
    assert_format_error(build(model), "tensor 1 refers to buffer 4")


@pytest.mark.parametrize("slot", [TENSOR_SHAPE, TENSOR_SIGNATURE])
def test_negative_dimension(slot: int) -> None:
    model = hand_model()
    graph_of(model).fields[GRAPH_TENSORS][2].fields[slot] = Vec("i", [-7])
    assert_format_error(build(model), "tensor 2 has a negative dimension")


# ---------------------------------------------------------------------------------------------------------------
# Models converted by TensorFlow, as an outside user would convert them.
# ---------------------------------------------------------------------------------------------------------------


def _keras_model(batch: int | None) -> Any:
    import keras
    import tensorflow as tf

    inputs = keras.Input((12, 12, 3), batch_size=batch)
    x = keras.layers.Conv2D(6, 3, dilation_rate=(2, 1), padding="same", activation="relu")(inputs)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Concatenate()([keras.layers.Add()([x, y]), y])
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Lambda(
        lambda t: tf.strided_slice(t, [0, 1, 0, 0], [0, 5, 6, 12], [1, 1, 2, 1], begin_mask=9, end_mask=9)
    )(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def converted() -> dict[str, bytes]:
    """Float and full-int8 conversions of one small Keras graph, with a static and with a dynamic batch."""
    import tensorflow as tf

    models = {}
    for batch in (1, None):
        model = _keras_model(batch)
        suffix = "" if batch else "_dynamic"
        models[f"float{suffix}"] = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        rng = np.random.default_rng(0)
        converter.representative_dataset = lambda rng=rng: (
            [rng.random((1, 12, 12, 3), dtype=np.float32)] for _ in range(16)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        with warnings.catch_warnings():  # int8 I/O without input statistics: expected, the calibration sets them
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            models[f"int8{suffix}"] = converter.convert()
    return models


@pytest.mark.slow
@pytest.mark.parametrize("key", ["float", "float_dynamic", "int8", "int8_dynamic"])
def test_converted_model_matches_the_official_reader(converted: dict[str, bytes], key: str) -> None:
    flat = assert_matches_oracle(converted[key])
    names = {op.name for op in flat.operators}
    assert {"DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "MAX_POOL_2D", "STRIDED_SLICE", "FULLY_CONNECTED"} <= names
    (inp,), (out,) = flat.inputs, flat.outputs
    assert inp.dynamic == key.endswith("_dynamic") == out.dynamic
    assert inp.shape == (1, 12, 12, 3)
    if key.startswith("int8"):
        assert (inp.dtype, out.dtype) == ("int8", "int8")
        assert inp.quantized and inp.scale > 0 and out.quantized and out.scale > 0
        depthwise = next(op for op in flat.operators if op.name == "DEPTHWISE_CONV_2D")
        assert depthwise.inputs[1].constant and depthwise.inputs[1].quantized
        assert all(t.dtype == "int8" for t in depthwise.activations)
    else:
        assert (inp.dtype, inp.scale, inp.zero_point, inp.quantized) == ("float32", 0.0, 0, False)
    if not key.endswith("_dynamic"):  # with a dynamic batch the converter turns a dilation into space-to-batch
        (conv,) = [op for op in flat.operators if op.name == "CONV_2D"]
        assert (conv.options["dilation_h_factor"], conv.options["dilation_w_factor"]) == (2, 1)
        assert conv.options["fused_activation_function"] == "RELU"
    depthwise = next(op for op in flat.operators if op.name == "DEPTHWISE_CONV_2D")
    assert depthwise.options["fused_activation_function"] == "RELU6"


@pytest.mark.slow
@pytest.mark.parametrize("key", ["float", "int8_dynamic"])
def test_graph_matches_the_interpreter(converted: dict[str, bytes], key: str) -> None:
    """read_graph, now without an interpreter, describes a model as the interpreter did."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=converted[key])
    graph = read_graph(converted[key])
    assert graph.ops == dict(sorted(Counter(op["op_name"] for op in interpreter._get_ops_details()).items()))
    dtypes = Counter(np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details())
    assert graph.tensor_dtypes == dict(sorted(dtypes.items()))
    for specs, details in [
        (graph.inputs, interpreter.get_input_details()),
        (graph.outputs, interpreter.get_output_details()),
    ]:
        assert len(specs) == len(details)
        for spec, detail in zip(specs, details):
            assert spec.name == detail["name"]
            assert list(spec.shape) == detail["shape"].tolist()
            assert list(spec.signature) == detail["shape_signature"].tolist()
            assert spec.dtype == np.dtype(detail["dtype"]).name
            assert (spec.scale, spec.zero_point) == (float(detail["quantization"][0]), int(detail["quantization"][1]))


@pytest.mark.slow
def test_converted_model_truncated_or_flipped(converted: dict[str, bytes]) -> None:
    content = converted["int8"]
    for length in [*range(0, len(content), 97), *range(len(content) - 64, len(content))]:
        assert_format_error(content[:length])
    rng = random.Random(99)
    for _ in range(500):
        damaged = bytearray(content)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        try:
            read_flatbuffer(bytes(damaged))
        except ModelFormatError as exc:
            assert str(exc).endswith(": it is truncated or corrupt, or not a TFLite model: export or copy it again")
