"""Writing standard TFLite Metadata (``edgecnn.build.metadata.with_metadata``), checked by independent readers.

(Named after the function: a second ``test_metadata.py`` beside tests/model's would collide in pytest's
``prepend`` import mode, these folders having no ``__init__.py``.)

The oracles: tflite-support's own generated metadata reader and its C++ parser-version function (both from the
tflite-support 0.4.4 wheel, imported by path), the official TFLite schema reader
(``ai_edge_litert.schema_py_generated``), ``zipfile``, and the interpreter, which must give the same outputs after
embedding. Most tests use synthetic graphs written with the official schema's object API (fast, no TensorFlow);
the interpreter tests convert small Keras models with TensorFlow's converter and are marked slow (the house rule).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import envs
import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgecnn.build.metadata import MIN_PARSER_VERSION, with_metadata
from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.flatbuffer import metadata_buffers
from edgecnn.model.metadata import LABELS_FILE, METADATA_NAME, ModelMetadata, read_metadata

TFLITE_SUPPORT = "tflite-support==0.4.4"
METADATA_MODULE = "tensorflow_lite_support/metadata/metadata_schema_py_generated.py"
VERSION_MODULE = "tensorflow_lite_support/metadata/cc/python/_pywrap_metadata_version.so"

FULL = ModelMetadata(
    name="digits",
    description="Handwritten digits, ten classes.",
    version="v3",
    author="edgecnn tests",
    license="Apache-2.0",
    labels=("zero", "one", "two"),
    mean=(127.5, 120.0, 110.0),
    std=(58.0, 57.0, 56.0),
    color_space="RGB",
    score="probability",
)

# ---------------------------------------------------------------------------------------------------------------
# Synthetic models (the official schema's object API) and the tflite-support oracles.
# ---------------------------------------------------------------------------------------------------------------

FLOAT32, UINT8, INT8 = schema.TensorType.FLOAT32, schema.TensorType.UINT8, schema.TensorType.INT8


def synthetic(
    inputs: list[tuple[str, list[int], int]] | None = None, outputs: list[tuple[str, list[int], int]] | None = None
) -> bytes:
    """A graph without operators: its inputs and outputs, one odd-sized constant, a ``min_runtime_version`` entry."""
    inputs = inputs or [("pixels", [1, 8, 8, 3], FLOAT32)]
    outputs = outputs or [("scores", [1, 3], FLOAT32)]
    model = schema.ModelT()
    model.version, model.description = 3, "synthetic"
    model.buffers = [
        schema.BufferT(),
        schema.BufferT(data=np.frombuffer(b"2.3.0\0", np.uint8)),
        schema.BufferT(data=np.arange(37, dtype=np.uint8)),  # an odd size, so later buffers are misaligned
        schema.BufferT(data=np.arange(64, dtype=np.uint8)),
    ]
    model.metadata = [schema.MetadataT(name="min_runtime_version", buffer=1)]
    graph = schema.SubGraphT()
    graph.tensors = []
    for name, shape, dtype in [*inputs, *outputs, ("weights", [37], UINT8), ("bias", [16], FLOAT32)]:
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type = name, shape, dtype
        tensor.buffer = {"weights": 2, "bias": 3}.get(name, 0)
        graph.tensors.append(tensor)
    graph.inputs = list(range(len(inputs)))
    graph.outputs = list(range(len(inputs), len(inputs) + len(outputs)))
    graph.operators = []
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_support_member(member: str, folder: Path) -> Path:
    """A file of tflite-support's wheel, extracted into ``folder``."""
    with zipfile.ZipFile(envs.tflite_support_wheel()) as wheel:
        return Path(wheel.extract(member, folder))


def import_path(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tflite_support_fb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """tflite-support's own ``metadata_schema_py_generated``, imported by path from its wheel."""
    folder = tmp_path_factory.mktemp("tflite_support")
    return import_path("tflite_support_metadata_schema_writer_test", tflite_support_member(METADATA_MODULE, folder))


def official_metadata(content: bytes, fb: ModuleType) -> Any:
    """The ``ModelMetadataT`` tflite-support's reader makes of the model's TFLITE_METADATA buffer."""
    model = schema.Model.GetRootAs(content, 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    assert names.count(METADATA_NAME) == 1
    buffer = model.Buffers(model.Metadata(names.index(METADATA_NAME)).Buffer()).DataAsNumpy().tobytes()
    assert fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    return fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buffer, 0))


def end_records(content: bytes) -> int:
    return content.count(b"PK\x05\x06")


# ---------------------------------------------------------------------------------------------------------------
# What is written.
# ---------------------------------------------------------------------------------------------------------------


def test_every_field_round_trips() -> None:
    assert read_metadata(with_metadata(synthetic(), FULL)) == FULL


@pytest.mark.parametrize(
    "meta",
    [
        ModelMetadata(),
        ModelMetadata(labels=("a", "b", "c")),
        replace(FULL, mean=(127.5,), std=(127.5,), score="logit"),
        replace(FULL, score=None, color_space=None),
        replace(FULL, labels=None, mean=None, std=None),
    ],
)
def test_partial_metadata_round_trips(meta: ModelMetadata) -> None:
    result = read_metadata(with_metadata(synthetic(), meta))
    inferred = replace(meta, color_space=meta.color_space or "RGB")  # three channels: RGB when not given
    assert result == inferred


def test_grayscale_is_inferred_from_one_channel() -> None:
    meta = replace(FULL, mean=(0.0,), std=(255.0,), color_space=None)
    content = with_metadata(synthetic(inputs=[("gray", [1, 8, 8, 1], FLOAT32)]), meta)
    assert read_metadata(content) == replace(meta, color_space="GRAYSCALE")


def test_tflite_supports_own_reader_parses_it(tflite_support_fb: ModuleType) -> None:
    fb = tflite_support_fb
    meta = official_metadata(with_metadata(synthetic(), FULL), fb)
    assert (meta.name, meta.description, meta.version, meta.author, meta.license) == (
        b"digits",
        b"Handwritten digits, ten classes.",
        b"v3",
        b"edgecnn tests",
        b"Apache-2.0",
    )
    assert meta.minParserVersion == MIN_PARSER_VERSION.encode()
    assert meta.associatedFiles is None  # the labels belong to the output tensor, not to the model
    (subgraph,) = meta.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.name == b"image"
    assert image.content.contentPropertiesType == fb.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == fb.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [127.5, 120.0, 110.0]
    assert list(unit.options.std) == [58.0, 57.0, 56.0]
    # A float input: the normalized range of pixels 0 and 255, per channel, as tflite-support's writer states it.
    np.testing.assert_allclose(image.stats.min, [-127.5 / 58, -120 / 57, -110 / 56], rtol=1e-6)
    np.testing.assert_allclose(image.stats.max, [127.5 / 58, 135 / 57, 145 / 56], rtol=1e-6)
    (scores,) = subgraph.outputTensorMetadata
    assert scores.name == b"probability"
    assert scores.content.contentPropertiesType == fb.ContentProperties.FeatureProperties
    assert (list(scores.stats.min), list(scores.stats.max)) == ([0.0], [1.0])
    (labels,) = scores.associatedFiles
    assert (labels.name, labels.type) == (LABELS_FILE.encode(), fb.AssociatedFileType.TENSOR_AXIS_LABELS)


def test_the_minimum_parser_version_is_what_tflite_support_computes(tmp_path: Path) -> None:
    """tflite-support's populator writes ``GetMinimumMetadataParserVersion`` of the metadata: the same here."""
    path = tflite_support_member(VERSION_MODULE, tmp_path)
    try:
        version = import_path("_pywrap_metadata_version", path)
    except ImportError as exc:  # a compiled module for CPython 3.11 on x86-64 Linux only
        pytest.skip(f"tflite-support's compiled parser-version module does not load here: {exc}")
    for meta in (FULL, replace(FULL, labels=None), ModelMetadata()):
        buffer = metadata_buffers(with_metadata(synthetic(), meta))[METADATA_NAME]
        assert version.GetMinimumMetadataParserVersion(buffer) == MIN_PARSER_VERSION


def test_one_tensor_entry_per_model_input_and_output(tflite_support_fb: ModuleType) -> None:
    """tflite-support requires one TensorMetadata per input and output; the labels go to the chosen output."""
    model = synthetic(
        inputs=[("extra", [1, 5], FLOAT32), ("pixels", [1, 8, 8, 3], UINT8)],
        outputs=[("box", [1, 4], FLOAT32), ("scores", [1, 3], UINT8)],
    )
    content = with_metadata(model, FULL, input_index=1, output_index=1)
    (subgraph,) = official_metadata(content, tflite_support_fb).subgraphMetadata
    assert [t.name for t in subgraph.inputTensorMetadata] == [b"extra", b"image"]
    assert [t.name for t in subgraph.outputTensorMetadata] == [b"box", b"probability"]
    assert subgraph.outputTensorMetadata[0].associatedFiles is None
    # uint8 tensors: the raw range, as tflite-support's writer gives it.
    assert list(subgraph.inputTensorMetadata[1].stats.max) == [255.0]
    assert list(subgraph.outputTensorMetadata[1].stats.max) == [255.0]
    assert read_metadata(content) == FULL


def test_the_labels_zip_is_what_mediapipe_reads() -> None:
    """Stored (MediaPipe refuses compressed members), fixed dates, offsets from the file's start like
    tflite-support's (zipfile in append mode), and only the labels file."""
    flat = with_metadata(synthetic(), replace(FULL, labels=None))
    content = with_metadata(synthetic(), FULL)
    assert content.startswith(flat[:4]) and end_records(content) == 1
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        (info,) = archive.infolist()
        assert (info.filename, info.compress_type, info.date_time) == (
            LABELS_FILE,
            zipfile.ZIP_STORED,
            (1980, 1, 1, 0, 0, 0),
        )
        assert archive.read(info) == b"zero\none\ntwo\n"
    end = content.rindex(b"PK\x05\x06")
    directory_size, directory_offset = struct.unpack_from("<II", content, end + 12)
    assert directory_offset + directory_size == end  # counted from the start of the model file
    assert content[directory_offset : directory_offset + 4] == b"PK\x01\x02"


def test_embedding_again_replaces_metadata_and_zip() -> None:
    model = synthetic()
    other = replace(FULL, name="other", labels=("x", "y", "z"), score="logit")
    twice = with_metadata(with_metadata(model, FULL), other)
    assert twice == with_metadata(model, other)  # nothing of the first is left
    assert list(metadata_buffers(twice)) == ["min_runtime_version", METADATA_NAME]
    assert end_records(twice) == 1
    assert read_metadata(twice) == other
    once = with_metadata(model, FULL)
    assert with_metadata(once, FULL) == once  # the same metadata again: the same bytes
    dropped = with_metadata(once, replace(FULL, labels=None))
    assert end_records(dropped) == 0 and read_metadata(dropped) == replace(FULL, labels=None)


def test_the_bytes_are_deterministic(tmp_path: Path) -> None:
    model = synthetic()
    content = with_metadata(model, FULL)
    assert with_metadata(model, FULL) == content
    (tmp_path / "model.tflite").write_bytes(model)
    code = (
        "import hashlib\n"
        "from pathlib import Path\n"
        "from edgecnn.build.metadata import with_metadata\n"
        "from edgecnn.model.metadata import ModelMetadata\n"
        f"model = Path({str(tmp_path / 'model.tflite')!r}).read_bytes()\n"
        f"print(hashlib.sha256(with_metadata(model, {FULL!r})).hexdigest())\n"  # a dataclass's repr builds it
    )
    for seed in ("1", "2"):  # another process, another hash seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == hashlib.sha256(content).hexdigest()


def test_the_rest_of_the_model_is_kept() -> None:
    model = synthetic()
    content = with_metadata(model, FULL)
    before, after = schema.ModelT.InitFromPackedBuf(model, 0), schema.ModelT.InitFromPackedBuf(content, 0)
    assert metadata_buffers(content)["min_runtime_version"] == b"2.3.0\0"
    assert len(after.buffers) == len(before.buffers) + 1
    for old, new in zip(before.buffers, after.buffers):
        assert (old.data is None) == (new.data is None)
        if old.data is not None:
            assert np.array_equal(old.data, new.data)
    assert [t.name for t in after.subgraphs[0].tensors] == [t.name for t in before.subgraphs[0].tensors]
    assert [t.buffer for t in after.subgraphs[0].tensors] == [t.buffer for t in before.subgraphs[0].tensors]


def test_buffers_are_16_byte_aligned() -> None:
    """The schema's ``force_align: 16``, which the generated Python object API would drop."""
    content = with_metadata(synthetic(), FULL)
    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            table = buffer._tab
            assert table.Vector(table.Offset(4)) % 16 == 0, f"buffer {i}"


# ---------------------------------------------------------------------------------------------------------------
# What is refused.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        (replace(FULL, labels=()), "labels are empty"),
        (replace(FULL, labels=("a", "b")), "2 labels"),
        (replace(FULL, labels=("a", "b\nc", "d")), "line break"),
        (replace(FULL, labels=("a", "", "d")), "empty"),
        (replace(FULL, mean=(1.0, 2.0), std=(1.0, 2.0)), "has 2 values"),
        (replace(FULL, mean=(1.0,), std=None), "both mean and std"),
        (replace(FULL, mean=(1.0,), std=(1.0, 2.0, 3.0)), "1 and 3 values"),
        (replace(FULL, std=(1.0, 0.0, 1.0)), "positive"),
        (replace(FULL, mean=(float("inf"),), std=(1.0,)), "finite"),
        (replace(FULL, color_space="BGR"), "not one of RGB, GRAYSCALE"),
        (replace(FULL, color_space="GRAYSCALE"), "does not fit"),
        (replace(FULL, score="softmax"), "not one of probability, logit"),
    ],
)
def test_bad_metadata_is_a_usage_error(meta: ModelMetadata, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        with_metadata(synthetic(), meta)


def test_bad_indices_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="input index 1"):
        with_metadata(synthetic(), FULL, input_index=1)
    with pytest.raises(UsageError, match="output index -1"):
        with_metadata(synthetic(), FULL, output_index=-1)


def test_a_model_that_is_not_one_is_a_model_format_error() -> None:
    with pytest.raises(ModelFormatError):
        with_metadata(b"not a model", FULL)
    with pytest.raises(ModelFormatError):
        with_metadata(synthetic()[:40], FULL)


# ---------------------------------------------------------------------------------------------------------------
# Real conversions: the interpreter gives the same outputs after embedding.
# ---------------------------------------------------------------------------------------------------------------


def _keras_classifier() -> Any:
    import keras

    inputs = keras.Input((8, 8, 3), batch_size=1, name="pixels")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense")(x)
    model = keras.Model(inputs, outputs, name="tiny_classifier")
    rng = np.random.default_rng(0)  # trained-looking weights: the converter drops all-zero biases
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def converted() -> dict[str, bytes]:
    """A tiny classifier converted to float and to full int8 (int8 I/O)."""
    import tensorflow as tf

    model = _keras_classifier()
    models = {"float": tf.lite.TFLiteConverter.from_keras_model(model).convert()}
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)
    converter.representative_dataset = lambda: ([rng.random((1, 8, 8, 3), dtype=np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # int8 I/O without input statistics: expected, the calibration sets them
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        models["int8"] = converter.convert()
    return models


def _outputs(content: bytes, batch: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for image in batch:
        interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(target["index"]).copy())
    return results


@pytest.mark.slow
@pytest.mark.parametrize("key", ["float", "int8"])
def test_the_model_runs_the_same_after_embedding(converted: dict[str, bytes], key: str) -> None:
    model = converted[key]
    content = with_metadata(model, FULL)
    assert read_metadata(content) == FULL
    assert metadata_buffers(content).keys() >= metadata_buffers(model).keys()  # the converter's entries are kept
    rng = np.random.default_rng(2)
    batch = rng.random((4, 8, 8, 3)) if key == "float" else rng.integers(-128, 128, (4, 8, 8, 3))
    for before, after in zip(_outputs(model, batch), _outputs(content, batch)):
        assert np.array_equal(before, after)


@pytest.mark.slow
def test_a_converted_model_parses_with_tflite_supports_reader(
    converted: dict[str, bytes], tflite_support_fb: ModuleType
) -> None:
    meta = official_metadata(with_metadata(converted["int8"], FULL), tflite_support_fb)
    (subgraph,) = meta.subgraphMetadata
    assert subgraph.inputTensorMetadata[0].stats is None  # an int8 input: tflite-support states no range either
    assert subgraph.outputTensorMetadata[0].associatedFiles[0].name == LABELS_FILE.encode()
