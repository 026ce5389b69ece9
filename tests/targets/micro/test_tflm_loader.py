"""``check --target micro`` and ``export micro`` read a model with TensorFlow Lite Micro's loader, never LiteRT's.

LiteRT's interpreter checks a tensor's quantization parameters when it builds the graph; TFLM's loader and kernels
read only what they use. A real difference, found by trying: a CONV_2D bias whose quantization says
``quantized_dimension = 1``. The bias is 1-D, so LiteRT refuses the model ("quantized_dimension must be in range
[0, 1)"); TFLM's convolution never reads the bias's quantization (it rescales with the input's and filter's scales)
and runs it, bit for bit as before the change. Such a model still gets its arena, its budget and its C++ export.

The model is made the way an outside user would make it: plain Keras with named layers, TensorFlow's converter,
then its flatbuffer rewritten with the TFLite schema's generated object API (``ModelT``) and packed again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from edgecnn.model.graph import read_graph
from edgecnn.runtime.bundle import ModelInfo, write_tflite
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams

tflite_micro = pytest.importorskip("tflite_micro")  # the micro extra: what this file is about


def _int8_cnn() -> bytes:
    """A tiny full-integer int8 CNN (int8 I/O, batch 1) from TensorFlow's converter."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), batch_size=1, name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = keras.layers.Flatten(name="flatten")(x)
    scores = keras.layers.Dense(3, activation="softmax", name="scores")(x)
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(image, scores, name="tiny"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, 8, 8, 1), dtype=np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def with_bias_axis(content: bytes, axis: int = 1) -> bytes:
    """The model with the first CONV_2D's bias quantized along ``axis`` (its only axis is 0)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    conv = next(op for op in graph.operators if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D)
    bias = graph.tensors[conv.inputs[2]]
    assert bias.quantization is not None and len(bias.shape) == 1 and bias.quantization.quantizedDimension == 0
    bias.quantization.quantizedDimension = axis
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def original() -> bytes:
    return _int8_cnn()


@pytest.fixture(scope="session")
def odd_model(tmp_path_factory: pytest.TempPathFactory, original: bytes) -> Path:
    """The model that TFLM runs and LiteRT refuses, alone in a folder (no sidecar)."""
    path = tmp_path_factory.mktemp("odd") / "odd_int8.tflite"
    path.write_bytes(with_bias_axis(original))
    return path


@pytest.fixture(scope="session")
def odd_bundle(tmp_path_factory: pytest.TempPathFactory, odd_model: Path) -> Path:
    """The same model with a sidecar written for it: three labels, 8x8 grayscale pixels scaled to [0, 1]."""
    graph = read_graph(odd_model)
    inp, out = graph.inputs[0], graph.outputs[0]
    info = ModelInfo(
        labels=["a", "b", "c"],
        preprocessing=Preprocessing(height=8, width=8, channels=1),
        input_shape=list(inp.shape),
        input=QuantParams(inp.dtype, inp.scale, inp.zero_point),
        output=QuantParams(out.dtype, out.scale, out.zero_point),
        quantization="int8",
    )
    path = tmp_path_factory.mktemp("odd_bundle") / "model_int8.tflite"
    write_tflite(path, odd_model.read_bytes(), info)
    return path


def _tflm_output(content: bytes, image: np.ndarray) -> np.ndarray:
    interpreter = tflite_micro.runtime.Interpreter.from_bytes(content, arena_size=256 * 1024)
    interpreter.set_input(image, 0)
    interpreter.invoke()
    return np.asarray(interpreter.get_output(0))


def test_litert_refuses_the_model_and_tflm_runs_it_unchanged(original: bytes, odd_model: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    odd = odd_model.read_bytes()
    with pytest.raises((RuntimeError, ValueError), match="quantized_dimension"):
        Interpreter(model_content=odd).allocate_tensors()
    Interpreter(model_content=original).allocate_tensors()  # the change is what LiteRT refuses
    images = np.random.default_rng(1).integers(-128, 128, size=(4, 1, 8, 8, 1)).astype(np.int8)
    for image in images:
        np.testing.assert_array_equal(_tflm_output(odd, image), _tflm_output(original, image))


def test_check_and_export_micro_take_it(odd_model: Path, tmp_path: Path) -> None:
    result = run_cli("check", "--target", "micro", "--board", "nano33ble", odd_model, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["passed"] and report["details"]["fits"], report["findings"]
    assert report["details"]["arena"]["used_bytes"] > 0
    exported = run_cli("export", "micro", odd_model, "--out", tmp_path / "fw", "--name", "odd", "--board", "pico")
    assert exported.exit_code == 0, exported.stderr
    assert len(list((tmp_path / "fw").iterdir())) == 5
    assert "constexpr int koddTensorArenaSize = " in (tmp_path / "fw" / "odd_model_settings.h").read_text()
    bench = run_cli("bench", "--target", "micro", odd_model, "--runs", "2", "--json")
    assert bench.exit_code == 0 and json.loads(bench.stdout)["inputs"] == "random"
    host = json.loads(run_cli("check", "--target", "host", odd_model, "--json").stdout)  # LiteRT's verdict
    assert (
        not host["passed"]
        and "quantized_dimension" in next(f for f in host["findings"] if f["code"] == "load")["message"]
    )


def test_a_bundle_that_litert_refuses_checks_exports_and_validates_on_micro(
    odd_bundle: Path, photos_test: Path, tmp_path: Path
) -> None:
    """With a sidecar: labels and preprocessing in the export, and the images run in TFLM."""
    assert run_cli("check", "--target", "micro", odd_bundle).exit_code == 0
    exported = run_cli("export", "micro", odd_bundle, "--out", tmp_path / "fw", "--name", "model", "--json")
    assert exported.exit_code == 0 and json.loads(exported.stdout)["notes"] == []
    assert "model_labels[kmodelNumClasses]" in (tmp_path / "fw" / "model_model_settings.h").read_text()
    ran = run_cli("run", "--target", "micro", odd_bundle, photos_test / "zero", "--json")
    assert ran.exit_code == 0, ran.stderr
    predictions = json.loads(ran.stdout)["predictions"]
    assert predictions and all(p["top"][0]["label"] in ("a", "b", "c") for p in predictions)


# Blocks every LiteRT and TensorFlow module in the child process: importing one raises ImportError.
_BLOCKED = ("ai_edge_litert", "tflite_runtime", "tensorflow", "keras")
_CHILD = """
import sys
blocked = {blocked!r}
for name in blocked:
    sys.modules[name] = None  # an import of it raises ImportError
from edgecnn.cli.main import cli
code = cli.main(sys.argv[1:], prog_name="edgecnn", standalone_mode=False)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked and sys.modules[m] is not None)
print("LOADED", loaded, file=sys.stderr)
sys.exit(code or 0)
"""


@pytest.mark.parametrize("command", ["check", "export", "bench"])
def test_the_micro_path_never_loads_litert(command: str, odd_model: Path, tmp_path: Path) -> None:
    """In a process where LiteRT (and TensorFlow) cannot be imported at all, the micro commands still work."""
    args = {
        "check": ["check", "--target", "micro", str(odd_model)],
        "export": ["export", "micro", str(odd_model), "--out", str(tmp_path / "fw")],
        "bench": ["bench", "--target", "micro", str(odd_model), "--runs", "2"],
    }[command]
    code = _CHILD.format(blocked=_BLOCKED)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stderr


@pytest.mark.parametrize("target", ["host", "coral"])
def test_targets_that_run_in_litert_refuse_it(odd_model: Path, target: str) -> None:
    """The same file that TFLM runs cannot run where LiteRT does: the Edge TPU delegate runs inside LiteRT, so
    check --target coral says so as check --target host does, whatever the pre-flight found."""
    result = run_cli("check", "--target", target, odd_model, "--json")
    assert result.exit_code == 1, result.output
    load = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "load"]
    assert load and load[0]["severity"] == "error" and "cannot load it" in load[0]["message"]
