"""A real consumer proves the TFLite Metadata ``convert`` embeds: MediaPipe Tasks' ImageClassifier, in its own venv
(its pins clash with TensorFlow's), loads the converted model, takes the labels and normalization from the metadata
alone, and its top-1 equals ``edgecnn run`` on real images."""

from __future__ import annotations

import json
from pathlib import Path

import envs
import pytest
from helpers import copy_subset, run_cli

SCRIPT = Path(__file__).resolve().parents[1] / "consumers" / "mediapipe_classify.py"


@pytest.fixture(scope="module")
def mediapipe_python() -> Path:
    return envs.venv_python_of("x86_venv_mediapipe")


@pytest.mark.parametrize("io", ["uint8", "float32"])
def test_mediapipe_reads_the_metadata_and_agrees_with_edgecnn_run(
    io: str, mediapipe_python: Path, models: dict[str, Path], photos_train: Path, photos_test: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"app_{io}.tflite"
    converted = run_cli(
        "convert", models["keras"], "--out", out, "--calibration", photos_train, "--calibration-size", "100",
        "--io", io, "--name", "digits", "--author", "edgecnn tests", "--json",
    )  # fmt: skip
    assert converted.exit_code == 0, converted.output
    assert "warning" not in converted.stderr, converted.stderr  # nothing stops an app library from using it
    data = copy_subset(photos_test, tmp_path / "data", per_class=6)
    images = sorted(str(p) for p in data.rglob("*.jpg"))
    ours = run_cli("run", out, *images, "--json", "--top-k", "1")
    assert ours.exit_code == 0, ours.output
    edgecnn_top = [p["top"][0]["label"] for p in json.loads(ours.stdout)["predictions"]]
    theirs = json.loads(envs.run([str(mediapipe_python), str(SCRIPT), str(out), *images], timeout=300))["top"]
    assert [t["label"] for t in theirs] == edgecnn_top
    # The labels MediaPipe shows came from the metadata's TENSOR_AXIS_LABELS file: real class names, not indices.
    assert {t["label"] for t in theirs} <= {p.name for p in data.iterdir()}
    assert len(set(edgecnn_top)) >= 8  # a model that says one class for everything would prove nothing


def test_int8_io_warns_that_app_libraries_cannot_load_it(
    models: dict[str, Path], photos_train: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "convert", models["keras"], "--out", tmp_path / "m.tflite", "--calibration", photos_train,
        "--calibration-size", "50",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--io uint8" in result.stderr
