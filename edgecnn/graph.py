"""What a ``.tflite`` graph holds: its operations, its input and output tensors, and the dtypes it computes in.

Read through the interpreter without allocating tensors, so a model with an operation the runtime lacks can
still be described (and the missing operation named) instead of failing to load.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ModelFormatError
from edgecnn.fileio import captured_native_stderr
from edgecnn.interpreter import runtime_module
from edgecnn.quant import QuantParams


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: static shape, shape signature (-1 where dynamic), dtype and quantization."""

    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    params: QuantParams

    @property
    def dynamic(self) -> bool:
        """True when a dimension is only known at run time."""
        return any(d < 0 for d in self.signature)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        shapes = {"shape": list(self.shape), "signature": list(self.signature)}
        return {"name": self.name, **shapes, **self.params.to_dict()}


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


def _tensor(details: dict[str, Any]) -> TensorSpec:
    signature = details.get("shape_signature")
    shape = tuple(int(v) for v in details["shape"])
    return TensorSpec(
        name=str(details["name"]),
        shape=shape,
        signature=tuple(int(v) for v in signature) if signature is not None and len(signature) else shape,
        params=QuantParams.from_tensor_details(details),
    )


def read_graph(model: bytes | str | os.PathLike[str], *, runtime: str | None = None) -> ModelGraph:
    """Describe a TFLite flatbuffer (bytes) or file without running it.

    Raises:
        ModelFormatError: the bytes are not a TFLite model.
    """
    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    _, module = runtime_module(runtime)
    try:
        with captured_native_stderr():
            interpreter = module.Interpreter(model_content=content)
    except (ValueError, RuntimeError) as exc:
        where = "the converted model" if isinstance(model, bytes) else str(model)
        raise ModelFormatError(f"{where} is not a valid TFLite model ({exc}): re-run edgecnn convert") from None
    # _get_ops_details is the one way the Python interpreters list a graph's operations (stable since TF 2.5).
    ops = Counter(str(op["op_name"]) for op in interpreter._get_ops_details())
    dtypes = Counter(np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details())
    return ModelGraph(
        ops=dict(sorted(ops.items())),
        inputs=[_tensor(d) for d in interpreter.get_input_details()],
        outputs=[_tensor(d) for d in interpreter.get_output_details()],
        tensor_dtypes=dict(sorted(dtypes.items())),
        size_bytes=len(content),
    )
