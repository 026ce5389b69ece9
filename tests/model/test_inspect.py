"""``inspect_model`` on models from TensorFlow's own converter, and on files that are not models.

The models are built the way an outside user would: plain Keras models with named layers, converted with
``tf.lite.TFLiteConverter.from_keras_model``, no edgecnn and no sidecar. The oracles are independent of the code
under test: the interpreter (ai-edge-litert) for inputs and outputs, the official schema reader
(``ai_edge_litert.schema_py_generated``) for versions and per-channel scales, Keras's ``count_params()`` for the
weights, and a count by hand for the multiply-accumulates. Tests that convert are marked slow (the house rule);
the hostile inputs need no model and run in the fast subset.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError, ModelFormatError, UsageError
from edgecnn.model.inspect import Inspection, guess_layout, inspect_model

FLOAT_MACS = 6 * 6 * 4 * (3 * 3 * 1) + (6 * 6 * 4) * 3
"""The conv+dense model by hand: a 3x3 convolution of one channel into 4, valid padding (6x6 outputs), then a dense
layer from the 144 flattened values to 3 units."""


def _randomize(model: Any, seed: int) -> Any:
    """Give every weight a non-zero random value, as training would: the converter drops an all-zero bias, and
    merges identical constants, so Keras's initial weights would not be counted as Keras counts them."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _conv_dense(batch: int | None = 1) -> Any:
    import keras

    inputs = keras.Input((8, 8, 1), batch_size=batch, name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense")(x)
    return _randomize(keras.Model(inputs, outputs, name="conv_dense"), 0)


def _two_in_two_out() -> Any:
    import keras

    image = keras.Input((8, 8, 3), batch_size=1, name="image")
    extra = keras.Input((5,), batch_size=1, name="extra")
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Concatenate(name="join")([x, extra])
    label = keras.layers.Dense(4, activation="softmax", name="label")(x)
    score = keras.layers.Dense(1, name="score")(x)
    return _randomize(keras.Model([image, extra], [label, score], name="two_in_two_out"), 1)


def _nchw() -> Any:
    import keras

    inputs = keras.Input((3, 16, 16), batch_size=1, name="chw")
    x = keras.layers.Permute((2, 3, 1), name="to_hwc")(inputs)
    outputs = keras.layers.Conv2D(2, 3, name="conv")(x)
    return _randomize(keras.Model(inputs, outputs, name="nchw"), 2)


def _custom() -> Any:
    import keras
    import tensorflow as tf

    inputs = keras.Input((4, 4, 1), batch_size=1, name="x")
    outputs = keras.layers.Lambda(lambda t: tf.math.erfinv(t), name="erfinv")(inputs)
    return keras.Model(inputs, outputs, name="custom")


def _int8(tf: Any, model: Any) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    shape = (1, *model.inputs[0].shape[1:])
    converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # int8 I/O without input statistics: expected, the calibration sets them
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return converter.convert()


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each model's ``.tflite`` path by key, and ``params``: Keras's ``count_params()`` of each Keras model."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("inspect")
    keras_models = {
        "float": _conv_dense(),
        "dynamic": _conv_dense(batch=None),
        "two_io": _two_in_two_out(),
        "nchw": _nchw(),
    }
    contents = {key: tf.lite.TFLiteConverter.from_keras_model(m).convert() for key, m in keras_models.items()}
    contents["int8"] = _int8(tf, keras_models["float"])
    keras_models["int8"] = keras_models["float"]
    converter = tf.lite.TFLiteConverter.from_keras_model(_custom())
    converter.allow_custom_ops = True  # Erfinv has no builtin kernel: it stays a custom operator
    contents["custom"] = converter.convert()
    built: dict[str, Any] = {"params": {key: m.count_params() for key, m in keras_models.items()}}
    for key, content in contents.items():
        built[key] = out / f"{key}.tflite"
        built[key].write_bytes(content)
    return built


def _schema(path: Path) -> Any:
    """The official reader's view of the file."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)


# --------------------------------------------------------------------------------------------- real conversions


@pytest.mark.slow
def test_float_model_figures(converted: dict[str, Any]) -> None:
    path = converted["float"]
    result = inspect_model(path)
    assert isinstance(result, Inspection)
    content = path.read_bytes()
    assert (result.path, result.size_bytes, result.sha256) == (path, len(content), hashlib.sha256(content).hexdigest())
    official = _schema(path)
    assert result.schema_version == official.version == 3
    assert result.description == official.description.decode()
    assert result.subgraphs == 1

    assert result.parameters.values == converted["params"]["float"]  # 3*3*1*4 + 4 + 144*3 + 3
    assert result.parameters.dtypes == {"float32": converted["params"]["float"]}
    assert result.parameters.bytes == 4 * result.parameters.values
    assert (result.parameters.tensors, result.parameters.per_channel) == (4, 0)
    assert result.macs == FLOAT_MACS == 1728
    kinds = {k.name: k for k in result.operators}
    assert {name: k.count for name, k in kinds.items()} == {
        "CONV_2D": 1,
        "RESHAPE": 1,
        "FULLY_CONNECTED": 1,
        "SOFTMAX": 1,
    }
    assert (kinds["CONV_2D"].macs, kinds["FULLY_CONNECTED"].macs, kinds["SOFTMAX"].macs) == (1296, 432, 0)
    assert [k.name for k in result.operators] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]  # run order
    assert not any(k.custom for k in result.operators)
    assert result.operator_count == 4
    assert (result.layout, result.inputs[0].layout, result.outputs[0].layout) == ("NHWC", "NHWC", None)
    assert (result.sidecar, result.metadata, result.metadata_error) == (None, None, None)
    assert result.messages() == []


@pytest.mark.slow
@pytest.mark.parametrize("key", ["float", "int8", "two_io", "nchw", "custom"])
def test_operator_versions_match_the_official_reader(converted: dict[str, Any], key: str) -> None:
    from ai_edge_litert import schema_py_generated as schema

    official = _schema(converted[key])
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    expected: dict[str, set[int]] = {}
    counts: Counter[str] = Counter()
    for op in official.subgraphs[0].operators:
        code = official.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = code.customCode.decode() if builtin == schema.BuiltinOperator.CUSTOM else names[builtin]
        expected.setdefault(name, set()).add(code.version)
        counts[name] += 1
    result = inspect_model(converted[key])
    assert {k.name: set(k.versions) for k in result.operators} == expected
    assert {k.name: k.count for k in result.operators} == dict(counts)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["float", "int8", "dynamic", "two_io", "nchw"])
def test_inputs_and_outputs_match_the_interpreter(converted: dict[str, Any], key: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(converted[key]))
    result = inspect_model(converted[key])
    for tensors, details in [
        (result.inputs, interpreter.get_input_details()),
        (result.outputs, interpreter.get_output_details()),
    ]:
        assert len(tensors) == len(details)
        for tensor, detail in zip(tensors, details):
            assert (tensor.name, tensor.index) == (detail["name"], detail["index"])
            assert list(tensor.shape) == detail["shape"].tolist()
            assert list(tensor.signature) == detail["shape_signature"].tolist()
            assert tensor.dtype == np.dtype(detail["dtype"]).name
            scales = detail["quantization_parameters"]["scales"]
            if tensor.quantization is None:
                assert len(scales) == 0
                continue
            q = tensor.quantization
            assert (q.scale, q.zero_point) == (float(detail["quantization"][0]), int(detail["quantization"][1]))
            assert q.scales == len(scales) and q.per_channel == (len(scales) > 1)
            if q.per_channel:
                assert q.axis == detail["quantization_parameters"]["quantized_dimension"]


@pytest.mark.slow
def test_int8_weights_and_quantization(converted: dict[str, Any]) -> None:
    path = converted["int8"]
    result = inspect_model(path)
    (inp,), (out,) = result.inputs, result.outputs
    assert (inp.dtype, out.dtype) == ("int8", "int8")
    assert inp.quantization is not None and not inp.quantization.per_channel and inp.quantization.scales == 1
    assert inp.quantization.axis is None and inp.quantization.scale > 0
    p = result.parameters
    assert p.values == converted["params"]["int8"]  # the same weights, now int8 kernels and int32 biases
    assert set(p.dtypes) == {"int8", "int32"}
    assert p.dtypes["int32"] == 4 + 3  # the two biases
    assert p.bytes == p.dtypes["int8"] + 4 * p.dtypes["int32"]
    official = _schema(path)
    per_channel = sum(
        t.quantization is not None
        and t.quantization.scale is not None
        and len(t.quantization.scale) > 1
        and official.buffers[t.buffer].data is not None
        for t in official.subgraphs[0].tensors
    )
    assert p.per_channel == per_channel > 0  # the convolution's kernel and bias at least
    assert result.macs == FLOAT_MACS
    assert inspect_model(converted["float"]).size_bytes > result.size_bytes


@pytest.mark.slow
def test_two_inputs_two_outputs(converted: dict[str, Any]) -> None:
    result = inspect_model(converted["two_io"])
    assert len(result.inputs) == len(result.outputs) == 2
    layouts = {t.name: t.layout for t in result.inputs}
    assert sorted(layouts.values(), key=str) == ["NHWC", None]
    assert any("image" in name for name, layout in layouts.items() if layout == "NHWC")
    assert result.layout == "NHWC"
    assert sorted(tuple(t.shape) for t in result.outputs) == [(1, 1), (1, 4)]
    assert result.parameters.values == converted["params"]["two_io"]
    # conv: 6x6x2 outputs x 3x3x3 taps; the two dense layers read the 2 pooled + 5 extra values.
    assert result.macs == 6 * 6 * 2 * 27 + 7 * 4 + 7 * 1


@pytest.mark.slow
def test_nchw_input_is_recognised(converted: dict[str, Any]) -> None:
    result = inspect_model(converted["nchw"])
    assert result.inputs[0].shape == (1, 3, 16, 16)
    assert result.layout == result.inputs[0].layout == "NCHW"
    assert "TRANSPOSE" in {k.name for k in result.operators}
    assert result.macs == 14 * 14 * 2 * (3 * 3 * 3)
    assert result.parameters.values == converted["params"]["nchw"]


@pytest.mark.slow
def test_dynamic_batch_keeps_the_signature(converted: dict[str, Any]) -> None:
    (inp,) = inspect_model(converted["dynamic"]).inputs
    assert inp.dynamic and inp.signature == (-1, 8, 8, 1) and inp.shape == (1, 8, 8, 1)
    assert inp.to_dict()["signature"] == [-1, 8, 8, 1]


@pytest.mark.slow
def test_custom_operator_is_flagged(converted: dict[str, Any]) -> None:
    (kind,) = inspect_model(converted["custom"]).operators
    assert (kind.name, kind.custom, kind.count, kind.macs) == ("Erfinv", True, 1, 0)
    assert inspect_model(converted["custom"]).parameters.values == 0


@pytest.mark.slow
def test_to_dict_is_json_with_stable_keys(converted: dict[str, Any]) -> None:
    document = inspect_model(converted["int8"]).to_dict()
    assert list(document) == [
        "path", "size_bytes", "sha256", "description", "schema_version", "subgraphs", "sidecar", "inputs", "outputs",
        "layout", "operators", "operator_count", "parameters", "macs", "metadata", "metadata_error",
    ]  # fmt: skip
    assert json.loads(json.dumps(document)) == document
    assert document["inputs"][0]["quantization"]["scheme"] == "per-tensor"
    assert list(document["operators"][0]) == ["name", "count", "versions", "custom", "macs"]


@pytest.mark.slow
def test_sidecar_is_mentioned_not_required(converted: dict[str, Any], tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(converted["float"].read_bytes())
    assert inspect_model(model).sidecar is None
    (tmp_path / "model.json").write_text("{}")
    assert inspect_model(model).sidecar == tmp_path / "model.json"


# ------------------------------------------------------------------------------------------------- TFLite Metadata


def _with_metadata(content: bytes, metadata: bytes) -> bytes:
    """The model with ``metadata`` added as its TFLITE_METADATA entry, written with the official schema."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "TFLITE_METADATA", len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.slow
def test_metadata_is_read(converted: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("edgecnn.model.metadata")
    import flatbuffers

    from edgecnn.model import metadata_schema_py_generated as metadata_schema

    assert inspect_model(converted["float"]).metadata is None
    described = metadata_schema.ModelMetadataT()
    described.name, described.description, described.version = "tiny", "a conv and a dense layer", "v7"
    described.author, described.license = "edgecnn tests", "Apache-2.0"
    builder = flatbuffers.Builder(256)
    builder.Finish(described.Pack(builder), file_identifier=b"M001")
    path = tmp_path / "described.tflite"
    path.write_bytes(_with_metadata(converted["float"].read_bytes(), bytes(builder.Output())))
    result = inspect_model(path)
    assert result.metadata_error is None and result.metadata is not None
    assert (result.metadata["name"], result.metadata["description"], result.metadata["version"]) == (
        "tiny",
        "a conv and a dense layer",
        "v7",
    )
    assert (result.metadata["author"], result.metadata["license"]) == ("edgecnn tests", "Apache-2.0")
    assert result.macs == FLOAT_MACS  # the graph is read as before


@pytest.mark.slow
def test_damaged_metadata_still_shows_the_graph(converted: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("edgecnn.model.metadata")
    path = tmp_path / "damaged.tflite"
    path.write_bytes(_with_metadata(converted["float"].read_bytes(), b"\xff\xff\xff\x7fM001garbage"))
    result = inspect_model(path)
    assert result.metadata is None and result.metadata_error
    assert result.macs == FLOAT_MACS


# ------------------------------------------------------------------------------------------------- hostile input


def _one_line_error(path: Path, kind: type[EdgecnnError] = ModelFormatError) -> str:
    with pytest.raises(kind) as caught:
        inspect_model(path)
    message = str(caught.value)
    assert "\n" not in message and message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _one_line_error(tmp_path / "nope.tflite")


def test_folder(tmp_path: Path) -> None:
    assert "is a folder" in _one_line_error(tmp_path, UsageError)


def test_not_a_regular_file() -> None:
    assert "not a regular file" in _one_line_error(Path("/dev/null"), UsageError)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        (b"TFL3", "only 4 bytes"),
        (b"\x89HDF\r\n\x1a\n" + bytes(64), "HDF5"),
        (b'{"labels": []}', "JSON"),
        (bytes(range(256)) * 4, "no TFL3 identifier"),
    ],
)
def test_not_a_tflite(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    message = _one_line_error(path)
    assert str(path) in message and says in message


def test_a_keras_archive(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    assert "zip archive" in _one_line_error(path)


def test_random_bytes_behind_the_identifier(tmp_path: Path) -> None:
    """Whatever follows a TFL3 identifier, the answer is a model or a ModelFormatError, never a crash."""
    rng = random.Random(7)
    path = tmp_path / "random.tflite"
    for length in [9, 12, 16, 64, 300, 4096] * 20:
        body = bytes(rng.randrange(256) for _ in range(length - 8))
        # A root offset inside the file half of the time, so the reader gets past the first read.
        root = rng.randrange(8, length) if rng.random() < 0.5 else rng.randrange(2**32)
        path.write_bytes(struct.pack("<I", root) + b"TFL3" + body)
        try:
            inspect_model(path)
        except ModelFormatError as exc:
            assert "\n" not in str(exc)


@pytest.mark.slow
def test_truncated_and_flipped_models(converted: dict[str, Any], tmp_path: Path) -> None:
    content = converted["int8"].read_bytes()
    path = tmp_path / "damaged.tflite"
    for length in [*range(0, len(content), 41), *range(len(content) - 48, len(content))]:
        path.write_bytes(content[:length])
        assert str(path) in _one_line_error(path)
    rng = random.Random(99)
    for _ in range(300):
        damaged = bytearray(content)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        try:
            inspect_model(path)
        except ModelFormatError as exc:
            assert "\n" not in str(exc)


@pytest.mark.slow
def test_a_nan_scale_stays_valid_json(converted: dict[str, Any], tmp_path: Path) -> None:
    content = converted["int8"].read_bytes()
    scale = inspect_model(converted["int8"]).inputs[0].quantization.scale  # type: ignore[union-attr]
    stored = struct.pack("<f", scale)
    assert content.count(stored) == 1
    path = tmp_path / "nan.tflite"
    path.write_bytes(content.replace(stored, struct.pack("<f", float("nan"))))
    document = inspect_model(path).to_dict()
    assert document["inputs"][0]["quantization"]["scale"] is None
    json.dumps(document, allow_nan=False)


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((1, 3, 224, 224), "NCHW"),
        ((1, 1, 28, 28), "NCHW"),
        ((1, 224, 224, 3), "NHWC"),
        ((1, 28, 28, 1), "NHWC"),
        ((1, 3, 8, 3), "NHWC"),  # ambiguous: TFLite's own layout wins
        ((1, 10), None),
        ((1, 3, 16), None),
    ],
)
def test_guess_layout(shape: tuple[int, ...], layout: str | None) -> None:
    assert guess_layout(shape) == layout
