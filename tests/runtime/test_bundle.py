"""Unit tests for edgecnn.runtime.bundle (model + sidecar metadata) and edgecnn.runtime.files (atomic writes)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from test_sidecar_schema import tiny_model

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.runtime.bundle import (
    FORMAT,
    KERAS_ENTRY,
    ModelInfo,
    check_model_file,
    embed_keras_info,
    read_keras_info,
    read_tflite_info,
    sidecar_path,
    write_tflite,
)
from edgecnn.runtime.files import atomic_path, check_output_path, write_bytes_atomic
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# A valid graph that make_info() describes: reading a sidecar checks it against the model (issue 13).
MODEL_BYTES = tiny_model()


def make_info(**changes: object) -> ModelInfo:
    """A typical int8 model's metadata."""
    info = ModelInfo(
        labels=list(LABELS),
        preprocessing=Preprocessing(32, 32, 3),
        input_shape=[1, 32, 32, 3],
        input=QuantParams("int8", 1.0 / 255.0, -128),
        output=QuantParams("int8", 1.0 / 256.0, -128),
        quantization="int8",
        extra={"source_sha256": "ab" * 32, "tools": {"edgecnn": "0.1.0"}},
    )
    return replace(info, **changes)


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, ModelInfo]:
    """A model.tflite and its model.json written with write_tflite."""
    model = tmp_path / "model.tflite"
    return model, write_tflite(model, MODEL_BYTES, make_info())


def edit_sidecar(model: Path, edit) -> None:
    """Rewrite the sidecar's JSON through ``edit(data)``."""
    side = sidecar_path(model)
    data = json.loads(side.read_text())
    edit(data)
    side.write_text(json.dumps(data))


# --- write_tflite / read_tflite_info ----------------------------------------------------------------------


def test_write_then_read_round_trip(written: tuple[Path, ModelInfo]) -> None:
    """read_tflite_info returns what write_tflite wrote, with the sha256 of the model bytes."""
    model, info = written
    assert model.read_bytes() == MODEL_BYTES
    assert info.model_sha256 == hashlib.sha256(MODEL_BYTES).hexdigest()
    assert info == replace(make_info(), model_sha256=hashlib.sha256(MODEL_BYTES).hexdigest())
    back = read_tflite_info(model)
    assert back == info
    assert back.extra == {"source_sha256": "ab" * 32, "tools": {"edgecnn": "0.1.0"}}
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.json", "model.tflite"]  # no temp files


def test_sidecar_path_is_model_json(tmp_path: Path) -> None:
    """The sidecar sits next to the model with a .json suffix."""
    assert sidecar_path(tmp_path / "model.tflite") == tmp_path / "model.json"
    assert sidecar_path("out/net.int8.tflite") == Path("out/net.int8.json")


def test_sidecar_content(written: tuple[Path, ModelInfo]) -> None:
    """The sidecar holds the format tag, the metadata and the extra keys at top level."""
    model, info = written
    data = json.loads(sidecar_path(model).read_text())
    assert data["format"] == FORMAT
    assert data["labels"] == LABELS
    assert data["model_sha256"] == info.model_sha256
    assert data["input"] == {"dtype": "int8", "scale": 1.0 / 255.0, "zero_point": -128}
    assert data["source_sha256"] == "ab" * 32


def test_missing_sidecar(written: tuple[Path, ModelInfo]) -> None:
    """No model.json: ModelFormatError telling to run edgecnn convert."""
    model, _ = written
    sidecar_path(model).unlink()
    with pytest.raises(ModelFormatError) as info:
        read_tflite_info(model)
    assert "model.json" in str(info.value)
    assert "edgecnn convert" in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2, 3]", "\xff\xfe"])
def test_invalid_json_sidecar(written: tuple[Path, ModelInfo], text: str) -> None:
    """A sidecar that is not a JSON object: ModelFormatError telling to run edgecnn convert."""
    model, _ = written
    sidecar_path(model).write_bytes(text.encode("latin-1"))
    with pytest.raises(ModelFormatError) as info:
        read_tflite_info(model)
    assert "edgecnn convert" in str(info.value)


@pytest.mark.parametrize("fmt", ["edgecnn.model/0", "something/1", None])
def test_wrong_format_sidecar(written: tuple[Path, ModelInfo], fmt: str | None) -> None:
    """A sidecar with another (or no) 'format' tag: ModelFormatError naming the file."""
    model, _ = written
    edit_sidecar(model, lambda d: d.update(format=fmt))
    with pytest.raises(ModelFormatError) as info:
        read_tflite_info(model)
    assert "model.json" in str(info.value)
    assert FORMAT in str(info.value)


def test_wrong_format_sidecar_message_says_how_to_fix(written: tuple[Path, ModelInfo]) -> None:
    """The wrong-format error, like every edgecnn error, tells the fix: regenerate with edgecnn convert."""
    model, _ = written
    edit_sidecar(model, lambda d: d.update(format="edgecnn.model/0"))
    with pytest.raises(ModelFormatError) as info:
        read_tflite_info(model)
    assert "edgecnn convert" in str(info.value)


@pytest.mark.parametrize("key", ["labels", "preprocessing", "input_shape", "input", "output", "quantization"])
def test_missing_key_sidecar(written: tuple[Path, ModelInfo], key: str) -> None:
    """A sidecar missing a required key: ModelFormatError naming the file and the key."""
    model, _ = written
    edit_sidecar(model, lambda d: d.pop(key))
    with pytest.raises(ModelFormatError) as info:
        read_tflite_info(model)
    assert "model.json" in str(info.value)
    assert repr(key) in str(info.value)


def test_missing_key_sidecar_message_says_how_to_fix(written: tuple[Path, ModelInfo]) -> None:
    """The invalid-metadata error of a .tflite sidecar names the command that regenerates it."""
    model, _ = written
    edit_sidecar(model, lambda d: d.pop("labels"))
    with pytest.raises(ModelFormatError) as info:
        read_tflite_info(model)
    assert "edgecnn convert" in str(info.value)


def test_invalid_value_sidecar_is_model_format_error(written: tuple[Path, ModelInfo]) -> None:
    """A bad value (channels 2, a non-dict input) is a ModelFormatError, not a raw ValueError/TypeError."""
    model, _ = written
    edit_sidecar(model, lambda d: d["preprocessing"].update(channels=2))
    with pytest.raises(ModelFormatError):
        read_tflite_info(model)
    edit_sidecar(model, lambda d: d.update(input="int8"))
    with pytest.raises(ModelFormatError):
        read_tflite_info(model)


def test_sha256_mismatch(written: tuple[Path, ModelInfo]) -> None:
    """Model bytes changed after writing: ModelFormatError telling to re-run edgecnn convert."""
    model, _ = written
    model.write_bytes(MODEL_BYTES + b"\x00")
    with pytest.raises(ModelFormatError) as info:
        read_tflite_info(model)
    assert "edgecnn convert" in str(info.value)
    assert "another model" in str(info.value)


def test_missing_sha256_in_sidecar_is_mismatch(written: tuple[Path, ModelInfo]) -> None:
    """A sidecar without model_sha256 does not vouch for any model bytes."""
    model, _ = written
    edit_sidecar(model, lambda d: d.pop("model_sha256"))
    with pytest.raises(ModelFormatError, match="edgecnn convert"):
        read_tflite_info(model)


# --- check_model_file -------------------------------------------------------------------------------------


def test_check_model_file_missing(tmp_path: Path) -> None:
    """A missing model path is a ModelFormatError naming it."""
    missing = tmp_path / "model.tflite"
    with pytest.raises(ModelFormatError, match="does not exist"):
        check_model_file(missing, suffixes=(".tflite",))
    with pytest.raises(ModelFormatError):
        read_tflite_info(missing)


def test_check_model_file_wrong_suffix(tmp_path: Path) -> None:
    """An existing file with another suffix is a ModelFormatError naming the expected suffixes."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(MODEL_BYTES)
    with pytest.raises(ModelFormatError, match=r"\.tflite or \.keras"):
        check_model_file(onnx, suffixes=(".tflite", ".keras"))
    with pytest.raises(ModelFormatError):
        read_tflite_info(onnx)


def test_check_model_file_directory_and_ok(tmp_path: Path) -> None:
    """A folder is not a model; an existing file with a right suffix (any case) is returned as a Path."""
    folder = tmp_path / "model.tflite"
    folder.mkdir()
    with pytest.raises(ModelFormatError, match="not a file"):
        check_model_file(folder, suffixes=(".tflite",))
    ok = tmp_path / "NET.TFLITE"
    ok.write_bytes(MODEL_BYTES)
    assert check_model_file(str(ok), suffixes=(".tflite",)) == ok


# --- Keras archives ---------------------------------------------------------------------------------------


def make_keras_zip(path: Path) -> Path:
    """A zip shaped like a .keras archive (entries need not be a real model here)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        archive.writestr("config.json", json.dumps({"class_name": "Sequential"}))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(32))
    return path


def test_embed_and_read_keras_info(tmp_path: Path) -> None:
    """embed_keras_info adds edgecnn.json; read_keras_info returns equal metadata; other entries stay."""
    model = make_keras_zip(tmp_path / "x.keras")
    info = make_info(quantization="keras")
    embed_keras_info(model, info)
    assert read_keras_info(model) == info
    with zipfile.ZipFile(model) as archive:
        assert set(archive.namelist()) == {"metadata.json", "config.json", "model.weights.h5", KERAS_ENTRY}
        assert json.loads(archive.read("config.json")) == {"class_name": "Sequential"}


def test_read_keras_info_not_a_zip(tmp_path: Path) -> None:
    """A .keras file that is not a zip archive is a ModelFormatError."""
    model = tmp_path / "x.keras"
    model.write_bytes(MODEL_BYTES)
    with pytest.raises(ModelFormatError, match="not a Keras model"):
        read_keras_info(model)


def test_read_keras_info_without_metadata(tmp_path: Path) -> None:
    """A .keras archive without edgecnn.json is a ModelFormatError telling to train with edgecnn."""
    model = make_keras_zip(tmp_path / "x.keras")
    with pytest.raises(ModelFormatError, match="edgecnn train"):
        read_keras_info(model)


# --- canonical metadata -----------------------------------------------------------------------------------


def test_to_dict_is_canonical(tmp_path: Path) -> None:
    """Equal metadata gives byte-identical sidecars, whatever the order of the extra keys."""
    a = tmp_path / "a" / "model.tflite"
    b = tmp_path / "b" / "model.tflite"
    a.parent.mkdir()
    b.parent.mkdir()
    write_tflite(a, MODEL_BYTES, make_info(extra={"x": 1, "y": [1, 2], "z": {"b": 1, "a": 2}}))
    write_tflite(b, MODEL_BYTES, make_info(extra={"z": {"a": 2, "b": 1}, "y": [1, 2], "x": 1}))
    first = sidecar_path(a).read_bytes()
    assert first == sidecar_path(b).read_bytes()
    write_tflite(a, MODEL_BYTES, make_info(extra={"x": 1, "y": [1, 2], "z": {"b": 1, "a": 2}}))
    assert sidecar_path(a).read_bytes() == first
    assert first.endswith(b"\n")
    assert make_info().to_dict() == make_info().to_dict()


def test_from_dict_round_trip_keeps_extra() -> None:
    """ModelInfo.from_dict(to_dict()) is the identity, extra keys included."""
    info = make_info(model_sha256="cd" * 32)
    assert ModelInfo.from_dict(info.to_dict(), source=Path("m.json")) == info


# --- fileio -----------------------------------------------------------------------------------------------


def test_atomic_path_error_leaves_nothing(tmp_path: Path) -> None:
    """If the block raises, neither the final file nor a temporary file is left behind."""
    final = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".tflite"  # writers that insist on a suffix get it
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_error_keeps_old_file(tmp_path: Path) -> None:
    """If the block raises, an existing file keeps its old content."""
    final = tmp_path / "model.json"
    final.write_text("old")
    with pytest.raises(ValueError), atomic_path(final) as tmp:
        tmp.write_text("new, but incomplete")
        raise ValueError
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_path_success_replaces(tmp_path: Path) -> None:
    """On success the temporary file replaces the final one (same inode as what was written)."""
    final = tmp_path / "model.json"
    final.write_text("old")
    with atomic_path(final) as tmp:
        assert tmp != final
        tmp.write_text("new")
        inode = tmp.stat().st_ino
        assert final.read_text() == "old"  # not visible until the block ends
    assert final.read_text() == "new"
    assert final.stat().st_ino == inode
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_write_has_normal_permissions(tmp_path: Path) -> None:
    """A file written atomically gets the same permissions as one written with open() (umask applied)."""
    plain = tmp_path / "plain.json"
    plain.write_bytes(b"{}")
    atomic = tmp_path / "atomic.json"
    write_bytes_atomic(atomic, b"{}")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_check_output_path_missing_parent(tmp_path: Path) -> None:
    """A missing output folder is created when the file is written (not before); a file in the way is refused."""
    out = tmp_path / "new" / "deeper" / "model.tflite"
    assert check_output_path(out, suffixes=(".tflite",)) == out
    assert not (tmp_path / "new").exists()  # nothing is created by the check itself
    write_bytes_atomic(out, b"x")
    assert out.read_bytes() == b"x"
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_output_path(tmp_path / "file" / "model.tflite", suffixes=(".tflite",))


def test_check_output_path_wrong_suffix(tmp_path: Path) -> None:
    """An output with another suffix is a UsageError naming the expected one."""
    with pytest.raises(UsageError, match=r"\.keras"):
        check_output_path(tmp_path / "model.h5", suffixes=(".keras",))


def test_check_output_path_directory(tmp_path: Path) -> None:
    """An existing folder as output is a UsageError."""
    folder = tmp_path / "model.tflite"
    folder.mkdir()
    with pytest.raises(UsageError, match="folder"):
        check_output_path(folder, suffixes=(".tflite",))
    with pytest.raises(UsageError, match="folder"):
        check_output_path(tmp_path)


def test_check_output_path_ok(tmp_path: Path) -> None:
    """A writable new path (suffix in any case) is returned as a Path; nothing is created."""
    out = check_output_path(str(tmp_path / "Model.TFLITE"), suffixes=(".tflite",))
    assert out == tmp_path / "Model.TFLITE"
    assert not out.exists()
    assert os.listdir(tmp_path) == []
