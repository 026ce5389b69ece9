"""The sidecar as hostile input (issue 13): the strict schema, bounded JSON, the check against the graph, and a
bundle written whole or not at all. The CLI side of the same cases is tests/cli/test_hostile_sidecars.py."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.graph import read_graph
from edgecnn.runtime import bundle
from edgecnn.runtime.bundle import (
    FORMAT,
    ModelInfo,
    check_bundle_output,
    check_model_io,
    load_metadata_json,
    parse_metadata,
    read_keras_info,
    read_tflite_info,
    sidecar_path,
    write_tflite,
)
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams

LABELS = [f"class{i}" for i in range(10)]
SOURCE = Path("model.json")


def tiny_model(
    *,
    input_shape: tuple[int, ...] = (1, 32, 32, 3),
    input_q: tuple[str, float, int] = ("int8", 1.0 / 255.0, -128),
    output_shape: tuple[int, ...] = (1, 10),
    output_q: tuple[str, float, int] = ("int8", 1.0 / 256.0, -128),
    dynamic_batch: bool = False,
) -> bytes:
    """A valid TFLite flatbuffer with one input and one output tensor and no operations: a graph to check metadata
    against (:func:`edgecnn.model.graph.read_graph` reads it; no interpreter runs it)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    types = {"int8": schema.TensorType.INT8, "uint8": schema.TensorType.UINT8, "float32": schema.TensorType.FLOAT32}

    def tensor(name: str, shape: tuple[int, ...], quant: tuple[str, float, int], dynamic: bool) -> Any:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), types[quant[0]], 0
        if dynamic:
            t.shapeSignature = [-1, *shape[1:]]
        if quant[1]:
            t.quantization = schema.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [quant[1]], [quant[2]]
        return t

    subgraph = schema.SubGraphT()
    subgraph.tensors = [tensor("in", input_shape, input_q, dynamic_batch), tensor("out", output_shape, output_q, False)]
    subgraph.inputs, subgraph.outputs, subgraph.operators = [0], [1], []
    model = schema.ModelT()
    model.version, model.subgraphs, model.buffers, model.operatorCodes = 3, [subgraph], [schema.BufferT()], []
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def good_dict() -> dict[str, Any]:
    """The metadata of an int8 32x32 RGB model with 10 classes, as a sidecar holds it."""
    return ModelInfo(
        labels=list(LABELS),
        preprocessing=Preprocessing(32, 32, 3),
        input_shape=[1, 32, 32, 3],
        input=QuantParams("int8", 1.0 / 255.0, -128),
        output=QuantParams("int8", 1.0 / 256.0, -128),
        quantization="int8",
        model_sha256="ab" * 32,
        extra={"tools": {"edgecnn": "0.1.0"}},
    ).to_dict()


def edited(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = good_dict()
    edit(data)
    return data


def refused(data: Any) -> str:
    """The message parse_metadata refuses ``data`` with (a ModelFormatError naming the file)."""
    with pytest.raises(ModelFormatError) as caught:
        parse_metadata(data, source=SOURCE, fix="re-run edgecnn convert")
    message = str(caught.value)
    assert "model.json" in message and "edgecnn convert" in message and "\n" not in message
    return message


# --- the schema -----------------------------------------------------------------------------------------------------


def test_good_metadata_round_trips() -> None:
    info = parse_metadata(good_dict(), source=SOURCE, fix="x")
    assert info.to_dict() == good_dict()
    nchw = edited(lambda d: d["preprocessing"].update(layout="NCHW", bgr=True, mean=[0.5, 0.4, 0.3], std=[0.2]))
    assert parse_metadata(nchw, source=SOURCE, fix="x").preprocessing.shape == (3, 32, 32)
    keras = edited(lambda d: d.update(input_shape=[-1, 32, 32, 3], quantization="keras", model_sha256=""))
    assert parse_metadata(keras, source=SOURCE, fix="x").input_shape == [-1, 32, 32, 3]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(labels="cat dog"), "labels"),
        (lambda d: d.update(labels={"0": "cat"}), "labels"),
        (lambda d: d.update(labels=[]), "labels"),
        (lambda d: d.update(labels=[*LABELS[:9], "class0"]), "listed twice"),
        (lambda d: d.update(labels=[*LABELS[:9], ""]), "label"),
        (lambda d: d.update(labels=[*LABELS[:9], 9]), "label"),
        (lambda d: d["preprocessing"].update(height="8"), "preprocessing.height"),
        (lambda d: d["preprocessing"].update(height=8.9), "preprocessing.height"),
        (lambda d: d["preprocessing"].update(height=32.0), "preprocessing.height"),
        (lambda d: d["preprocessing"].update(height=True), "preprocessing.height"),
        (lambda d: d["preprocessing"].update(width=0), "preprocessing.width"),
        (lambda d: d["preprocessing"].update(channels=2), "preprocessing.channels"),
        (lambda d: d["preprocessing"].update(channels=3.0), "preprocessing.channels"),
        (lambda d: d["preprocessing"].update(resize="lanczos"), "preprocessing.resize"),
        (lambda d: d["preprocessing"].update(std=[0.0]), "preprocessing.std"),
        (lambda d: d["preprocessing"].update(std=[-1.0]), "preprocessing.std"),
        (lambda d: d["preprocessing"].update(std=[1.0, 1.0]), "preprocessing.std"),
        (lambda d: d["preprocessing"].update(mean="0.5"), "preprocessing.mean"),
        (lambda d: d["preprocessing"].update(mean=[True]), "preprocessing.mean"),
        (lambda d: d["preprocessing"].update(bgr="yes"), "preprocessing.bgr"),
        (lambda d: d["preprocessing"].update(bgr=1), "preprocessing.bgr"),
        (lambda d: d["preprocessing"].update(layout="nchw"), "preprocessing.layout"),
        (lambda d: d["preprocessing"].update(heigth=32), "unknown key"),
        (lambda d: d.update(preprocessing=[32, 32, 3]), "preprocessing must be an object"),
        (lambda d: d.update(input_shape=["1", 32, 32, 3]), "input_shape"),
        (lambda d: d.update(input_shape=[1, 32.0, 32, 3]), "input_shape"),
        (lambda d: d.update(input_shape=[1, 32, -1, 3]), "input_shape"),
        (lambda d: d.update(input_shape="1x32x32x3"), "input_shape"),
        (lambda d: d["input"].update(dtype="int7"), "input.dtype"),
        (lambda d: d["input"].update(scale=-0.1), "input.scale"),
        (lambda d: d["input"].update(scale="0.1"), "input.scale"),
        (lambda d: d["input"].update(zero_point=200), "input.zero_point"),
        (lambda d: d["output"].update(zero_point=-129), "output.zero_point"),
        (lambda d: d["output"].update(zero_point=1.5), "output.zero_point"),
        (lambda d: d.update(output="int8"), "output must be an object"),
        (lambda d: d.update(quantization="int4"), "quantization"),
        (lambda d: d.update(quantization=None), "quantization"),
        (lambda d: d.update(model_sha256="xyz"), "model_sha256"),
        (lambda d: d.update(model_sha256=12), "model_sha256"),
        (lambda d: d["preprocessing"].update(channels=1, bgr=True), "BGR"),
    ],
)
def test_bad_fields_are_refused_by_name(edit: Callable[[dict[str, Any]], Any], field: str) -> None:
    assert field in refused(edited(edit))


def test_missing_and_foreign_metadata_are_refused() -> None:
    assert "'labels'" in refused(edited(lambda d: d.pop("labels")))
    assert "'preprocessing.height'" in refused(edited(lambda d: d["preprocessing"].pop("height")))
    assert "not a JSON object" in refused([1, 2])
    assert "format" in refused(edited(lambda d: d.update(format="x" * 10_000)))
    assert len(refused(edited(lambda d: d.update(format="x" * 10_000)))) < 400  # a huge value is cut short


# --- bounded JSON ---------------------------------------------------------------------------------------------------


def loads(text: str | bytes) -> Any:
    return load_metadata_json(text.encode() if isinstance(text, str) else text, source=SOURCE, fix="fix it")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "levels deep"),
        ('{"a": ' * 40 + "1" + "}" * 40, "levels deep"),
        ("[" * 100_000, "levels deep"),  # unbalanced: refused before the parser recurses into it
        ('{"x": ' + "9" * 5000 + "}", "5000 digits"),
        ('{"x": -' + "9" * 21 + "}", "21 digits"),
        ('{"x": NaN}', "NaN"),
        ('{"x": -Infinity}', "-Infinity"),
        ('{"x": 1e999}', "out of range"),
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_hostile_json_is_refused_in_one_line(text: str | bytes, reason: str) -> None:
    with pytest.raises(ModelFormatError) as caught:
        loads(text)
    message = str(caught.value)
    assert reason in message and "model.json" in message and "fix it" in message and "\n" not in message


def test_bounded_json_still_reads_real_metadata() -> None:
    # Brackets inside strings are not nesting; 20-digit integers and ordinary floats are fine.
    data = loads(json.dumps({"label": "[" * 500, "big": 2**63, "f": -1.5e-300, "deep": [[[[{"a": [1]}]]]]}))
    assert data["label"] == "[" * 500 and data["big"] == 2**63 and data["deep"] == [[[[{"a": [1]}]]]]
    assert loads(json.dumps(good_dict())) == good_dict()


def test_oversized_sidecar_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written_model: Path
) -> None:
    monkeypatch.setattr(bundle, "MAX_METADATA_BYTES", 1000)
    side = sidecar_path(written_model)
    side.write_bytes(side.read_bytes() + b" " * 1000)
    with pytest.raises(ModelFormatError, match=r"more than the .* edgecnn metadata can be"):
        read_tflite_info(written_model)


# --- the metadata against the graph ---------------------------------------------------------------------------------


@pytest.fixture
def written_model(tmp_path: Path) -> Path:
    """A bundle of a tiny valid graph and metadata that describes it."""
    model = tmp_path / "model.tflite"
    write_tflite(model, tiny_model(), parse_metadata(good_dict(), source=SOURCE, fix="x"))
    return model


def io_error(data: dict[str, Any], flatbuffer: bytes | None = None) -> str:
    info = parse_metadata(data, source=SOURCE, fix="x")
    with pytest.raises(ModelFormatError) as caught:
        check_model_io(info, read_graph(flatbuffer or tiny_model()), model="m.tflite")
    return str(caught.value)


def test_metadata_that_describes_the_graph_passes(written_model: Path) -> None:
    info = read_tflite_info(written_model)
    assert info.labels == LABELS
    # The scale went through float32 in the flatbuffer: equal within the tolerance, not bit for bit.
    assert read_graph(written_model).inputs[0].scale != info.input.scale
    dynamic = tiny_model(dynamic_batch=True)
    check_model_io(replace(info, input_shape=[8, 32, 32, 3]), read_graph(dynamic), model="m.tflite")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(input_shape=[4, 32, 32, 3]), "input of m.tflite is int8 [1, 32, 32, 3] but its sidecar"),
        (lambda d: d.update(input_shape=[1, 32, 32]), "but its sidecar says int8 [1, 32, 32]"),
        (lambda d: d["input"].update(dtype="uint8", zero_point=0), "but its sidecar says uint8"),
        (lambda d: d["input"].update(scale=0.004), "input of m.tflite is int8 scale 0.00392156886"),
        (lambda d: d["input"].update(zero_point=-127), "sidecar says int8 scale 0.00392156863 zero point -127"),
        (lambda d: d["output"].update(scale=1.0 / 255.0), "output of m.tflite is int8 scale 0.00390625"),
        (lambda d: d["output"].update(zero_point=0), "output of m.tflite"),
        (lambda d: d["output"].update(dtype="float32", scale=0.0, zero_point=0), "sidecar says float32"),
        (lambda d: d.update(labels=LABELS[:9]), "m.tflite outputs 10 scores but its sidecar lists 9 labels"),
        (lambda d: d.update(labels=[*LABELS, "extra"]), "outputs 10 scores but its sidecar lists 11 labels"),
    ],
)
def test_metadata_that_contradicts_the_graph_is_refused(edit: Callable[[dict[str, Any]], Any], expected: str) -> None:
    message = io_error(edited(edit))
    assert expected in message and "re-run edgecnn convert" in message


def test_preprocessing_must_make_the_inputs_shape() -> None:
    small = tiny_model(input_shape=(1, 8, 8, 1), input_q=("float32", 0.0, 0))
    data = edited(
        lambda d: d.update(input_shape=[1, 8, 8, 1], input={"dtype": "float32", "scale": 0.0, "zero_point": 0})
    )
    data["preprocessing"].update(height=16, width=8, channels=1)
    message = io_error(data, small)
    assert "preprocesses images to 16x8x1 (NHWC [16, 8, 1])" in message and "takes [8, 8, 1]" in message
    data["preprocessing"].update(height=8, layout="NCHW")
    assert "(NCHW [1, 8, 8])" in io_error(data, small)


def test_a_static_batch_must_match() -> None:
    info = parse_metadata(edited(lambda d: d.update(input_shape=[2, 32, 32, 3])), source=SOURCE, fix="x")
    with pytest.raises(ModelFormatError, match="sidecar says int8"):
        check_model_io(info, read_graph(tiny_model()), model="m.tflite")


def test_resigned_sidecar_that_contradicts_the_model_is_refused(written_model: Path) -> None:
    """The sha256 vouches for the model's bytes only: a sidecar edited after writing still has to fit the graph."""
    side = sidecar_path(written_model)
    data = json.loads(side.read_text())
    data["output"]["zero_point"] = 5
    side.write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match=r"output of model\.tflite"):
        read_tflite_info(written_model)


def test_corrupt_model_under_a_matching_sidecar(written_model: Path) -> None:
    corrupt = b"\x1c\x00\x00\x00TFL3" + bytes(56)
    write_tflite(written_model, corrupt, read_tflite_info(written_model))  # re-signed: the bytes reach the reader
    with pytest.raises(ModelFormatError, match="corrupt"):
        read_tflite_info(written_model)


def test_keras_metadata_must_agree_with_itself(tmp_path: Path) -> None:
    archive = tmp_path / "m.keras"
    data = edited(lambda d: d.update(input_shape=[-1, 28, 28, 3], quantization="keras", model_sha256=""))
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("edgecnn.json", json.dumps(data))
    with pytest.raises(ModelFormatError, match=r"input_shape \[-1, 28, 28, 3\] but preprocessing makes \[32, 32, 3\]"):
        read_keras_info(archive)


# --- a bundle is written whole or not at all ------------------------------------------------------------------------


def info_for_tiny() -> ModelInfo:
    return parse_metadata(good_dict(), source=SOURCE, fix="x")


def test_sidecar_path_that_is_a_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "side.json").mkdir()
    with pytest.raises(UsageError, match=r"sidecar at .*side\.json, which is a folder"):
        check_bundle_output(tmp_path / "side.tflite")
    with pytest.raises(UsageError, match="is a folder"):
        write_tflite(tmp_path / "side.tflite", tiny_model(), info_for_tiny())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side.json"]


def test_failed_rename_leaves_neither_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.tflite"
    real_replace = os.replace

    def fail_on_sidecar(src: Any, dst: Any) -> None:
        if Path(dst).suffix == ".json":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_sidecar)
    with pytest.raises(OSError, match="No space"):
        write_tflite(model, tiny_model(), info_for_tiny())
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_keeps_the_old_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.tflite"
    write_tflite(model, tiny_model(), info_for_tiny())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace

    def fail_on_sidecar(src: Any, dst: Any) -> None:
        if Path(dst).suffix == ".json" and ".tmp" in Path(src).name:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_sidecar)
    other = replace(info_for_tiny(), labels=[f"other{i}" for i in range(10)])
    with pytest.raises(OSError, match="No space"):
        write_tflite(model, tiny_model(output_q=("int8", 0.5, 0)), other)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    assert read_tflite_info(model).labels == LABELS


def test_written_pair_has_no_leftovers(tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    for _ in range(2):  # the second write replaces the first
        write_tflite(model, tiny_model(), info_for_tiny())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.tflite"]
    assert json.loads((tmp_path / "m.json").read_text())["format"] == FORMAT
