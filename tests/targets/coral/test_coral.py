"""The Coral target through the real code path: a real shared library behind TFLite's external-delegate API
(tests/targets/coral/fake_edgetpu.c, built here with gcc) loaded by the interpreter as libedgetpu, and
``convert --target coral`` with an ``edgetpu_compiler`` stand-in on PATH (the compiler ships only from Coral's
apt repository)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from edgecnn.runtime.bundle import read_tflite_info, write_tflite
from edgecnn.runtime.interpreter import EDGETPU_CUSTOM_OP, TFLiteRunner
from edgecnn.runtime.preprocess import load_image

HERE = Path(__file__).resolve().parent
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="module")
def libedgetpu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The delegate library, built from source, named as Coral's runtime is on Linux."""
    gcc = shutil.which("gcc")
    if gcc is None:
        if IN_CI:
            pytest.fail("gcc is missing: tools/setup_test_env.sh installs it")
        pytest.skip("gcc is missing: run tools/setup_test_env.sh")
    folder = tmp_path_factory.mktemp("libedgetpu")
    library = folder / "libedgetpu.so.1"
    subprocess.run([gcc, "-shared", "-fPIC", "-Wall", "-Werror", "-o", str(library), str(HERE / "fake_edgetpu.c")],
                   check=True)  # fmt: skip
    return library


@pytest.fixture
def edgetpu(libedgetpu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The library in place for this test; returns the file its delegate logs the options it receives to."""
    log = tmp_path / "delegate.log"
    monkeypatch.setenv("EDGECNN_EDGETPU_LIBRARY", str(libedgetpu))
    monkeypatch.setenv("FAKE_EDGETPU_LOG", str(log))
    monkeypatch.delenv("FAKE_EDGETPU_FAIL", raising=False)
    return log


@pytest.fixture(scope="module")
def compiled_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    """The int8 model with its first operation replaced by an edgetpu-custom-op, as edgetpu_compiler leaves it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    source = models["int8"]
    model = schema.ModelT.InitFromPackedBuf(source.read_bytes(), 0)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = EDGETPU_CUSTOM_OP
    code.version = 1
    model.operatorCodes.append(code)
    first = model.subgraphs[0].operators[0]
    first.opcodeIndex = len(model.operatorCodes) - 1
    first.builtinOptionsType, first.builtinOptions = 0, None
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path_factory.mktemp("compiled") / "model_edgetpu.tflite"
    write_tflite(path, bytes(builder.Output()), read_tflite_info(source))
    return path


@pytest.fixture(scope="module")
def photo(photos_test: Path) -> Path:
    """One test photo."""
    return sorted((photos_test / "three").iterdir())[0]


def _scores(result: dict) -> np.ndarray:
    return np.array([[c["score"] for c in sorted(p["top"], key=lambda c: c["label"])] for p in result["predictions"]])


def test_run_loads_the_delegate_and_matches_the_cpu(edgetpu: Path, models: dict[str, Path], photos_test: Path) -> None:
    model = models["int8"]
    photos = sorted((photos_test / "three").iterdir())[:5]
    result = run_cli("run", "--target", "coral", "--device", "usb:0", model, *photos, "--top-k", "10", "--json")
    assert result.exit_code == 0, result.stderr
    assert edgetpu.read_text() == "device=usb:0\n"  # the options reached the library's create function
    # The delegate takes no node, so the CPU kernels compute exactly what a plain run computes.
    info = read_tflite_info(model)
    batch = np.stack([load_image(p, info.preprocessing) for p in photos])
    plain = TFLiteRunner(model).predict(batch)
    got = json.loads(result.stdout)
    by_label = {label: i for i, label in enumerate(info.labels)}
    for row, prediction in zip(plain, got["predictions"], strict=True):
        assert {c["label"]: c["score"] for c in prediction["top"]} == pytest.approx(
            {label: float(row[by_label[label]]) for label in info.labels}, abs=1e-6
        )
    # Not compiled: it runs, on the CPU, and says so once.
    assert result.stderr.count("edgecnn: warning:") == 1 and "not compiled for the Edge TPU" in result.stderr


def test_validate_and_bench_on_coral(edgetpu: Path, models: dict[str, Path], photos_test: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    from helpers import copy_subset

    copy_subset(photos_test, data, per_class=2)
    result = run_cli("validate", data, "-r", models["int8"], "-c", models["int8"], "--target", "coral",
                     "--max-drop", "0", "--json", "-q")  # fmt: skip
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["candidate_target"] == "coral"
    assert report["candidate_runtime"].endswith("+ " + str(os.environ["EDGECNN_EDGETPU_LIBRARY"]))
    assert report["agreement"] == 1.0
    bench = run_cli("bench", "--target", "coral", models["int8"], "--runs", "5", "--warmup", "1", "--json", "-q")
    timed = json.loads(bench.stdout)
    assert bench.exit_code == 0 and timed["target"] == "coral" and "libedgetpu.so.1" in timed["runtime"]
    assert timed["runs"] == 5 and timed["latency_ms"]["min"] > 0
    batched = run_cli("bench", "--target", "coral", models["int8"], "--batch", "4")
    assert batched.exit_code == 2 and "one image at a time" in batched.stderr


def test_bench_on_coral_without_a_sidecar(edgetpu: Path, models: dict[str, Path], tmp_path: Path) -> None:
    """The delegate path times a model from elsewhere on random inputs; real images still need a sidecar."""
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(models["int8"].read_bytes())
    bench = run_cli("bench", "--target", "coral", bare, "--runs", "3", "--json", "-q")
    timed = json.loads(bench.stdout)
    assert bench.exit_code == 0 and timed["inputs"] == "random" and "libedgetpu.so.1" in timed["runtime"]
    assert [(t["dtype"], t["low"], t["high"]) for t in timed["input_tensors"]] == [("int8", -128, 127)]
    assert "not compiled for the Edge TPU" in bench.stderr  # as for a bundle: it runs, on the CPU


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"FAKE_EDGETPU_FAIL": "create"},
            "is installed but found no usable Edge TPU at usb:1 (fake libedgetpu: no Edge TPU device found)",
        ),
        ({"FAKE_EDGETPU_FAIL": "prepare"}, "the Edge TPU delegate failed to prepare int8.tflite"),
        (
            {"EDGECNN_EDGETPU_LIBRARY": "/nonexistent/libedgetpu.so.1"},
            "the Edge TPU runtime /nonexistent/libedgetpu.so.1 is not installed",
        ),
    ],
)
def test_each_failure_has_its_message(
    edgetpu: Path,
    models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    setting: dict,
    message: str,
    photo: Path,
) -> None:
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    for command in (["run", models["int8"], photo], ["bench", models["int8"], "--runs", "1"]):
        result = run_cli(command[0], "--target", "coral", "--device", "usb:1", *command[1:])
        assert result.exit_code == 3 and message in result.stderr, result.stderr  # the environment, not the model
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_compiled_model_needs_the_delegate(edgetpu: Path, compiled_model: Path, photo: Path) -> None:
    here = run_cli("run", compiled_model, photo)
    assert here.exit_code == 2 and "compiled for the Edge TPU (edgetpu-custom-op)" in here.stderr
    assert "use --target coral" in here.stderr
    check = json.loads(run_cli("check", "--target", "host", compiled_model, "--json").stdout)
    assert any("use --target coral" in f["message"] for f in check["findings"] if f["severity"] == "error")
    # This delegate does not take the custom op (libedgetpu would): the message names the mismatch.
    on_coral = run_cli("run", "--target", "coral", compiled_model, photo)
    assert on_coral.exit_code == 2 and "the delegate did not take its edgetpu-custom-op" in on_coral.stderr
    assert "not compiled" not in on_coral.stderr
    coral_check = json.loads(run_cli("check", "--target", "coral", compiled_model, "--json").stdout)
    assert coral_check["details"]["preflight"]["compiled"] and coral_check["details"]["preflight"]["ops"][0]["on_tpu"]


def test_default_library_name_through_the_loader_path(libedgetpu: Path, models: dict[str, Path], photo: Path) -> None:
    """No override: the interpreter loads libedgetpu.so.1 by name, found on LD_LIBRARY_PATH as an install would be."""
    env = {k: v for k, v in os.environ.items() if k not in ("EDGECNN_EDGETPU_LIBRARY", "FAKE_EDGETPU_FAIL")}
    env["LD_LIBRARY_PATH"] = str(libedgetpu.parent)
    edgecnn = [sys.executable, "-m", "edgecnn"]
    done = subprocess.run([*edgecnn, "run", "--target", "coral", str(models["int8"]), str(photo), "--json"],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["predictions"][0]["top"]
    listed = subprocess.run([*edgecnn, "targets", "--json"], capture_output=True, text=True, env=env, check=True)
    coral = next(t for t in json.loads(listed.stdout)["targets"] if t["name"] == "coral")
    assert coral["usable"] and "libedgetpu.so.1" in coral["detail"]
    env.pop("LD_LIBRARY_PATH")
    missing = subprocess.run([*edgecnn, "targets", "--json"], capture_output=True, text=True, env=env, check=True)
    coral = next(t for t in json.loads(missing.stdout)["targets"] if t["name"] == "coral")
    assert not coral["usable"] and "libedgetpu1-std" in coral["fix"]


def test_bad_device_and_options(models: dict[str, Path]) -> None:
    bad = run_cli("bench", "--target", "coral", "--device", "tpu0", models["int8"])
    assert bad.exit_code == 2 and "--device 'tpu0' is not an Edge TPU" in bad.stderr
    wrong = run_cli("bench", "--target", "host", "--device", "usb:0", models["int8"])
    assert wrong.exit_code == 2 and "--device applies to --target coral, not --target host" in wrong.stderr
    share = run_cli("check", "--target", "coral", "--min-tpu-share", "90", models["int8"])
    assert share.exit_code == 2 and "between 0 and 1" in share.stderr


@pytest.fixture
def compiler_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``edgetpu_compiler`` on PATH: the stand-in, run by this Python."""
    folder = tmp_path / "bin"
    folder.mkdir()
    compiler = folder / "edgetpu_compiler"
    compiler.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_edgetpu_compiler.py"}" "$@"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return compiler


def _convert_for_coral(models: dict[str, Path], photos_train: Path, out: Path, *extra: str) -> object:
    return run_cli("convert", models["keras"], "--out", out, "--calibration", photos_train,
                   "--calibration-size", "20", "--target", "coral", "-q", *extra)  # fmt: skip


@pytest.mark.slow  # converts the session's model again
def test_convert_for_coral_compiles_when_the_compiler_is_there(
    compiler_on_path: Path, models: dict[str, Path], photos_train: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model_int8.tflite"
    result = _convert_for_coral(models, photos_train, out, "--io", "uint8", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    compiled = tmp_path / "model_int8_edgetpu.tflite"
    assert payload["target"]["model"] == str(compiled) and compiled.is_file()
    assert payload["input"]["dtype"] == "uint8"
    report = payload["target"]["details"]["compile"]["report"]
    assert report["compiler_version"] == "16.0.384591198" and report["subgraphs"] == 1
    assert report["ops_on_tpu"] == report["total_ops"] == payload["target"]["details"]["preflight"]["operations"]
    # The compiled model has its own sidecar: the same labels and preprocessing, plus the compiler's report.
    sidecar = read_tflite_info(compiled)
    assert sidecar.labels == read_tflite_info(out).labels
    assert sidecar.extra["edgetpu"]["compiled_from"] == "model_int8.tflite"
    assert sidecar.extra["edgetpu"]["compiler"]["on_chip_remaining_bytes"] == round(7.73 * 1024**2)
    assert (tmp_path / "model_int8_edgetpu.log").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".edgetpu-")]  # no work folder left behind


@pytest.mark.slow  # converts the session's model again
def test_convert_for_coral_without_the_compiler(
    models: dict[str, Path], photos_train: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # where edgetpu_compiler would be, and is not
    out = tmp_path / "model_int8.tflite"
    result = _convert_for_coral(models, photos_train, out)
    assert result.exit_code == 0, result.stderr
    assert out.is_file() and not (tmp_path / "model_int8_edgetpu.tflite").exists()
    assert "edgetpu_compiler is not on PATH, so model_int8.tflite was not compiled" in result.stderr
    assert "sudo apt-get install edgetpu-compiler" in result.stderr
    assert re.search(r"tpu-share: (\d+)/\1 operations \(100%\)", result.stdout), result.stdout


@pytest.mark.slow  # converts the session's model again
def test_convert_for_coral_refusals(
    compiler_on_path: Path, models: dict[str, Path], photos_train: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    out = tmp_path / "model.tflite"
    for extra, message in (
        (("--quantize", "dynamic"), "--target coral runs only --quantize int8 models, not dynamic"),
        (("--io", "float32"), "--target coral needs --io int8 or uint8, not float32"),
    ):
        result = _convert_for_coral(models, photos_train, out, *extra)
        assert result.exit_code == 2 and message in result.stderr and not out.exists()
    monkeypatch.setenv("FAKE_EDGETPU_COMPILER", "not-quantized")
    refused = _convert_for_coral(models, photos_train, out)
    assert refused.exit_code == 2 and "edgetpu_compiler 16.0.384591198 failed: " in refused.stderr
    assert "Model not quantized" in refused.stderr and "edgecnn check --target coral" in refused.stderr
    assert out.is_file() and not (tmp_path / "model_edgetpu.tflite").exists()


def test_a_crashing_delegate_is_one_error_not_a_dead_process(
    edgetpu: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, photo: Path, tmp_path: Path
) -> None:
    """The delegate runs in a child process: its segfault is an exit-2 line here, and this (pytest's) process lives.

    A delegate that writes through a null pointer in Prepare, as native code given a model it cannot handle may.
    """
    monkeypatch.setenv("FAKE_EDGETPU_FAIL", "crash")
    data = tmp_path / "data" / "three"
    data.mkdir(parents=True)
    shutil.copy(photo, data / photo.name)
    model = models["int8"]
    for command in (
        ["run", "--target", "coral", model, photo],
        ["bench", "--target", "coral", model, "--runs", "1"],
        ["validate", tmp_path / "data", "-r", model, "-c", model, "--target", "coral", "-q"],
    ):
        result = run_cli(*command)
        assert result.exit_code == 2, (command, result.stderr)
        assert "the Edge TPU delegate crashed on int8.tflite (signal 11, SIGSEGV): the model is malformed, or " \
            "libedgetpu does not match the edgetpu_compiler that built it" in result.stderr  # fmt: skip
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
