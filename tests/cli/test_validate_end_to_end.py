"""End to end on real CIFAR-10 images: the validate report against an independent computation, and the gates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

PER_CLASS = 20


def _independent_predictions(cifar_models: dict[str, Path], cifar_test: Path) -> dict[str, np.ndarray]:
    """Labels and both models' top-1 classes, computed without edgecnn: Pillow, Keras and LiteRT directly."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    classes = sorted(p.name for p in cifar_test.iterdir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((cifar_test / name).iterdir())[:PER_CLASS]]
    images = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f, _ in files])
    labels = np.array([c for _, c in files])
    reference = keras.models.load_model(cifar_models["keras"], safe_mode=True, compile=False)
    ref_pred = reference.predict(images, verbose=0).argmax(axis=1)
    interpreter = Interpreter(model_path=str(cifar_models["int8"]))
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


def test_report_matches_an_independent_computation(
    cifar_models: dict[str, Path], cifar_test: Path, tmp_path: Path
) -> None:
    report_file = tmp_path / "report.json"
    result = run_cli(
        "validate", cifar_test, "--reference", cifar_models["keras"], "--candidate", cifar_models["int8"],
        "--limit-per-class", PER_CLASS, "--max-drop", 100, "--json-out", report_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(report_file.read_text())
    truth = _independent_predictions(cifar_models, cifar_test)
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
def weak_candidate(cifar_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different, barely trained network as int8: it disagrees with the reference on many images."""
    from edgecnn.build.convert import convert
    from edgecnn.build.train import train

    out = tmp_path_factory.mktemp("weak")
    train(cifar_train, out / "weak.keras", image_size=32, epochs=1, filters=4, limit_per_class=5, seed=7)
    convert(out / "weak.keras", out / "weak.tflite", calibration=cifar_train, calibration_size=20)
    return out / "weak.tflite"


def test_gate_exit_codes(cifar_models: dict[str, Path], cifar_test: Path, weak_candidate: Path) -> None:
    base = ["validate", cifar_test, "--reference", cifar_models["keras"], "--candidate", weak_candidate,
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


def test_float_tflite_reference_and_skipped_files(cifar_models: dict[str, Path], small_folder: Path) -> None:
    """A .tflite float reference works too; bad files are skipped and counted, or fail with --strict."""
    (small_folder / "cat" / "notes.txt").write_text("not an image")
    good = (small_folder / "cat" / "0000.jpg").read_bytes()
    (small_folder / "cat" / "broken.jpg").write_bytes(good[: len(good) // 2])
    args = ["validate", small_folder, "-r", cifar_models["float"], "-c", cifar_models["int8"], "--max-drop", 100]
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["num_images"] == 12 and report["num_skipped"] == 2
    assert {Path(s["path"]).name for s in report["skipped"]} == {"notes.txt", "broken.jpg"}
    text = run_cli(*args)
    assert "skipped 2 file(s):" in text.stdout
    strict = run_cli(*args, "--strict")
    assert strict.exit_code == 2 and "notes.txt" in strict.stderr and "--strict" in strict.stderr
