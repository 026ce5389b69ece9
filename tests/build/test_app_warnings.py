"""What convert says about a model an Android app library (MediaPipe Tasks, the TFLite Task Library) would load."""

from __future__ import annotations

import pytest

from edgecnn.build.convert import app_library_warnings
from edgecnn.runtime.bundle import ModelInfo
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams


def info(
    *, io: str = "uint8", scale: float = 1 / 255, zero_point: int = 0, mean=(0.0,), std=(1.0,), **spec: object
) -> ModelInfo:
    return ModelInfo(
        labels=["a", "b"],
        preprocessing=Preprocessing(height=8, width=8, channels=3, mean=mean, std=std, **spec),
        input_shape=[1, 8, 8, 3],
        input=QuantParams(io, scale if io != "float32" else 0.0, zero_point if io != "float32" else 0),
        output=QuantParams(io, 1 / 256 if io != "float32" else 0.0, 0),
        quantization="int8",
    )


def test_an_app_ready_model_gets_no_warning() -> None:
    assert app_library_warnings(info(), model="m.tflite") == []
    assert app_library_warnings(info(io="float32"), model="m.tflite") == []
    # [-1, 1]: zero point 128 for 127.5 is half a step off at most, which rounding absorbs.
    assert app_library_warnings(info(scale=2 / 255, zero_point=128, mean=(0.5,), std=(0.5,)), model="m") == []


def test_int8_io_says_to_use_uint8() -> None:
    [line] = app_library_warnings(info(io="int8", zero_point=-128), model="m.tflite")
    assert "int8 input and output" in line and "--io uint8" in line


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"layout": "NCHW"}, "RGB NCHW input"),
        ({"bgr": True}, "BGR NHWC input"),
        ({"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}, "per-channel"),
        ({"scale": 1 / 200}, "steps away"),  # calibration that never saw a white pixel
        ({"zero_point": 10}, "steps away"),
    ],
)
def test_what_an_app_library_would_refuse_or_feed_differently(changes: dict, words: str) -> None:
    lines = app_library_warnings(info(**changes), model="m.tflite")
    assert any(words in line for line in lines), lines
