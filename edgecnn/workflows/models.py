"""The one place a model path becomes a runner: a Keras model through the build side (TensorFlow), a ``.tflite``
on a target or in this process's interpreter (runtime side, no TensorFlow).

A ``.tflite`` with no edgecnn sidecar (a model from elsewhere) is described by its TFLite Metadata or the options
(:mod:`edgecnn.runtime.describe`) and run as a bundle in a temporary folder: the model's bytes and a sidecar of what
was resolved. So every runner and target, remote ones included, gets the bundle it always gets, and nothing is ever
written beside the user's file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.runtime.bundle import ModelInfo, check_model_file, has_edgecnn_metadata, sidecar_path, write_tflite
from edgecnn.runtime.hints import InputHints

if TYPE_CHECKING:
    from edgecnn.runtime.runners import Runner
    from edgecnn.targets.base import Target

KERAS_SUFFIXES = (".keras", ".h5")
"""Keras model files; a folder is a TensorFlow SavedModel."""


def is_keras_model(model_path: str | os.PathLike[str]) -> bool:
    """A Keras model (``.keras``, ``.h5``) or a SavedModel folder, as opposed to a ``.tflite``."""
    path = Path(model_path)
    return path.is_dir() or path.suffix.lower() in KERAS_SUFFIXES


def open_model(
    model_path: str | os.PathLike[str],
    *,
    target: Target | None = None,
    num_threads: int | None = None,
    reference_kernels: bool = False,
    hints: InputHints | None = None,
    fallback: ModelInfo | None = None,
    trust: bool = False,
) -> Runner:
    """Load a model as a :class:`~edgecnn.runtime.runners.Runner`.

    Args:
        model_path: a ``.tflite`` (with a sidecar, TFLite Metadata, or ``hints``), or (here or on the host target) a
            Keras model: a ``.keras`` from ``edgecnn train``, or any ``.keras``/``.h5``/SavedModel with ``hints``.
        target: run the ``.tflite`` there (None: in this process).
        num_threads: interpreter threads here (a target owns its own).
        reference_kernels: TFLite's reference kernels here (what TensorFlow Lite Micro computes).
        hints: labels and preprocessing given as options, for a model that does not carry them.
        fallback: labels and normalization to use when neither the model nor ``hints`` give them (validation feeds
            a reference from elsewhere exactly like its candidate).
        trust: load a Keras model with safe mode off, ``Lambda`` layers included (``--trust-model``).

    Raises:
        ModelFormatError: missing, corrupt, not matching its sidecar, or a Keras model given for a device target.
        UsageError: a model that is not a classifier, lacks labels or preprocessing (naming the option), or whose
            sources disagree.
        MissingDependencyError: a Keras model without TensorFlow installed.
    """
    here = target is None or target.name == "host"
    path = Path(model_path)
    if is_keras_model(path) and not here:
        raise ModelFormatError(
            f"{path} is a Keras model: a device runs a .tflite (convert it with edgecnn convert), "
            "or run it here without --target"
        )
    if is_keras_model(path):
        kernels = getattr(target, "kernels", "default")
        if kernels != "default":
            raise UsageError(
                f"--kernels {kernels} chooses a .tflite interpreter's kernels, and {path} is a Keras model: run its "
                ".tflite (edgecnn convert makes one), or leave --kernels out"
            )
        return open_keras(path, hints=hints or InputHints(), fallback=fallback, trust=trust)
    model = check_model_file(path, suffixes=(".tflite",))
    from edgecnn.runtime.describe import tflite_info

    info = tflite_info(model, hints=hints, fallback=fallback)
    if sidecar_path(model).is_file():
        return _open_bundle(model, target=target, num_threads=num_threads, reference_kernels=reference_kernels)
    folder = Path(tempfile.mkdtemp(prefix="edgecnn-model-"))
    try:
        copy = folder / model.name
        write_tflite(copy, model.read_bytes(), info)
        runner = _open_bundle(copy, target=target, num_threads=num_threads, reference_kernels=reference_kernels)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return TemporaryBundleRunner(runner, folder, shown=model)


def _open_bundle(model: Path, *, target: Target | None, num_threads: int | None, reference_kernels: bool) -> Runner:
    if target is not None:
        return target.open(model)
    from edgecnn.runtime.interpreter import TFLiteRunner

    return TFLiteRunner(model, num_threads=num_threads, reference_kernels=reference_kernels)


def open_keras(path: Path, *, hints: InputHints, fallback: ModelInfo | None = None, trust: bool = False) -> Runner:
    """A Keras runner: with the metadata ``edgecnn train`` embeds, or described by ``hints`` (from elsewhere);
    ``trust`` loads it with safe mode off."""
    from edgecnn.build.keras_model import KerasRunner

    if path.is_file() and path.suffix.lower() == ".keras" and has_edgecnn_metadata(path):
        return KerasRunner(path, trust=trust)
    from edgecnn.build.keras_model import load_outside_keras

    model = load_outside_keras(path, trust=trust)
    return KerasRunner(path, info=keras_info(model, hints=hints, fallback=fallback, name=path.name), model=model)


def keras_info(model: Any, *, hints: InputHints, fallback: ModelInfo | None = None, name: str) -> ModelInfo:
    """Describe a Keras classifier from elsewhere: its input and output shapes, labels and normalization from ``hints``.

    Raises:
        UsageError: several inputs or outputs, an output that is not one score vector, or a missing piece.
    """
    from edgecnn.errors import UsageError
    from edgecnn.runtime.describe import classifier_info
    from edgecnn.runtime.quant import QuantParams

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UsageError(
            f"{name} has {len(model.inputs)} input(s) and {len(model.outputs)} output(s): edgecnn classifies with "
            "one image input and one vector of class scores"
        )
    out_shape = [d for d in model.outputs[0].shape[1:]]
    if len([d for d in out_shape if d != 1]) > 1:
        raise UsageError(f"{name}'s output has shape {out_shape}, not one vector of class scores")
    classes = 1
    for d in out_shape:
        classes *= int(d or 1)
    input_shape = [1, *[int(d) if d is not None else -1 for d in model.inputs[0].shape[1:]]]
    return classifier_info(
        input_shape,
        QuantParams("float32"),
        QuantParams("float32"),
        classes=classes,
        hints=hints,
        fallback=fallback,
        model=name,
        extra={"source": {"model": name, "described_by": ["options"]}},
    )


class TemporaryBundleRunner:
    """A runner over a bundle in a temporary folder, which :meth:`close` removes; it shows the user's own path."""

    def __init__(self, runner: Runner, folder: Path, *, shown: Path) -> None:
        self._runner = runner
        self._folder = folder
        self.path = shown
        self.info = runner.info

    def predict(self, images: Any) -> Any:
        """The wrapped runner's scores."""
        return self._runner.predict(images)

    def close(self) -> None:
        """Close the runner and remove the temporary bundle."""
        try:
            self._runner.close()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __getattr__(self, name: str) -> Any:
        # runtime, threads, where ... of the wrapped runner
        return getattr(self._runner, name)
