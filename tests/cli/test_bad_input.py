"""Every user mistake the spine names: one clear line on stderr, exit code 2, no traceback, nothing half-written."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from helpers import run_cli

from edgecnn.runtime.files import sha256_file


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_path_that_does_not_exist(tmp_path: Path, models: dict[str, Path]) -> None:
    assert_one_line_error(run_cli("train", tmp_path / "nope", "--out", tmp_path / "m.keras"), "does not exist")
    assert_one_line_error(run_cli("run", models["int8"], tmp_path / "nope.jpg"), "does not exist")
    assert_one_line_error(run_cli("run", tmp_path / "nope.tflite", tmp_path), "does not exist")
    assert folder_listing(tmp_path) == []


def test_empty_data_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert_one_line_error(run_cli("train", tmp_path / "data", "--out", tmp_path / "m.keras"), "no class folders")
    assert not (tmp_path / "m.keras").exists()


def test_class_folder_without_images(small_folder: Path, tmp_path: Path) -> None:
    (small_folder / "two").mkdir()
    (small_folder / "two" / "readme.txt").write_text("no images here")
    result = run_cli("train", small_folder, "--out", tmp_path / "m.keras")
    assert_one_line_error(result, "class folder", "two", "has no images")


@pytest.mark.slow  # trains
def test_corrupt_jpeg_and_non_image_are_skipped_and_counted(small_folder: Path, tmp_path: Path) -> None:
    good = (small_folder / "zero" / "0000.jpg").read_bytes()
    (small_folder / "zero" / "truncated.jpg").write_bytes(good[:300])
    (small_folder / "zero" / "data.csv").write_text("a,b\n1,2\n")
    out = tmp_path / "m.keras"
    result = run_cli("train", small_folder, "--out", out, "--epochs", 1, "--image-size", 8, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["num_skipped"] == 2 and summary["num_train"] + summary["num_validation"] == 12
    strict = run_cli("train", small_folder, "--out", tmp_path / "strict.keras", "--strict")
    assert_one_line_error(strict, "--strict")
    assert not (tmp_path / "strict.keras").exists()


def test_tflite_that_is_not_a_model(models: dict[str, Path], tmp_path: Path, photos_test: Path) -> None:
    image = photos_test / "three" / "0000.jpg"
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"this is not a flatbuffer" * 10)
    assert_one_line_error(run_cli("run", fake, image), "fake.tflite is not a TFLite model")
    # With a sidecar that matches the bytes, the interpreter itself rejects the file.
    side = json.loads(models["int8"].with_suffix(".json").read_text())
    side["model_sha256"] = sha256_file(fake)
    fake.with_suffix(".json").write_text(json.dumps(side))
    assert_one_line_error(run_cli("run", fake, image), "fake.tflite is not a TFLite model")
    # A sidecar written for other bytes.
    shutil.copyfile(models["float"], tmp_path / "other.tflite")
    shutil.copyfile(models["int8"].with_suffix(".json"), tmp_path / "other.json")
    assert_one_line_error(run_cli("run", tmp_path / "other.tflite", image), "written for another model")


def test_keras_that_is_not_a_model(tmp_path: Path, photos_train: Path) -> None:
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    args = ["--out", tmp_path / "m.tflite", "--calibration", photos_train]
    assert_one_line_error(run_cli("convert", bad, *args), "is not a loadable Keras model")
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("config.json", "{}")
    # A .keras without edgecnn's metadata is a model from elsewhere: Keras itself must load it, and cannot.
    assert_one_line_error(run_cli("convert", bad, *args), "is not a loadable Keras model")
    assert folder_listing(tmp_path) == ["bad.keras"]


def test_keras_archive_with_metadata_but_no_model(tmp_path: Path, models: dict[str, Path]) -> None:
    """Keras itself rejects it (safe mode on): still one line."""
    bad = tmp_path / "empty.keras"
    with zipfile.ZipFile(models["keras"]) as source, zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("edgecnn.json", source.read("edgecnn.json"))
    result = run_cli("convert", bad, "--out", tmp_path / "m.tflite", "--quantize", "none")
    assert_one_line_error(result, "is not a loadable Keras model")


def test_model_whose_input_does_not_match_its_sidecar(models: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copyfile(models["int8"], model)
    side = json.loads(models["int8"].with_suffix(".json").read_text())
    side["input_shape"] = [1, 28, 28, 3]
    side["preprocessing"]["height"] = side["preprocessing"]["width"] = 28
    model.with_suffix(".json").write_text(json.dumps(side))
    result = run_cli("run", model, models["dir"])
    assert_one_line_error(result, "input of m.tflite is int8 [1, 32, 32, 3] but its sidecar says int8 [1, 28, 28, 3]")


def test_int8_without_calibration(models: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("convert", models["keras"], "--out", tmp_path / "m.tflite", "--quantize", "int8")
    assert_one_line_error(result, "--quantize int8 needs calibration images", "--calibration DATA")
    assert folder_listing(tmp_path) == []


@pytest.mark.slow  # converts the session's model again
def test_missing_output_folders_are_created(models: dict[str, Path], tmp_path: Path, small_folder) -> None:
    """Every command creates a missing output folder alike (as mkdir -p would), and only once it writes."""
    missing = tmp_path / "missing"
    converted = run_cli("convert", models["keras"], "--out", missing / "a" / "m.tflite", "--quantize", "none")
    assert converted.exit_code == 0, converted.stderr
    assert (missing / "a" / "m.tflite").is_file() and (missing / "a" / "m.json").is_file()
    validated = run_cli(
        "validate", small_folder, "-r", models["float"], "-c", models["int8"], "--max-drop", 100,
        "--json-out", missing / "b" / "r.json", "--junit", missing / "c" / "gates.xml",
    )  # fmt: skip
    assert validated.exit_code == 0, validated.stderr
    assert json.loads((missing / "b" / "r.json").read_text())["num_images"] == 12
    assert (missing / "c" / "gates.xml").is_file()
    # A refused command creates nothing: the folder is made when the first file is written.
    refused = run_cli("convert", models["keras"], "--out", tmp_path / "never" / "m.tflite")  # no calibration
    assert_one_line_error(refused, "--calibration")
    assert not (tmp_path / "never").exists()


def test_outputs_never_overwrite_inputs(models: dict[str, Path], tmp_path: Path, small_folder: Path) -> None:
    """An output that is an input of the same command (a model, a sidecar, an image of the data) is refused before
    any work, and the input is untouched."""
    candidate = tmp_path / "cand.tflite"
    shutil.copyfile(models["int8"], candidate)
    shutil.copyfile(models["int8"].with_suffix(".json"), candidate.with_suffix(".json"))
    image = next((small_folder / "three").iterdir())
    before = {p: sha256_file(p) for p in (candidate, candidate.with_suffix(".json"), image)}
    base = ["validate", small_folder, "-r", models["float"], "-c", candidate, "--max-drop", 100]
    for option, path in [
        ("--json-out", candidate),
        ("--junit", candidate.with_suffix(".json")),
        ("--json-out", image),
        ("--junit", small_folder / "new.xml"),
        ("--report", small_folder / "report"),
    ]:
        assert_one_line_error(run_cli(*base, option, path), "input")
    convert = run_cli("convert", models["keras"], "--out", small_folder / "three" / "m.tflite",
                      "--calibration", small_folder)  # fmt: skip
    assert_one_line_error(convert, "inside the input")
    train = run_cli("train", small_folder, "--out", small_folder / "m.keras")
    assert_one_line_error(train, "inside the input")
    assert {p: sha256_file(p) for p in before} == before
    assert not (small_folder / "report").exists() and not (small_folder / "three" / "m.tflite").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--io", "uint8", "--quantize", "none"], "--io uint8 needs --quantize int8"),
        (["--quantize", "none", "--out-wrong"], "No such option"),
    ],
)
def test_conflicting_convert_options(models: dict[str, Path], tmp_path: Path, args, fragment) -> None:
    result = run_cli("convert", models["keras"], "--out", tmp_path / "m.tflite", *args)
    assert result.exit_code == 2 and fragment in result.stderr


def test_candidate_must_be_tflite_and_labels_must_match(models: dict[str, Path], small_folder: Path) -> None:
    result = run_cli("validate", small_folder, "-r", models["float"], "-c", models["keras"])
    assert_one_line_error(result, "must be a .tflite model")
    (small_folder / "unicorn").mkdir()
    shutil.copyfile(small_folder / "three" / "0000.jpg", small_folder / "unicorn" / "0000.jpg")
    result = run_cli("validate", small_folder, "-r", models["float"], "-c", models["int8"])
    assert_one_line_error(result, "unicorn", "is not one of the model's labels")


def test_output_that_cannot_be_written(models: dict[str, Path], small_folder: Path) -> None:
    """The file system refuses the write (here /proc, which even root cannot create files in): one line."""
    result = run_cli(
        "validate", small_folder, "-r", models["float"], "-c", models["int8"], "--json-out", "/proc/r.json"
    )
    assert_one_line_error(result, "/proc", "check the path and its permissions")
