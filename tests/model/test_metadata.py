"""Reading standard TFLite Metadata (``edgecnn.model.metadata``), from good models and from hostile ones.

The models are synthetic and need no TensorFlow (so these tests are fast): a graph without operators written with
the official TFLite schema's generated object API (``ai_edge_litert.schema_py_generated``), its metadata written
with flatc's code of the official metadata schema, its associated files zipped with ``zipfile`` and appended. The
writer is not edgecnn's: that is tests/build/test_metadata.py's subject. Where the metadata is written with
tflite-support's own generated module (from its wheel), the reader's field slots are checked by an independent
implementation of the schema.
"""

from __future__ import annotations

import importlib.util
import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import envs
import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgecnn.errors import ModelFormatError
from edgecnn.model import metadata as md
from edgecnn.model import metadata_schema_py_generated as meta_fb
from edgecnn.model.flatbuffer import metadata_buffers, read_flatbuffer
from edgecnn.model.metadata import ModelMetadata, read_metadata

TFLITE_SUPPORT = "tflite-support==0.4.4"
LABELS = ("cat", "dog", "crème brûlée")

# ---------------------------------------------------------------------------------------------------------------
# Synthetic models and metadata, written with generated code of the official schemas.
# ---------------------------------------------------------------------------------------------------------------


def _tensor(name: str, shape: list[int], dtype: int) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, dtype, 0
    return tensor


def model_with(
    metadata: bytes | None,
    tail: bytes = b"",
    *,
    channels: int = 3,
    classes: int = 3,
    entries: list[tuple[str, int]] | None = None,
) -> bytes:
    """A one-input one-output model whose ``TFLITE_METADATA`` buffer holds ``metadata`` (none when None), with
    ``tail`` appended. ``entries`` replaces the metadata entries: (name, buffer index) pairs."""
    model = schema.ModelT()
    model.version, model.description = 3, "synthetic"
    model.buffers = [schema.BufferT(), schema.BufferT(data=np.frombuffer(b"2.3.0\0", np.uint8))]
    model.metadata = [schema.MetadataT(name="min_runtime_version", buffer=1)]
    if metadata is not None:
        model.buffers.append(schema.BufferT(data=np.frombuffer(metadata, np.uint8)))
        model.metadata.append(schema.MetadataT(name=md.METADATA_NAME, buffer=2))
    if entries is not None:
        model.metadata = [schema.MetadataT(name=name, buffer=index) for name, index in entries]
    graph = schema.SubGraphT()
    graph.tensors = [
        _tensor("pixels", [1, 8, 8, channels], schema.TensorType.FLOAT32),
        _tensor("scores", [1, classes], schema.TensorType.FLOAT32),
    ]
    graph.inputs, graph.outputs, graph.operators = [0], [1], []
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()) + tail


def zipped(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip of ``files`` on its own (offsets from its own start: readers must accept an archive behind data)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def labels_zip(labels: tuple[str, ...] = LABELS) -> bytes:
    return zipped({"labels.txt": ("\n".join(labels) + "\n").encode()})


def metadata_bytes(
    fb: ModuleType = meta_fb,
    *,
    fields: dict[str, str] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    color_space: int | None = None,
    output_name: str | None = "probability",
    labels_file: str | None = "labels.txt",
    identifier: bytes = md.IDENTIFIER,
    extra_units: bool = False,
) -> bytes:
    """A classifier's ModelMetadata flatbuffer, written with the generated module ``fb`` (object API)."""
    image = fb.TensorMetadataT()
    image.name = "image"
    image.content = fb.ContentT()
    image.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image.content.contentProperties = fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = fb.ColorSpaceType.RGB if color_space is None else color_space
    units = []
    if extra_units:  # a unit of another kind first: the reader must look past it
        threshold = fb.ProcessUnitT()
        threshold.optionsType = fb.ProcessUnitOptions.ScoreThresholdingOptions
        threshold.options = fb.ScoreThresholdingOptionsT()
        units.append(threshold)
    if mean is not None:
        unit = fb.ProcessUnitT()
        unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
        unit.options = fb.NormalizationOptionsT()
        unit.options.mean, unit.options.std = mean, std
        units.append(unit)
    image.processUnits = units or None
    scores = fb.TensorMetadataT()
    scores.name = output_name
    if labels_file is not None:
        descriptions = fb.AssociatedFileT()  # a file of another type first: the reader must look past it
        descriptions.name, descriptions.type = "notes.txt", fb.AssociatedFileType.DESCRIPTIONS
        labels = fb.AssociatedFileT()
        labels.name, labels.type = labels_file, fb.AssociatedFileType.TENSOR_AXIS_LABELS
        scores.associatedFiles = [descriptions, labels]
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [scores]
    root = fb.ModelMetadataT()
    for key, value in (fields or {}).items():
        setattr(root, key, value)
    root.subgraphMetadata = [subgraph]
    root.minParserVersion = "1.0.0"
    builder = flatbuffers.Builder(0)
    builder.Finish(root.Pack(builder), file_identifier=identifier)
    return bytes(builder.Output())


FIELDS = {"name": "digits", "description": "Ten digits.", "version": "v3", "author": "edgecnn", "license": "MIT"}


def good_model(**options: Any) -> bytes:
    meta = metadata_bytes(fields=FIELDS, mean=[127.5, 120.0, 110.0], std=[58.0, 57.0, 56.0], **options)
    return model_with(meta, labels_zip())


EXPECTED = ModelMetadata(
    **FIELDS,
    labels=LABELS,
    mean=(127.5, 120.0, 110.0),
    std=(58.0, 57.0, 56.0),
    color_space="RGB",
    score="probability",
)


@pytest.fixture(scope="module")
def tflite_support_fb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """tflite-support's own ``metadata_schema_py_generated`` (older flatc), imported by path from its wheel."""
    member = "tensorflow_lite_support/metadata/metadata_schema_py_generated.py"
    folder = tmp_path_factory.mktemp("tflite_support")
    with zipfile.ZipFile(envs.tflite_support_wheel()) as wheel:
        path = Path(wheel.extract(member, folder))
    spec = importlib.util.spec_from_file_location("tflite_support_metadata_schema_reader_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------
# Good models.
# ---------------------------------------------------------------------------------------------------------------


def test_every_field_is_read() -> None:
    assert read_metadata(good_model()) == EXPECTED


def test_metadata_written_by_tflite_supports_own_generated_code(tflite_support_fb: ModuleType) -> None:
    """An independent writer of the schema (tflite-support's generated module) and edgecnn's reader agree."""
    meta = metadata_bytes(tflite_support_fb, fields=FIELDS, mean=[127.5, 120.0, 110.0], std=[58.0, 57.0, 56.0])
    assert read_metadata(model_with(meta, labels_zip())) == EXPECTED


def test_the_readers_constants_are_the_schemas() -> None:
    """The enum values the reader keeps (it must not need the flatbuffers package) are the generated module's."""
    assert meta_fb.ContentProperties.ImageProperties == md._CONTENT_IMAGE
    assert meta_fb.ProcessUnitOptions.NormalizationOptions == md._UNIT_NORMALIZATION
    assert meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS == md._FILE_TENSOR_AXIS_LABELS
    spaces = meta_fb.ColorSpaceType
    assert {spaces.RGB: "RGB", spaces.GRAYSCALE: "GRAYSCALE"} == md._COLOR_SPACE_NAMES


def test_the_reader_needs_no_flatbuffers_package(tmp_path: Path) -> None:
    """The runtime side runs where only tflite-runtime is installed, without the flatbuffers package."""
    import subprocess
    import sys

    path = tmp_path / "model.tflite"
    path.write_bytes(good_model())
    code = (
        "import sys; sys.modules['flatbuffers'] = None\n"  # any import of it now fails
        "from pathlib import Path\n"
        "from edgecnn.model.metadata import read_metadata\n"
        f"print(read_metadata(Path({str(path)!r}).read_bytes()).labels)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(LABELS)


def test_a_model_without_metadata_reads_as_none() -> None:
    assert read_metadata(model_with(None)) is None


def test_optional_parts_left_out() -> None:
    meta = metadata_bytes(output_name="scores", labels_file=None, color_space=meta_fb.ColorSpaceType.UNKNOWN)
    assert read_metadata(model_with(meta)) == ModelMetadata()


@pytest.mark.parametrize(
    ("name", "score"),
    [("probability", "probability"), ("Probabilities", "probability"), ("logit", "logit"), ("logits", "logit")],
)
def test_the_output_name_says_what_the_scores_are(name: str, score: str) -> None:
    meta = metadata_bytes(output_name=name, labels_file=None)
    result = read_metadata(model_with(meta))
    assert result is not None and result.score == score


def test_grayscale_and_one_normalization_for_all_channels() -> None:
    meta = metadata_bytes(mean=[0.0], std=[255.0], color_space=meta_fb.ColorSpaceType.GRAYSCALE, extra_units=True)
    result = read_metadata(model_with(meta, labels_zip(), channels=1))
    assert result is not None
    assert (result.mean, result.std, result.color_space) == ((0.0,), (255.0,), "GRAYSCALE")


def test_labels_as_mediapipe_splits_them() -> None:
    """One a line; a final newline starts no label; CRLF line ends are not part of the label."""
    data = "a\r\nb b\r\n\u00e9\r\n".encode()
    result = read_metadata(model_with(metadata_bytes(), zipped({"labels.txt": data})))
    assert result is not None and result.labels == ("a", "b b", "\u00e9")
    result = read_metadata(model_with(metadata_bytes(), zipped({"labels.txt": b"a\nb"})))
    assert result is not None and result.labels == ("a", "b")


def test_a_deflated_labels_file_reads_too() -> None:
    tail = zipped({"other.bin": b"\0" * 100, "labels.txt": b"x\ny\nz\n"}, compression=zipfile.ZIP_DEFLATED)
    result = read_metadata(model_with(metadata_bytes(), tail))
    assert result is not None and result.labels == ("x", "y", "z")


def test_to_dict_is_json_ready() -> None:
    import json

    result = read_metadata(good_model())
    assert result is not None
    as_dict = result.to_dict()
    assert as_dict["labels"] == list(LABELS) and as_dict["mean"] == [127.5, 120.0, 110.0]
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_metadata_buffers_lists_every_entry_and_the_first_of_a_name_wins() -> None:
    meta = metadata_bytes()
    content = model_with(meta, entries=[("min_runtime_version", 1), (md.METADATA_NAME, 2), (md.METADATA_NAME, 1)])
    assert metadata_buffers(content) == {"min_runtime_version": b"2.3.0\0", md.METADATA_NAME: meta}
    read_flatbuffer(content)  # the rest of the model still reads as before


# ---------------------------------------------------------------------------------------------------------------
# Hostile models: each a ModelFormatError with one line, nothing else.
# ---------------------------------------------------------------------------------------------------------------


def _fails(content: bytes, *words: str) -> str:
    with pytest.raises(ModelFormatError) as caught:
        read_metadata(content)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_not_a_model() -> None:
    _fails(b"PK\3\4 not a model at all", "not a TFLite model")
    _fails(b"", "not a TFLite model")


def test_a_metadata_entry_naming_a_missing_buffer() -> None:
    _fails(model_with(metadata_bytes(), entries=[(md.METADATA_NAME, 7)]), "buffer 7")


def test_truncated_metadata() -> None:
    meta = metadata_bytes(fields=FIELDS, mean=[1.0], std=[2.0])
    for cut in (4, 8, 12, 20, len(meta) // 2, len(meta) - 8):
        _fails(model_with(meta[:cut], labels_zip()), md.METADATA_NAME)


def test_empty_and_garbage_metadata() -> None:
    _fails(model_with(b""), "empty")
    rng = np.random.default_rng(0)
    for _ in range(20):
        garbage = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        _fails(model_with(garbage, labels_zip()), md.METADATA_NAME)
    garbage = bytearray(rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
    garbage[4:8] = md.IDENTIFIER  # the right identifier on garbage: the bounds checks must catch it
    with pytest.raises(ModelFormatError):
        read_metadata(model_with(bytes(garbage), labels_zip()))


def test_a_wrong_identifier() -> None:
    _fails(model_with(metadata_bytes(identifier=b"M002")), "no M001 identifier")
    _fails(model_with(model_with(None)), "no M001 identifier")  # a model inside a model


def test_an_offset_that_points_backwards_out_of_the_buffer() -> None:
    """A negative soffset would make the generated reader read from the buffer's end: here it is an error."""
    meta = bytearray(metadata_bytes())
    root = int.from_bytes(meta[0:4], "little")
    meta[root : root + 4] = (-(2**31) + 5).to_bytes(4, "little", signed=True)
    _fails(model_with(bytes(meta)), "outside")


@pytest.mark.parametrize(
    ("mean", "std", "words"),
    [
        ([1.0, 2.0], [1.0], "2 and 1 values"),
        ([], [], "0 and 0 values"),
        ([1.0], [0.0], "std > 0"),
        ([1.0], [-2.0], "std > 0"),
        ([float("nan")], [1.0], "finite"),
        ([1.0] * 17, [1.0] * 17, "17 and 17"),
    ],
)
def test_impossible_normalizations(mean: list[float], std: list[float], words: str) -> None:
    _fails(model_with(metadata_bytes(mean=mean, std=std)), words)


@pytest.mark.parametrize(
    ("tail", "words"),
    [
        (b"", "cannot be read"),  # labels named, no zip at all
        (b"PK\x05\x06" + b"\xff" * 18, "cannot be read"),  # an end record pointing nowhere
        (zipped({"other.txt": b"a\n"}), "no such file"),
        (zipped({"labels.txt": b"caf\xe9\n"}), "not UTF-8"),
        (zipped({"labels.txt": b""}), "empty"),
        (zipped({"labels.txt": b"a\n"}, compression=zipfile.ZIP_BZIP2), "zip method 12"),
    ],
)
def test_bad_associated_files(tail: bytes, words: str) -> None:
    _fails(model_with(metadata_bytes(), tail), "labels", words)


def test_garbage_appended_zip() -> None:
    rng = np.random.default_rng(1)
    archive = bytearray(labels_zip())
    for _ in range(50):
        damaged = bytearray(archive)
        for at in rng.integers(0, len(damaged), 4):
            damaged[at] ^= 1 << int(rng.integers(0, 8))
        try:
            result = read_metadata(model_with(metadata_bytes(), bytes(damaged)))
        except ModelFormatError as exc:
            assert "\n" not in str(exc)
        else:
            assert result is not None and result.labels is not None


def test_a_corrupt_crc_is_caught() -> None:
    archive = bytearray(labels_zip())
    at = archive.index(b"cat")
    archive[at] = ord("b")  # the data changes, its CRC does not
    _fails(model_with(metadata_bytes(), bytes(archive)), "cannot be read", "CRC")


def test_oversized_labels() -> None:
    many = "\n".join(str(i) for i in range(md.MAX_LABELS + 1)).encode()
    _fails(model_with(metadata_bytes(), zipped({"labels.txt": many})), f"over {md.MAX_LABELS}")
    huge = b"x" * (md.MAX_LABELS_BYTES + 1)
    _fails(model_with(metadata_bytes(), zipped({"labels.txt": huge}, zipfile.ZIP_DEFLATED)), "bytes")


def test_a_lying_size_in_the_zip_is_not_trusted() -> None:
    """A member that says it is small but inflates to more than the limit stops at the limit."""
    huge = b"x" * (md.MAX_LABELS_BYTES + 10)
    archive = bytearray(zipped({"labels.txt": huge}, zipfile.ZIP_DEFLATED))
    size = len(huge).to_bytes(4, "little")
    small = (10).to_bytes(4, "little")
    archive = bytearray(bytes(archive).replace(size, small))  # the local and the central header's file sizes
    _fails(model_with(metadata_bytes(), bytes(archive)), "labels")


def _fuzz(content: bytes, start: int, end: int, seed: int, rounds: int, read: Callable[[bytes], Any]) -> int:
    """Flip 1 to 4 random bits of ``content[start:end]`` ``rounds`` times; return how many reads still succeeded."""
    rng = random.Random(seed)
    succeeded = 0
    for _ in range(rounds):
        damaged = bytearray(content)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
        try:
            result = read(bytes(damaged))
        except ModelFormatError as exc:
            assert "\n" not in str(exc)
        else:
            assert result is None or isinstance(result, ModelMetadata)
            succeeded += 1
    return succeeded


def test_fuzzing_the_metadata_buffer_gives_a_result_or_a_model_format_error() -> None:
    meta = metadata_bytes(fields=FIELDS, mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
    content = model_with(meta, labels_zip())
    start = content.index(meta)
    succeeded = _fuzz(content, start, start + len(meta), seed=0, rounds=200, read=read_metadata)
    assert 0 < succeeded < 200  # some flips land in strings or padding, some break the structure


def test_fuzzing_the_zip_and_the_model_gives_a_result_or_a_model_format_error() -> None:
    content = good_model()
    tail = len(labels_zip())
    _fuzz(content, len(content) - tail, len(content), seed=1, rounds=200, read=read_metadata)
    _fuzz(content, 0, len(content) - tail, seed=2, rounds=200, read=read_metadata)
