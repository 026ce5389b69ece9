"""The one model verifier: real models pass; each kind of damage is refused in one line, before any runtime."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from edgecnn.errors import ModelFormatError
from edgecnn.model import flatbuffer
from edgecnn.model.verify import MAX_MODEL_BYTES, verify_model


def _field(content: bytes, path: list[tuple[int, int | None]]) -> int:
    """The byte position of a field, reached from the root by (slot, vector index or None) steps."""
    file = flatbuffer._File(content, "m")
    table = file.table(file.follow(0, "root"), "model")
    for slot, index in path[:-1]:
        table = table.tables(slot, "v")[index] if index is not None else table.table(slot, "t")
    slot, index = path[-1]
    if index is None:
        return table._field(slot, 4, "f")
    start, _ = table.vector(slot, 4, "v")
    return start + 4 * index


def _patched(content: bytes, pos: int, value: int, code: str = "<I") -> bytes:
    data = bytearray(content)
    struct.pack_into(code, data, pos, value)
    return bytes(data)


@pytest.fixture(scope="module")
def model(models: dict[str, Path]) -> bytes:
    return models["int8"].read_bytes()


def test_real_models_pass_and_come_back_unchanged(models: dict[str, Path]) -> None:
    for key in ("int8", "float", "int8_float_io"):
        assert verify_model(models[key]) == models[key].read_bytes()


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        # subgraph 0, tensor 1, field buffer (slot 2): the adversarial run's segfault in TFLM
        ([(2, 0), (0, 1), (2, None)], 10_000, "refers to buffer 10000"),
        # subgraph 0, operator 0, output 0
        ([(2, 0), (3, 0), (2, 0)], 999, "outputs refers to tensor 999"),
        # subgraph 0, operator 0, input 0 (-1 would be an optional input left out; -2 is nothing)
        ([(2, 0), (3, 0), (1, 0)], -2, "inputs refers to tensor -2"),
        # subgraph 0, its output list
        ([(2, 0), (2, 0)], -5, "output list refers to tensor -5"),
    ],
)
def test_out_of_range_indices_are_refused(
    model: bytes, path: list[tuple[int, int | None]], value: int, problem: str
) -> None:
    pos = _field(model, path)
    # A vtable field holds the value itself; a vector element too: overwrite either in place.
    with pytest.raises(ModelFormatError, match=problem):
        verify_model(_patched(model, pos, value, "<i"))


def test_a_huge_vector_length_is_refused(model: bytes) -> None:
    file = flatbuffer._File(model, "m")
    root = file.table(file.follow(0, "root"), "model")
    start, _ = root.vector(4, 4, "buffers")  # Model.buffers
    with pytest.raises(ModelFormatError, match="lies outside"):
        verify_model(_patched(model, start - 4, 0x7FFFFFFF))


def test_truncated_and_misaligned_models_are_refused(model: bytes) -> None:
    with pytest.raises(ModelFormatError, match="not a valid TFLite model"):
        verify_model(model[: len(model) // 2])
    with pytest.raises(ModelFormatError, match="not aligned"):
        verify_model(_patched(model, 0, struct.unpack_from("<I", model)[0] + 2))


def test_identifier_and_size_are_checked_before_the_file_is_read(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.tflite"
    with zeros.open("wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB that cost no disk
    huge = tmp_path / "huge.tflite"
    with huge.open("wb") as f:
        f.write(b"\0\0\0\0TFL3")
        f.truncate(MAX_MODEL_BYTES + 1)
    began = time.perf_counter()
    with pytest.raises(ModelFormatError, match="no TFL3 identifier"):
        verify_model(zeros)
    with pytest.raises(ModelFormatError, match="over the 2,147,483,647-byte limit"):
        verify_model(huge)
    assert time.perf_counter() - began < 1.0  # neither was read whole


def test_bytes_that_are_not_a_model_are_refused() -> None:
    for content in (b"", b"TFL3", b"\0" * 64):
        with pytest.raises(ModelFormatError, match="no TFL3 identifier"):
            verify_model(content)
