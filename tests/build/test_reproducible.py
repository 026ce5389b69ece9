"""Reproducible builds: ``convert`` in two processes and two separately installed environments (this one, and the
``x86_venv_train`` venv with its own TensorFlow, Keras and numpy, running this checkout's code) gives a
byte-identical ``.tflite``, sidecar and ``export micro`` C++, and the sidecar records what reproduces the build.

Everything that could leak into the bytes differs between the two runs: HOME, TMPDIR, KERAS_HOME, PYTHONHASHSEED,
the working folder and the output folder's absolute path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import envs
import pytest
from helpers import outside_classifier, read_folder, tflite_from_keras

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def train_python() -> Path:
    return envs.venv_python_of("x86_venv_train")


def _edgecnn(python: Path | str, root: Path, seed: str, *args: str | Path) -> None:
    """Run ``python -m edgecnn ARGS`` from this checkout in an environment of its own under ``root``."""
    for name in ("home", "tmp", "keras", "cwd"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KERAS", "TF_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONNOUSERSITE="1",
        PYTHONHASHSEED=seed,
        HOME=str(root / "home"),
        TMPDIR=str(root / "tmp"),
        KERAS_HOME=str(root / "keras"),
    )
    command = [str(python), "-m", "edgecnn", *(str(a) for a in args)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root / "cwd", timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}"


def _build_twice(train_python: Path, tmp_path: Path, model: Path, *options: str | Path) -> list[Path]:
    """Convert ``model`` and export it for TFLite Micro here and in the train venv; return both output folders."""
    folders = []
    for name, python, seed in (("here", sys.executable, "0"), ("venv", train_python, "12345")):
        root = tmp_path / name
        out = root / "out"
        _edgecnn(python, root, seed, "convert", model, "--out", out / "model_int8.tflite", *options)
        _edgecnn(python, root, seed, "export", "micro", out / "model_int8.tflite", "--out", out / "micro")
        folders.append(out)
    return folders


def _assert_identical(here: Path, venv: Path) -> dict:
    files = sorted(p.relative_to(here) for p in here.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(venv) for p in venv.rglob("*") if p.is_file())
    assert Path("model_int8.tflite") in files and Path("model_int8.json") in files
    assert any(p.suffix == ".cc" for p in files), files
    ours, theirs = (
        json.loads((here / "model_int8.json").read_text()),
        json.loads((venv / "model_int8.json").read_text()),
    )
    assert ours["tools"] == theirs["tools"], "the two environments have different tool versions"
    for relative in files:
        assert (here / relative).read_bytes() == (venv / relative).read_bytes(), f"{relative} differs"
    return ours


def _assert_deterministic_text(sidecar: dict, *roots: Path) -> None:
    text = json.dumps(sidecar)
    for root in roots:
        assert str(root) not in text
    assert os.uname().nodename not in text


def test_edgecnn_model_builds_byte_identical_in_two_environments(
    train_python: Path, models: dict[str, Path], photos_train: Path, tmp_path: Path
) -> None:
    here, venv = _build_twice(
        train_python, tmp_path, models["keras"], "--calibration", photos_train, "--calibration-size", "40",
        "--seed", "7",
    )  # fmt: skip
    sidecar = _assert_identical(here, venv)
    assert sidecar["conversion"] == {"quantize": "int8", "io": "int8", "calibration_size": 40, "seed": 7}
    assert sidecar["calibration"]["seed"] == 7 and sidecar["calibration"]["requested"] == 40
    assert sidecar["source"]["model"] == models["keras"].name
    assert {"edgecnn", "python", "tensorflow", "keras", "numpy"} <= set(sidecar["tools"])
    _assert_deterministic_text(sidecar, tmp_path, models["keras"].parent, photos_train)


def test_float_tflite_from_elsewhere_builds_byte_identical_in_two_environments(
    train_python: Path, photos_train: Path, tmp_path: Path
) -> None:
    x, y, classes = read_folder(photos_train, per_class=10)
    source = tmp_path / "source"
    source.mkdir()
    model = source / "float.tflite"
    model.write_bytes(tflite_from_keras(outside_classifier(x, y, len(classes), epochs=1)))
    (source / "labels.txt").write_text("\n".join(classes) + "\n")
    here, venv = _build_twice(
        train_python, tmp_path, model, "--calibration", photos_train, "--calibration-size", "30", "--io", "uint8",
        "--labels", source / "labels.txt", "--input-range=-1,1",
    )  # fmt: skip
    sidecar = _assert_identical(here, venv)
    assert sidecar["conversion"] == {"quantize": "int8", "io": "uint8", "calibration_size": 30, "seed": 0}
    assert sidecar["source"]["format"] == "tflite" and sidecar["source"]["described_by"] == ["options"]
    assert "ai-edge-quantizer" in sidecar["tools"] and "edgecnn" in sidecar["tools"]
    _assert_deterministic_text(sidecar, tmp_path, photos_train)
