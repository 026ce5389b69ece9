"""Quantization quality on real CIFAR-10 images: a model made to lose accuracy in int8 on purpose, diagnosed
and recovered; and a calibration set from the wrong distribution, named as the cause.

These tests need real photos (marked ``cifar10``; README.md cites them): the model is the suite's small CNN trained
on a fixed class-balanced CIFAR-10 subset (conftest ``cifar_keras``). The broken model is that model with one channel
of ``block1`` scaled up 1000x after batch norm and the next convolution's weights for it scaled down 1000x
(tools/outlier_model.py): the float model computes exactly the same function (ReLU is positively homogeneous), but
that channel alone sets the int8 range of the layer's output, so every other channel rounds to zero — the classic
outlier-range failure. The two bad-input tests need no real photos: they use the session's model and photos."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_subset, run_cli
from PIL import Image

from edgecnn.runtime.bundle import read_tflite_info

FACTOR = 1000.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory: pytest.TempPathFactory, cifar_keras: Path) -> Path:
    """The CIFAR-10 model with an outlier channel added by tools/outlier_model.py."""
    spec = importlib.util.spec_from_file_location("outlier_model", ROOT / "tools" / "outlier_model.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    path = tmp_path_factory.mktemp("outlier") / "outlier.keras"
    tool.write_outlier_model(cifar_keras, path, factor=FACTOR)
    return path


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory, cifar_test: Path) -> Path:
    """10 real test images per class."""
    return copy_subset(cifar_test, tmp_path_factory.mktemp("held_out"), per_class=10)


@pytest.fixture(scope="module")
def dark_calibration(tmp_path_factory: pytest.TempPathFactory, cifar_train: Path) -> Path:
    """Real training images at 4% brightness: a calibration set from the wrong distribution."""
    folder = copy_subset(cifar_train, tmp_path_factory.mktemp("dark"), per_class=5)
    for path in folder.rglob("*.*"):
        with Image.open(path) as image:
            dark = (np.asarray(image.convert("RGB"), dtype=np.float32) * 0.04).astype(np.uint8)
        Image.fromarray(dark).save(path.with_suffix(".png"))
        path.unlink()
    return folder


def _json(result: object, code: int = 0) -> dict:
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


@pytest.mark.cifar10
@pytest.mark.slow  # conversions and the layer-by-layer diagnosis
def test_the_outlier_breaks_plain_int8_and_diagnose_names_it(
    outlier_model: Path, cifar_train: Path, held_out: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.tflite"
    _json(run_cli("convert", outlier_model, "--out", plain, "--calibration", cifar_train, "--calibration-size", "100",
                  "--json"))  # fmt: skip
    report = _json(run_cli("validate", held_out, "-r", outlier_model, "-c", plain, "--max-drop", "3", "--json"), 1)
    assert report["accuracy_drop_pp"] > 8  # the float model is untouched; int8 collapses

    diagnosis = _json(
        run_cli("diagnose", outlier_model, "--calibration", cifar_train, "--calibration-size", "100",
                "--data", held_out, "--candidate", plain, "--json"),
        1,
    )  # fmt: skip
    first = diagnosis["causes"][0]
    assert first["code"] == "outlier-range" and first["severity"] == "error"
    assert first["message"].startswith("block1_conv1+block1_bn1+block1_relu1 (CONV_2D)")
    layer = next(l for l in diagnosis["layers"] if l["name"].startswith("block1_conv1"))
    assert layer["outlier"] and layer["channel_range_ratio"] > 100
    assert layer["range"][1] == pytest.approx(layer["scale"] * (127 - layer["zero_point"]))
    assert diagnosis["calibration"]["preprocessing_matches_candidate"] is True
    assert not any(c["code"].startswith("calibration") for c in diagnosis["causes"])
    # Layers come worst first by relative error; the starved consumer of the outlier tops the list.
    errors = [l["relative_error"] for l in diagnosis["layers"]]
    assert errors == sorted(errors, reverse=True) and diagnosis["layers"][0]["name"].startswith("block1_conv2")


@pytest.mark.cifar10
@pytest.mark.slow  # one conversion per recovery attempt
def test_recovery_keeps_the_fewest_layers_in_float_that_pass(
    outlier_model: Path, cifar_train: Path, held_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "recovered.tflite"
    result = _json(
        run_cli("convert", outlier_model, "--out", out, "--calibration", cifar_train, "--calibration-size", "100",
                "--max-drop", "3", "--data", held_out, "--json"),
    )  # fmt: skip
    attempts = result["recovery"]["attempts"]
    assert [a["name"] for a in attempts[:2]] == ["int8", "int8 (more calibration)"]
    assert not attempts[0]["passed"] and attempts[0]["targets"] == {"host": True, "rpi": True, "android": True,
                                                                    "micro": True, "coral": True}  # fmt: skip
    winner = attempts[-1]
    assert winner["passed"] and winner["name"] == "int8 + float layers" and winner["drop_pp"] <= 3
    assert "block1_conv1" in winner["detail"] and not winner["full_integer"]
    assert winner["targets"]["coral"] is False and winner["targets"]["micro"] is False
    assert result["recovery"]["chosen"] == "int8 + float layers" and result["model"] == str(out)
    info = read_tflite_info(out)
    assert info.quantization == "int8-mixed" and info.extra["float_layers"][0].startswith("block1_conv1")
    # What was written passes the same gate in edgecnn validate.
    _json(run_cli("validate", held_out, "-r", outlier_model, "-c", out, "--max-drop", "3", "--json"))


@pytest.mark.cifar10
@pytest.mark.slow  # one conversion per recovery attempt
def test_wrong_calibration_is_named_and_nothing_recovers_it(
    cifar_keras: Path, dark_calibration: Path, held_out: Path, tmp_path: Path
) -> None:
    diagnosis = _json(
        run_cli("diagnose", cifar_keras, "--calibration", dark_calibration, "--data", held_out, "--json"), 1
    )
    codes = [c["code"] for c in diagnosis["causes"]]
    assert "calibration-distribution" in codes and "calibration-size" in codes
    assert diagnosis["calibration"]["median_shift_z"]["mean"] > 2

    out = tmp_path / "model.tflite"
    result = run_cli("convert", cifar_keras, "--out", out, "--calibration", dark_calibration,
                     "--max-drop", "1", "--data", held_out, "--json")  # fmt: skip
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["recovery"]["passed"] and report["recovery"]["attempts"][-1]["name"] == "16x8"
    best = tmp_path / "model.best-attempt.tflite"
    assert report["model"] == str(best) and best.is_file() and not out.exists()
    assert "edgecnn: gate failed: max-drop" in result.stderr and str(best) in result.stderr
    assert read_tflite_info(best).extra["recovery"]["passed"] is False


def test_gated_conversion_bad_options(models: dict[str, Path], photos_train: Path, photos_test: Path) -> None:
    """Refused before any work: the session's model and photos stand in (no real photos needed)."""
    keras, held_out = models["keras"], photos_test
    for args, message in [
        (["--max-drop", "1"], "--max-drop and --data go together"),
        (["--data", str(held_out)], "--max-drop and --data go together"),
        (["--max-drop", "1", "--data", str(held_out), "--quantize", "float16"], "--quantize int8"),
        (["--max-drop", "-1", "--data", str(held_out)], "0 or more, not -1.0"),
        (["--max-drop", "nan", "--data", str(held_out)], "not a finite number"),
        (["--limit-per-class", "3"], "--limit-per-class applies to --data"),
    ]:
        result = run_cli("convert", keras, "--out", "/tmp/never.tflite", "--calibration", photos_train, *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)


@pytest.mark.cifar10
@pytest.mark.slow  # a conversion and the report's diagnosis
def test_the_report_shows_it(outlier_model: Path, cifar_train: Path, held_out: Path, tmp_path: Path) -> None:
    """validate --report/--junit on the broken int8 model: FAILED, the outlier layer flagged, numbers = JSON."""
    from report_page import expected_formatter, parse, resolve

    plain = tmp_path / "plain.tflite"
    _json(run_cli("convert", outlier_model, "--out", plain, "--calibration", cifar_train, "--calibration-size", "100",
                  "--json"))  # fmt: skip
    out, junit = tmp_path / "report", tmp_path / "gates.xml"
    result = run_cli("validate", held_out, "-r", outlier_model, "-c", plain, "--max-drop", "3", "--report", out,
                     "--junit", junit, "--calibration", cifar_train, "--json")  # fmt: skip
    payload = _json(result, 1)
    assert {"stages", "layers", "sizes", "latency_ms"} <= set(payload)  # --report implies --stages
    page = parse(out / "report.html")
    for path, text in page.numbers.items():
        assert text == expected_formatter(payload, path)(resolve(payload, path)), path
    html_text = (out / "report.html").read_text()
    assert "FAILED" in html_text and "outlier range" in html_text
    flagged = [l for l in payload["layers"] if l["outlier"]]
    assert flagged and flagged[0]["name"].startswith("block1_conv1")
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_candidate.png", "confusion_reference.png", "layers.png", "per_class.png", "report.html",
        "stages.png",
    ]  # fmt: skip
    xml = junit.read_text()
    assert 'failures="1"' in xml and "max-drop: accuracy drop" in xml
    # The report files are written before the gate's exit code, and bad paths fail before any work.
    bad = run_cli("validate", held_out, "-r", outlier_model, "-c", plain, "--report", plain)
    assert bad.exit_code == 2 and "input" in bad.stderr  # never a report folder over the candidate model
    lone = run_cli("validate", held_out, "-r", outlier_model, "-c", plain, "--calibration", cifar_train)
    assert lone.exit_code == 2 and "use it with --report" in lone.stderr


def test_diagnose_bad_input(models: dict[str, Path], photos_train: Path, tmp_path: Path) -> None:
    for args, message in [
        ([tmp_path / "nope.keras", "--calibration", photos_train], "does not exist"),
        ([models["int8"], "--calibration", photos_train], "must be a .keras file"),
        ([models["keras"], "--calibration", tmp_path / "nope"], "does not exist"),
        ([models["keras"], "--calibration", photos_train, "--candidate", tmp_path / "x.tflite"], "does not exist"),
    ]:
        result = run_cli("diagnose", *args)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr, args
