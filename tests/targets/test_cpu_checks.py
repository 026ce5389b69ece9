"""``edgecnn check`` on models built in the test: one that loads, one with a custom op, one with a dynamic batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import custom_op_bundle, float_bundle, run_cli

from edgecnn.runtime.bundle import read_tflite_info


@pytest.fixture(scope="module")
def custom_op_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    """A graph with Erfinv, which TFLite has no builtin kernel for: converted as a custom op."""
    return custom_op_bundle(tmp_path_factory.mktemp("custom") / "custom.tflite", template=models["float"])


@pytest.fixture(scope="module")
def dynamic_batch_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    """The session's Keras model converted straight from Keras: batch None, so the input signature is dynamic."""
    import tensorflow as tf

    from edgecnn.build.keras_model import load_keras_model

    model, _ = load_keras_model(models["keras"])
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    labels = read_tflite_info(models["float"]).labels
    folder = tmp_path_factory.mktemp("dynamic")
    return float_bundle(
        folder / "dynamic.tflite", flatbuffer, shape=[1, 32, 32, 3], labels=labels, template=models["float"]
    )


def _check(*args: object) -> tuple[int, dict]:
    result = run_cli("check", *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def _codes(report: dict, severity: str) -> list[str]:
    return [f["code"] for f in report["findings"] if f["severity"] == severity]


def test_int8_model_passes_on_host_and_rpi(models: dict[str, Path]) -> None:
    for target in ("host", "rpi"):
        code, report = _check("--target", target, models["int8"])
        assert code == 0 and report["passed"] and report["errors"] == 0 and report["warnings"] == 0
        assert "CONV_2D" in next(f["message"] for f in report["findings"] if f["code"] == "operations")


def test_float_model_gets_a_warning_on_the_pi(models: dict[str, Path]) -> None:
    code, report = _check("--target", "rpi", models["float"])
    assert code == 0 and _codes(report, "warning") == ["float-model"]
    assert _check("--target", "host", models["float"])[1]["warnings"] == 0
    assert _check("--target", "rpi", models["int8_float_io"])[1]["warnings"] == 0  # int8 inside


@pytest.mark.slow  # converts a graph of its own
def test_custom_op_is_an_error_that_names_the_op(custom_op_model: Path) -> None:
    code, report = _check("--target", "host", custom_op_model)
    assert code == 1 and not report["passed"]
    load = next(f for f in report["findings"] if f["code"] == "load")
    assert load["severity"] == "error" and "custom operation Erfinv" in load["message"]
    text = run_cli("check", "--target", "rpi", custom_op_model)
    assert text.exit_code == 1 and "CANNOT run on rpi" in text.stdout


@pytest.mark.slow  # converts the session's model again
def test_dynamic_batch_is_a_warning(dynamic_batch_model: Path) -> None:
    code, report = _check("--target", "rpi", dynamic_batch_model)
    assert code == 0 and "dynamic-shape" in _codes(report, "warning")
    message = next(f["message"] for f in report["findings"] if f["code"] == "dynamic-shape")
    assert "[-1, 32, 32, 3]" in message


def test_check_bad_input(tmp_path: Path, models: dict[str, Path]) -> None:
    missing = run_cli("check", tmp_path / "nope.tflite")
    assert missing.exit_code == 2 and "edgecnn: error:" in missing.stderr
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer" * 10)
    result = run_cli("check", corrupt)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    unknown = run_cli("check", "--target", "coarl", models["int8"])
    assert unknown.exit_code == 2 and "unknown target 'coarl'" in unknown.stderr
