"""Quantization-aware fine-tuning (``edgecnn finetune --qat``) of the session's model: full-integer int8,
the Keras model's labels and preprocessing, byte-identical reruns, accuracy, and the command's bad-input exits."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_cli

from edgecnn.errors import MissingDependencyError, UsageError
from edgecnn.runtime.bundle import read_keras_info, read_tflite_info

try:
    import tensorflow_model_optimization  # noqa: F401
    import tf_keras  # noqa: F401
except ImportError:
    # The README's test command installs the qat extra; CI must never pass by skipping these.
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        raise
    pytest.skip('quantization-aware training needs the qat extra: pip install "edgecnn[qat]"', allow_module_level=True)

SETTINGS: dict[str, Any] = {"epochs": 1, "limit_per_class": 30, "calibration_size": 50, "seed": 0}


@pytest.fixture(scope="module")
def qat_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path], photos_train: Path) -> Path:
    """The session's Keras model fine-tuned one epoch with simulated int8 on 30 training photos per class."""
    from edgecnn.build.qat import finetune_qat

    out = tmp_path_factory.mktemp("qat") / "model_qat_int8.tflite"
    finetune_qat(models["keras"], photos_train, out, **SETTINGS)
    return out


@pytest.mark.slow  # the fine-tuning
def test_qat_model_is_full_integer_with_the_keras_metadata(qat_model: Path, models: dict[str, Path]) -> None:
    from edgecnn.build.qat import QAT_OPS
    from edgecnn.runtime.interpreter import load_interpreter

    info, keras_info = read_tflite_info(qat_model), read_keras_info(models["keras"])
    assert (info.labels, info.preprocessing) == (keras_info.labels, keras_info.preprocessing)
    assert info.quantization == "int8" and info.input_shape == [1, 32, 32, 3]
    assert info.input.dtype == info.output.dtype == "int8"
    interpreter = load_interpreter(qat_model, reference_kernels=True)
    assert [d["name"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float32] == []
    assert {op["op_name"] for op in interpreter._get_ops_details()} == QAT_OPS
    assert tuple(interpreter.get_input_details()[0]["quantization"]) == (info.input.scale, info.input.zero_point)
    qat = info.extra["qat"]
    assert (qat["source"], qat["epochs"], qat["seed"], qat["learning_rate"]) == ("model.keras", 1, 0, 1e-4)
    assert (qat["num_train"], qat["num_validation"]) == (270, 30)  # train's split: 10% of each class held out
    assert info.extra["source"]["model"] == "model.keras" and info.extra["calibration"]["num_images"] == 50
    assert "tensorflow-model-optimization" in info.extra["tools"]


@pytest.mark.slow  # the fine-tuning, twice
def test_qat_is_byte_deterministic(
    qat_model: Path, models: dict[str, Path], photos_train: Path, tmp_path: Path
) -> None:
    from edgecnn.build.qat import finetune_qat

    again = finetune_qat(models["keras"], photos_train, tmp_path / "model_qat_int8.tflite", **SETTINGS)
    assert again.path.read_bytes() == qat_model.read_bytes()
    assert again.path.with_suffix(".json").read_bytes() == qat_model.with_suffix(".json").read_bytes()


@pytest.mark.slow  # the fine-tuning
def test_qat_accuracy_stays_near_the_float_model(qat_model: Path, models: dict[str, Path], photos_test: Path) -> None:
    from edgecnn.workflows.validate import validate_models

    report = validate_models(models["keras"], qat_model, photos_test, limit_per_class=30, max_drop=None)
    assert report.num_images == 300
    # Fine-tuning changes the weights, so the QAT model may do a little better or worse than the float one.
    assert report.accuracy_drop_pp <= 10.0, report.to_dict()
    assert report.candidate_accuracy > 0.2  # well above chance (10%) on ten classes


def test_missing_qat_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecnn.build.qat import import_qat

    monkeypatch.setitem(sys.modules, "tensorflow_model_optimization", None)  # `import` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"edgecnn\[qat\]"):
        import_qat()


def test_architectures_outside_the_default_cnn_are_refused() -> None:
    from edgecnn.build.keras_model import import_keras
    from edgecnn.build.qat import import_qat, rebuild_in_tf_keras

    _, keras = import_keras()
    _, tf_keras, _ = import_qat()
    inputs = keras.Input((8, 8, 1), name="image")
    flat = keras.layers.Flatten(name="flatten")(inputs)
    with pytest.raises(UsageError, match=r"layer flatten \(Flatten\).*edgecnn's default CNN"):
        rebuild_in_tf_keras(tf_keras, keras.Model(inputs, keras.layers.Dense(2, name="out")(flat)))
    conv = keras.layers.Conv2D(1, 3, padding="same", name="conv")(inputs)
    residual = keras.layers.Add(name="add")([inputs, conv])
    with pytest.raises(UsageError, match="layer add takes image, conv"):
        rebuild_in_tf_keras(tf_keras, keras.Model(inputs, residual))


def _finetune_cli(*args: object) -> Any:
    return run_cli("finetune", *args)


@pytest.mark.parametrize(
    ("case", "fragment"),
    [("no-model", "does not exist"), ("no-data", "does not exist"), ("out-is-data", "is inside the input")],
)
def test_finetune_command_bad_input(
    case: str, fragment: str, models: dict[str, Path], photos_train: Path, tmp_path: Path
) -> None:
    model, data, flags = models["keras"], photos_train, ["--qat"]
    if case == "no-model":
        model = tmp_path / "nope.keras"
    elif case == "no-data":
        data = tmp_path / "nope"
    out = data / "m.tflite" if case == "out-is-data" else tmp_path / "m.tflite"
    result = _finetune_cli(model, data, *flags, "--out", out)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecnn: error:") and fragment in lines[0], result.stderr
    assert not any(tmp_path.glob("m.*")) and not out.exists()


def test_finetune_help_has_an_example_json_and_quiet() -> None:
    result = _finetune_cli("--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ") and "finetune [OPTIONS] MODEL DATA" in result.stdout
    for fragment in ("--json", "--quiet", "edgecnn finetune model.keras", '"edgecnn[qat]"'):
        assert fragment in result.stdout
