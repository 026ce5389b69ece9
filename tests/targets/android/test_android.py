"""``--target android``: Debian's real ``adb`` client against the adb server stand-in, through the CLI.

The "phone" is a folder on this machine served by tests/targets/android/adb_server.py; its shell runs commands here. Its
benchmark_model is tests/targets/android/fake_benchmark_model.py (the real Android binary cannot run here), started by a
small ``#!/bin/sh`` wrapper passed as ``--benchmark-binary``. The fake computes with TFLite's reference kernels, so
what comes back from the "phone" must equal a host reference-kernel run bit for bit. Without /usr/bin/adb the
module skips (fails under CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from envs import in_ci
from helpers import copy_subset, run_cli
from targets.android.adb_server import AdbServer, FakeDevice

from edgecnn.errors import TargetUnavailableError
from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.targets.android.adb import Adb
from edgecnn.targets.host.target import HostTarget

ADB = Path("/usr/bin/adb")
FAKE = Path(__file__).with_name("fake_benchmark_model.py")
SERIAL = "pixel-7"
PIXEL = {
    "ro.product.manufacturer": "Google",
    "ro.product.model": "Pixel 7",
    "ro.product.name": "panther",
    "ro.product.device": "panther",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.soc.model": "Tensor G2",
}

if not ADB.exists():
    _message = f"{ADB} is missing (apt-get install adb)"
    if in_ci():
        pytest.fail(f"{_message}; CI is set, so this fails instead of skipping", pytrace=False)
    pytest.skip(_message, allow_module_level=True)


def write_binary(path: Path, **env: str) -> Path:
    """A ``benchmark_model`` for the fake phone: a shell script that runs the fake tool with this Python."""
    settings = "".join(f"{key}={value} " for key, value in env.items())
    path.write_text(f'#!/bin/sh\n{settings}exec {sys.executable} {FAKE} "$@"\n')
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> FakeDevice:
    return FakeDevice(SERIAL, tmp_path_factory.mktemp("pixel"), props=PIXEL)


@pytest.fixture(scope="module")
def server(phone: FakeDevice) -> Iterator[AdbServer]:
    """One adb server for the module, reached by every adb client this process starts."""
    with AdbServer([phone]) as running, pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANDROID_ADB_SERVER_PORT", str(running.port))
        patch.delenv("ANDROID_SERIAL", raising=False)
        yield running
    assert running.unknown == [], "the client sent requests the stand-in does not implement"


@pytest.fixture(autouse=True)
def leaves_nothing(server: AdbServer, phone: FakeDevice) -> Iterator[None]:
    """Every test starts with the phone alone and ends with nothing of edgecnn left in its /data/local/tmp."""
    server.devices[:] = [phone]
    server.commands.clear()
    yield
    for device in server.devices:
        left = sorted(p.name for p in device.host_path("/data/local/tmp").iterdir())
        assert left == [], f"left on {device.serial}: {left}"
    server.devices[:] = [phone]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_binary(tmp_path_factory.mktemp("bin") / "benchmark_model")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, photos_test: Path) -> Path:
    """One test photo from each of 10 classes."""
    return copy_subset(photos_test, tmp_path_factory.mktemp("images"), per_class=1)


def android(binary: Path, *more: str) -> list[str]:
    return ["--target", "android", "--benchmark-binary", str(binary), *more]


def _json(result: object) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _one_line_error(result: object, code: int = 3) -> str:
    """One line on stderr and the exit code: 3 when the phone, adb or the tool is the problem, 2 for bad input."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgecnn: error: ")
    return lines[0]


class ReferenceKernels(HostTarget):
    """The host with TFLite's reference kernels: what the fake phone computes."""

    def open(self, model: Path) -> TFLiteRunner:
        return TFLiteRunner(model, reference_kernels=True)


def test_run_equals_the_reference_kernels(
    server: AdbServer, binary: Path, models: dict[str, Path], images: Path
) -> None:
    from edgecnn.workflows.run import classify

    model = models["int8"]
    result = _json(run_cli("run", *android(binary), model, images, "--top-k", "10", "--json"))
    expected = classify(model, [images], k=10, target=ReferenceKernels()).to_dict()
    assert result["num_images"] == expected["num_images"] == 10
    assert result["predictions"] == expected["predictions"]  # every score of every image, exactly
    assert result["target"] == f"android {SERIAL}"
    assert result["runtime"] == f"benchmark_model (xnnpack) on {SERIAL}"
    loops = [c for _, c in server.commands if "for i in" in c]
    assert len(loops) == 1  # ten images, one adb shell
    assert "--use_xnnpack=true" in loops[0] and "--output_filepath=out_1/$i.bin" in loops[0]
    assert "--input_layer_value_files=input:in_1/$i.bin" in loops[0] and "--input_layer_shape=1,32,32,3" in loops[0]


def test_validate_equals_the_reference_kernels(
    server: AdbServer, binary: Path, models: dict[str, Path], images: Path
) -> None:
    from edgecnn.workflows.validate import validate_models

    reference, candidate = models["float"], models["int8"]
    result = _json(
        run_cli("validate", images, *android(binary), "-r", reference, "-c", candidate, "--max-drop", "100", "--json")
    )
    expected = validate_models(reference, candidate, images, max_drop=100, target=ReferenceKernels()).to_dict()
    assert result["candidate_target"] == f"android {SERIAL}"
    assert result["candidate_runtime"] == f"benchmark_model (xnnpack) on {SERIAL}"
    for key in ("candidate_target", "candidate_runtime", "seconds"):  # where and how long: not the figures
        del result[key], expected[key]
    assert result == expected


def test_bench_passes_threads_and_delegate(server: AdbServer, binary: Path, models: dict[str, Path]) -> None:
    model = models["int8"]
    args = [*android(binary, "--threads", "2", "--delegate", "gpu"), model, "--runs", "7", "--warmup", "2"]
    bench = _json(run_cli("bench", *args, "--json"))
    [command] = [c for _, c in server.commands if "--num_runs=" in c]
    for flag in ("--num_threads=2", "--use_gpu=true", "--num_runs=7", "--warmup_runs=2", "--min_secs=0"):
        assert flag in command
    assert "--use_xnnpack" not in command
    assert (bench["runs"], bench["warmup"], bench["batch"], bench["threads"]) == (7, 2, 1, 2)
    assert bench["runtime"] == "benchmark_model (gpu)" and bench["target"] == f"android {SERIAL}"
    assert bench["model"] == str(model) and bench["inputs"] == "random"
    ms = bench["latency_ms"]
    assert ms["p90"] is None  # benchmark_model does not report it
    assert 0 < ms["min"] <= ms["p50"] <= ms["max"] and ms["min"] <= ms["mean"] <= ms["max"] and ms["std"] >= 0
    assert bench["throughput"] == pytest.approx(1000.0 / ms["mean"], rel=1e-6)
    assert bench["init_ms"] > 0
    machine = bench["machine"]
    assert machine["board"] == "Google Pixel 7, Tensor G2" and machine["system"] == "Android 14 (SDK 34)"
    assert machine["arch"] == "arm64-v8a" and machine["serial"] == SERIAL


def test_bench_text_and_real_images(server: AdbServer, binary: Path, models: dict[str, Path], images: Path) -> None:
    result = run_cli("bench", *android(binary), models["int8"], "--runs", "3", "--images", images, "-q")
    assert result.exit_code == 0, result.stderr
    assert "inputs images:1" in result.stdout and "p90 n/a" in result.stdout
    assert "benchmark_model (xnnpack)" in result.stdout
    batch = run_cli("bench", *android(binary), models["int8"], "--batch", "4")
    assert "use --batch 1" in _one_line_error(batch, 2)


def test_bench_a_model_without_a_sidecar(
    server: AdbServer, binary: Path, models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    """benchmark_model needs no sidecar: a model from elsewhere runs on the tool's own random inputs."""
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(models["int8"].read_bytes())
    bench = _json(run_cli("bench", *android(binary), bare, "--runs", "3", "--json"))
    [command] = [c for _, c in server.commands if "--num_runs=" in c]
    assert "--input_layer" not in command  # nothing of edgecnn's is fed: the tool fills every input itself
    assert bench["inputs"] == "random (benchmark_model's own)" and bench["latency_ms"]["min"] > 0
    assert [(t["dtype"], t["shape"]) for t in bench["input_tensors"]] == [("int8", [1, 32, 32, 3])]
    refused = run_cli("bench", *android(binary), bare, "--images", images)
    assert "--images needs the model's preprocessing" in _one_line_error(refused, 2)


def test_latency_only_binary(server: AdbServer, tmp_path: Path, models: dict[str, Path], images: Path) -> None:
    """A benchmark_model from before TensorFlow 2.10 has no output dump: bench works, run says why it cannot."""
    old = write_binary(tmp_path / "benchmark_model", EDGECNN_FAKE_BENCHMARK_BUILD="2.8")
    line = _one_line_error(run_cli("run", *android(old), models["int8"], images))
    assert "no --output_filepath" in line and "latency only" in line and "edgecnn bench" in line
    bench = _json(run_cli("bench", *android(old), models["int8"], "--runs", "4", "--json"))
    assert bench["runs"] == 4 and bench["latency_ms"]["p50"] is None  # TF 2.8 prints no percentiles
    assert bench["latency_ms"]["min"] > 0


def test_failures_are_caught_without_shell_v2(
    server: AdbServer, tmp_path: Path, models: dict[str, Path], images: Path
) -> None:
    """An old phone's adb returns no exit codes: the marker still catches a failing benchmark_model."""
    server.devices[:] = [FakeDevice("old-1", tmp_path / "old", shell_v2=False, props=PIXEL)]
    no_gpu = write_binary(tmp_path / "benchmark_model", EDGECNN_FAKE_NO_GPU="1")
    line = _one_line_error(run_cli("run", *android(no_gpu, "--delegate", "gpu"), models["int8"], images))
    assert "benchmark_model failed on old-1 (gpu) for image 1 of 10: Failed to apply GPU delegate." in line
    bench = run_cli("bench", *android(no_gpu, "--delegate", "gpu"), models["int8"])
    assert "Failed to apply GPU delegate." in _one_line_error(bench)

    adb = Adb(str(ADB), "old-1")
    assert adb.shell(["echo", "it's fine"]).stdout == "it's fine\n"  # quoted for the device shell
    with pytest.raises(TargetUnavailableError, match=r"exit code 3"):
        adb.shell_script("echo oops >&2; (exit 3)")
    with pytest.raises(TargetUnavailableError, match="without its exit marker"):
        adb.shell_script("exit 0")  # the shell ends before the marker is printed


def test_the_phone_keeps_nothing_after_a_failed_run(
    server: AdbServer, phone: FakeDevice, tmp_path: Path, models: dict[str, Path], images: Path
) -> None:
    no_gpu = write_binary(tmp_path / "benchmark_model", EDGECNN_FAKE_NO_GPU="1")
    line = _one_line_error(run_cli("validate", images, *android(no_gpu, "--delegate", "gpu"), "-r",
                                   models["float"], "-c", models["int8"]))  # fmt: skip
    assert "Failed to apply GPU delegate." in line
    assert any(c.startswith("rm -rf /data/local/tmp/edgecnn/") for _, c in server.commands)
    # (the autouse fixture checks that /data/local/tmp is empty again)


@pytest.mark.parametrize(
    ("devices", "serial", "expected"),
    [
        ([], None, "no Android device is connected: enable USB debugging"),
        ([("a-1", "device"), ("b-2", "device")], None, "several Android devices are connected (a-1"),
        ([("a-1", "unauthorized")], None, "has not authorised this computer: unlock the phone and accept"),
        ([("a-1", "offline")], None, "Android device a-1 is offline: reconnect"),
        ([("a-1", "device")], "z-9", "no Android device with serial 'z-9': adb sees a-1"),
    ],
)
def test_device_errors(
    server: AdbServer,
    binary: Path,
    tmp_path: Path,
    models: dict[str, Path],
    images: Path,
    devices: list[tuple[str, str]],
    serial: str | None,
    expected: str,
) -> None:
    server.devices[:] = [FakeDevice(name, tmp_path / name, state=state, props=PIXEL) for name, state in devices]
    options = ["--serial", serial] if serial else []
    line = _one_line_error(run_cli("run", *android(binary, *options), models["int8"], images))
    assert expected in line
    if len(devices) > 1:
        assert "--serial" in line and "b-2" in line


def test_serial_picks_one_of_several(
    server: AdbServer, binary: Path, tmp_path: Path, models: dict[str, Path], images: Path
) -> None:
    other = FakeDevice("tablet-2", tmp_path / "tablet", props=PIXEL)
    server.devices.append(other)
    result = _json(run_cli("run", *android(binary, "--serial", "tablet-2"), models["int8"], images, "--json"))
    assert result["target"] == "android tablet-2"
    assert {serial for serial, _ in server.commands} == {"tablet-2"}


def test_adb_missing(binary: Path, models: dict[str, Path], images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = _one_line_error(run_cli("run", *android(binary, "--adb", "/nonexistent"), models["int8"], images), 2)
    assert "--adb /nonexistent is not an executable file" in line  # a wrong option value: bad input
    monkeypatch.setenv("PATH", "")
    line = _one_line_error(run_cli("bench", *android(binary), models["int8"]))
    assert "adb was not found on PATH" in line and "--adb PATH" in line


def test_benchmark_binary_missing(server: AdbServer, models: dict[str, Path], images: Path) -> None:
    line = _one_line_error(run_cli("run", "--target", "android", models["int8"], images))
    assert "--benchmark-binary" in line and "targets/android/README.md" in line
    line = _one_line_error(run_cli("bench", *android(Path("/nonexistent/benchmark_model")), models["int8"]), 2)
    assert "--benchmark-binary /nonexistent/benchmark_model does not exist" in line


def test_a_binary_that_does_not_run_on_the_phone(server: AdbServer, tmp_path: Path, models: dict[str, Path]) -> None:
    wrong = tmp_path / "benchmark_model"
    wrong.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00" + bytes(44))  # an x86-64 ELF header
    line = _one_line_error(run_cli("bench", *android(wrong), models["int8"]))
    assert "is built for x86_64 but pixel-7 runs arm64-v8a" in line


def test_check_needs_no_phone(binary: Path, models: dict[str, Path]) -> None:
    report = _json(run_cli("check", *android(binary, "--delegate", "gpu"), models["int8"], "--json"))
    codes = {f["code"]: f for f in report["findings"]}
    assert report["passed"] and report["target"] == "android"
    assert codes["delegate"]["message"].startswith("gpu: ")
    assert codes["gpu-float"]["severity"] == "warning"
    assert "not an ELF executable" in codes["benchmark-binary"]["message"]
    plain = _json(run_cli("check", "--target", "android", models["int8"], "--json"))
    assert any(f["code"] == "benchmark-binary" and f["severity"] == "warning" for f in plain["findings"])
    listed = _json(run_cli("targets", "--json"))
    [entry] = [t for t in listed["targets"] if t["name"] == "android"]
    assert entry["usable"] and "adb at" in entry["detail"]


def test_the_fake_tool_fails_as_the_real_one(tmp_path: Path) -> None:
    """The stand-in's own error paths, read by the same parser as real output."""
    from edgecnn.targets.android.benchmark_model import benchmark_error, parse_help

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    for graph, reason in (
        (bad, "The model is not a valid Flatbuffer buffer"),
        (tmp_path / "no.tflite", f"Could not open '{tmp_path / 'no.tflite'}'."),
    ):
        done = subprocess.run([sys.executable, FAKE, f"--graph={graph}"], capture_output=True, text=True, check=False)
        assert done.returncode == 1 and done.stderr.endswith(
            f"ERROR: Failed to mmap model {graph}\nERROR: Benchmarking failed.\n"
        )
        assert benchmark_error(done.stdout + done.stderr) == reason
    helped = subprocess.run([sys.executable, FAKE, "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 1 and {"graph", "output_filepath", "use_gpu"} <= parse_help(helped.stderr)
    old = subprocess.run(
        [sys.executable, FAKE, "--help"], capture_output=True, text=True, check=False,
        env={**os.environ, "EDGECNN_FAKE_BENCHMARK_BUILD": "2.8"},
    )  # fmt: skip
    assert "output_filepath" not in parse_help(old.stderr) and "graph" in parse_help(old.stderr)


def test_scores_read_back_from_raw_bytes() -> None:
    """The dump is the output tensor's raw little-endian bytes; a wrong size is refused."""
    from edgecnn.runtime.quant import QuantParams
    from edgecnn.targets.android.target import _raw_input, _scores

    params = QuantParams("int8", 1 / 256, -128)
    scores = _scores(np.array([-128, 0, 127], dtype=np.int8).tobytes(), params, 3, "out.bin")
    assert scores.tolist() == [0.0, 0.5, 0.99609375]
    with pytest.raises(TargetUnavailableError, match="has 3 bytes, not 4 int8 scores"):
        _scores(bytes(3), params, 4, "out.bin")
    image = np.array([[[0.0], [0.5]], [[1.0], [200.0]]], dtype=np.float32)
    raw = _raw_input(image, QuantParams("int8", 0.5, -128))
    assert np.frombuffer(raw, dtype=np.int8).tolist() == [-128, -127, -126, 127]  # saturated at 127
