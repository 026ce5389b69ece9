"""A ``.tflite`` file's operators as the flatbuffer stores them: names, versions, tensors and options.

The interpreter lists a graph's operations but not their versions, the constant-ness of their inputs or their
options (fused activations, dilations...). Accelerator pre-flights (the Edge TPU's) need those, and must not
need the accelerator's compiler, so they read the flatbuffer here with the schema module ai-edge-litert ships.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from edgecnn.errors import MissingDependencyError, ModelFormatError


@dataclass(frozen=True)
class TensorRecord:
    """One tensor: shape (and signature, -1 where dynamic), dtype name, and whether it is quantized/constant."""

    index: int
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    quantized: bool
    constant: bool

    @property
    def dynamic(self) -> bool:
        """True when a dimension is only known at run time."""
        return any(d < 0 for d in self.signature)


@dataclass(frozen=True)
class OperatorRecord:
    """One operator in execution order: its name (builtin, or the custom code), version, tensors and options."""

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
    """The main subgraph of a ``.tflite`` file."""

    operators: list[OperatorRecord]
    inputs: list[TensorRecord]
    outputs: list[TensorRecord]
    subgraphs: int
    size_bytes: int


@cache
def _schema() -> Any:
    try:
        return importlib.import_module("ai_edge_litert.schema_py_generated")
    except ImportError:
        raise MissingDependencyError("ai-edge-litert", purpose="read a .tflite file's operators") from None


@cache
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(_schema(), enum_name)
    return {value: name for name, value in vars(enum).items() if not name.startswith("_") and isinstance(value, int)}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _options(op: Any) -> dict[str, Any]:
    """The builtin options' plain fields (``fused_activation_function``, ``dilation_h_factor``...)."""
    if op.builtinOptions is None:
        return {}
    values = {_snake(k): v for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, float, bool))}
    if "fused_activation_function" in values:
        names = _enum_names("ActivationFunctionType")
        values["fused_activation_function"] = names.get(values["fused_activation_function"], "UNKNOWN")
    return values


def read_flatbuffer(model: bytes | str | os.PathLike[str]) -> FlatModel:
    """Read the operators, tensors and options of a ``.tflite`` flatbuffer (bytes) or file.

    Raises:
        ModelFormatError: the bytes are not a TFLite flatbuffer.
        MissingDependencyError: ai-edge-litert (which ships the schema) is not installed.
    """
    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    schema = _schema()
    where = "the model" if isinstance(model, bytes) else str(model)
    # TFLite files carry the identifier "TFL3" at bytes 4..8; anything else is not a model.
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ModelFormatError(f"{where} is not a TFLite model (no TFL3 identifier): re-run edgecnn convert")
    try:
        parsed = schema.ModelT.InitFromPackedBuf(content, 0)
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails anywhere inside the generated reader
        raise ModelFormatError(f"{where} is not a valid TFLite model ({exc}): re-run edgecnn convert") from None
    if not parsed.subgraphs:
        raise ModelFormatError(f"{where} has no subgraph: re-run edgecnn convert")
    graph = parsed.subgraphs[0]
    buffers = parsed.buffers or []
    types = _enum_names("TensorType")
    builtins = _enum_names("BuiltinOperator")

    def constant(buffer: int) -> bool:
        if buffer <= 0 or buffer >= len(buffers):
            return False
        data = buffers[buffer]
        # Small models keep constants inline (data); models over 2 GB keep them after the flatbuffer (offset).
        return (data.data is not None and len(data.data) > 0) or bool(getattr(data, "offset", 0))

    tensors = []
    for index, tensor in enumerate(graph.tensors or []):
        shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
        signature = tuple(int(d) for d in tensor.shapeSignature) if tensor.shapeSignature is not None else shape
        quant = tensor.quantization
        tensors.append(
            TensorRecord(
                index=index,
                name=tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name),
                shape=shape,
                signature=signature if len(signature) else shape,
                dtype=types.get(tensor.type, "UNKNOWN").lower(),
                quantized=quant is not None and quant.scale is not None and len(quant.scale) > 0,
                constant=constant(tensor.buffer),
            )
        )
    operators = []
    for index, op in enumerate(graph.operators or []):
        code = parsed.operatorCodes[op.opcodeIndex]
        # The schema keeps codes under 127 in a byte for old readers: the real code is the larger of the two.
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = builtins.get(builtin) == "CUSTOM"
        name = (code.customCode or b"").decode() if custom else builtins.get(builtin, f"BUILTIN_{builtin}")
        operators.append(
            OperatorRecord(
                index=index,
                name=name,
                version=int(code.version),
                custom=custom,
                inputs=tuple(tensors[i] for i in (op.inputs if op.inputs is not None else ()) if i >= 0),
                outputs=tuple(tensors[i] for i in (op.outputs if op.outputs is not None else ())),
                options=_options(op),
            )
        )
    return FlatModel(
        operators=operators,
        inputs=[tensors[i] for i in graph.inputs],
        outputs=[tensors[i] for i in graph.outputs],
        subgraphs=len(parsed.subgraphs),
        size_bytes=len(content),
    )


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
