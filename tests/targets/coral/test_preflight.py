"""The Edge TPU pre-flight (``edgecnn check --target coral``) on models built here with supported and unsupported
operations: a float op left in, a dynamic shape, an op Coral's table lacks, an op version the compiler refuses,
a batch above 1. Each model is a tiny Keras graph on 32x32 RGB input, quantized on the test photos."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_cli

from edgecnn.build.convert import converted_quietly
from edgecnn.model.graph import read_graph
from edgecnn.runtime.bundle import read_tflite_info, write_tflite
from edgecnn.runtime.data import Sample, load_images, scan_images
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams
from edgecnn.targets.coral.preflight import preflight


@pytest.fixture(scope="module")
def calibration(photos_train: Path) -> np.ndarray:
    """20 training photos, 32x32 RGB in [0, 1]."""
    samples = scan_images(photos_train).samples
    chosen = [Sample(s.path, s.label) for s in samples[:: max(1, len(samples) // 20)][:20]]
    return load_images(chosen, Preprocessing(height=32, width=32, channels=3)).images


def _int8(build: Any, calibration: np.ndarray, *, batch: int | None = 1, io: str = "int8") -> bytes:
    """Full-integer conversion of the Keras graph ``build(keras, inputs)`` with a fixed or dynamic batch."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((32, 32, 3), batch_size=batch, name="image")
    model = keras.Model(inputs, build(keras, inputs))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative() -> Any:
        for image in calibration:
            yield [np.repeat(image[None], batch or 1, axis=0)]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float32":
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    return converted_quietly(converter.convert)


def _bundle(folder: Path, name: str, flatbuffer: bytes, template: Path) -> Path:
    """Write ``flatbuffer`` as a bundle whose sidecar describes it."""
    graph = read_graph(flatbuffer)
    inp, out = graph.inputs[0], graph.outputs[0]
    info = replace(
        read_tflite_info(template),
        labels=[f"c{i}" for i in range(out.shape[-1])],
        input_shape=list(inp.shape),
        input=QuantParams(inp.dtype, inp.scale, inp.zero_point),
        output=QuantParams(out.dtype, out.scale, out.zero_point),
    )
    path = folder / f"{name}.tflite"
    write_tflite(path, flatbuffer, info)
    return path


def _head(keras: Any, x: Any) -> Any:
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.layers.Dense(3, activation="softmax", name="dense")(x)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory, calibration: np.ndarray, models: dict[str, Path]) -> dict:
    """Five tiny graphs converted here, each with what the pre-flight must catch."""
    folder = tmp_path_factory.mktemp("edgetpu")
    template = models["int8"]

    def conv(keras: Any, x: Any, filters: int, name: str, **options: Any) -> Any:
        return keras.layers.Conv2D(filters, 3, padding="same", name=name, **options)(x)

    def leaky(keras: Any, x: Any) -> Any:
        x = conv(keras, x, 4, "conv1", activation="relu")
        x = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)
        return _head(keras, conv(keras, x, 8, "conv2", activation="relu"))

    def grouped(keras: Any, x: Any) -> Any:
        x = conv(keras, x, 4, "conv1", activation="relu")
        return _head(keras, conv(keras, x, 8, "grouped", groups=2, activation="relu"))

    def plain(keras: Any, x: Any) -> Any:
        return _head(keras, conv(keras, conv(keras, x, 4, "conv1", activation="relu"), 8, "conv2", activation="relu"))

    built = {
        "leaky": _int8(leaky, calibration),
        "grouped": _int8(grouped, calibration),
        "float_io": _int8(plain, calibration, io="float32"),
        "dynamic": _int8(plain, calibration, batch=None),
        "batch2": _int8(plain, calibration, batch=2),
    }
    return {name: _bundle(folder, name, flatbuffer, template) for name, flatbuffer in built.items()}


def _check(*args: object) -> tuple[int, dict]:
    result = run_cli("check", "--target", "coral", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.exit_code, json.loads(result.stdout)


def _findings(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def test_the_project_cnn_maps_entirely(models: dict[str, Path]) -> None:
    code, report = _check(models["int8"], "--min-tpu-share", "1")
    assert code == 0 and report["passed"] and report["warnings"] == 0
    result = report["details"]["preflight"]
    assert result["tpu_operations"] == result["operations"] and result["ops_share"] == 1.0
    assert result["macs_share"] == 1.0 and result["cut"] is None and not result["compiled"]
    assert [op["op"] for op in result["ops"]][:1] == ["CONV_2D"] and all(op["on_tpu"] for op in result["ops"])


@pytest.mark.slow  # converts graphs of its own (the graphs fixture)
def test_an_op_the_table_lacks_cuts_the_graph(graphs: dict[str, Path]) -> None:
    code, report = _check(graphs["leaky"])
    result = report["details"]["preflight"]
    ops = [op["op"] for op in result["ops"]]
    assert ops == ["CONV_2D", "LEAKY_RELU", "CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert (
        result["cut"]["op"] == "LEAKY_RELU"
        and "not among the Edge TPU's supported operations" in (result["cut"]["reason"])
    )
    # Everything after the cut runs on the CPU although the table supports it.
    assert [op["on_tpu"] for op in result["ops"]] == [True, False, False, False, False, False]
    assert result["ops"][2]["supported"] and "after the operation where the compiler cuts" in result["ops"][2]["reason"]
    # MACs by hand: conv1 32*32*4 outputs x 3*3*3 taps; conv2 32*32*8 x 3*3*4; dense 8 x 3.
    conv1, conv2, dense = 32 * 32 * 4 * 27, 32 * 32 * 8 * 36, 8 * 3
    assert result["macs"] == conv1 + conv2 + dense
    assert result["macs_share"] == round(conv1 / (conv1 + conv2 + dense), 4)
    assert result["ops_share"] == round(1 / 6, 4)
    assert code == 0 and "#1 LEAKY_RELU" in _findings(report, "cut")[0]["message"]
    gated, gated_report = _check(graphs["leaky"], "--min-tpu-share", "0.5")
    assert gated == 1 and "below --min-tpu-share 0.5" in _findings(gated_report, "min-tpu-share")[0]["message"]
    text = run_cli("check", "--target", "coral", graphs["leaky"], "--min-tpu-share", "0.5")
    assert text.exit_code == 1 and "CANNOT run on coral" in text.stdout and "#1 LEAKY_RELU" in text.stdout


@pytest.mark.slow  # converts graphs of its own (the graphs fixture)
def test_an_op_version_the_compiler_refuses(graphs: dict[str, Path]) -> None:
    _, report = _check(graphs["grouped"])
    grouped = report["details"]["preflight"]["ops"][1]
    assert grouped["op"] == "CONV_2D" and grouped["version"] == 6 and not grouped["supported"]
    assert "version 6 is newer than edgetpu_compiler 16.0.384591198 takes (up to version 5)" in grouped["reason"]


@pytest.mark.slow  # converts graphs of its own (the graphs fixture)
def test_float_io_leaves_the_edges_on_the_cpu(graphs: dict[str, Path]) -> None:
    code, report = _check(graphs["float_io"])
    ops = report["details"]["preflight"]["ops"]
    assert ops[0]["op"] == "QUANTIZE" and not ops[0]["on_tpu"] and "float32" in ops[0]["reason"]
    assert ops[-1]["op"] == "DEQUANTIZE" and not ops[-1]["supported"]
    # The leading float QUANTIZE does not cut the graph: the int8 body maps; the trailing DEQUANTIZE is the cut.
    assert all(op["on_tpu"] for op in ops[1:-1])
    assert (
        report["details"]["preflight"]["cut"]["op"] == "DEQUANTIZE"
        and report["details"]["preflight"]["macs_share"] == 1.0
    )
    assert code == 0 and "#0 QUANTIZE" in _findings(report, "cpu-ops")[0]["message"]


@pytest.mark.slow  # converts graphs of its own (the graphs fixture)
def test_a_dynamic_shape_keeps_the_model_off_the_tpu(graphs: dict[str, Path]) -> None:
    _, report = _check(graphs["dynamic"])
    result = report["details"]["preflight"]
    assert any("dynamic shape [-1, 32, 32" in op["reason"] for op in result["ops"])
    assert result["ops_share"] < 1.0


def test_a_float_model_has_nothing_on_the_tpu(models: dict[str, Path]) -> None:
    code, report = _check(models["float"])
    assert code == 1 and report["details"]["preflight"]["tpu_operations"] == 0
    assert "no operation would run on the Edge TPU" in _findings(report, "no-tpu-ops")[0]["message"]
    assert "float32 unquantized" in _findings(report, "no-tpu-ops")[0]["message"]


@pytest.mark.slow  # converts graphs of its own (the graphs fixture)
def test_a_batch_above_one_is_more_than_three_dimensions(graphs: dict[str, Path]) -> None:
    _, report = _check(graphs["batch2"])
    first = report["details"]["preflight"]["ops"][0]
    assert not first["supported"] and "[2, 32, 32, 3] has more than 3 dimensions larger than 1" in first["reason"]


@pytest.mark.slow  # converts graphs of its own (the graphs fixture)
def test_preflight_needs_no_sidecar(graphs: dict[str, Path], tmp_path: Path) -> None:
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(graphs["leaky"].read_bytes())
    assert preflight(bare).cut.name == "LEAKY_RELU"
    assert preflight(bare.read_bytes()).tpu_ops == 1
