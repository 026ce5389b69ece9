"""Models trained elsewhere, as ``edgecnn convert`` takes them: what kind of file, its digest, its description.

``convert`` takes, besides the ``.keras`` ``edgecnn train`` writes (labels and preprocessing inside):

- a Keras 3 ``.keras`` or a legacy ``.h5`` from anyone's training, and a TensorFlow SavedModel folder: converted with
  TensorFlow's own converter, like edgecnn's models;
- a float ``.tflite`` from another converter: quantized with ai-edge-quantizer (:mod:`edgecnn.build.quantize_tflite`).

What such a model cannot say about itself (labels, pixel normalization, BGR, layout) comes from its TFLite Metadata
or from the options (:mod:`edgecnn.runtime.hints`), and the sidecar records which, with the source's sha256.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelFormatError
from edgecnn.model.graph import ModelGraph
from edgecnn.runtime.bundle import ModelInfo, has_edgecnn_metadata
from edgecnn.runtime.describe import check_classifier, classifier_info, num_classes
from edgecnn.runtime.files import sha256_file
from edgecnn.runtime.hints import InputHints
from edgecnn.runtime.quant import QuantParams

SOURCE_KINDS = ("edgecnn", "keras", "savedmodel", "tflite")
"""``edgecnn``: a ``.keras`` from ``edgecnn train``; ``keras``: any other ``.keras``/``.h5``; ``savedmodel``: a
TensorFlow SavedModel folder; ``tflite``: a ``.tflite`` from another converter."""

_SUFFIXES = {".keras": "keras", ".h5": "keras", ".hdf5": "keras", ".tflite": "tflite"}


@dataclass(frozen=True)
class ModelSource:
    """The model ``convert`` was given.

    Attributes:
        path: the file or SavedModel folder.
        kind: one of :data:`SOURCE_KINDS`.
        sha256: the file's sha256, or the folder's (:func:`folder_sha256`).
    """

    path: Path
    kind: str
    sha256: str

    @property
    def name(self) -> str:
        """The file or folder name (the sidecar records only this: where the model lay must not change its bytes)."""
        return self.path.name


def open_source(model_path: str | os.PathLike[str]) -> ModelSource:
    """Recognise the model ``convert`` was given and take its digest.

    Raises:
        ModelFormatError: missing, a folder that is not a SavedModel, or a file of another kind.
    """
    path = Path(model_path)
    if not path.exists():
        raise ModelFormatError(f"model {path} does not exist: check the path")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise ModelFormatError(f"{path} is a folder but not a SavedModel (no saved_model.pb): check the path")
        return ModelSource(path, "savedmodel", folder_sha256(path))
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        raise ModelFormatError(
            f"model {path} must be a .keras, .h5 or .tflite file, or a SavedModel folder (saved_model.pb inside)"
        )
    if kind == "keras" and path.suffix.lower() == ".keras" and has_edgecnn_metadata(path):
        kind = "edgecnn"
    return ModelSource(path, kind, sha256_file(path))


def folder_sha256(folder: Path) -> str:
    """A SavedModel folder's digest: sha256 over each file's relative path and sha256, in path order.

    Symbolic links are not followed, so the digest covers exactly the files inside the folder.
    """
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    for file in files:
        digest.update(f"{file.relative_to(folder).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def outside_info(graph: ModelGraph, *, source: ModelSource, hints: InputHints) -> ModelInfo:
    """Describe a Keras model or SavedModel from elsewhere by its float TFLite graph and the options.

    (A ``.tflite`` is described by :func:`edgecnn.runtime.describe.tflite_info`: sidecar, TFLite Metadata, options.)

    Args:
        graph: the float graph converted from the model.
        source: the model given.
        hints: the options (``--labels``, ``--input-range`` ...).

    Raises:
        UsageError: not a classifier (several inputs or outputs, an output that is not one score vector), or a
            missing piece (naming the option that supplies it).
    """
    inp, out = check_classifier(graph, model=source.name)
    return classifier_info(
        list(inp.shape),
        QuantParams(inp.dtype, inp.scale, inp.zero_point),
        QuantParams(out.dtype, out.scale, out.zero_point),
        classes=num_classes(out),
        hints=hints,
        model=source.name,
    )


def source_record(source: ModelSource, *, info: ModelInfo, described: list[str] | None = None) -> dict[str, Any]:
    """The sidecar's ``source`` entry: the model's file name, format and sha256, and what described it.

    Args:
        source: the model given.
        info: its description (a model from ``edgecnn train`` keeps its training record).
        described: where its labels and preprocessing came from (``sidecar``, ``tflite-metadata``, ``options``);
            unused for a model from ``edgecnn train``, which carries them.
    """
    record: dict[str, Any] = {"model": source.name, "format": source.kind, "sha256": source.sha256}
    if source.kind == "edgecnn":
        record["training"] = info.extra.get("training")
    else:
        record["described_by"] = list(described or [])
    return record
