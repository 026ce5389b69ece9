"""End to end: the validate report against an independent computation and the gates, on the test photos; and
train → convert → validate through the CLI on a fixed class-balanced subset of real CIFAR-10 photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

PER_CLASS = 20


def _independent_predictions(models: dict[str, Path], photos_test: Path) -> dict[str, np.ndarray]:
    """Labels and both models' top-1 classes, computed without edgecnn: Pillow, Keras and LiteRT directly."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    classes = sorted(p.name for p in photos_test.iterdir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((photos_test / name).iterdir())[:PER_CLASS]]
    images = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f, _ in files])
    labels = np.array([c for _, c in files])
    reference = keras.models.load_model(models["keras"], safe_mode=True, compile=False)
    ref_pred = reference.predict(images, verbose=0).argmax(axis=1)
    interpreter = Interpreter(model_path=str(models["int8"]))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    cand_pred = []
    for image in images:
        q = np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        cand_pred.append(int(interpreter.get_tensor(out["index"])[0].argmax()))
    return {"labels": labels, "reference": ref_pred, "candidate": np.array(cand_pred)}


def test_report_matches_an_independent_computation(models: dict[str, Path], photos_test: Path, tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    result = run_cli(
        "validate", photos_test, "--reference", models["keras"], "--candidate", models["int8"],
        "--limit-per-class", PER_CLASS, "--max-drop", 100, "--json-out", report_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(report_file.read_text())
    truth = _independent_predictions(models, photos_test)
    labels, ref, cand = truth["labels"], truth["reference"], truth["candidate"]

    assert report["num_images"] == 10 * PER_CLASS and report["num_skipped"] == 0
    assert report["reference_accuracy"] == pytest.approx(np.mean(ref == labels), abs=1e-12)
    assert report["candidate_accuracy"] == pytest.approx(np.mean(cand == labels), abs=1e-12)
    assert report["agreement"] == pytest.approx(np.mean(ref == cand), abs=1e-12)
    assert report["accuracy_drop_pp"] == pytest.approx(100 * (np.mean(ref == labels) - np.mean(cand == labels)))
    for name, pred in (("reference", ref), ("candidate", cand)):
        matrix = np.zeros((10, 10), int)
        for t, p in zip(labels, pred):
            matrix[t, p] += 1
        assert report[f"{name}_confusion"] == matrix.tolist()
    for c, entry in enumerate(report["per_class"]):
        mask = labels == c
        assert entry["support"] == PER_CLASS
        assert entry["candidate_accuracy"] == pytest.approx(np.mean(cand[mask] == c), abs=1e-12)
    drops = [e["drop_pp"] for e in report["largest_drops"]]
    assert drops == sorted(drops, reverse=True) and all(d > 0 for d in drops)
    assert report["passed"] is True
    # The text report says the same.
    assert f"top-1 agreement: {100 * np.mean(ref == cand):.2f}%" in result.stdout


@pytest.fixture(scope="module")
def weak_candidate(photos_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different, barely trained network as int8: it disagrees with the reference on many images."""
    from edgecnn.build.convert import convert
    from edgecnn.build.train import train

    out = tmp_path_factory.mktemp("weak")
    train(photos_train, out / "weak.keras", image_size=32, epochs=1, filters=4, limit_per_class=5, seed=7)
    convert(out / "weak.keras", out / "weak.tflite", calibration=photos_train, calibration_size=20)
    return out / "weak.tflite"


@pytest.mark.slow  # trains and converts the weak candidate
def test_gate_exit_codes(models: dict[str, Path], photos_test: Path, weak_candidate: Path) -> None:
    base = ["validate", photos_test, "--reference", models["keras"], "--candidate", weak_candidate,
            "--limit-per-class", PER_CLASS, "--quiet"]  # fmt: skip
    first = run_cli(*base, "--max-drop", 100, "--json")
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    drop, agreement = report["accuracy_drop_pp"], report["agreement"]
    assert drop > 5 and agreement < 0.9  # the scenario: a much worse candidate

    passing = run_cli(*base, "--max-drop", round(drop + 0.5, 2))
    assert passing.exit_code == 0 and "validation passed" in passing.stdout

    failing = run_cli(*base, "--max-drop", round(drop / 2, 2))
    assert failing.exit_code == 1
    assert f"gate failed: max-drop: accuracy drop {drop:.2f} pp, allowed at most {drop / 2:.2f} pp" in failing.stderr
    assert "FAIL max-drop" in failing.stdout

    disagreeing = run_cli(*base, "--max-drop", 100, "--min-agreement", 0.95)
    assert disagreeing.exit_code == 1
    assert f"min-agreement: top-1 agreement {agreement:.4f}, required at least 0.9500" in disagreeing.stderr


def test_float_tflite_reference_and_skipped_files(models: dict[str, Path], small_folder: Path) -> None:
    """A .tflite float reference works too; bad files are skipped and counted, or fail with --strict."""
    (small_folder / "three" / "notes.txt").write_text("not an image")
    good = (small_folder / "three" / "0000.jpg").read_bytes()
    (small_folder / "three" / "broken.jpg").write_bytes(good[: len(good) // 2])
    args = ["validate", small_folder, "-r", models["float"], "-c", models["int8"], "--max-drop", 100]
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["num_images"] == 12 and report["num_skipped"] == 2
    assert {Path(s["path"]).name for s in report["skipped"]} == {"notes.txt", "broken.jpg"}
    text = run_cli(*args)
    assert "skipped 2 file(s):" in text.stdout
    strict = run_cli(*args, "--strict")
    assert strict.exit_code == 2 and "notes.txt" in strict.stderr and "--strict" in strict.stderr


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.cifar10
@pytest.mark.slow  # trains and converts on real photos
def test_train_convert_validate_on_real_cifar10(cifar_train: Path, cifar_test: Path, tmp_path: Path) -> None:
    """The spine as a user runs it, on real photos: train on the first 60 CIFAR-10 training images of each class,
    convert to int8 calibrated on the training folder, validate against the float model on the first 50 test
    images of each class, with both gates."""
    keras_path, tflite_path = tmp_path / "model.keras", tmp_path / "model_int8.tflite"
    trained = run_cli("train", cifar_train, "--out", keras_path, "--image-size", 32, "--filters", 8, "--epochs", 6,
                      "--limit-per-class", 60, "--seed", 0, "--json", "--quiet")  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["labels"] == CIFAR_CLASSES and (summary["num_train"], summary["num_validation"]) == (540, 60)
    converted = run_cli("convert", keras_path, "--out", tflite_path, "--calibration", cifar_train,
                        "--calibration-size", 100, "--json", "--quiet")  # fmt: skip
    assert converted.exit_code == 0, converted.stderr
    assert json.loads(converted.stdout)["quantization"] == "int8"
    validated = run_cli("validate", cifar_test, "-r", keras_path, "-c", tflite_path, "--limit-per-class", 50,
                        "--max-drop", 3, "--min-agreement", 0.85, "--json", "--quiet")  # fmt: skip
    assert validated.exit_code == 0, validated.stdout + validated.stderr
    report = json.loads(validated.stdout)
    assert report["num_images"] == 500 and report["num_skipped"] == 0 and report["passed"]
    assert [c["support"] for c in report["per_class"]] == [50] * 10
    # A tiny model on 600 real photos: well above chance (10%), and int8 keeps what the float model learned.
    assert report["reference_accuracy"] > 0.2 and report["candidate_accuracy"] > 0.2
