"""``edgecnn convert`` on models trained elsewhere: a plain-Keras classifier trained on the photos by the user's own
code, saved as ``.keras``, ``.h5``, a SavedModel and a float ``.tflite`` from TensorFlow's own converter, and a
channels-first (NCHW) one; labels and preprocessing from the options. Accuracy is measured here with the test's own
preprocessing and a bare interpreter, not with edgecnn's."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import read_folder, run_cli

MAX_DROP_PP = 3.0
"""int8 may lose at most this many points of top-1 accuracy against the float model on the test photos."""


def _classifier(nchw: bool, *, softmax: bool) -> Any:
    """A small CNN as a user outside edgecnn writes it: plain Keras, named layers; NCHW input as a PyTorch export."""
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(3, 32, 32) if nchw else (32, 32, 3), name="pixels")
    h = layers.Permute((2, 3, 1), name="to_nhwc")(inputs) if nchw else inputs
    h = layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(h)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Conv2D(32, 3, activation="relu", padding="same", name="conv2")(h)
    h = layers.MaxPooling2D(2, name="pool2")(h)
    h = layers.Flatten(name="flat")(h)  # a dynamic batch makes Flatten's reshape SHAPE/STRIDED_SLICE/PACK ops
    outputs = layers.Dense(10, activation="softmax" if softmax else None, name="scores")(h)
    model = keras.Model(inputs, outputs, name="outside_nchw" if nchw else "outside")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
        metrics=["accuracy"],
    )
    return model


def _inputs(pixels: np.ndarray, *, nchw: bool) -> np.ndarray:
    """The user's own preprocessing: NHWC pixels to [0, 1]; NCHW pixels to [-1, 1], channels first."""
    if nchw:
        return np.ascontiguousarray(np.moveaxis(pixels.astype(np.float32) / 127.5 - 1.0, -1, 1))
    return pixels.astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def outside(tmp_path_factory: pytest.TempPathFactory, photos_train: Path, photos_test: Path) -> dict[str, Any]:
    """Two classifiers trained on the photos (NHWC with softmax on [0, 1] inputs; NCHW with logits on [-1, 1]), in
    every format a user brings, with their float accuracy on the test photos and a labels.txt."""
    root = tmp_path_factory.mktemp("outside_convert")
    x, y, classes = read_folder(photos_train)
    tx, ty, _ = read_folder(photos_test)
    (root / "labels.txt").write_text("\n".join(classes) + "\n")
    built: dict[str, Any] = {"root": root, "labels": root / "labels.txt", "test_pixels": tx, "test_labels": ty}
    for name, nchw in (("nhwc", False), ("nchw", True)):
        model = _classifier(nchw, softmax=not nchw)
        model.fit(_inputs(x, nchw=nchw), y, epochs=5, batch_size=32, verbose=0, shuffle=True)
        scores = model.predict(_inputs(tx, nchw=nchw), verbose=0)
        built[f"{name}_accuracy"] = float(np.mean(np.argmax(scores, axis=1) == ty))
        model.save(root / f"{name}.keras")
        (root / f"{name}.tflite").write_bytes(_tflite(model))
    nhwc = _load(root / "nhwc.keras")
    nhwc.save(root / "nhwc.h5")
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the exported signature
        nhwc.export(root / "nhwc_savedmodel")  # a dynamic batch: convert fixes it to 1
    return built


def _load(path: Path) -> Any:
    import keras

    return keras.models.load_model(path)


def _tflite(model: Any) -> bytes:
    """TensorFlow's own converter, no edgecnn code: a float ``.tflite`` with a batch-1 input."""
    import keras
    import tensorflow as tf

    fixed = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="pixels")
    static = keras.Model(fixed, model(fixed), name=f"{model.name}_batch1")
    return bytes(tf.lite.TFLiteConverter.from_keras_model(static).convert())


def _accuracy(model: Path, outside: dict[str, Any], *, nchw: bool) -> float:
    """Top-1 accuracy of a converted model on the test photos: the test's own preprocessing, quantized by the
    model's own input parameters, in a bare interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    values = _inputs(outside["test_pixels"], nchw=nchw)
    correct = 0
    for image, label in zip(values, outside["test_labels"]):
        feed = image[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            feed = np.clip(np.round(feed / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], feed)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"]).reshape(-1)) == label)
    return correct / len(values)


def _convert(outside: dict[str, Any], source: str, out: str, *options: str | Path) -> Any:
    root = outside["root"]
    return run_cli("convert", root / source, "--out", root / out, *options, "--json")


def _calibration(photos_train: Path) -> list[str | Path]:
    return ["--calibration", photos_train, "--calibration-size", "100"]


@pytest.mark.parametrize("source", ["nhwc.keras", "nhwc.h5", "nhwc_savedmodel", "nhwc.tflite"])
def test_an_outside_model_converts_to_int8_within_a_few_points(
    outside: dict[str, Any], photos_train: Path, source: str
) -> None:
    out = f"int8_{source.replace('.', '_')}.tflite"
    result = _convert(outside, source, out, *_calibration(photos_train), "--labels", outside["labels"],
                      "--input-range", "0,1")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["input"]["dtype"], summary["output"]["dtype"]) == ("int8", "int8")
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(summary["ops"])  # a static batch-1 input
    assert "--io uint8" in result.stderr  # app libraries cannot load int8 I/O
    model = outside["root"] / out
    side = json.loads(model.with_suffix(".json").read_text())
    assert side["input_shape"] == [1, 32, 32, 3] and side["labels"] == outside["labels"].read_text().split()
    assert side["source"]["model"] == source and side["source"]["described_by"] == ["options"]
    assert side["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    accuracy = _accuracy(model, outside, nchw=False)
    assert outside["nhwc_accuracy"] > 0.8  # a model that learnt nothing would prove nothing
    assert accuracy >= outside["nhwc_accuracy"] - MAX_DROP_PP / 100, (accuracy, outside["nhwc_accuracy"])


@pytest.mark.parametrize("source", ["nchw.keras", "nchw.tflite"])
def test_a_channels_first_model_is_fed_channels_first(outside: dict[str, Any], photos_train: Path, source: str) -> None:
    """A wrong layout would feed rows as channels: the accuracy, not just the shape, shows it was right."""
    out = f"int8_{source.replace('.', '_')}.tflite"
    result = _convert(outside, source, out, *_calibration(photos_train), "--labels", outside["labels"],
                      "--input-range", "-1,1")  # fmt: skip
    assert result.exit_code == 0, result.output
    model = outside["root"] / out
    side = json.loads(model.with_suffix(".json").read_text())
    assert side["input_shape"] == [1, 3, 32, 32] and side["preprocessing"]["layout"] == "NCHW"
    accuracy = _accuracy(model, outside, nchw=True)
    assert outside["nchw_accuracy"] > 0.8
    assert accuracy >= outside["nchw_accuracy"] - MAX_DROP_PP / 100, (accuracy, outside["nchw_accuracy"])
    from edgecnn.model.metadata import read_metadata

    assert read_metadata(model.read_bytes()).score == "logit"  # no softmax at the end


def test_edgecnn_runs_and_validates_what_it_converted(
    outside: dict[str, Any], photos_train: Path, photos_test: Path, tmp_path: Path
) -> None:
    from helpers import copy_subset

    result = _convert(outside, "nchw.tflite", "run_me.tflite", *_calibration(photos_train), "--labels",
                      outside["labels"], "--input-range", "-1,1", "--io", "uint8")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--io uint8" not in result.stderr
    data = copy_subset(photos_test, tmp_path / "data", per_class=5)
    ran = run_cli("run", outside["root"] / "run_me.tflite", data, "--json")
    assert ran.exit_code == 0, ran.output
    predictions = json.loads(ran.stdout)["predictions"]
    hits = [p["top"][0]["label"] == Path(p["path"]).parent.name for p in predictions]
    assert np.mean(hits) >= outside["nchw_accuracy"] - 0.15  # 50 images: a wrong layout gives ~10%
    # The Keras model it came from is fed like the candidate (labels and preprocessing from the candidate's sidecar).
    validated = run_cli("validate", "-r", outside["root"] / "nchw.keras", "-c", outside["root"] / "run_me.tflite",
                        data, "--max-drop", "10", "--json")  # fmt: skip
    assert validated.exit_code == 0, validated.output
    report = json.loads(validated.stdout)
    assert report["agreement"] >= 0.9 and report["reference_accuracy"] >= outside["nchw_accuracy"] - 0.15


def test_a_tflite_source_takes_uint8_and_float32_io(outside: dict[str, Any], photos_train: Path) -> None:
    for io_type in ("uint8", "float32"):
        out = f"io_{io_type}.tflite"
        result = _convert(outside, "nhwc.tflite", out, *_calibration(photos_train), "--labels", outside["labels"],
                          "--input-range", "0,1", "--io", io_type)  # fmt: skip
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["input"]["dtype"], summary["output"]["dtype"]) == (io_type, io_type)
        assert _accuracy(outside["root"] / out, outside, nchw=False) >= outside["nhwc_accuracy"] - MAX_DROP_PP / 100


def test_a_missing_piece_is_one_line_naming_its_option(outside: dict[str, Any], photos_train: Path) -> None:
    no_labels = _convert(outside, "nhwc.keras", "x.tflite", *_calibration(photos_train), "--input-range", "0,1")
    assert no_labels.exit_code == 2
    assert len(no_labels.stderr.strip().splitlines()) == 1 and "--labels" in no_labels.stderr
    no_range = _convert(outside, "nhwc.tflite", "x.tflite", *_calibration(photos_train), "--labels", outside["labels"])
    assert no_range.exit_code == 2
    assert len(no_range.stderr.strip().splitlines()) == 1 and "--input-range" in no_range.stderr
    assert not (outside["root"] / "x.tflite").exists()


def test_a_model_with_two_outputs_is_refused_with_the_reason(outside: dict[str, Any], photos_train: Path) -> None:
    import keras

    inputs = keras.Input(shape=(32, 32, 3), name="pixels")
    h = keras.layers.GlobalAveragePooling2D(name="gap")(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(10, name="a")(h), keras.layers.Dense(4, name="b")(h)], name="two")
    two.save(outside["root"] / "two.keras")
    result = _convert(outside, "two.keras", "two.tflite", *_calibration(photos_train), "--labels", outside["labels"],
                      "--input-range", "0,1")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "2 output(s)" in result.stderr and "not classifiers" in result.stderr


def test_converting_twice_gives_the_same_bytes(outside: dict[str, Any], photos_train: Path) -> None:
    for source in ("nhwc.tflite", "nhwc.keras"):
        digests = []
        for attempt in ("a", "b"):
            out = f"twice_{attempt}.tflite"
            result = _convert(outside, source, out, *_calibration(photos_train), "--labels", outside["labels"],
                              "--input-range", "0,1")  # fmt: skip
            assert result.exit_code == 0, result.output
            digests.append(hashlib.sha256((outside["root"] / out).read_bytes()).hexdigest())
        assert digests[0] == digests[1], source


def test_the_max_drop_gate_measures_an_outside_model_against_itself(
    outside: dict[str, Any], photos_train: Path, photos_test: Path
) -> None:
    result = _convert(outside, "nhwc.h5", "gated.tflite", *_calibration(photos_train), "--labels", outside["labels"],
                      "--input-range", "0,1", "--max-drop", str(MAX_DROP_PP), "--data", photos_test)  # fmt: skip
    assert result.exit_code == 0, result.output
    recovery = json.loads(result.stdout)["recovery"]
    assert recovery["passed"] and recovery["chosen"] == "int8"
    assert abs(recovery["attempts"][0]["reference_accuracy"] - outside["nhwc_accuracy"]) < 1e-9
