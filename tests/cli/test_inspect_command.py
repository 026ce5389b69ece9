"""``edgecnn inspect``: people's text and ``--json`` for a model from TensorFlow's own converter, one error line
and exit 2 for anything that is not a model, and nothing heavy imported.

The library's figures are checked against independent oracles in tests/model/test_inspect.py; here the command's
output is checked against the figures a person would compute for the model below.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from edgecnn.cli.render import inspection
from edgecnn.model.inspect import Inspection, Quantization, inspect_model

HEAVY = ("numpy", "PIL", "ai_edge_litert", "tflite_runtime", "tflite_micro", "tensorflow", "keras")

CONV_MACS = 14 * 14 * 4 * (3 * 3 * 3)
DENSE_MACS = 14 * 14 * 4 * 5
"""By hand: a 3x3 convolution of 3 channels into 4 on 16x16 (14x14 outputs), then 784 flattened values into 5
units."""


@pytest.fixture(scope="session")
def nchw_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PyTorch-style model: a [1, 3, 16, 16] input permuted to NHWC, a convolution, a dense layer; no sidecar."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((3, 16, 16), batch_size=1, name="chw")
    x = keras.layers.Permute((2, 3, 1), name="to_hwc")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="dense")(x)
    model = keras.Model(inputs, outputs, name="nchw")
    rng = np.random.default_rng(0)  # non-zero biases, as after training (the converter drops all-zero ones)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    path = tmp_path_factory.mktemp("inspect_cli") / "nchw.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _fails_with_one_line(*args: str | Path) -> str:
    result = run_cli("inspect", *args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("edgecnn: error: ")
    return line


@pytest.mark.slow
def test_text(nchw_model: Path) -> None:
    result = run_cli("inspect", nchw_model)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    text = result.stdout
    assert text.startswith(f"model {nchw_model}\n")
    for expected in [
        f"size         {nchw_model.stat().st_size:,} bytes",
        "schema       version 3, 1 subgraph\n",
        "inputs (1)",
        "[1, 3, 16, 16]  float32  none          NCHW",
        "outputs (1)",
        "operators (5 kinds, 5 in all)",
        f"MACs        {CONV_MACS + DENSE_MACS:,} per inference",
        f"parameters  {3 * 3 * 3 * 4 + 4 + 784 * 5 + 5:,} values in 4 tensors (float32 ",
        "layout      NCHW (first 4-D input, guessed)",
        "metadata: none",
    ]:
        assert expected in text, expected
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  ") and line.split()}
    assert rows["CONV_2D"] == ["1", "v1", f"{CONV_MACS:,}"]
    assert rows["FULLY_CONNECTED"] == ["1", "v1", f"{DENSE_MACS:,}"]
    assert rows["TRANSPOSE"] == ["1", "v1"]


@pytest.mark.slow
def test_json(nchw_model: Path) -> None:
    result = run_cli("inspect", nchw_model, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert {
        "path", "size_bytes", "sha256", "description", "schema_version", "subgraphs", "sidecar", "inputs", "outputs",
        "layout", "operators", "operator_count", "parameters", "macs", "metadata", "metadata_error",
    } == set(document)  # fmt: skip
    assert document["layout"] == "NCHW"
    assert document["macs"] == CONV_MACS + DENSE_MACS
    assert document["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert document["inputs"][0]["quantization"] is None
    assert {op["name"]: op["count"] for op in document["operators"]}["CONV_2D"] == 1
    assert document == json.loads(json.dumps(inspect_model(nchw_model).to_dict()))


@pytest.mark.slow
def test_sidecar_is_mentioned(nchw_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(nchw_model.read_bytes())
    (tmp_path / "model.json").write_text("{}")
    result = run_cli("inspect", model)
    assert result.exit_code == 0, result.stderr
    assert f"sidecar      {tmp_path / 'model.json'} (edgecnn bundle)" in result.stdout
    assert json.loads(run_cli("inspect", model, "--json").stdout)["sidecar"] == str(tmp_path / "model.json")


@pytest.mark.slow
def test_truncated_model(nchw_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.tflite"
    path.write_bytes(nchw_model.read_bytes()[:900])
    line = _fails_with_one_line(path)
    assert f"{path} is not a valid TFLite model" in line and "truncated or corrupt" in line


@pytest.mark.slow
def test_imports_nothing_heavy(nchw_model: Path) -> None:
    """Inspecting a model loads neither numpy nor an interpreter: it works on a bare device install."""
    code = (
        "import sys\n"
        "from edgecnn.cli.main import cli\n"
        f"code = cli.main(['inspect', {str(nchw_model)!r}], prog_name='edgecnn', standalone_mode=False)\n"
        f"print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout[-2000:]


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.tflite"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert f"{path} is not a TFLite model" in _fails_with_one_line(path)


def test_random_bytes_with_the_identifier(tmp_path: Path) -> None:
    path = tmp_path / "random.tflite"
    body = np.random.default_rng(4).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path.write_bytes((100).to_bytes(4, "little") + b"TFL3" + body)
    assert f"{path} is not a valid TFLite model" in _fails_with_one_line(path)


def test_folder(tmp_path: Path) -> None:
    assert "is a folder" in _fails_with_one_line(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _fails_with_one_line(tmp_path / "missing.tflite")


def test_usage() -> None:
    result = run_cli("inspect")
    assert result.exit_code == 2 and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------- text for what converters rarely write


def _synthetic() -> Inspection:
    """An inspection as a file could describe it: per-channel input, a dynamic batch, hostile names, metadata."""
    from edgecnn.model.inspect import OperatorKind, Parameters, TensorInfo

    tensor = TensorInfo(
        index=0,
        name="in\x1b[31mput\n",
        shape=(1, 8, 8, 3),
        signature=(-1, 8, 8, 3),
        dtype="int8",
        quantization=Quantization(per_channel=True, scale=0.5, zero_point=0, scales=3, axis=3),
        layout="NHWC",
    )
    return Inspection(
        path=Path("m.tflite"),
        size_bytes=2048,
        sha256="0" * 64,
        description="",
        schema_version=3,
        subgraphs=3,
        inputs=[tensor],
        outputs=[replace(tensor, name="out", quantization=None, layout=None, dtype="float32")],
        layout="NHWC",
        operators=[
            OperatorKind("CONV_2D", 4, (3, 5), False, 1_000_000),
            OperatorKind("edgetpu-custom-op", 1, (1,), True, 0),
        ],
        parameters=Parameters(values=1200, tensors=8, bytes=1232, dtypes={"int32": 8, "int8": 1192}, per_channel=4),
        macs=1_000_000,
        metadata={"name": "birds", "labels": [f"bird {i}" for i in range(12)], "mean": [127.5], "author": None},
        metadata_error=None,
        sidecar=None,
    )


def test_text_of_rare_cases() -> None:
    text = inspection(_synthetic())
    assert "per-channel: 3 scales, axis 3" in text
    assert "[1, 8, 8, 3] (signature [-1, 8, 8, 3])" in text
    assert "in\\x1b[31mput\\n" in text and "\x1b" not in text  # a name cannot drive the terminal
    assert "version 3, 3 subgraphs (figures are subgraph 0's)" in text
    assert "description  none" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  ")}
    assert rows["CONV_2D"] == ["4", "v3,", "v5", "1,000,000"]
    assert rows["edgetpu-custom-op"] == ["1", "v1", "custom"]
    assert "1,200 values in 8 tensors (int32 8, int8 1,192; 4 per-channel), 1,232 bytes (1.2 KiB)" in text
    assert "labels  12: bird 0, bird 1," in text and "(+2 more)" in text
    assert "mean    127.5" in text
    assert "author" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_text_of_unreadable_metadata() -> None:
    text = inspection(replace(_synthetic(), metadata=None, metadata_error="the metadata is not TFLite Metadata"))
    assert text.endswith("metadata: unreadable (the metadata is not TFLite Metadata)")


def test_a_huge_file_is_judged_by_its_header_and_size_not_read(tmp_path: Path) -> None:
    """3 GiB (sparse: no disk used): refused from its first bytes and its size, at once."""
    zeros = tmp_path / "zeros.tflite"
    with zeros.open("wb") as stream:
        stream.truncate(3 * 1024**3)
    result = run_cli("inspect", zeros)
    assert result.exit_code == 2 and "is not a TFLite model" in result.stderr
    headed = tmp_path / "huge.tflite"
    with headed.open("wb") as stream:
        stream.write(b"\x1c\x00\x00\x00TFL3")
        stream.truncate(3 * 1024**3)
    result = run_cli("inspect", headed)
    assert result.exit_code == 2 and "FlatBuffers limit" in result.stderr
