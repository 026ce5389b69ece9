"""Issue 15: no command writes over one of its own inputs.

Each case gives a command an output path that is one of its inputs, under some name: the model, its sidecar (also
one reached through another case of the suffix, or one a sidecar-less model does not have yet), an image inside the
data or calibration folder, a labels file; through a symlink or ``..``. Each must exit 2 before any work, with one
line naming the input, and leave every input byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import copy_subset, run_cli

Case = Callable[[dict[str, Path]], list[object]]
"""Builds a command line from the inputs laid out by the ``inputs`` fixture."""


@pytest.fixture
def inputs(tmp_path: Path, models: dict[str, Path], photos_train: Path, photos_test: Path) -> dict[str, Path]:
    """Writable copies of every kind of input: models with their sidecars, data and calibration folders, labels."""
    root = tmp_path / "in"
    root.mkdir()
    laid = {"root": root, "keras": root / "model.keras"}
    shutil.copyfile(models["keras"], laid["keras"])
    for key in ("int8", "float"):
        laid[key] = root / f"{key}.tflite"
        shutil.copyfile(models[key], laid[key])
        shutil.copyfile(models[key].with_suffix(".json"), root / f"{key}.json")
    laid["bare"] = root / "bare.tflite"  # a model from elsewhere: no sidecar (yet)
    shutil.copyfile(models["float"], laid["bare"])
    laid["data"] = copy_subset(photos_test, root / "data", per_class=2)
    laid["calib"] = copy_subset(photos_train, root / "calib", per_class=2)
    laid["labels"] = root / "labels.json"
    laid["labels"].write_text("\n".join(sorted(p.name for p in laid["data"].iterdir())) + "\n")
    (root / "link").symlink_to(laid["data"])
    return laid


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) and the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def image(folder: Path) -> Path:
    """The first image of the first class of an image folder."""
    return sorted(sorted(folder.iterdir())[0].iterdir())[0]


VALIDATE = ["validate", "-q"]


def validate_with(i: dict[str, Path], *more: object, reference: str = "keras") -> list[object]:
    return [*VALIDATE, "-r", i[reference], "-c", i["int8"], i["data"], *more]


CASES: dict[str, Case] = {
    # validate: each of its outputs over each kind of input
    "validate json-out over the candidate": lambda i: validate_with(i, "--json-out", i["int8"]),
    "validate junit over the reference's sidecar": lambda i: validate_with(
        i, "--junit", i["root"] / "float.json", reference="float"
    ),
    "validate json-out over the candidate's sidecar": lambda i: validate_with(
        i, "--json-out", i["int8"].with_suffix(".json")
    ),
    "validate json-out as a sidecar-less reference's sidecar": lambda i: validate_with(
        i, "--json-out", i["root"] / "bare.json", reference="bare"
    ),
    "validate json-out over the .keras reference": lambda i: validate_with(i, "--json-out", i["keras"]),
    "validate json-out over a data image": lambda i: validate_with(i, "--json-out", image(i["data"])),
    "validate json-out over a data image through a link": lambda i: validate_with(
        i, "--json-out", i["root"] / "link" / image(i["data"]).relative_to(i["data"])
    ),
    "validate json-out over a data image through ..": lambda i: validate_with(
        i, "--json-out", i["data"] / "x" / ".." / image(i["data"]).relative_to(i["data"])
    ),
    "validate junit into the data folder": lambda i: validate_with(i, "--junit", i["data"] / "gates.xml"),
    "validate report into the data folder": lambda i: validate_with(i, "--report", i["data"] / "one"),
    "validate json-out over a calibration image": lambda i: validate_with(
        i, "--report", i["root"] / "report", "--calibration", i["calib"], "--json-out", image(i["calib"])
    ),
    "validate json-out over the labels file": lambda i: validate_with(
        i, "--labels", i["labels"], "--json-out", i["labels"]
    ),
    # convert: the bundle it writes (model + sidecar) over each input
    "convert over its .tflite source": lambda i: [
        "convert", i["float"], "--out", i["float"], "--calibration", i["calib"],
    ],
    "convert's sidecar over its source's sidecar (other suffix case)": lambda i: [
        "convert", i["float"], "--out", i["root"] / "float.TFLITE", "--calibration", i["calib"],
    ],
    "convert into the calibration folder": lambda i: [
        "convert", i["keras"], "--out", image(i["calib"]).with_suffix(".tflite"), "--calibration", i["calib"],
    ],
    "convert --max-drop into the data folder": lambda i: [
        "convert", i["keras"], "--out", i["data"] / "m.tflite", "--calibration", i["calib"],
        "--max-drop", 1, "--data", i["data"],
    ],
    # export micro: its output folder over the model or its sidecar
    "export micro over the model": lambda i: ["export", "micro", i["int8"], "--out", i["int8"]],
    "export micro over the sidecar": lambda i: ["export", "micro", i["int8"], "--out", i["int8"].with_suffix(".json")],
    # train and finetune: the model they write into the data folder
    "train into the data folder": lambda i: ["train", i["data"], "--out", i["data"] / "one" / "m.keras", "--epochs", 1],
    "finetune into the data folder": lambda i: ["finetune", i["keras"], i["data"], "--out", i["data"] / "m.tflite"],
    # demo: a folder that is an existing model file
    "demo over a model file": lambda i: ["demo", "--out", i["keras"], "--epochs", 1],
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_over_an_input_is_refused_and_every_input_is_unchanged(case: str, inputs: dict[str, Path]) -> None:
    before = snapshot(inputs["root"])
    result = run_cli(*CASES[case](inputs))
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    assert result.stderr.startswith("edgecnn: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert snapshot(inputs["root"]) == before, f"{case}: an input changed"


def test_validate_refuses_junit_and_json_out_on_one_file(inputs: dict[str, Path], tmp_path: Path) -> None:
    same = tmp_path / "out" / "evidence.xml"
    result = run_cli(*validate_with(inputs, "--junit", same, "--json-out", same))
    assert result.exit_code == 2 and "--junit and --json-out are both" in result.stderr
    assert not same.exists()


def test_a_hard_link_to_an_input_is_the_input(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Compared as files, not names: a hard link (or another case on a case-insensitive disk) is the same file."""
    from edgecnn.errors import UsageError
    from edgecnn.runtime.files import refuse_inputs

    linked = tmp_path / "other-name.tflite"
    linked.hardlink_to(inputs["int8"])
    with pytest.raises(UsageError, match="is the input"):
        refuse_inputs([linked], [inputs["int8"]])
    refuse_inputs([tmp_path / "new.tflite"], [inputs["int8"], inputs["data"]])  # a new file beside is fine
