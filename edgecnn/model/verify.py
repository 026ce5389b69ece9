"""The one gate a ``.tflite`` passes before any runtime or target sees it: every offset, length and index checked.

Native runtimes trust the file. LiteRT runs the FlatBuffers verifier and checks indices while building the graph;
TensorFlow Lite Micro checks almost nothing, so a model with one flipped bit (a buffer index past the buffer
list) made it read unrelated memory and die with SIGSEGV. This module walks every table those runtimes read, in
pure Python (on :mod:`edgecnn.model.flatbuffer`'s bounds-checked reader, in its strict mode), and refuses the
model with one line before native code loads it:

- the identifier and the size first, from the first 8 bytes (:data:`~edgecnn.model.flatbuffer.MAX_MODEL_BYTES`);
- every table, vtable, vector and string inside the file, aligned as FlatBuffers aligns them, strings
  NUL-terminated;
- operator codes; every subgraph (not only the main one): tensors (shape vectors, a known type, the buffer index,
  the quantization vectors and their matching lengths, sparsity and variant sub-types), operators (operator code
  index; inputs in range or -1 for an optional input left out; outputs and intermediates in range; options tables
  and their vectors; subgraph indices of control flow), the subgraph's inputs and outputs;
- buffers (inline data, or offset and size of data kept after the flatbuffer, inside the file), and a constant
  tensor's buffer holding exactly the bytes its shape and type need (LiteRT's rule; TFLM reads them unchecked);
- signature definitions (subgraph and tensor indices) and metadata entries (buffer indices).

What passes may still be refused by a runtime (an operation it lacks, a shape its kernels reject), but no longer
by reading outside the file. What the runtimes could still crash on is run out of process by the targets.
"""

from __future__ import annotations

import os

from edgecnn.model.flatbuffer import (
    _TENSOR_TYPES,
    MAX_MODEL_BYTES,
    _File,
    _operator_code,
    _options,
    _Table,
    model_content,
)

__all__ = ["MAX_MODEL_BYTES", "verify_model"]

# Field slots (schema.fbs, declaration order) of every table walked here.
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS = 1, 2, 3, 4
_MODEL_METADATA_BUFFER, _MODEL_METADATA, _MODEL_SIGNATURE_DEFS = 5, 6, 7
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS, _SUBGRAPH_NAME = 0, 1, 2, 3, 4
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_NAME, _TENSOR_QUANTIZATION = 0, 1, 2, 3, 4
_TENSOR_SPARSITY, _TENSOR_SIGNATURE, _TENSOR_VARIANTS = 6, 7, 9
_QUANT_MIN, _QUANT_MAX, _QUANT_SCALE, _QUANT_ZERO_POINT, _QUANT_DETAILS = 0, 1, 2, 3, 5
_SPARSITY_ORDER, _SPARSITY_BLOCK_MAP, _SPARSITY_DIMS = 0, 1, 2
_DIM_SEGMENTS_TYPE, _DIM_SEGMENTS, _DIM_INDICES_TYPE, _DIM_INDICES = 2, 3, 4, 5
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS, _OP_OPTIONS_TYPE, _OP_OPTIONS, _OP_CUSTOM_OPTIONS = 0, 1, 2, 3, 4, 5
_OP_MUTATING_INPUTS, _OP_INTERMEDIATES, _OP_LARGE_OFFSET, _OP_LARGE_SIZE = 7, 8, 9, 10
_OP_OPTIONS_2_TYPE, _OP_OPTIONS_2 = 11, 12
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS, _SIGNATURE_KEY, _SIGNATURE_SUBGRAPH = 0, 1, 2, 4
_TENSOR_MAP_NAME, _TENSOR_MAP_INDEX = 0, 1

_OPTIONAL_TENSOR = -1

# Bytes per element of each TensorType (by value) whose constant buffer size the shape fixes. Left out: string,
# resource and variant (variable-length), and the sub-byte types (int4, int2, uint4), packed in ways that vary.
_ELEMENT_BYTES = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2, "complex64": 8,
    "int8": 1, "float64": 8, "complex128": 16, "uint64": 8, "uint32": 4, "uint16": 2, "bfloat16": 2,
    "float8_e4m3fn": 1, "float8_e5m2": 1,
}  # fmt: skip

# The vector and string fields of option tables (slot, element bytes; 0 for a string), by union member. Generated
# from schema.fbs: the builtin options union (Operator.builtin_options) and the second one (builtin_options_2).
_OPTION_VECTORS: dict[int, tuple[tuple[int, int], ...]] = {
    3: ((1, 4), (2, 4)),  # ConcatEmbeddingsOptions
    17: ((0, 4),),  # ReshapeOptions.new_shape
    30: ((0, 4),),  # SqueezeOptions.squeeze_dims
    111: ((0, 0), (1, 0)),  # VarHandleOptions
    115: ((0, 4),),  # BucketizeOptions.boundaries
}
_OPTION_2_VECTORS: dict[int, tuple[tuple[int, int], ...]] = {
    2: ((0, 8),),
    3: ((0, 8), (1, 8), (2, 8)),
    4: ((0, 8), (1, 8), (2, 8), (3, 8), (4, 1), (7, 8), (10, 8), (13, 8), (16, 4)),
    5: ((0, 0), (2, 0), (4, 4), (5, 1)),
    6: ((0, 8),),
    7: ((1, 8), (2, 8), (3, 8)),
    9: ((0, 8),),
    10: ((0, 8), (1, 8), (2, 8)),
    12: ((0, 8), (1, 8), (2, 8), (3, 8), (4, 4)),
    13: ((0, 8), (1, 8), (2, 8), (3, 8), (4, 8)),
    16: ((0, 8), (1, 8), (2, 8), (4, 8)),
    17: ((0, 8),),
    21: ((0, 0), (2, 1)),
    23: ((0, 4),),
}

# Sparse index vectors (DimensionMetadata.array_segments / array_indices): union member -> element bytes.
_SPARSE_VECTOR_BYTES = {1: 4, 2: 2, 3: 1}  # Int32Vector, Uint16Vector, Uint8Vector


def verify_model(model: bytes | str | os.PathLike[str]) -> bytes:
    """Check a ``.tflite`` model completely, so that no runtime reads outside it; return its bytes.

    Args:
        model: the flatbuffer's bytes, or the path of a ``.tflite`` file (its first 8 bytes and its size are
            checked before it is read whole).

    Returns:
        The bytes verified: hand these, not the path, to what loads the model, so that it loads what was checked.

    Raises:
        ModelFormatError: the file cannot be read; has no ``TFL3`` identifier; is over
            :data:`~edgecnn.model.flatbuffer.MAX_MODEL_BYTES`; or an offset, length, alignment or index in it is
            invalid (one line naming the first problem found).
    """
    content, where = model_content(model)
    _verify(_File(content, where, strict=True))
    return content


def _verify(file: _File) -> None:
    root = file.table(file.follow(0, "the root offset"), "the model")
    codes = root.tables(_MODEL_OPERATOR_CODES, "operator code")
    for i, table in enumerate(codes):
        code = _operator_code(table)  # reads its scalars and custom code string, each checked
        # A code past the schema's operators is one no runtime registers (LiteRT: "builtin_code out of range").
        if code.name.startswith("BUILTIN_"):
            raise file.error(f"operator code {i} is {code.name}, which no TFLite schema edgecnn knows defines")
    buffer_sizes = [_buffer_size(file, b) for b in root.tables(_MODEL_BUFFERS, "buffer")]
    subgraphs = root.tables(_MODEL_SUBGRAPHS, "subgraph")
    if not len(subgraphs):
        raise file.error("no subgraph")
    tensor_counts = [
        _verify_subgraph(file, graph, f"subgraph {k}", len(codes), buffer_sizes, len(subgraphs))
        for k, graph in enumerate(subgraphs)
    ]
    root.string(_MODEL_DESCRIPTION, "description")
    for index in root.scalars(_MODEL_METADATA_BUFFER, "i", "metadata buffer list"):
        _index(file, index, len(buffer_sizes), "the metadata buffer list", "buffer")
    for i, entry in enumerate(root.tables(_MODEL_METADATA, "metadata entry")):
        entry.string(_METADATA_NAME, "name")
        _index(file, entry.scalar(_METADATA_BUFFER, "I", 0, "buffer"), len(buffer_sizes), f"metadata {i}", "buffer")
    for i, signature in enumerate(root.tables(_MODEL_SIGNATURE_DEFS, "signature")):
        _verify_signature(file, signature, f"signature {i}", tensor_counts)


def _index(file: _File, index: int, count: int, what: str, kind: str) -> None:
    """Check that ``index`` picks one of ``count`` items (``kind`` names them in the message)."""
    if not 0 <= index < count:
        raise file.error(f"{what} refers to {kind} {index}, but there are {count}")


def _buffer_size(file: _File, buffer: _Table) -> int:
    """The bytes a buffer holds, inline or (models over 2 GB) at ``offset`` after the flatbuffer, inside the file."""
    _, length = buffer.vector(_BUFFER_DATA, 1, "data")
    offset = buffer.scalar(_BUFFER_OFFSET, "Q", 0, "offset")
    size = buffer.scalar(_BUFFER_SIZE, "Q", 0, "size")
    if offset > 1:  # 0 and 1 both mean "no external data" (the converter writes 1 as a placeholder)
        file.need(offset, size, f"{buffer.what}'s data")
        return size
    return length


def _verify_subgraph(file: _File, graph: _Table, what: str, codes: int, buffer_sizes: list[int], subgraphs: int) -> int:
    """Verify one subgraph; return its tensor count (what signatures index)."""
    tensors = graph.tables(_SUBGRAPH_TENSORS, "tensor")
    for i, tensor in enumerate(tensors):
        _verify_tensor(file, tensor, f"{what} tensor {i}", buffer_sizes)
    count = len(tensors)
    for slot, name in ((_SUBGRAPH_INPUTS, "input list"), (_SUBGRAPH_OUTPUTS, "output list")):
        for index in graph.scalars(slot, "i", name):
            _index(file, index, count, f"{what}'s {name}", "tensor")
    for i, op in enumerate(graph.tables(_SUBGRAPH_OPERATORS, "operator")):
        _verify_operator(file, op, f"{what} operator {i}", codes, count, subgraphs)
    graph.string(_SUBGRAPH_NAME, "name")
    return count


def _verify_tensor(file: _File, tensor: _Table, what: str, buffer_sizes: list[int]) -> None:
    shape = tensor.scalars(_TENSOR_SHAPE, "i", "shape")
    signature = tensor.scalars(_TENSOR_SIGNATURE, "i", "shape signature")
    if any(d < -1 for d in (*shape, *signature)):
        raise file.error(f"{what} has a negative dimension in {list(shape)} / {list(signature)}")
    type_code = tensor.scalar(_TENSOR_TYPE, "b", 0, "type")
    if not 0 <= type_code < len(_TENSOR_TYPES):
        raise file.error(f"{what} has the unknown type {type_code}")
    tensor.string(_TENSOR_NAME, "name")
    buffer = tensor.scalar(_TENSOR_BUFFER, "I", 0, "buffer")
    if buffer != 0:  # buffer 0 is the schema's empty sentinel, valid even in a file without buffers
        _index(file, buffer, len(buffer_sizes), what, "buffer")
    quantization = tensor.table(_TENSOR_QUANTIZATION, "quantization")
    if quantization is not None:
        _verify_quantization(file, quantization, what)
    sparsity = tensor.table(_TENSOR_SPARSITY, "sparsity")
    if sparsity is not None:
        _verify_sparsity(sparsity)
    for variant in tensor.tables(_TENSOR_VARIANTS, "variant sub-type"):
        variant.scalars(0, "i", "shape")
    dtype = _TENSOR_TYPES[type_code]
    stored = buffer_sizes[buffer] if buffer else 0
    if stored and sparsity is None and dtype in _ELEMENT_BYTES and all(d >= 0 for d in shape):
        needed = _ELEMENT_BYTES[dtype]
        for d in shape:
            needed *= d
        if needed != stored:
            raise file.error(
                f"{what} is {dtype} {list(shape)}, {needed} bytes, but its buffer {buffer} holds {stored} bytes"
            )


def _verify_quantization(file: _File, table: _Table, what: str) -> None:
    table.vector(_QUANT_MIN, 4, "min")
    table.vector(_QUANT_MAX, 4, "max")
    _, scales = table.vector(_QUANT_SCALE, 4, "scale")
    _, zeros = table.vector(_QUANT_ZERO_POINT, 8, "zero point")
    # Both runtimes read one zero point per scale without checking the zero points' count.
    if scales and zeros and scales != zeros:
        raise file.error(f"{what} has {scales} quantization scales but {zeros} zero points")
    details = table.table(_QUANT_DETAILS, "quantization details")
    if details is not None:
        details.vector(0, 1, "custom quantization")


def _verify_sparsity(table: _Table) -> None:
    table.scalars(_SPARSITY_ORDER, "i", "traversal order")
    table.scalars(_SPARSITY_BLOCK_MAP, "i", "block map")
    for dim in table.tables(_SPARSITY_DIMS, "dimension metadata"):
        for type_slot, slot, name in (
            (_DIM_SEGMENTS_TYPE, _DIM_SEGMENTS, "array segments"),
            (_DIM_INDICES_TYPE, _DIM_INDICES, "array indices"),
        ):
            member = dim.scalar(type_slot, "B", 0, f"{name} type")
            values = dim.table(slot, name)
            if values is not None and member in _SPARSE_VECTOR_BYTES:
                values.vector(0, _SPARSE_VECTOR_BYTES[member], f"{name} values")


def _verify_operator(file: _File, op: _Table, what: str, codes: int, tensors: int, subgraphs: int) -> None:
    _index(file, op.scalar(_OP_OPCODE, "I", 0, "opcode index"), codes, what, "operator code")

    def check(slot: int, name: str, *, optional: bool) -> None:
        for index in op.scalars(slot, "i", name):
            if not (optional and index == _OPTIONAL_TENSOR):
                _index(file, index, tensors, f"{what}'s {name}", "tensor")

    check(_OP_INPUTS, "inputs", optional=True)
    check(_OP_OUTPUTS, "outputs", optional=False)
    check(_OP_INTERMEDIATES, "intermediates", optional=False)
    op.vector(_OP_CUSTOM_OPTIONS, 1, "custom options")
    op.vector(_OP_MUTATING_INPUTS, 1, "mutating variable inputs")
    large = op.scalar(_OP_LARGE_OFFSET, "Q", 0, "large custom options offset")
    if large > 1:
        file.need(large, op.scalar(_OP_LARGE_SIZE, "Q", 0, "large custom options size"), f"{what}'s custom options")
    values = _options(op)  # every scalar field of the options tables edgecnn knows, each checked
    for key, value in values.items():
        if key == "subgraph" or key.endswith("subgraph_index"):
            _index(file, value, subgraphs, f"{what}'s {key}", "subgraph")
    _verify_options(op, _OP_OPTIONS_TYPE, _OP_OPTIONS, "builtin options", _OPTION_VECTORS)
    _verify_options(op, _OP_OPTIONS_2_TYPE, _OP_OPTIONS_2, "builtin options 2", _OPTION_2_VECTORS)


def _verify_options(
    op: _Table, type_slot: int, slot: int, name: str, vectors: dict[int, tuple[tuple[int, int], ...]]
) -> None:
    """An options table (whatever its member: checking the table checks its vtable) and its vectors and strings."""
    member = op.scalar(type_slot, "B", 0, f"{name} type")
    table = op.table(slot, name)
    if table is None:
        return
    for field_slot, element in vectors.get(member, ()):
        label = f"{name} field {field_slot}"
        if element:
            table.vector(field_slot, element, label)
        else:
            table.string(field_slot, label)


def _verify_signature(file: _File, signature: _Table, what: str, tensor_counts: list[int]) -> None:
    signature.string(_SIGNATURE_KEY, "key")
    graph = signature.scalar(_SIGNATURE_SUBGRAPH, "I", 0, "subgraph index")
    _index(file, graph, len(tensor_counts), what, "subgraph")
    for slot, name in ((_SIGNATURE_INPUTS, "input"), (_SIGNATURE_OUTPUTS, "output")):
        for i, entry in enumerate(signature.tables(slot, name)):
            entry.string(_TENSOR_MAP_NAME, "name")
            index = entry.scalar(_TENSOR_MAP_INDEX, "I", 0, "tensor index")
            _index(file, index, tensor_counts[graph], f"{what}'s {name} {i}", "tensor")
