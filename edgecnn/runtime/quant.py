"""Quantize and dequantize with a tensor's scale and zero point: the only place this arithmetic lives.

TFLite's affine quantization maps a real value ``r`` to an integer ``q`` by ``r = scale * (q - zero_point)``.
A scale of 0 marks a tensor that is not quantized (float32 I/O), for which both functions are identities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor quantization of a model input or output.

    Attributes:
        dtype: numpy dtype name of the tensor (``int8``, ``uint8``, ``float32`` ...).
        scale: real value of one integer step; 0.0 when the tensor is not quantized.
        zero_point: the integer that represents real 0.
    """

    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """True when the tensor holds integers that stand for real values."""
        return self.scale != 0.0 and np.issubdtype(np.dtype(self.dtype), np.integer)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in model metadata."""
        return {"dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantParams:
        """Inverse of :meth:`to_dict`."""
        return cls(dtype=str(data["dtype"]), scale=float(data["scale"]), zero_point=int(data["zero_point"]))

    @classmethod
    def from_tensor_details(cls, details: dict[str, Any]) -> QuantParams:
        """Read an interpreter's ``get_input_details()``/``get_output_details()`` entry.

        Only per-tensor quantization is meaningful for model I/O; TFLite stores it in ``quantization``.
        """
        scale, zero_point = details["quantization"]
        return cls(dtype=np.dtype(details["dtype"]).name, scale=float(scale), zero_point=int(zero_point))


def quantize(values: np.ndarray, params: QuantParams) -> np.ndarray:
    """Map real values to the tensor's integer type: ``q = round(r / scale) + zero_point``, saturated.

    Rounding is half away from zero, as TFLite's reference QUANTIZE kernel does (``std::round``), not numpy's
    half-to-even, so values that fall exactly between two steps land where the interpreter puts them. Values
    outside the representable range saturate to the type's limits instead of wrapping around.
    """
    dtype = np.dtype(params.dtype)
    if not params.quantized:
        return np.asarray(values, dtype=dtype)
    # float32 division, as the interpreter computes it, so the same real value lands on the same step.
    scaled = np.asarray(values, dtype=np.float32) / np.float32(params.scale)
    # Half away from zero without adding 0.5 first (x + 0.5 can round up to the next integer in floating point).
    magnitude = np.abs(scaled)
    whole = np.floor(magnitude)
    rounded = np.copysign(whole + (magnitude - whole >= 0.5), scaled)
    info = np.iinfo(dtype)
    return np.clip(rounded.astype(np.float64) + params.zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, params: QuantParams) -> np.ndarray:
    """Map the tensor's integers back to real values as float32: ``r = scale * (q - zero_point)``."""
    if not params.quantized:
        return np.asarray(values, dtype=np.float32)
    # Subtract in int32 first: int8 - zero_point would overflow in the tensor's own type.
    centered = np.asarray(values, dtype=np.int32) - np.int32(params.zero_point)
    return (centered.astype(np.float64) * params.scale).astype(np.float32)
