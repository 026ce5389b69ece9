"""What a ``.tflite`` graph holds: its operations, its input and output tensors, and the dtypes it computes in.

Read from the file itself (:func:`edgecnn.model.flatbuffer.read_flatbuffer`), not through an interpreter: a model
with an operation the runtime lacks can still be described (and the missing operation named), and describing a
model needs no runtime at all.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from edgecnn.model.flatbuffer import TensorRecord, read_flatbuffer

# The TensorType names of integer types: only these hold integers that stand for real values when quantized.
_INTEGER_DTYPES = frozenset({"int2", "int4", "uint4", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64"})


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

    Attributes:
        name: the tensor's name.
        shape: the static shape (1 where a dimension is only known at run time).
        signature: the shape signature, -1 where a dimension is dynamic.
        dtype: the lowercase TensorType name (``int8``, ``uint8``, ``float32``...).
        scale: the real value of one integer step; 0.0 when the tensor is not quantized.
        zero_point: the integer that represents real 0.
    """

    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def dynamic(self) -> bool:
        """True when a dimension is only known at run time."""
        return any(d < 0 for d in self.signature)

    @property
    def quantized(self) -> bool:
        """True when the tensor holds integers that stand for real values (``r = scale * (q - zero_point)``)."""
        return self.scale != 0.0 and self.dtype in _INTEGER_DTYPES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "signature": list(self.signature),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclass(frozen=True)
class ModelGraph:
    """A model's operations (name → count, in name order), I/O tensors and the dtypes of all its tensors."""

    ops: dict[str, int]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tensor_dtypes: dict[str, int]
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ops": dict(self.ops),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "tensor_dtypes": dict(self.tensor_dtypes),
            "size_bytes": self.size_bytes,
        }


def _spec(tensor: TensorRecord) -> TensorSpec:
    return TensorSpec(
        name=tensor.name,
        shape=tensor.shape,
        signature=tensor.signature,
        dtype=tensor.dtype,
        scale=tensor.scale,
        zero_point=tensor.zero_point,
    )


def read_graph(model: bytes | str | os.PathLike[str]) -> ModelGraph:
    """Describe a TFLite flatbuffer (bytes) or file without running it.

    Args:
        model: the flatbuffer's bytes, or the path of a ``.tflite`` file.

    Returns:
        The main subgraph's operations (custom operations by their custom code, ``FlexConv2D``...), its inputs and
        outputs, and how many of its tensors have each dtype.

    Raises:
        ModelFormatError: the file cannot be read, or is not a valid TFLite model.
    """
    flat = read_flatbuffer(model)
    ops = Counter(op.name for op in flat.operators)
    dtypes = Counter(t.dtype for t in flat.tensors)
    return ModelGraph(
        ops=dict(sorted(ops.items())),
        inputs=[_spec(t) for t in flat.inputs],
        outputs=[_spec(t) for t in flat.outputs],
        tensor_dtypes=dict(sorted(dtypes.items())),
        size_bytes=flat.size_bytes,
    )
