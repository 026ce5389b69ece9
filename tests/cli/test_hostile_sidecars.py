"""Hostile sidecars through every command that reads a bundle (issue 13): each is refused with exit 2 in one line,
no traceback, before it can feed a model wrong constants. The sidecar's model_sha256 vouches for the model's bytes,
not for the sidecar's own fields, so these sidecars all carry the right sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

COMMANDS = {
    "run": lambda model, data, out: ("run", model, data),
    "check-host": lambda model, data, out: ("check", "--target", "host", model),
    "check-coral": lambda model, data, out: ("check", "--target", "coral", model),
    "check-micro": lambda model, data, out: ("check", "--target", "micro", model),
    "export-micro": lambda model, data, out: ("export", "micro", model, "--out", out),
}


def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets the field at a dotted ``path`` of the sidecar."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return edit


def with_labels(count: int) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.update(labels=[f"class{i}" for i in range(count)])


def duplicate_label(data: dict[str, Any]) -> None:
    data["labels"][-1] = data["labels"][0]


def both(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for one in edits:
            one(data)

    return edit


def text(change: Callable[[str], str]) -> Callable[[str], str]:
    """Marks an edit of the sidecar's text (what json.dumps cannot write) rather than of its parsed fields."""
    change.raw = True  # type: ignore[attr-defined]
    return change


def append_field(value: str) -> Callable[[str], str]:
    """Adds ``"x": value`` to the sidecar's text (canonical JSON ends with ``}`` and a newline)."""
    return text(lambda content: content.rstrip()[:-1] + f', "x": {value}}}\n')


# case: (edit of the parsed sidecar, or of its text; what the one error line says)
CASES: dict[str, tuple[Callable[[Any], Any], str]] = {
    # 6: JSON that would make the parser recurse or convert for long
    "deeply-nested": (append_field("[" * 50_000 + "]" * 50_000), "levels deep"),
    "huge-integer": (append_field("7" * 5000), "an integer of 5000 digits"),
    # 7: preprocessing that contradicts the model's input
    "height-16": (set_in("preprocessing.height", 16), "preprocesses images to 16x32x3"),
    # 9: I/O constants that differ from the model's
    "input-scale": (set_in("input.scale", 0.5), "input of m.tflite is int8 scale"),
    "input-zero-point": (set_in("input.zero_point", 0), "but its sidecar says int8 scale"),
    "input-dtype": (set_in("input.dtype", "float32"), "but its sidecar says float32"),
    "output-scale": (set_in("output.scale", 0.5), "output of m.tflite is int8 scale"),
    "output-zero-point": (set_in("output.zero_point", 3), "output of m.tflite"),
    "output-dtype": (both(set_in("output.dtype", "uint8"), set_in("output.zero_point", 0)), "sidecar says uint8"),
    # 10: labels or input shape that do not fit the model
    "no-labels": (with_labels(0), "labels must be a non-empty list"),
    "9-labels": (with_labels(9), "outputs 10 scores but its sidecar lists 9 labels"),
    "11-labels": (with_labels(11), "outputs 10 scores but its sidecar lists 11 labels"),
    "input-shape": (set_in("input_shape", [1, 28, 28, 3]), "but its sidecar says int8 [1, 28, 28, 3]"),
    # 12: values of the wrong type or out of range
    "std-nan": (text(lambda content: content.replace('"std": [', '"std": [NaN, ')), "NaN is not a JSON number"),
    "std-inf": (text(lambda content: content.replace('"std": [', '"std": [1e999, ')), "out of range"),
    "labels-string": (set_in("labels", "zero one two"), "labels must be a non-empty list"),
    "labels-dict": (set_in("labels", {"0": "zero"}), "labels must be a non-empty list"),
    "labels-duplicate": (duplicate_label, "is listed twice"),
    "height-string": (set_in("preprocessing.height", "32"), "preprocessing.height must be a positive integer"),
    "height-float": (set_in("preprocessing.height", 8.9), "preprocessing.height must be a positive integer"),
}


@pytest.fixture
def bundle(models: dict[str, Path], tmp_path: Path) -> Path:
    """A writable copy of the int8 bundle, as m.tflite and m.json."""
    model = tmp_path / "m.tflite"
    shutil.copyfile(models["int8"], model)
    shutil.copyfile(models["int8"].with_suffix(".json"), model.with_suffix(".json"))
    return model


def make_hostile(model: Path, case: str) -> str:
    """Apply a case to the bundle's sidecar; returns what the error line must say."""
    change, expected = CASES[case]
    side = model.with_suffix(".json")
    if getattr(change, "raw", False):
        side.write_text(change(side.read_text()))
    else:
        data = json.loads(side.read_text())
        change(data)
        side.write_text(json.dumps(data))
    return expected


def assert_refused(result: Any, expected: str) -> None:
    """Exit 2, one stderr line that says ``expected``, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("edgecnn: error: "), result.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_hostile_sidecar_is_refused(bundle: Path, photos_test: Path, tmp_path: Path, command: str, case: str) -> None:
    expected = make_hostile(bundle, case)
    out = tmp_path / "out"
    assert_refused(run_cli(*COMMANDS[command](bundle, photos_test, out)), expected)
    assert not out.exists()  # export wrote nothing


@pytest.mark.parametrize("command", COMMANDS)
def test_corrupt_model_under_a_resigned_sidecar_is_refused(
    bundle: Path, photos_test: Path, tmp_path: Path, command: str
) -> None:
    """Model bytes changed and the sidecar re-signed, so the bytes reach the parsers: still one line, exit 2."""
    content = bundle.read_bytes()
    bundle.write_bytes(content[: len(content) // 3])
    side = bundle.with_suffix(".json")
    data = json.loads(side.read_text())
    data["model_sha256"] = hashlib.sha256(bundle.read_bytes()).hexdigest()
    side.write_text(json.dumps(data))
    assert_refused(run_cli(*COMMANDS[command](bundle, photos_test, tmp_path / "out")), "m.tflite")


def test_untouched_bundle_still_passes(bundle: Path, photos_test: Path) -> None:
    result = run_cli("check", "--target", "host", bundle)
    assert result.exit_code == 0, result.output


def test_convert_refuses_a_sidecar_path_that_is_a_folder(models: dict[str, Path], tmp_path: Path) -> None:
    """16: both files or neither; here neither, refused before any work."""
    out = tmp_path / "o"
    (out / "side.json").mkdir(parents=True)
    result = run_cli("convert", models["keras"], "--out", out / "side.tflite", "--quantize", "none")
    assert_refused(result, "which is a folder")
    assert sorted(p.name for p in out.iterdir()) == ["side.json"]
