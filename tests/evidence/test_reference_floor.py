"""Issue 13: a reference that cannot classify the images is no evidence, and the labels never tested are named.

Class folders named after the model's labels but holding other classes' images gave a 31.8% reference accuracy and
"validation passed": both models were equally wrong. ``validate`` now gates on the reference's own accuracy
(``--min-reference-accuracy``, by default twice what always answering the most common class scores, at most halfway
to 1), and names the model's classes that DATA has no images of.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import PHOTO_CLASSES, copy_subset, run_cli

from edgecnn.errors import UsageError
from edgecnn.evidence.validate import compare, default_reference_floor
from edgecnn.runtime.data import LoadedImages

LABELS = ["cat", "dog", "fox"]


def images_of(truth: list[int]) -> LoadedImages:
    """Stand-in images: compare reads only the true labels (and the skipped files)."""
    return LoadedImages(
        images=np.zeros((len(truth), 1, 1, 1), np.float32),
        labels=np.asarray(truth, np.int64),
        paths=[Path(f"{i}.png") for i in range(len(truth))],
    )


def scores_for(predicted: list[int], classes: int = len(LABELS)) -> np.ndarray:
    """One-hot scores whose top-1 is ``predicted``."""
    return np.eye(classes, dtype=np.float32)[predicted]


@pytest.mark.parametrize(
    ("truth", "floor"),
    [
        (list(range(10)) * 3, 0.2),  # 10 balanced classes: twice 10%
        ([0, 1, 2] * 4, 2 / 3),  # 3 balanced classes: twice a third, which is also halfway to 1
        ([0, 1] * 5, 0.75),  # 2 classes: twice would be 100%, capped halfway between 50% and 1
        ([0] * 8 + [1, 2], 0.9),  # unbalanced: always answering class 0 scores 80%, so halfway to 1
    ],
)
def test_default_floor_is_twice_the_majority_share_at_most_halfway_to_one(truth: list[int], floor: float) -> None:
    assert default_reference_floor(np.asarray(truth)) == pytest.approx(floor)


def test_a_reference_that_cannot_classify_the_images_fails_even_when_the_candidate_agrees() -> None:
    truth = [0, 1, 2] * 4
    wrong = [(t + 1) % 3 for t in truth]  # folders named after one class, holding the next one's images
    report = compare(LABELS, images_of(truth), scores_for(wrong), scores_for(wrong))
    assert [g.name for g in report.gates] == ["min-reference-accuracy", "max-drop"]
    floor, drop = report.gates
    assert not floor.passed and drop.passed and not report.passed
    assert floor.value == 0.0 and floor.threshold == pytest.approx(2 / 3)
    assert report.messages()[0].startswith("gate failed: min-reference-accuracy: reference accuracy 0.0000")
    assert report.to_dict()["gates"][0]["name"] == "min-reference-accuracy"


def test_a_good_reference_passes_the_floor_and_an_explicit_floor_is_used_as_given() -> None:
    truth = [0, 1, 2] * 4
    good = compare(LABELS, images_of(truth), scores_for(truth), scores_for(truth))
    assert good.passed and good.gates[0].value == 1.0
    strict = compare(LABELS, images_of(truth), scores_for(truth), scores_for(truth), min_reference_accuracy=1.0)
    assert strict.passed and strict.gates[0].threshold == 1.0
    halves = [t if i % 2 else (t + 1) % 3 for i, t in enumerate(truth)]  # 50% right
    assert not compare(LABELS, images_of(truth), scores_for(halves), scores_for(halves)).passed
    explicit = compare(LABELS, images_of(truth), scores_for(halves), scores_for(halves), min_reference_accuracy=0.5)
    assert explicit.passed


def test_zero_turns_the_floor_off() -> None:
    truth = [0, 1, 2] * 4
    wrong = [(t + 1) % 3 for t in truth]
    report = compare(LABELS, images_of(truth), scores_for(wrong), scores_for(wrong), min_reference_accuracy=0)
    assert [g.name for g in report.gates] == ["max-drop"] and report.passed


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf")])
def test_a_floor_outside_zero_to_one_is_refused(value: float) -> None:
    truth = [0, 1, 2]
    with pytest.raises(UsageError, match="--min-reference-accuracy is a fraction between 0 and 1"):
        compare(LABELS, images_of(truth), scores_for(truth), scores_for(truth), min_reference_accuracy=value)


def test_labels_with_no_images_are_named_in_messages_and_json() -> None:
    truth = [0, 2, 0, 2]
    report = compare(LABELS, images_of(truth), scores_for(truth), scores_for(truth))
    assert report.passed and report.untested_labels == ["dog"]
    assert report.to_dict()["untested_labels"] == ["dog"]
    assert report.messages() == ["note: 1 of 3 labels never tested (no images in the data): dog"]
    every = compare(LABELS, images_of([0, 1, 2]), scores_for([0, 1, 2]), scores_for([0, 1, 2]))
    assert every.untested_labels == [] and every.messages() == [] and every.to_dict()["untested_labels"] == []


def _swapped(photos_test: Path, tmp_path: Path) -> Path:
    """Class folders named after the model's labels, each holding the next class's photos."""
    source = copy_subset(photos_test, tmp_path / "source", per_class=6)
    swapped = tmp_path / "swapped"
    for i, label in enumerate(PHOTO_CLASSES):
        shutil.copytree(source / PHOTO_CLASSES[(i + 1) % len(PHOTO_CLASSES)], swapped / label)
    return swapped


def test_cli_fails_on_folders_that_hold_other_classes(tmp_path: Path, models: dict[str, Path], photos_test: Path):
    """The issue's case through the command: every folder holds the next class's photos."""
    swapped = _swapped(photos_test, tmp_path)
    result = run_cli("validate", "-r", models["keras"], "-c", models["int8"], swapped, "--json", "-q")
    assert result.exit_code == 1, result.stderr
    payload = json.loads(result.stdout)
    floor = payload["gates"][0]
    assert floor["name"] == "min-reference-accuracy" and not floor["passed"]
    assert floor["threshold"] == pytest.approx(0.2)
    assert "gate failed: min-reference-accuracy" in result.stderr
    off = run_cli("validate", "-r", models["keras"], "-c", models["int8"], swapped, "--min-reference-accuracy", 0)
    assert "min-reference-accuracy" not in off.stdout


def test_cli_names_the_labels_with_no_images(tmp_path: Path, models: dict[str, Path], photos_test: Path) -> None:
    data = copy_subset(photos_test, tmp_path / "data", per_class=6, classes=["one", "two", "zero"])
    result = run_cli("validate", "-r", models["keras"], "-c", models["int8"], data, "-q")
    assert result.exit_code == 0, result.stderr + result.stdout
    note = "note: 7 of 10 labels never tested (no images in the data): eight, five, four, nine, seven, six, three"
    assert note in result.stdout and f"edgecnn: {note}" in result.stderr
    as_json = run_cli("validate", "-r", models["keras"], "-c", models["int8"], data, "-q", "--json")
    assert json.loads(as_json.stdout)["untested_labels"] == ["eight", "five", "four", "nine", "seven", "six", "three"]


def test_gated_convert_names_the_floor_before_any_attempt(
    tmp_path: Path, models: dict[str, Path], photos_test: Path, photos_train: Path
) -> None:
    """convert --max-drop judges every attempt against the Keras model: on images it cannot classify, it stops at
    once, says why (exit 2), and writes nothing; --min-reference-accuracy 0 lets the gate run anyway."""
    swapped = _swapped(photos_test, tmp_path)
    out = tmp_path / "gated.tflite"
    args = ["convert", models["keras"], "--out", out, "--calibration", photos_train, "--calibration-size", "20",
            "--max-drop", "1", "--data", swapped, "-q"]  # fmt: skip
    result = run_cli(*args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert re.search(r"classifies \d+\.\d% of --data's 60 images, below the reference-accuracy floor of 20\.0%",
                     result.stderr)  # fmt: skip
    assert "set --min-reference-accuracy" in result.stderr
    assert list(tmp_path.glob("gated*")) == []
    anyway = run_cli(*args, "--min-reference-accuracy", "0", "--json")
    assert anyway.exit_code == 0, anyway.stderr  # both models equally wrong: no drop
    assert json.loads(anyway.stdout)["recovery"]["attempts"][0]["passed"]
    alone = run_cli("convert", models["keras"], "--out", out, "--calibration", photos_train,
                    "--min-reference-accuracy", "0.5")  # fmt: skip
    assert alone.exit_code == 2 and "--min-reference-accuracy applies to --data" in alone.stderr
