"""The exported model as firmware: built with TFLM's C++ sources for the host and for Cortex-M (Debian's
arm-none-eabi-gcc and newlib), run under qemu-system-arm's mps2-an386 (Cortex-M4F) and mps2-an500 (Cortex-M7), and
compared with TFLM's Python interpreter on the same int8 inputs.

TFLM's sources come from ``$EDGECNN_TFLM_DIR``, else ``<repo>/../shared/third_party/tflm``; the toolchain and qemu
from tools/setup_test_env.sh. Without them these tests skip (a clone without ../shared), except under CI, where they
fail. A first run compiles TFLM once per core and kernel set (about a minute each on two cores) into edgecnn's
firmware cache, which later runs reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from envs import skip_or_fail
from helpers import run_cli

from edgecnn.model.flatbuffer import read_flatbuffer
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.data import load_images, scan_images
from edgecnn.runtime.quant import quantize
from edgecnn.targets.micro.firmware.build import build_firmware
from edgecnn.targets.micro.firmware.elf import firmware_sizes
from edgecnn.targets.micro.firmware.qemu import run_harness
from edgecnn.targets.micro.firmware.runner import FirmwareRunner

pytestmark = pytest.mark.slow  # builds TFLM (a minute per core and kernel set the first time) and runs qemu

ROOT = Path(__file__).resolve().parents[3]
SHARED_TFLM = ROOT.parent / "shared" / "third_party" / "tflm"


@pytest.fixture(scope="module")
def tflm() -> Path:
    """TFLM's pinned source trees, exported to the code under test as ``$EDGECNN_TFLM_DIR``."""
    folder = Path(os.environ.get("EDGECNN_TFLM_DIR") or SHARED_TFLM)
    if not (folder / "tflite-micro").is_dir():
        skip_or_fail(f"no TFLM sources at {folder}: set $EDGECNN_TFLM_DIR or put them in ../shared/third_party/tflm")
    if importlibskip_or_fail("tflite_micro"):
        skip_or_fail('tflite-micro is not installed: pip install -e ".[micro]"')
    return folder


def importlibskip_or_fail(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


@pytest.fixture(scope="module")
def arm(tflm: Path) -> None:
    """The Cortex-M toolchain and qemu."""
    for tool in ("arm-none-eabi-g++", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is missing: run tools/setup_test_env.sh as root")


@pytest.fixture(autouse=True)
def _tflm_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "tflm" in request.fixturenames:
        monkeypatch.setenv("EDGECNN_TFLM_DIR", str(request.getfixturevalue("tflm")))


@pytest.fixture(scope="module")
def examples(photos_test: Path, models: dict[str, Path]) -> list[bytes]:
    """20 test photos (two per class) quantized as the int8 model's input, as every target quantizes them."""
    info = read_tflite_info(models["int8"])
    samples = scan_images(photos_test).samples
    chosen = [s for label in range(10) for s in [s for s in samples if s.label == label][:2]]
    images = load_images(chosen, info.preprocessing).images
    return [quantize(images[i : i + 1], info.input).tobytes() for i in range(len(images))]


def tflm_python(model: Path, examples: list[bytes]) -> np.ndarray:
    """The int8 outputs of TFLM's Python interpreter (its reference kernels), in a child process."""
    script = (
        "import sys, numpy as np, tflite_micro\n"
        "it = tflite_micro.runtime.Interpreter.from_file(sys.argv[1], arena_size=1 << 20)\n"
        "shape = it.get_input_details(0)['shape']\n"
        "data = np.load(sys.argv[2])\n"
        "out = []\n"
        "for row in data:\n"
        "    it.set_input(row.reshape(shape), 0); it.invoke(); out.append(it.get_output(0).reshape(-1))\n"
        "np.save(sys.argv[3], np.stack(out))\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = Path(folder, "in.npy"), Path(folder, "out.npy")
        np.save(inputs, np.stack([np.frombuffer(e, dtype=np.int8) for e in examples]))
        subprocess.run([sys.executable, "-c", script, str(model), str(inputs), str(outputs)], check=True)
        return np.load(outputs)


def firmware_outputs(model: Path, examples: list[bytes], *, board: str, kernels: str = "reference") -> np.ndarray:
    firmware = build_firmware(model, board=board, kernels=kernels)
    run = run_harness(firmware.elf, examples, board=board, model_name=model.name)
    return np.stack([np.frombuffer(out, dtype=np.int8) for out in run.outputs])


@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an500"])
def test_reference_firmware_equals_tflm_python_bit_for_bit(
    arm: None, models: dict[str, Path], examples: list[bytes], board: str
) -> None:
    expected = tflm_python(models["int8"], examples)
    got = firmware_outputs(models["int8"], examples, board=board)
    assert got.shape == expected.shape == (20, 10)
    np.testing.assert_array_equal(got, expected)


def test_cmsis_nn_firmware_agrees_within_a_few_steps_and_counts_fewer_instructions(
    arm: None, models: dict[str, Path], examples: list[bytes]
) -> None:
    reference = firmware_outputs(models["int8"], examples, board="mps2-an386")
    cmsis = firmware_outputs(models["int8"], examples, board="mps2-an386", kernels="cmsis-nn")
    steps = np.abs(reference.astype(np.int32) - cmsis.astype(np.int32))
    assert steps.max() <= 4
    assert (reference.argmax(axis=1) == cmsis.argmax(axis=1)).mean() >= 0.9
    reference_run = run_harness(
        build_firmware(models["int8"], board="mps2-an386").elf, examples[:2], board="mps2-an386", model_name="m"
    )
    cmsis_run = run_harness(
        build_firmware(models["int8"], board="mps2-an386", kernels="cmsis-nn").elf,
        examples[:2],
        board="mps2-an386",
        model_name="m",
    )
    # Instruction counts are deterministic: the same input gives the same count to the instruction (within 40).
    assert min(reference_run.instructions) > 1.5 * max(cmsis_run.instructions) > 0
    again = run_harness(
        build_firmware(models["int8"], board="mps2-an386").elf, examples[:2], board="mps2-an386", model_name="m"
    )
    assert again.instructions == reference_run.instructions


def test_firmware_is_built_once_and_cached_by_model_and_kernels(arm: None, models: dict[str, Path]) -> None:
    first = build_firmware(models["int8"], board="mps2-an386")
    again = build_firmware(models["int8"], board="mps2-an386")
    assert again.cached and again.elf == first.elf
    cmsis = build_firmware(models["int8"], board="mps2-an386", kernels="cmsis-nn")
    other_model = build_firmware(models["float"], board="mps2-an386")
    assert len({first.key, cmsis.key, other_model.key}) == 3


def test_runner_scores_like_tflm_python(arm: None, models: dict[str, Path], photos_test: Path) -> None:
    from edgecnn.runtime.quant import dequantize

    info = read_tflite_info(models["int8"])
    images = load_images(scan_images(photos_test).samples[:6], info.preprocessing).images
    runner = FirmwareRunner(models["int8"], board="mps2-an386")
    scores = runner.predict(images)
    examples = [quantize(images[i : i + 1], info.input).tobytes() for i in range(len(images))]
    np.testing.assert_array_equal(scores, dequantize(tflm_python(models["int8"], examples), info.output))
    assert "qemu mps2-an386" in runner.runtime and "reference kernels" in runner.runtime


def test_validate_on_the_emulated_board(arm: None, models: dict[str, Path], photos_test: Path) -> None:
    common = ["--json", "-r", models["keras"], "-c", models["int8"], photos_test, "--limit-per-class", "3"]
    on_board = run_cli("validate", "--target", "micro", "--board", "mps2-an386", *common)
    assert on_board.exit_code == 0, on_board.output
    in_python = run_cli("validate", "--target", "micro", *common)
    assert in_python.exit_code == 0, in_python.output
    board, python = json.loads(on_board.stdout), json.loads(in_python.stdout)
    assert board["candidate_accuracy"] == python["candidate_accuracy"]
    assert board["num_images"] == python["num_images"] == 30
    assert "qemu mps2-an386" in json.dumps(board)


def test_run_cli_on_both_boards_and_with_cmsis_nn(arm: None, models: dict[str, Path], photos_test: Path) -> None:
    folder = next(photos_test.iterdir())  # one class's photos
    for board, kernels in (("mps2-an386", "reference"), ("mps2-an500", "reference"), ("mps2-an386", "cmsis-nn")):
        result = run_cli(
            "run", "--target", "micro", "--board", board, "--kernels", kernels, "--json", models["int8"], folder
        )
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["predictions"]) == len(list(folder.iterdir())), result.stdout


def test_check_judges_the_budget_on_the_linked_firmware(arm: None, models: dict[str, Path]) -> None:
    result = run_cli("check", "--target", "micro", "--board", "mps2-an386", "--json", models["int8"])
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)["details"]
    firmware, budget = details["firmware"], details["budget"]
    sizes = firmware_sizes(build_firmware(models["int8"], board="mps2-an386").elf)
    assert firmware["flash_bytes"] == sizes.text + sizes.data > models["int8"].stat().st_size
    assert firmware["ram_bytes"] == sizes.data + sizes.bss + sizes.stack + firmware["heap_used_bytes"]
    assert firmware["arena"] == details["arena"]["arena_bytes"]
    assert 0 < firmware["arena_used_bytes"] <= firmware["arena"]
    assert 0 < firmware["stack_used_bytes"] < firmware["stack"]
    assert budget["judged_on"] == "measured firmware"
    assert budget["flash_needed_bytes"] == firmware["flash_bytes"]
    # RAM enough for the arena alone (the estimate) but not for the linked firmware: the measured figure decides.
    ram = (details["arena"]["arena_bytes"] + firmware["ram_bytes"]) // 2
    tight = run_cli("check", "--target", "micro", "--board", "mps2-an386", "--ram", str(ram), models["int8"])
    assert tight.exit_code == 1, tight.output
    assert "the linked firmware (data + bss, stack, heap) needs" in tight.output


def test_check_measures_a_real_board_without_running_it(arm: None, models: dict[str, Path]) -> None:
    result = run_cli("check", "--target", "micro", "--board", "nano33ble", "--json", models["int8"])
    assert result.exit_code == 0, result.output
    firmware = json.loads(result.stdout)["details"]["firmware"]
    assert firmware["ran"] is False and firmware["flash_bytes"] > 0 and firmware["heap_used_bytes"] is None
    esp = run_cli("check", "--target", "micro", "--board", "esp32s3", models["int8"])
    assert esp.exit_code == 0 and "not measured: edgecnn builds no firmware" in esp.output


def test_bench_counts_instructions_for_both_kernel_sets(arm: None, models: dict[str, Path]) -> None:
    result = run_cli(
        "bench", "--target", "micro", "--board", "mps2-an386", "--runs", "3", "--warmup", "1", "--json", models["int8"]
    )
    assert result.exit_code == 0, result.output
    instructions = json.loads(result.stdout)["instructions"]
    reference, cmsis = (instructions["per_inference"][k] for k in ("reference", "cmsis-nn"))
    assert reference["runs"] == cmsis["runs"] == 3
    assert instructions["reference_over_cmsis_nn"] == pytest.approx(reference["p50"] / cmsis["p50"])
    assert instructions["reference_over_cmsis_nn"] > 1.5
    assert "not cycles" in instructions["note"]
    text = run_cli("bench", "--target", "micro", "--board", "mps2-an386", "--runs", "2", models["int8"])
    assert "reference / cmsis-nn:" in text.output


def test_exported_project_builds_main_and_harness_for_any_name(
    arm: None, tflm: Path, models: dict[str, Path], examples: list[bytes], tmp_path: Path
) -> None:
    """The project `export micro --firmware` writes builds as its Makefile says, with a --name other than `model`."""
    out = tmp_path / "fw"
    result = run_cli("export", "micro", models["int8"], "--out", out, "--name", "Cam_Net2", "--firmware", "--json")
    assert result.exit_code == 0, result.output
    assert {"Makefile", "main.cc", "edgecnn_model.h", "Cam_Net2_model_data.cc"} <= {p.name for p in out.iterdir()}
    lib = tmp_path / "lib"  # main and harness share one host build of TFLM
    for program in ("main", "harness"):
        make = ["make", "-C", str(out), "-j2", f"TFLM_DIR={tflm}", f"PROGRAM={program}", f"LIB_DIR={lib}"]
        subprocess.run(make, check=True, capture_output=True)
    done = subprocess.run([str(out / "build/host-reference/main")], capture_output=True, text=True, check=True)
    labels = read_tflite_info(models["int8"]).labels
    assert "tensor arena:" in done.stdout + done.stderr
    assert any(f"{label} " in done.stdout + done.stderr for label in labels)
    got = run_harness(out / "build/host-reference/harness", examples, board="host", model_name="m")
    expected = tflm_python(models["int8"], examples)
    np.testing.assert_array_equal(np.stack([np.frombuffer(o, dtype=np.int8) for o in got.outputs]), expected)
    # The example firmware for the emulated Cortex-M4F (built by the same Makefile, over the cached TFLM library):
    # it prints its label and exits 0 under qemu.
    elf = build_firmware(models["int8"], board="mps2-an386", program="main").elf
    qemu = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none"]
    qemu += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    ran = subprocess.run(qemu, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert any(f"{label} " in ran.stdout + ran.stderr for label in labels)


def test_without_tflm_sources_the_board_is_unavailable(models: dict[str, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EDGECNN_TFLM_DIR"}
    command = [sys.executable, "-m", "edgecnn", "run", "--target", "micro", "--board", "mps2-an386"]
    done = subprocess.run([*command, models["int8"], tmp_path], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "TensorFlow Lite Micro's sources" in done.stderr and "--tflm-dir" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    bad = subprocess.run(
        [*command, "--tflm-dir", str(tmp_path), models["int8"], tmp_path], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "has no tflite-micro/" in bad.stderr, bad.stderr
    checked = run_cli("check", "--target", "micro", "--board", "mps2-an386", models["int8"])
    assert checked.exit_code == 0 and "not measured, the budget uses estimates" in checked.output


def test_kernel_options_that_cannot_run_are_usage_errors(models: dict[str, Path], tmp_path: Path) -> None:
    for args, needle in (
        (["--kernels", "cmsis-nn"], "needs a Cortex-M board: give --board mps2-an386 or mps2-an500"),
        (["--kernels", "cmsis-nn", "--board", "nano33ble"], "runs only as firmware on an emulated board"),
        (["--kernels", "xnnpack", "--board", "mps2-an386"], "not a kernel set of --target micro"),
    ):
        result = run_cli("run", "--target", "micro", *args, models["int8"], tmp_path)
        assert result.exit_code == 2, result.output
        assert needle in result.output


def test_a_toolchain_missing_from_path_is_an_environment_error(
    tflm: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "EDGECNN_TFLM_DIR": str(tflm)}  # no compiler, make or qemu there
    command = [sys.executable, "-m", "edgecnn", "run", "--target", "micro", "--board", "mps2-an500"]
    done = subprocess.run([*command, models["int8"], tmp_path], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "apt-get install gcc-arm-none-eabi" in done.stderr and "Traceback" not in done.stderr


def _bare_metal(tmp_path: Path, body: str) -> Path:
    """A tiny Cortex-M4F program on edgecnn's mps2 start-up and linker script."""
    from edgecnn.targets.micro.firmware import TEMPLATE

    source = tmp_path / "probe.c"
    source.write_text(f"int main(void) {{ {body} }}\n")
    elf = tmp_path / "probe.elf"
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O1", "--specs=rdimon.specs"]
    command = ["arm-none-eabi-gcc", *flags, "-T", str(TEMPLATE / "boards/mps2.ld"), str(source)]
    subprocess.run([*command, str(TEMPLATE / "boards/mps2_startup.c"), "-o", str(elf)], check=True)
    return elf


def test_a_crashing_or_hanging_firmware_is_one_error_not_a_hang(arm: None, tmp_path: Path) -> None:
    """What a malformed model does to the firmware: a hard fault (the start-up's handler exits with 70) and an endless
    loop are each a ModelFormatError (exit 2) naming the model."""
    from edgecnn.errors import ModelFormatError

    fault = _bare_metal(tmp_path, "return *(volatile int *)0xFFFFFFF0;")  # no memory there: a bus fault
    with pytest.raises(ModelFormatError, match=r"crashed \(a hard fault\) on m.tflite: the model is malformed"):
        run_harness(fault, [b"x"], board="mps2-an386", model_name="m.tflite")
    hang = _bare_metal(tmp_path, "for (;;) {} return 0;")
    with pytest.raises(ModelFormatError, match=r"did not finish m\.tflite within 3 s"):
        run_harness(hang, [b"x"], board="mps2-an386", model_name="m.tflite", timeout=3)


def test_a_keras_model_from_elsewhere_runs_as_firmware(arm: None, photos_test: Path, tmp_path: Path) -> None:
    """Plain Keras converted by TensorFlow's own converter (a dynamic batch, no sidecar), described by options: the
    firmware gives the scores TFLM's Python interpreter gives, and bench counts its instructions."""
    import keras

    path = converted_elsewhere(
        keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="c"), tmp_path / "theirs.tflite"
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    folder = next(photos_test.iterdir())
    hints = ["--labels", labels, "--input-range", "0,1", "--top-k", "3", "--json"]
    on_board = run_cli("run", "--target", "micro", "--board", "mps2-an386", path, folder, *hints)
    in_python = run_cli("run", "--target", "micro", path, folder, *hints)
    assert on_board.exit_code == 0 and in_python.exit_code == 0, on_board.output + in_python.output
    assert json.loads(on_board.stdout)["predictions"] == json.loads(in_python.stdout)["predictions"]
    bench = run_cli("bench", "--target", "micro", "--board", "mps2-an386", path, "--runs", "2", "--json")
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)["instructions"]["per_inference"]["reference"]["p50"] > 0


def test_one_project_rebuilt_for_models_with_other_operations_links_each(
    arm: None, tflm: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    """A project folder re-exported for a model with an operation the first lacks (DEPTHWISE_CONV_2D), then for the
    first again, over one TFLM object folder: each build links the kernels its own model needs."""
    import keras

    converted_elsewhere(keras.layers.DepthwiseConv2D(3, name="dw"), tmp_path / "other.tflite")
    out, lib = tmp_path / "fw", tmp_path / "lib"
    make = ["make", "-C", str(out), "-j2", f"TFLM_DIR={tflm}", "BOARD=mps2-an386", "PROGRAM=harness", f"LIB_DIR={lib}"]
    for model in (models["int8"], tmp_path / "other.tflite", models["int8"]):
        exported = run_cli("export", "micro", model, "--out", out, "--name", "m", "--firmware")
        assert exported.exit_code == 0, exported.output
        built = subprocess.run(make, capture_output=True, text=True, check=False)
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        zeros = bytes(int(np.prod(read_flatbuffer(verify_model(model)).inputs[0].shape)))
        run = run_harness(out / "build/mps2-an386-reference/harness.elf", [zeros], board="mps2-an386", model_name="m")
        assert len(run.outputs) == 1


def converted_elsewhere(layer: Any, path: Path) -> Path:
    """Plain Keras (``layer`` on a 32x32x3 input, then a 3-way Dense) through TensorFlow's own full-int8 converter,
    as an outside user makes a model: a dynamic batch, no sidecar."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((32, 32, 3)), layer, keras.layers.Flatten(name="f"), keras.layers.Dense(3)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, 32, 32, 3), dtype=np.float32)] for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path
