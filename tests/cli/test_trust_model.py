"""``--trust-model`` (issue 13): a Keras model with a Lambda layer (Python code) is refused unread by default, in one
line that names the flag; with the flag it loads with Keras's safe mode off and converts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

MARKER = "code_ran.txt"


def _touch_marker(x: Any) -> Any:
    """A layer function with a side effect: if loading a model ever runs it, the marker file appears."""
    Path(MARKER).write_text("ran")
    return x


def _lambda_model(path: Path, function: Any) -> Path:
    """A plain-Keras classifier with a Lambda layer named ``double``, saved as ``path``."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 3), name="pixels")
    h = keras.layers.Lambda(function, name="double")(inputs)
    h = keras.layers.Flatten(name="flat")(h)
    outputs = keras.layers.Dense(2, activation="softmax", name="scores")(h)
    keras.Model(inputs, outputs, name="with_lambda").save(path)
    return path


def test_a_lambda_layer_is_refused_naming_the_flag_and_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = _lambda_model(tmp_path / "lambda.keras", _touch_marker)
    Path(MARKER).unlink()  # building the model ran it; the refusal must not
    result = run_cli("convert", model, "--out", tmp_path / "out.tflite", "--quantize", "none")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Lambda layer 'double'" in lines[0] and "--trust-model" in lines[0], lines
    assert not Path(MARKER).exists() and not (tmp_path / "out.tflite").exists()


def test_trust_model_loads_a_lambda_layer(tmp_path: Path) -> None:
    model = _lambda_model(tmp_path / "lambda.keras", lambda x: x * 2.0)
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    out = tmp_path / "out.tflite"
    args = ("convert", model, "--out", out, "--labels", tmp_path / "labels.txt", "--input-range", "0,1")
    result = run_cli(*args, "--quantize", "none", "--trust-model")
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


@pytest.mark.parametrize("command", ["convert", "validate", "run", "diagnose", "finetune"])
def test_every_command_that_loads_keras_models_has_the_flag(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.exit_code == 0 and "--trust-model" in result.stdout
