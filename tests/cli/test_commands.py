"""The commands as a user runs them: help, run, train/convert JSON, demo, and no TensorFlow on the runtime side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import run_cli

from edgecnn.cli.main import cli

PROGRESS_COMMANDS = {"train", "convert", "validate", "run", "demo", "bench", "diagnose", "finetune"}


def _leaf_commands(group: click.Group, prefix: str = "") -> list[str]:
    """Every visible command, with its group's name before it (``export micro``)."""
    names = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        if isinstance(command, click.Group):
            names += _leaf_commands(command, f"{prefix}{name} ")
        else:
            names.append(f"{prefix}{name}")
    return names


@pytest.mark.parametrize("command", _leaf_commands(cli))
def test_every_command_has_help_json_and_quiet_where_it_shows_progress(command: str) -> None:
    result = run_cli(*command.split(), "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: cli {command}") or result.stdout.startswith(f"Usage: edgecnn {command}")
    assert "--json" in result.stdout
    assert ("--quiet" in result.stdout) == (command in PROGRESS_COMMANDS)


def test_hidden_agent_is_only_the_ssh_agent() -> None:
    assert [name for name, c in cli.commands.items() if c.hidden] == ["agent"]


def test_top_level_help_and_version() -> None:
    assert run_cli("--version").stdout.strip().startswith("edgecnn, version ")
    result = run_cli("--help")
    for command in ("train", "convert", "validate", "run", "demo", "targets", "check", "bench", "diagnose", "finetune",
                    "export"):  # fmt: skip
        assert command in result.stdout


def test_run_prints_top_k_per_image(models: dict[str, Path], small_folder: Path) -> None:
    (small_folder / "zero" / "notes.txt").write_text("skip me")
    result = run_cli("run", models["int8"], small_folder / "three" / "0000.jpg", small_folder, "--top-k", 2)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(small_folder / "three" / "0000.jpg") + ": ")
    assert len(lines[0].split(": ")[1].split(", ")) == 2
    assert "skipped 1 file(s):" in result.stdout and "notes.txt: not an image file (.txt)" in result.stdout
    data = json.loads(run_cli("run", models["int8"], small_folder, "--json", "--top-k", 3).stdout)
    assert data["num_images"] == 12 and data["num_skipped"] == 1 and data["runtime"] == "ai-edge-litert"
    for prediction in data["predictions"]:
        scores = [t["score"] for t in prediction["top"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3


@pytest.mark.slow  # trains and converts
def test_train_and_convert_report_json(small_folder: Path, tmp_path: Path) -> None:
    keras_path, tflite_path = tmp_path / "m.keras", tmp_path / "m.tflite"
    trained = run_cli(
        "train", small_folder, "--out", keras_path, "--epochs", 1, "--image-size", 16, "--augment", "shift", "--json"
    )
    assert trained.exit_code == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["labels"] == ["one", "three", "zero"] and summary["preprocessing"]["height"] == 16
    from edgecnn.runtime.bundle import read_keras_info

    assert read_keras_info(keras_path).extra["training"]["augment"] == "shift"
    converted = run_cli("convert", keras_path, "--out", tflite_path, "--calibration", small_folder, "--json")
    assert converted.exit_code == 0, converted.stderr
    report = json.loads(converted.stdout)
    assert report["quantization"] == "int8" and report["size_bytes"] == tflite_path.stat().st_size
    assert report["calibration"]["num_images"] == 12 and report["ops"]["CONV_2D"] == 6
    text = run_cli("convert", keras_path, "--out", tflite_path, "--quantize", "float16")
    assert "quantization float16" in text.stdout and "ops: " in text.stdout


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_runtime_side_never_imports_tensorflow(models: dict[str, Path], small_folder: Path) -> None:
    """import edgecnn, --help, run, validate of two .tflite models, targets, check, bench: no TensorFlow, no Keras."""
    code = f"""
import sys
from edgecnn.cli.main import cli
model = {str(models["int8"])!r}
for args in (["--help"], ["run", model, {str(small_folder)!r}, "--json"],
             ["validate", {str(small_folder)!r}, "-r", {str(models["float"])!r},
              "-c", model, "--max-drop", "100"],
             ["targets"], ["check", "--target", "rpi", model], ["bench", model, "--runs", "3"],
             ["run", "--target", "rpi", model, {str(small_folder)!r}]):
    try:
        cli.main(args, prog_name="edgecnn", standalone_mode=False)
    except SystemExit:
        pass
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("LOADED", loaded)
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    assert '"num_images": 12' in result.stdout  # the run really ran


@pytest.mark.slow  # the whole demo: writes the digits, trains, converts, validates
def test_demo_meets_its_targets(tmp_path: Path) -> None:
    """The main job: float accuracy >= 97% on the held-out digits, int8 drop <= 0.5 points."""
    result = subprocess.run(
        [sys.executable, "-m", "edgecnn", "demo", "--out", str(tmp_path / "demo"), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    demo = json.loads(result.stdout)
    validation = demo["validation"]
    assert validation["reference_accuracy"] >= 0.97
    assert validation["accuracy_drop_pp"] <= 0.5 and validation["passed"]
    assert validation["num_images"] == 359
    assert Path(demo["conversion"]["model"]).is_file() and Path(demo["training"]["model"]).is_file()
    assert len(demo["predictions"]) == 4
    assert result.stderr == ""  # not a terminal: no progress, and no TensorFlow chatter


@pytest.mark.slow  # a conversion
def test_calibration_from_a_flat_folder(models: dict[str, Path], small_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run_cli("convert", models["keras"], "--out", out, "--calibration", small_folder / "three", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["calibration"]["num_images"] == 4


def test_run_accepts_the_keras_model_too(models: dict[str, Path], small_folder: Path) -> None:
    """The float .keras and its float .tflite give the same top-1 class on every image."""
    keras_run = json.loads(run_cli("run", models["keras"], small_folder, "--json", "--top-k", 1).stdout)
    tflite_run = json.loads(run_cli("run", models["float"], small_folder, "--json", "--top-k", 1).stdout)
    assert keras_run["runtime"] == "keras" and keras_run["num_images"] == 12
    assert [p["top"][0]["label"] for p in keras_run["predictions"]] == [
        p["top"][0]["label"] for p in tflite_run["predictions"]
    ]
