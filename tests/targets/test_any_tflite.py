"""Any ``.tflite`` works in ``check --target NAME``, ``bench`` and ``export micro``, with no edgecnn sidecar.

The models are made here the way a user of another toolkit makes them: plain Keras with named layers, converted
by TensorFlow's own ``TFLiteConverter``, and written alone in a folder (no ``model.json`` beside them). One is a
full-integer int8 CNN with a dynamic batch, one a float model with two inputs and two outputs. A copy of edgecnn's
own bundle model without its sidecar is the user's ``cp model_int8.tflite x/`` case.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from edgecnn.model.flatbuffer import read_flatbuffer
from edgecnn.runtime.bench import random_fills

TFLM = Path(__file__).resolve().parents[3] / "shared" / "third_party" / "tflm"
"""TFLM's pinned sources (../shared/third_party/tflm), for compiling the exported op resolver."""


def _alone(folder: Path, name: str, content: bytes) -> Path:
    """``content`` written as ``folder/name`` with no sidecar beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    assert not path.with_suffix(".json").exists()
    return path


@pytest.fixture(scope="session")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small CNN from TensorFlow's converter, full-integer int8: with int8 I/O and batch 1 (``int8``), with float32
    I/O (``int8_float_io``), and with the dynamic batch Keras leaves by default (``int8_dynamic``)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    layers = [
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(3, activation="softmax", name="scores"),
    ]

    def model(batch: int | None) -> keras.Model:
        image = keras.Input((12, 12, 1), batch_size=batch, name="image")
        x = image
        for layer in layers:
            x = layer(x)
        return keras.Model(image, x, name="foreign")

    folder = tmp_path_factory.mktemp("foreign")
    built = {}
    variants = (("int8", 1, tf.int8), ("int8_float_io", 1, tf.float32), ("int8_dynamic", None, tf.int8))
    for key, batch, io_type in variants:
        rng = np.random.default_rng(0)
        converter = tf.lite.TFLiteConverter.from_keras_model(model(batch))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda rng=rng: (
            [rng.random((1, 12, 12, 1), dtype=np.float32)] for _ in range(16)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
        built[key] = _alone(folder, f"foreign_{key}.tflite", converter.convert())
    return built


@pytest.fixture(scope="session")
def foreign_int8(foreign: dict[str, Path]) -> Path:
    """The full-integer model with int8 I/O and batch 1."""
    return foreign["int8"]


@pytest.fixture(scope="session")
def two_io(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float model with two inputs (a vector and a small image) and two outputs (class scores and a regression)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    vector = keras.Input((6,), batch_size=1, name="vector")
    image = keras.Input((4, 4, 2), batch_size=1, name="image")
    x = keras.layers.Dense(5, name="dense_vector")(vector)
    y = keras.layers.Flatten(name="flatten")(keras.layers.Conv2D(3, 2, name="conv")(image))
    both = keras.layers.Concatenate(name="both")([x, y])
    classes = keras.layers.Dense(3, activation="softmax", name="classes")(both)
    value = keras.layers.Dense(2, name="value")(both)
    model = keras.Model([vector, image], [classes, value], name="two_io")
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return _alone(tmp_path_factory.mktemp("two_io"), "two_io.tflite", flatbuffer)


@pytest.fixture(scope="session")
def bare_copies(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> dict[str, Path]:
    """edgecnn's own int8 and int8-with-float-I/O models copied without their sidecars."""
    folder = tmp_path_factory.mktemp("bare")
    return {key: _alone(folder, f"{key}.tflite", models[key].read_bytes()) for key in ("int8", "int8_float_io")}


@pytest.fixture(scope="session")
def garbage(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> dict[str, Path]:
    """Files that are not models: random bytes, a truncated model, a model's bytes with the identifier kept and the
    root offset pointing outside the file."""
    folder = tmp_path_factory.mktemp("garbage")
    content = models["int8"].read_bytes()
    broken_root = (10**8).to_bytes(4, "little") + content[4:]
    return {
        "random": _alone(folder, "random.tflite", np.random.default_rng(0).bytes(2000)),
        "truncated": _alone(folder, "truncated.tflite", content[: len(content) // 2]),
        "root": _alone(folder, "root.tflite", broken_root),
    }


def _json(*args: object) -> tuple[int, dict]:
    result = run_cli(*args, "--json")
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return result.exit_code, json.loads(result.stdout)


def _codes(report: dict) -> dict[str, str]:
    return {f["code"]: f["message"] for f in report["findings"]}


# --- bench ------------------------------------------------------------------------------------------------------


def test_bench_a_bundle_model_copied_without_its_sidecar(bare_copies: dict[str, Path]) -> None:
    """The user's ``cp model_int8.tflite x/ && edgecnn bench x/model_int8.tflite``."""
    code, report = _json("bench", bare_copies["int8"], "--runs", "5", "--warmup", "1")
    assert code == 0 and report["inputs"] == "random" and report["runs"] == 5
    assert 0 < report["latency_ms"]["min"] <= report["latency_ms"]["max"]
    [tensor] = report["input_tensors"]
    assert (tensor["dtype"], tensor["shape"], tensor["low"], tensor["high"]) == ("int8", [1, 32, 32, 3], -128, 127)
    text = run_cli("bench", bare_copies["int8"], "--runs", "2")
    assert text.exit_code == 0 and "inputs random" in text.stdout and "-128..127 (the int8 range)" in text.stdout


def test_bench_a_foreign_model_with_a_dynamic_batch(foreign: dict[str, Path]) -> None:
    """Dynamic dimensions are 1, the batch dimension --batch; the tensor's name and range are reported."""
    model = foreign["int8_dynamic"]
    assert read_flatbuffer(model).inputs[0].signature == (-1, 12, 12, 1)
    code, one = _json("bench", model, "--runs", "3")
    assert code == 0 and one["input_tensors"][0]["shape"] == [1, 12, 12, 1]
    assert one["input_tensors"][0]["name"] == read_flatbuffer(model).inputs[0].name
    code, four = _json("bench", model, "--runs", "3", "--batch", "4")
    assert code == 0 and four["batch"] == 4 and four["input_tensors"][0]["shape"] == [4, 12, 12, 1]
    assert four["throughput"] == pytest.approx(4 * 1000.0 / four["latency_ms"]["mean"], rel=1e-6)


def test_bench_two_inputs_and_two_outputs(two_io: Path) -> None:
    code, report = _json("bench", two_io, "--runs", "4", "--threads", "1")
    assert code == 0 and report["inputs"] == "random" and report["latency_ms"]["p50"] > 0
    tensors = {t["name"]: t for t in report["input_tensors"]}
    assert len(tensors) == 2 and {t["dtype"] for t in tensors.values()} == {"float32"}
    shapes = sorted(t["shape"] for t in tensors.values())
    assert shapes == [[1, 4, 4, 2], [1, 6]]
    assert all((t["low"], t["high"]) == (0.0, 1.0) for t in tensors.values())


def test_bench_on_micro_without_a_sidecar(two_io: Path, foreign_int8: Path) -> None:
    pytest.importorskip("tflite_micro")
    code, report = _json("bench", "--target", "micro", two_io, "--runs", "3")
    assert code == 0 and report["inputs"] == "random" and len(report["input_tensors"]) == 2
    assert "tflite-micro" in report["runtime"]
    code, report = _json("bench", "--target", "rpi", foreign_int8, "--runs", "3")  # the Pi's defaults, here
    assert code == 0 and report["threads"] == 4 and report["input_tensors"][0]["dtype"] == "int8"


def test_random_values_have_each_input_type_and_range(
    foreign: dict[str, Path], bare_copies: dict[str, Path], two_io: Path
) -> None:
    """A float input read by a QUANTIZE gets the real range that QUANTIZE maps onto int8; others [0, 1)."""
    [fill] = random_fills(foreign["int8_float_io"])
    flat = read_flatbuffer(foreign["int8_float_io"])
    quantize = next(op for op in flat.operators if op.name == "QUANTIZE" and op.inputs[0].index == flat.inputs[0].index)
    out = quantize.outputs[0]
    assert fill.dtype == "float32" and "QUANTIZE" in fill.source
    assert fill.low == pytest.approx(out.scale * (-128 - out.zero_point))
    assert fill.high == pytest.approx(out.scale * (127 - out.zero_point))
    values = fill.draw(np.random.default_rng(0), (2, 12, 12, 1))
    assert values.dtype == np.float32 and fill.low <= values.min() and values.max() < fill.high
    fills = random_fills(two_io)
    drawn = [f.draw(np.random.default_rng(1), (1, 6)) for f in fills]
    assert all(d.dtype == np.float32 and d.min() >= 0.0 and d.max() < 1.0 for d in drawn)
    [int8] = random_fills(bare_copies["int8"])
    values = int8.draw(np.random.default_rng(0), (64, 32, 32, 3))
    assert values.dtype == np.int8 and values.min() == -128 and values.max() == 127


def test_tflite_metadata_normalization_gives_the_float_range(bare_copies: dict[str, Path]) -> None:
    """A model carrying TFLite Metadata normalization: its float input ranges over what 0..255 pixels become."""
    from edgecnn.model.metadata import read_metadata

    metadata = read_metadata(bare_copies["int8_float_io"].read_bytes())
    if metadata is None or metadata.mean is None or metadata.std is None:
        pytest.skip("edgecnn convert wrote no TFLite Metadata normalization into this model")
    [fill] = random_fills(bare_copies["int8_float_io"])
    mean, std = np.asarray(metadata.mean), np.asarray(metadata.std)
    assert "TFLite Metadata" in fill.source
    assert fill.low == pytest.approx(float(np.min(-mean / std)))
    assert fill.high == pytest.approx(float(np.max((255.0 - mean) / std)))


def test_bench_with_images_needs_a_sidecar(bare_copies: dict[str, Path], small_folder: Path) -> None:
    result = run_cli("bench", bare_copies["int8"], "--images", small_folder)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "--images needs the model's preprocessing" in result.stderr and "drop --images" in result.stderr


def test_the_pi_agent_benches_a_model_sent_without_a_sidecar(foreign_int8: Path) -> None:
    """What ``bench --target rpi --host`` sends for a model from elsewhere: the model alone; the agent times it."""
    import signal

    from edgecnn.targets.agent import serve
    from edgecnn.targets.wire import read_message, write_message

    requests = io.BytesIO()
    write_message(requests, {"op": "load", "threads": 1, "open": False}, [foreign_int8.read_bytes()])
    write_message(requests, {"op": "check", "threads": 1})
    write_message(requests, {"op": "bench", "runs": 3, "warmup": 0, "batch": 1})
    requests.seek(0)
    replies = io.BytesIO()
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGHUP, signal.SIGTERM)}  # serve() sets its own
    try:
        serve(requests, replies)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    replies.seek(0)
    assert read_message(replies) is not None  # the hello
    loaded, checked = (read_message(replies) for _ in range(2))
    progress = [read_message(replies) for _ in range(3)]  # one message per timed run, before the result
    assert [p[0]["progress"] for p in progress if p is not None] == [1, 2, 3]
    benched = read_message(replies)
    assert loaded is not None and loaded[0] == {"loaded": False, "sizes": []}
    assert checked is not None and "error" not in checked[0]
    assert "no sidecar" in next(f["message"] for f in checked[0]["findings"] if f["code"] == "model")
    assert benched is not None and benched[0]["result"]["inputs"] == "random"
    assert benched[0]["result"]["input_tensors"][0]["shape"] == [1, 12, 12, 1]


# --- check ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["host", "rpi", "android", "micro"])
def test_check_describes_a_model_without_a_sidecar(target: str, foreign_int8: Path, two_io: Path) -> None:
    if target == "micro":
        pytest.importorskip("tflite_micro")
    for model in (foreign_int8, two_io):
        code, report = _json("check", "--target", target, model)
        assert report["errors"] == 0 and code == 0, report["findings"]
        found = _codes(report)
        assert "no sidecar: labels and preprocessing unknown" in found["model"] and "labels," not in found["model"]
        assert "(read from the graph)" in found["model"]
    assert "quantization int8" in _codes(_json("check", "--target", target, foreign_int8)[1])["model"]
    code, report = _json("check", "--target", target, two_io)
    found = _codes(report)
    assert "2 inputs (" in found["model"] and "2 outputs (" in found["model"] and "vector" in found["model"]
    assert found["io"].startswith("2 inputs and 2 outputs:") and "take it" in found["io"]


def test_check_micro_measures_the_arena_of_a_model_without_a_sidecar(foreign_int8: Path) -> None:
    pytest.importorskip("tflite_micro")
    code, report = _json("check", "--target", "micro", "--board", "nano33ble", foreign_int8)
    assert code == 0 and report["details"]["fits"] and report["details"]["arena"]["used_bytes"] > 0
    assert {"arena", "ram", "flash"} <= set(_codes(report))


def test_check_coral_preflights_a_model_without_a_sidecar(foreign_int8: Path, two_io: Path) -> None:
    """The pre-flight needs neither the compiler nor a sidecar: an int8 model maps, a float one cannot."""
    code, report = _json("check", "--target", "coral", foreign_int8)
    preflight = report["details"]["preflight"]
    assert code == 0 and preflight["tpu_operations"] == preflight["operations"] > 0
    assert "no sidecar" in _codes(report)["model"]
    code, report = _json("check", "--target", "coral", two_io)
    assert code == 1 and "no-tpu-ops" in _codes(report) and "2 inputs (" in _codes(report)["model"]


def test_a_bundle_is_still_described_by_its_sidecar(models: dict[str, Path]) -> None:
    for target in ("host", "coral"):
        _, report = _json("check", "--target", target, models["int8"])
        assert "10 labels" in _codes(report)["model"] and "no sidecar" not in _codes(report)["model"]
    code, report = _json("bench", models["int8"], "--runs", "2")
    assert code == 0 and report["inputs"] == "random" and report["input_tensors"] == []


def test_a_mismatched_sidecar_is_still_refused(tmp_path: Path, models: dict[str, Path], foreign_int8: Path) -> None:
    """A sidecar beside other model bytes is an error (exit 2) in every command, never silently ignored."""
    model = _alone(tmp_path, "model.tflite", foreign_int8.read_bytes())
    shutil.copyfile(models["int8"].with_suffix(".json"), tmp_path / "model.json")
    for args in (["check", "--target", "host"], ["check", "--target", "micro"], ["bench"], ["export", "micro"]):
        more = ["--out", str(tmp_path / "out")] if args[0] == "export" else []
        result = run_cli(*args, model, *more)
        assert result.exit_code == 2 and "was written for another model" in result.stderr, (args, result.stderr)


@pytest.mark.parametrize("kind", ["random", "truncated", "root"])
def test_a_file_that_is_not_a_model_exits_2_everywhere(kind: str, garbage: dict[str, Path], tmp_path: Path) -> None:
    commands = [["check", "--target", t] for t in ("host", "rpi", "coral", "android", "micro")]
    commands += [["bench", "--runs", "1"], ["bench", "--target", "micro", "--runs", "1"]]
    commands += [["export", "micro", "--out", str(tmp_path / "out")]]
    for args in commands:
        result = run_cli(*args, garbage[kind])
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgecnn: error:") and "TFLite model" in lines[0], lines
    assert not (tmp_path / "out").exists()


# --- export micro -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcc() -> str:
    path = shutil.which("g++")
    if path is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
            pytest.fail("g++ is missing; CI is set, so this fails instead of skipping", pytrace=False)
        pytest.skip("g++ is missing: apt-get install g++")
    return path


def _compile(gcc: str, source: Path, include: Path, *, system: tuple[Path, ...] = ()) -> None:
    """``g++ -fsyntax-only`` as C++17 with warnings as errors (in the exported files, not in TFLM's own headers, given
    as ``system`` include folders); the compiler's message on failure."""
    command = [gcc, "-fsyntax-only", "-x", "c++", "-std=c++17", "-Wall", "-Wextra", "-Werror"]
    command += ["-DTF_LITE_STATIC_MEMORY", f"-I{include}", *(f"-isystem{i}" for i in system), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _hex(value: float) -> str:
    return float(np.float32(value)).hex() + "f"


def test_export_micro_without_a_sidecar(gcc: str, foreign_int8: Path, tmp_path: Path) -> None:
    """The C++ export works from the graph: the settings describe its tensors and say what was left out."""
    pytest.importorskip("tflite_micro")
    flat = read_flatbuffer(foreign_int8)
    code, result = _json("export", "micro", foreign_int8, "--out", tmp_path / "out", "--name", "model")
    assert code == 0 and len(result["files"]) == 5 and result["arena"]["arena_bytes"] > 0
    assert len(result["notes"]) == 1 and "has no sidecar" in result["notes"][0]
    stderr = run_cli("export", "micro", foreign_int8, "--out", tmp_path / "out", "--name", "model").stderr
    assert "edgecnn: note: foreign_int8.tflite has no sidecar" in stderr
    out = tmp_path / "out"
    settings = (out / "model_model_settings.h").read_text()
    assert "has no edgecnn sidecar: its labels and preprocessing are unknown" in settings
    assert "model_labels" not in settings and "kmodelMean" not in settings
    inp, outp = flat.inputs[0], flat.outputs[0]
    checks = [
        "kmodelNumInputs == 1 && kmodelNumOutputs == 1",
        "kmodelInput0Rank == 4 && kmodelInput0Shape[0] == 1 && kmodelInput0Shape[1] == 12",
        "kmodelInput0Shape[3] == 1 && kmodelInput0Elements == 144 && kmodelInputElements == 144",
        "kmodelOutput0Elements == 3 && kmodelOutputElements == 3",
        "std::is_same<model_Input0Type, int8_t>::value && std::is_same<model_InputType, int8_t>::value",
        "std::is_same<model_OutputType, int8_t>::value && kmodelInputQuantized && kmodelOutput0Quantized",
        f"kmodelInput0Scale == {_hex(inp.scale)} && kmodelInputZeroPoint == {inp.zero_point}",
        f"kmodelOutputScale == {_hex(outp.scale)} && kmodelOutput0ZeroPoint == {outp.zero_point}",
        f"kmodelTensorArenaSize == {result['arena']['arena_bytes']}",
    ]
    probe = tmp_path / "probe.cc"
    probe.write_text(
        '#include <type_traits>\n#include "model_model_settings.h"\n#include "model_model_data.h"\n'
        + "".join(f'static_assert({check}, "{i}");\n' for i, check in enumerate(checks))
    )
    _compile(gcc, probe, out)
    _compile(gcc, out / "model_model_data.cc", out)
    if (TFLM / "tflite-micro").is_dir():  # the op resolver needs TFLM's headers
        resolver = tmp_path / "resolver.cc"
        resolver.write_text(
            '#include "model_op_resolver.h"\n'
            "int main() { model_OpResolver r; return model_RegisterOps(r) == kTfLiteOk ? 0 : 1; }\n"
        )
        tflm = [TFLM / "tflite-micro", TFLM / "flatbuffers" / "include", TFLM / "gemmlowp", TFLM / "ruy"]
        _compile(gcc, resolver, out, system=tuple(tflm))


def test_export_micro_describes_every_tensor_of_a_two_io_model(gcc: str, two_io: Path, tmp_path: Path) -> None:
    pytest.importorskip("tflite_micro")
    flat = read_flatbuffer(two_io)
    code, result = _json("export", "micro", two_io, "--out", tmp_path, "--name", "m")
    assert code == 0 and result["notes"]
    settings = (tmp_path / "m_model_settings.h").read_text()
    assert "kmInputElements" not in settings  # one input and one output only get a bundle's names
    checks = ["kmNumInputs == 2 && kmNumOutputs == 2"]
    for role, tensors in (("Input", flat.inputs), ("Output", flat.outputs)):
        for i, t in enumerate(tensors):
            checks.append(f"km{role}{i}Rank == {len(t.shape)} && km{role}{i}Elements == {int(np.prod(t.shape))}")
            checks += [f"km{role}{i}Shape[{d}] == {n}" for d, n in enumerate(t.shape)]
            checks.append(f"std::is_same<m_{role}{i}Type, float>::value && !km{role}{i}Quantized")
            assert f'km{role}{i}Name = "{t.name}"' in settings
    probe = tmp_path / "probe.cc"
    probe.write_text(
        '#include <type_traits>\n#include "m_model_settings.h"\n'
        + "".join(f'static_assert({check}, "{i}");\n' for i, check in enumerate(checks))
    )
    _compile(gcc, probe, tmp_path)


def test_export_micro_of_a_bundle_is_unchanged(models: dict[str, Path], tmp_path: Path) -> None:
    """With a sidecar the export is what it always was: labels and preprocessing, no per-tensor block, no notes."""
    pytest.importorskip("tflite_micro")
    code, result = _json("export", "micro", models["int8"], "--out", tmp_path, "--name", "model")
    assert code == 0 and result["notes"] == []
    settings = (tmp_path / "model_model_settings.h").read_text()
    assert "model_labels[kmodelNumClasses]" in settings and "kmodelInput0" not in settings


def test_a_dynamic_batch_exports_as_tflm_runs_it(foreign: dict[str, Path], tmp_path: Path) -> None:
    """Keras's default dynamic batch: TFLM runs it as batch 1, so check warns and export writes batch 1, with a note."""
    pytest.importorskip("tflite_micro")
    model = foreign["int8_dynamic"]
    code, report = _json("check", "--target", "micro", model)
    assert code == 0 and "[-1, 12, 12, 1]" in _codes(report)["dynamic-shape"]
    code, result = _json("export", "micro", model, "--out", tmp_path, "--name", "m")
    assert code == 0 and any("dynamic shape [-1, 12, 12, 1]" in note for note in result["notes"])
    settings = (tmp_path / "m_model_settings.h").read_text()
    assert "constexpr int kmInput0Shape[kmInput0Rank] = {1, 12, 12, 1};" in settings
    assert "(signature [-1, 12, 12, 1]: TFLM runs each dynamic dimension as 1)" in settings
