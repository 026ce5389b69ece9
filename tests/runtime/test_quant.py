"""Unit tests for edgecnn.runtime.quant: affine quantization of model inputs and outputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.runtime.quant import QuantParams, dequantize, quantize

INT8 = QuantParams("int8", scale=1.0, zero_point=0)


def test_quantize_rounds_half_away_from_zero() -> None:
    """Exact halves round away from zero like std::round, not to even like numpy."""
    values = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    q = quantize(values, INT8)
    assert q.dtype == np.int8
    assert q.tolist() == [1, 2, 3, -1, -2, -3]
    assert np.round(values).tolist() != q.tolist()  # numpy alone would give 0, 2, 2, -0, -2, -2


def test_quantize_rounds_non_halves_to_nearest() -> None:
    """Values off the half point go to the nearest step."""
    q = quantize(np.array([0.49, 0.51, -0.49, -0.51, 1.2, -1.8]), INT8)
    assert q.tolist() == [0, 1, 0, -1, 1, -2]


def test_quantize_just_below_half_rounds_down() -> None:
    """The largest float32 below 0.5 rounds to 0, as std::round does (0.5 + x must not round up to 1.0).

    Model inputs are float32, and quantize works in float32 as the interpreter does.
    """
    below_half = np.nextafter(np.float32(0.5), np.float32(0.0))  # 0.49999997
    q = quantize(np.array([below_half, -below_half]), INT8)
    assert q.tolist() == [0, 0]


def test_quantize_halves_with_fractional_scale() -> None:
    """Halves are found after dividing by the scale: 0.25 / 0.5 = 0.5 -> 1."""
    params = QuantParams("int8", scale=0.5, zero_point=0)
    assert quantize(np.array([0.25, -0.25, 0.75]), params).tolist() == [1, -1, 2]


def test_quantize_saturates_int8() -> None:
    """Out-of-range values clip to -128 / 127 instead of wrapping."""
    q = quantize(np.array([127.0, 128.0, 1000.0, -128.0, -129.0, -1e9]), INT8)
    assert q.tolist() == [127, 127, 127, -128, -128, -128]


def test_quantize_saturates_uint8() -> None:
    """uint8 clips to 0 / 255."""
    params = QuantParams("uint8", scale=1.0, zero_point=0)
    q = quantize(np.array([-1.0, -300.0, 0.0, 255.0, 256.0, 1e6]), params)
    assert q.dtype == np.uint8
    assert q.tolist() == [0, 0, 0, 255, 255, 255]


def test_quantize_applies_zero_point() -> None:
    """q = round(r / scale) + zero_point, then saturated."""
    params = QuantParams("int8", scale=0.1, zero_point=-128)
    q = quantize(np.array([0.0, 1.0, 25.5, 26.0, -1.0]), params)
    assert q.tolist() == [-128, -118, 127, 127, -128]
    u8 = QuantParams("uint8", scale=0.5, zero_point=128)
    assert quantize(np.array([0.0, 1.0, -1.0, 63.5, 64.0]), u8).tolist() == [128, 130, 126, 255, 255]


def test_dequantize_is_inverse_formula() -> None:
    """r = scale * (q - zero_point), as float32."""
    params = QuantParams("int8", scale=0.25, zero_point=3)
    r = dequantize(np.array([3, 7, -1, 127, -128], dtype=np.int8), params)
    assert r.dtype == np.float32
    assert r.tolist() == [0.0, 1.0, -1.0, 31.0, -32.75]


def test_dequantize_int8_zero_point_minus_128_does_not_overflow() -> None:
    """127 - (-128) = 255 steps; subtracting in int8 would wrap to -1."""
    params = QuantParams("int8", scale=1.0 / 255.0, zero_point=-128)
    r = dequantize(np.array([127, -128, 0], dtype=np.int8), params)
    np.testing.assert_allclose(r, [1.0, 0.0, 128.0 / 255.0], rtol=1e-6)
    params2 = QuantParams("int8", scale=0.5, zero_point=-128)
    assert dequantize(np.array([127], dtype=np.int8), params2).tolist() == [127.5]


def test_dequantize_uint8_with_zero_point() -> None:
    """uint8 minus a zero point goes negative without wrapping."""
    params = QuantParams("uint8", scale=2.0, zero_point=128)
    r = dequantize(np.array([0, 128, 255], dtype=np.uint8), params)
    assert r.tolist() == [-256.0, 0.0, 254.0]


@pytest.mark.parametrize(
    "params",
    [
        QuantParams("int8", scale=1.0 / 255.0, zero_point=-128),
        QuantParams("int8", scale=0.0371, zero_point=5),
        QuantParams("uint8", scale=0.0078125, zero_point=128),
    ],
)
def test_round_trip_error_within_half_step(params: QuantParams) -> None:
    """For in-range values, dequantize(quantize(r)) differs from r by at most scale / 2."""
    info = np.iinfo(np.dtype(params.dtype))
    low = params.scale * (info.min - params.zero_point)
    high = params.scale * (info.max - params.zero_point)
    values = np.random.default_rng(0).uniform(low, high, size=2000)
    back = dequantize(quantize(values, params), params).astype(np.float64)
    assert np.max(np.abs(back - values)) <= params.scale / 2 + 1e-6


def test_round_trip_exact_on_grid() -> None:
    """Every representable integer survives dequantize then quantize unchanged."""
    params = QuantParams("int8", scale=0.0123, zero_point=-7)
    q = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(quantize(dequantize(q, params), params), q)


def test_float32_params_pass_values_through() -> None:
    """scale 0 (float tensors): quantize and dequantize are identities returning float32."""
    params = QuantParams("float32")
    values = np.array([0.123456, -3.5, 1e6, 0.5], dtype=np.float32)
    q = quantize(values, params)
    assert q.dtype == np.float32
    assert np.array_equal(q, values)
    d = dequantize(values, params)
    assert d.dtype == np.float32
    assert np.array_equal(d, values)


def test_quantized_property() -> None:
    """quantized needs an integer dtype and a non-zero scale."""
    assert QuantParams("int8", 0.5, 0).quantized
    assert QuantParams("uint8", 0.1, 128).quantized
    assert not QuantParams("int8", 0.0, 0).quantized
    assert not QuantParams("float32", 0.0, 0).quantized
    assert not QuantParams("float32", 0.5, 0).quantized
    assert not QuantParams("float16").quantized


def test_to_dict_from_dict_round_trip() -> None:
    """to_dict is JSON-ready and from_dict restores an equal object."""
    params = QuantParams("int8", 0.00390625, -128)
    data = params.to_dict()
    assert data == {"dtype": "int8", "scale": 0.00390625, "zero_point": -128}
    assert QuantParams.from_dict(data) == params
    assert QuantParams.from_dict({"dtype": "uint8", "scale": "0.5", "zero_point": "3"}) == QuantParams("uint8", 0.5, 3)


def test_from_tensor_details() -> None:
    """An interpreter details entry (numpy dtype class, numpy scalars) becomes plain Python values."""
    params = QuantParams.from_tensor_details({"quantization": (0.5, 3), "dtype": np.int8, "name": "input"})
    assert params == QuantParams("int8", 0.5, 3)
    assert isinstance(params.scale, float) and isinstance(params.zero_point, int)
    floats = QuantParams.from_tensor_details({"quantization": (np.float32(0.0), np.int32(0)), "dtype": np.float32})
    assert floats == QuantParams("float32", 0.0, 0)
    assert not floats.quantized
    u8 = QuantParams.from_tensor_details(
        {"quantization": (np.float32(0.25), np.int64(128)), "dtype": np.dtype("uint8")}
    )
    assert u8 == QuantParams("uint8", 0.25, 128)
    assert type(u8.zero_point) is int
