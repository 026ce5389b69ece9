"""Training and conversion on the test photos: metadata, quantization, static shapes, determinism."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import PHOTO_CLASSES

from edgecnn.runtime.bundle import read_keras_info, read_tflite_info
from edgecnn.runtime.interpreter import load_interpreter


def test_trained_model_carries_labels_and_preprocessing(models: dict[str, Path]) -> None:
    info = read_keras_info(models["keras"])
    assert info.labels == PHOTO_CLASSES  # the folders sorted by name: eight, five, four, ...
    assert info.preprocessing.shape == (32, 32, 3)
    training = info.extra["training"]
    assert training["num_train"] == 540 and training["num_validation"] == 60  # 10% of 60 per class held out
    assert 0.0 <= training["metrics"]["val_accuracy"] <= 1.0
    assert "edgecnn.json" in zipfile.ZipFile(models["keras"]).namelist()


def test_int8_model_is_full_integer_with_static_batch(models: dict[str, Path]) -> None:
    info = read_tflite_info(models["int8"])
    assert info.quantization == "int8"
    assert info.input_shape == [1, 32, 32, 3]
    interpreter = load_interpreter(models["int8"], reference_kernels=True)  # no delegate: real ops
    details = interpreter.get_tensor_details()
    # Every tensor the graph computes with is integer: no float op was left in.
    float_tensors = [d["name"] for d in details if d["dtype"] == np.float32]
    assert float_tensors == []
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= {"CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert not ops & {"SHAPE", "STRIDED_SLICE", "PACK", "QUANTIZE", "DEQUANTIZE"}
    inp = interpreter.get_input_details()[0]
    assert info.input.dtype == "int8"
    assert (info.input.scale, info.input.zero_point) == tuple(inp["quantization"])
    assert info.model_sha256 == hashlib.sha256(models["int8"].read_bytes()).hexdigest()
    calibration = info.extra["calibration"]
    assert calibration["num_images"] == 100 and len(calibration["fingerprint"]) == 64


def test_int8_is_smaller_than_float(models: dict[str, Path]) -> None:
    assert models["int8"].stat().st_size < 0.4 * models["float"].stat().st_size
    assert read_tflite_info(models["float"]).input.dtype == "float32"


@pytest.mark.slow  # a conversion each
@pytest.mark.parametrize(
    ("quantize", "io", "dtype"),
    [("int8", "uint8", "uint8"), ("float16", None, "float32"), ("dynamic", None, "float32")],
)
def test_other_modes_convert_and_run(
    models: dict[str, Path], photos_train: Path, tmp_path: Path, quantize: str, io: str | None, dtype: str
) -> None:
    from edgecnn.build.convert import convert
    from edgecnn.workflows.run import classify

    result = convert(
        models["keras"],
        tmp_path / "m.tflite",
        quantize=quantize,
        io=io,
        calibration=photos_train if quantize == "int8" else None,
        calibration_size=20,
    )
    assert result.info.input.dtype == dtype
    assert result.size_bytes < result.float_size_bytes
    predictions = classify(result.path, [photos_train / "three" / "0000.jpg"], k=2).predictions
    assert len(predictions) == 1 and len(predictions[0].top) == 2


def _cli_convert(keras: Path, out: Path, calibration: Path, *extra: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecnn",
            "convert",
            str(keras),
            "--out",
            str(out),
            "--calibration",
            str(calibration),
            "--calibration-size",
            "50",
            "--quiet",
            *extra,
        ],
        check=True,
        capture_output=True,
    )


@pytest.mark.slow  # three conversions in new processes
def test_conversion_is_byte_identical_across_processes(
    models: dict[str, Path], photos_train: Path, tmp_path: Path
) -> None:
    first, second, other = tmp_path / "a.tflite", tmp_path / "b.tflite", tmp_path / "c.tflite"
    _cli_convert(models["keras"], first, photos_train)
    _cli_convert(models["keras"], second, photos_train)
    assert hashlib.sha256(first.read_bytes()).hexdigest() == hashlib.sha256(second.read_bytes()).hexdigest()
    assert first.with_suffix(".json").read_bytes() == second.with_suffix(".json").read_bytes()
    _cli_convert(models["keras"], other, photos_train, "--seed", "1")  # other calibration images
    side = json.loads(other.with_suffix(".json").read_text())
    assert (
        side["calibration"]["fingerprint"]
        != json.loads(first.with_suffix(".json").read_text())["calibration"]["fingerprint"]
    )


@pytest.mark.slow  # three trainings each
@pytest.mark.parametrize("augment", ["none", "flip-shift"])
def test_training_is_seeded(photos_train: Path, tmp_path: Path, augment: str) -> None:
    from edgecnn.build.keras_model import load_keras_model
    from edgecnn.build.train import train

    def weights(seed: int, name: str) -> list[np.ndarray]:
        train(photos_train, tmp_path / name, image_size=16, epochs=1, filters=4, limit_per_class=8, seed=seed,
              augment=augment)  # fmt: skip
        return load_keras_model(tmp_path / name)[0].get_weights()

    a, b, c = weights(3, "a.keras"), weights(3, "b.keras"), weights(4, "c.keras")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
