"""The model artifact: a ``.tflite`` file plus its sidecar ``.json`` (or a ``.keras`` with the same metadata).

The metadata carries everything needed to feed the model exactly as it was validated: labels, preprocessing,
input/output shapes and quantization, and a sha256 that ties the sidecar to the model bytes. A Keras model
keeps the same metadata inside its ``.keras`` archive (entry ``edgecnn.json``), so ``model.keras`` and the
``model.json`` of its converted ``model.tflite`` can live side by side.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelFormatError
from edgecnn.runtime.files import (
    check_output_path,
    dumps_json,
    refuse_inputs,
    sha256_bytes,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams

FORMAT = "edgecnn.model/1"
KERAS_ENTRY = "edgecnn.json"


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a trained or converted model.

    Attributes:
        labels: class names, in output order.
        preprocessing: how images become inputs.
        input_shape: model input shape, batch first (``[1, H, W, C]`` for converted models).
        input: dtype and quantization of the input tensor.
        output: dtype and quantization of the output tensor.
        quantization: ``none``, ``float16``, ``dynamic`` or ``int8`` (``keras`` for a trained Keras model).
        model_sha256: sha256 of the model file (empty for Keras models, whose archive embeds this).
        extra: provenance: source model hash, calibration fingerprint, tool versions, training settings.
    """

    labels: list[str]
    preprocessing: Preprocessing
    input_shape: list[int]
    input: QuantParams
    output: QuantParams
    quantization: str
    model_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the sidecar's content)."""
        return {
            "format": FORMAT,
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "input_shape": list(self.input_shape),
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "quantization": self.quantization,
            "model_sha256": self.model_sha256,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Path, fix: str = "re-run edgecnn convert") -> ModelInfo:
        """Parse metadata; ``source`` names the file and ``fix`` the remedy in error messages."""
        if data.get("format") != FORMAT:
            raise ModelFormatError(
                f"{source} is not edgecnn metadata (format {data.get('format')!r}, expected {FORMAT!r}): {fix}"
            )
        known = {"format", "labels", "preprocessing", "input_shape", "input", "output", "quantization", "model_sha256"}
        try:
            return cls(
                labels=[str(v) for v in data["labels"]],
                preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                input_shape=[int(v) for v in data["input_shape"]],
                input=QuantParams.from_dict(data["input"]),
                output=QuantParams.from_dict(data["output"]),
                quantization=str(data["quantization"]),
                model_sha256=str(data.get("model_sha256", "")),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source} has invalid edgecnn metadata ({exc!r}): {fix}") from None


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the sidecar of a ``.tflite`` model lives: same folder and stem, ``.json`` suffix."""
    return Path(model_path).with_suffix(".json")


def bundle_files(model_path: str | os.PathLike[str]) -> list[Path]:
    """The files a model is made of: a ``.tflite`` and its sidecar, or the ``.keras`` archive alone."""
    model = Path(model_path)
    return [model, sidecar_path(model)] if model.suffix.lower() == ".tflite" else [model]


def check_bundle_output(out: str | os.PathLike[str], *, inputs: Sequence[str | os.PathLike[str] | None] = ()) -> Path:
    """Check, before any work, that a ``.tflite`` bundle can be written at ``out``: the model and its sidecar.

    Raises:
        UsageError: not a ``.tflite`` path, a folder, a folder that cannot be made, or a file that would overwrite
            one of ``inputs`` (or lie inside an input folder).
    """
    path = check_output_path(out, suffixes=(".tflite",))
    refuse_inputs([path, sidecar_path(path)], inputs)
    return path


_CONVERT_FIX = "re-run edgecnn convert to regenerate it"
_TRAIN_FIX = "retrain the model with edgecnn train"


def _parse_info(text: str | bytes, source: Path, fix: str) -> ModelInfo:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{source} is not valid JSON ({exc}): {fix}") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{source} is not edgecnn metadata: {fix}")
    return ModelInfo.from_dict(data, source=source, fix=fix)


def check_model_file(path: str | os.PathLike[str], *, suffixes: tuple[str, ...]) -> Path:
    """Check that a model path exists, is a file and has one of ``suffixes``."""
    model = Path(path)
    if not model.exists():
        raise ModelFormatError(f"model {model} does not exist: check the path")
    if not model.is_file():
        raise ModelFormatError(f"model {model} is not a file")
    if model.suffix.lower() not in suffixes:
        raise ModelFormatError(f"model {model} must be a {' or '.join(suffixes)} file")
    return model


def read_tflite_info(model_path: str | os.PathLike[str]) -> ModelInfo:
    """Read and verify the sidecar of a ``.tflite`` model.

    Raises:
        ModelFormatError: the sidecar is missing or invalid, or was written for other model bytes.
    """
    info = sidecar_info(model_path)
    if info is None:
        side = sidecar_path(model_path)
        raise ModelFormatError(
            f"{model_path} has no sidecar {side.name} (labels and preprocessing): give them with --labels and "
            "--input-range (or --mean/--std), or convert the model with edgecnn convert, which writes both"
        )
    return info


def sidecar_info(model_path: str | os.PathLike[str]) -> ModelInfo | None:
    """Read and verify the sidecar of a ``.tflite`` model; None when it has none (a model from elsewhere).

    Raises:
        ModelFormatError: the model is missing, or the sidecar is invalid or was written for other model bytes.
    """
    model = check_model_file(model_path, suffixes=(".tflite",))
    side = sidecar_path(model)
    if not side.is_file():
        return None
    info = _parse_info(side.read_bytes(), side, _CONVERT_FIX)
    actual = sha256_file(model)
    if info.model_sha256 != actual:
        raise ModelFormatError(
            f"{side.name} was written for another model (sha256 {info.model_sha256[:12]}..., "
            f"{model.name} is {actual[:12]}...): re-run edgecnn convert to regenerate both"
        )
    return info


def write_tflite(model_path: str | os.PathLike[str], flatbuffer: bytes, info: ModelInfo) -> ModelInfo:
    """Write a ``.tflite`` model and its sidecar atomically; the sidecar records the model's sha256.

    Returns:
        The metadata as written (with ``model_sha256`` filled in).
    """
    written = replace(info, model_sha256=sha256_bytes(flatbuffer))
    # Model first, sidecar second: a sidecar never describes bytes that are not on disk.
    write_bytes_atomic(model_path, flatbuffer)
    write_json_atomic(sidecar_path(model_path), written.to_dict())
    return written


def has_edgecnn_metadata(model_path: str | os.PathLike[str]) -> bool:
    """A ``.keras`` written by ``edgecnn train`` (it carries its labels and preprocessing), as opposed to any other
    Keras model; False for anything that is not a readable zip archive (the Keras loader then says what it is)."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            return KERAS_ENTRY in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def read_keras_info(model_path: str | os.PathLike[str]) -> ModelInfo:
    """Read the metadata stored inside a ``.keras`` archive by ``edgecnn train``.

    Raises:
        ModelFormatError: not a ``.keras`` archive, or one without edgecnn metadata.
    """
    model = check_model_file(model_path, suffixes=(".keras",))
    if not zipfile.is_zipfile(model):
        raise ModelFormatError(f"{model} is not a Keras model (not a .keras zip archive): check the file")
    with zipfile.ZipFile(model) as archive:
        if KERAS_ENTRY not in archive.namelist():
            raise ModelFormatError(
                f"{model} has no edgecnn metadata (labels, preprocessing): train it with edgecnn train"
            )
        return _parse_info(archive.read(KERAS_ENTRY), model, _TRAIN_FIX)


def embed_keras_info(archive_path: str | os.PathLike[str], info: ModelInfo) -> None:
    """Add the metadata to a ``.keras`` archive written by Keras (Keras ignores unknown entries)."""
    with zipfile.ZipFile(archive_path, "a") as archive:
        archive.writestr(KERAS_ENTRY, dumps_json(info.to_dict()))
