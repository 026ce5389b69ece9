"""``run`` and ``validate`` on models edgecnn did not make: labels and preprocessing from the options, precedence of
sidecar, TFLite Metadata and options, and refusals that name the option to use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import copy_subset, outside_classifier, outside_inputs, read_folder, run_cli, tflite_from_keras


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory, photos_train: Path, photos_test: Path) -> dict[str, Any]:
    """A plain-Keras classifier trained on the photos by the user's own code, its float ``.tflite`` from TensorFlow's
    converter (no sidecar, no metadata), a labels.txt, and 5 test photos per class."""
    x, y, classes = read_folder(photos_train, per_class=40)
    model = outside_classifier(x, y, len(classes))
    root = tmp_path_factory.mktemp("outside")
    (root / "float.tflite").write_bytes(tflite_from_keras(model))
    model.save(root / "outside.keras")
    (root / "labels.txt").write_text("\n".join(classes) + "\n")
    data = copy_subset(photos_test, root / "data", per_class=5)
    tx, ty, _ = read_folder(data)
    expected = np.argmax(model.predict(outside_inputs(tx), verbose=0), axis=1)
    return {"root": root, "classes": classes, "data": data, "expected": expected, "truth": ty}


def top1(result: Any) -> list[str]:
    return [p["top"][0]["label"] for p in json.loads(result.stdout)["predictions"]]


def test_run_takes_labels_and_pixel_range_from_the_options(outside: dict[str, Any]) -> None:
    root = outside["root"]
    result = run_cli(
        "run",
        root / "float.tflite",
        outside["data"],
        "--labels",
        root / "labels.txt",
        "--input-range",
        "-1,1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    got = top1(result)
    # The float .tflite fed by edgecnn agrees with the user's own Keras pipeline on the same pixels.
    want = [outside["classes"][i] for i in outside["expected"]]
    assert np.mean([g == w for g, w in zip(got, want)]) >= 0.98
    assert not list(root.glob("*.json")), "nothing is written beside the user's model"


def test_a_missing_piece_names_the_option_that_supplies_it(outside: dict[str, Any]) -> None:
    root = outside["root"]
    bare = run_cli("run", root / "float.tflite", outside["data"])
    assert bare.exit_code == 2 and "--labels FILE" in bare.stderr
    no_range = run_cli("run", root / "float.tflite", outside["data"], "--labels", root / "labels.txt")
    assert no_range.exit_code == 2 and "--input-range" in no_range.stderr
    assert len(no_range.stderr.strip().splitlines()) == 1 and "Traceback" not in no_range.output


def test_labels_that_do_not_match_the_scores_are_refused(outside: dict[str, Any], tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    result = run_cli(
        "run", outside["root"] / "float.tflite", outside["data"], "--labels", labels, "--input-range", "0,1"
    )
    assert result.exit_code == 2 and "outputs 10 class scores but 2 labels" in result.stderr


def test_validate_feeds_a_reference_from_elsewhere_like_its_candidate(outside: dict[str, Any], tmp_path: Path) -> None:
    """The float .tflite (no sidecar) as candidate, the user's own .keras as reference: both described by options."""
    root = outside["root"]
    result = run_cli(
        "validate",
        "-r",
        root / "outside.keras",
        "-c",
        root / "float.tflite",
        outside["data"],
        "--labels",
        root / "labels.txt",
        "--input-range",
        "-1,1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["agreement"] >= 0.98
    assert report["num_images"] == 50


def test_stages_and_report_for_a_reference_from_elsewhere(outside: dict[str, Any], tmp_path: Path) -> None:
    """--report converts the outside .keras to float TFLite with the candidate's labels and preprocessing."""
    root = outside["root"]
    result = run_cli(
        "validate", "-r", root / "outside.keras", "-c", root / "float.tflite", outside["data"],
        "--labels", root / "labels.txt", "--input-range", "-1,1", "--report", tmp_path / "report", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stages = json.loads(result.stdout)["stages"]
    names = [stage["name"] for stage in stages["stages"]]
    assert names[:2] == ["keras float", "tflite float"]
    assert stages["stages"][0]["accuracy"] == pytest.approx(stages["stages"][1]["accuracy"], abs=0.02)
    assert (tmp_path / "report" / "report.html").is_file()


def test_a_sidecar_and_an_option_that_disagree_are_an_error(
    models: dict[str, Path], tmp_path: Path, small_folder: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    result = run_cli("run", models["int8"], small_folder, "--labels", labels)
    assert result.exit_code == 2 and "drop --labels" in result.stderr


def test_a_bare_copy_of_an_edgecnn_model_runs_from_its_metadata_or_options(
    models: dict[str, Path], tmp_path: Path, small_folder: Path
) -> None:
    """cp model_int8.tflite x/ and run it: what convert embeds (TFLite Metadata) replaces the sidecar."""
    bare = tmp_path / "x" / "model_int8.tflite"
    bare.parent.mkdir()
    shutil.copyfile(models["int8"], bare)
    with_sidecar = run_cli("run", models["int8"], small_folder, "--json")
    without = run_cli("run", bare, small_folder, "--json")
    assert with_sidecar.exit_code == 0 and without.exit_code == 0, without.output
    assert top1(without) == top1(with_sidecar)
    assert sorted(p.name for p in bare.parent.iterdir()) == ["model_int8.tflite"]


def test_a_model_that_is_not_a_classifier_is_refused(tmp_path: Path, small_folder: Path) -> None:
    import keras

    inputs = keras.Input(shape=(32, 32, 3), name="pixels")
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    boxes = keras.layers.Dense(4, name="boxes")(keras.layers.Flatten(name="flat")(h))
    scores = keras.layers.Dense(3, activation="softmax", name="scores")(
        keras.layers.GlobalAveragePooling2D(name="g")(h)
    )
    model = tmp_path / "detector.tflite"
    model.write_bytes(tflite_from_keras(keras.Model(inputs, [boxes, scores], name="detector")))
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    for command in (["run", model, small_folder], ["validate", "-r", model, "-c", model, small_folder]):
        result = run_cli(*command, "--labels", labels, "--input-range", "0,1")
        assert result.exit_code == 2, result.output
        assert "2 output(s)" in result.stderr and "not classifiers" in result.stderr


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda side: side.update(labels=side["labels"][::-1]), "list different labels"),
        (lambda side: side["preprocessing"].update(mean=[0.5], std=[0.5]), "different input normalization"),
    ],
)
def test_a_sidecar_that_disagrees_with_the_metadata_is_an_error(
    models: dict[str, Path], tmp_path: Path, small_folder: Path, change: Any, words: str
) -> None:
    """Convert embeds the labels and normalization twice (sidecar and TFLite Metadata): edgecnn never picks one."""
    model = tmp_path / "m.tflite"
    shutil.copyfile(models["int8"], model)
    side = json.loads(models["int8"].with_suffix(".json").read_text())
    change(side)
    model.with_suffix(".json").write_text(json.dumps(side))  # its model_sha256 still matches the bytes
    for command in (["run", model, small_folder], ["validate", "-r", models["float"], "-c", model, small_folder]):
        result = run_cli(*command)
        assert result.exit_code == 2, result.output
        assert words in result.stderr and "its TFLite Metadata" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_metadata_labels_that_repeat_a_name_give_way_to_labels_option(outside: dict[str, Any], tmp_path: Path) -> None:
    """Like ImageNet's labels.txt ("crane" twice): refused alone, replaced by --labels."""
    from edgecnn.build.metadata import with_metadata
    from edgecnn.model.metadata import ModelMetadata

    root = outside["root"]
    repeated = (*outside["classes"][:9], outside["classes"][0])
    model = tmp_path / "repeated.tflite"
    meta = ModelMetadata(name="r", labels=repeated, mean=(127.5,), std=(127.5,))
    model.write_bytes(with_metadata((root / "float.tflite").read_bytes(), meta))
    alone = run_cli("run", model, outside["data"])
    assert alone.exit_code == 2 and "would merge classes" in alone.stderr and "--labels" in alone.stderr
    fixed = run_cli("run", model, outside["data"], "--labels", root / "labels.txt", "--json")
    assert fixed.exit_code == 0, fixed.output
    # The metadata's normalization is still used: 127.5/127.5 is the model's [-1, 1].
    want = [outside["classes"][i] for i in outside["expected"]]
    assert np.mean([g == w for g, w in zip(top1(fixed), want)]) >= 0.98
