"""``edgecnn train``: fit the default CNN on an image folder, seeded, and save it with its metadata."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgecnn.build.augment import augment_batch, parse_augment
from edgecnn.errors import EXIT_VERDICT_FAILED, DatasetError, EdgecnnError, UsageError
from edgecnn.runtime.bundle import ModelInfo, embed_keras_info
from edgecnn.runtime.data import LoadedImages, Sample, load_images, scan_folder, split_samples
from edgecnn.runtime.files import atomic_path, captured_native_stderr, check_output_path, refuse_inputs
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.progress import Progress, no_progress
from edgecnn.runtime.provenance import images_fingerprint, tool_versions
from edgecnn.runtime.quant import QuantParams

EpochFn = Callable[[int, int, dict[str, float]], None]
"""Called after each epoch with (epoch number from 1, total epochs, metrics)."""

_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})

MIN_IMAGE_SIZE = 8
"""Smallest ``--image-size``: the default CNN halves the image at least once and needs a few pixels left."""

MAX_IMAGE_SIZE = 1024
"""Largest ``--image-size``: every image is held in memory as float32, 12 MB each at 1024 x 1024 RGB."""


class TrainingDivergedError(EdgecnnError):
    """The loss became NaN or infinite: the weights are garbage, so nothing is written (a verdict: exit 1)."""

    exit_code = EXIT_VERDICT_FAILED


def check_training_options(
    *, image_size: int, epochs: int, batch_size: int, filters: int, learning_rate: float
) -> None:
    """Refuse, before any work, training options that mean nothing or that no machine could hold.

    Checked by the library, not only by the command line's option types, so a caller of the Python API is
    protected too.

    Raises:
        UsageError: naming the option and its allowed range.
    """
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise UsageError(f"--image-size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, not {image_size}")
    if min(epochs, batch_size, filters) < 1:
        raise UsageError("--epochs, --batch-size and --filters must be at least 1")
    # `not > 0` also refuses NaN, which compares false with everything.
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise UsageError(f"--learning-rate must be a finite number above 0, not {learning_rate}")


@dataclass
class TrainResult:
    """What training produced.

    Attributes:
        path: the saved ``.keras`` model.
        info: its metadata (labels, preprocessing ...).
        metrics: final-epoch metrics (loss, accuracy, val_loss, val_accuracy when there is a validation split).
        num_train: images trained on.
        num_validation: images held out for validation.
        skipped: files that could not be read.
    """

    path: Path
    info: ModelInfo
    metrics: dict[str, float]
    num_train: int
    num_validation: int
    skipped: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model": str(self.path),
            "labels": self.info.labels,
            "preprocessing": self.info.preprocessing.to_dict(),
            "metrics": self.metrics,
            "num_train": self.num_train,
            "num_validation": self.num_validation,
            "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped],
        }


def guess_channels(samples: list[Sample], *, probe: int = 20) -> int:
    """1 when the first ``probe`` readable images are all grayscale, else 3 (reads headers only)."""
    modes = []
    for sample in samples[:probe]:
        try:
            with Image.open(sample.path) as image:
                modes.append(image.mode)
        except (OSError, SyntaxError, ValueError):
            continue
    return 1 if modes and all(mode in _GRAY_MODES for mode in modes) else 3


def _augmented_batches(keras: Any, data: LoadedImages, batch_size: int, *, seed: int, flip: bool, shift: int) -> Any:
    """Shuffled, augmented training batches; each epoch's order and each batch's draws are seeded."""

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.order = np.random.default_rng([seed, 0]).permutation(len(data))

        def __len__(self) -> int:
            return -(-len(data) // batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            chosen = self.order[index * batch_size : (index + 1) * batch_size]
            rng = np.random.default_rng([seed, self.epoch, index])
            return augment_batch(data.images[chosen], rng, flip=flip, shift=shift), data.labels[chosen]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(data))

    return Batches()


def fitted_on(train_set: LoadedImages, val_set: LoadedImages | None, spec: Preprocessing) -> dict[str, Any]:
    """What a model was fitted on, for its provenance: image counts and a fingerprint of the training images."""
    samples = [Sample(path, int(label)) for path, label in zip(train_set.paths, train_set.labels)]
    return {
        "num_train": len(train_set),
        "num_validation": len(val_set) if val_set is not None else 0,
        "data_fingerprint": images_fingerprint(samples, spec),
    }


def compile_and_fit(
    keras: Any,
    model: Any,
    inputs: dict[str, Any],
    *,
    learning_rate: float,
    epochs: int,
    validation: LoadedImages | None,
    on_epoch: EpochFn | None,
) -> dict[str, float]:
    """Compile ``model`` (Adam, sparse categorical cross-entropy, accuracy) and fit it quietly; the final metrics.

    Shared by training and quantization-aware fine-tuning (``keras`` is Keras 3 or tf-keras, whichever built
    ``model``).

    Args:
        keras: the Keras module that built the model.
        model: the model.
        inputs: what ``fit`` trains on (``x`` and ``y``, batch size and shuffling, or a dataset as ``x``).
        learning_rate: Adam's learning rate.
        epochs: passes over the data.
        validation: held-out images reported after each epoch (None: none).
        on_epoch: called after each epoch with (epoch, epochs, metrics).

    Raises:
        TrainingDivergedError: the loss or a weight became NaN or infinite (training stops at the first such step).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    diverged: list[str] = []  # where the loss first stopped being a number, when it did

    class _Report(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        _epoch = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            # Once the loss is NaN every later step is too: stop at once rather than train garbage for the
            # remaining epochs (Keras's TerminateOnNaN, plus where it happened for the message).
            loss = (logs or {}).get("loss")
            if loss is not None and not diverged and not math.isfinite(float(loss)):
                diverged.append(f"epoch {self._epoch + 1}, batch {batch + 1}, loss {float(loss)}")
                self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._epoch = epoch

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if on_epoch is not None and not diverged:
                on_epoch(epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

    # tf.data logs a harmless NodeDef warning on the C-level stderr when fit starts; keep it off the console.
    with captured_native_stderr(on_error=sys.stderr.write):
        history = model.fit(
            **inputs,
            epochs=epochs,
            verbose=0,
            validation_data=(validation.images, validation.labels) if validation is not None else None,
            callbacks=[_Report()],
        )
    # The weights too: a loss can stay finite for a step after a weight has overflowed.
    if not diverged and not all(np.isfinite(w).all() for w in model.get_weights()):
        diverged.append("after the last epoch, in the weights")
    if diverged:
        raise TrainingDivergedError(
            f"training diverged ({diverged[0]}): no model written; lower --learning-rate "
            f"(it was {learning_rate:g}) or check the images"
        )
    return {k: round(float(v[-1]), 6) for k, v in history.history.items()}


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    image_size: int = 32,
    channels: int | None = None,
    epochs: int = 20,
    batch_size: int = 32,
    seed: int = 0,
    validation_fraction: float = 0.1,
    learning_rate: float = 1e-3,
    filters: int = 32,
    augment: str = "none",
    limit_per_class: int | None = None,
    strict: bool = False,
    follow_links: bool = False,
    on_progress: Progress | None = None,
    on_epoch: EpochFn | None = None,
) -> TrainResult:
    """Train the default CNN on an image folder and save it as ``.keras`` with edgecnn metadata.

    Runs with the same data and seed give the same weights: Python, numpy and TensorFlow are seeded and
    TensorFlow's deterministic ops are switched on.

    Args:
        data: image folder ``DATA/<class>/<image>``.
        out: the ``.keras`` file to write (its folder must exist).
        image_size: images are resized to ``image_size`` x ``image_size``, between :data:`MIN_IMAGE_SIZE` and
            :data:`MAX_IMAGE_SIZE`.
        channels: 1 or 3; guessed from the images when None.
        epochs: passes over the training images.
        batch_size: images per gradient step.
        seed: seed of the split, the initial weights and the shuffling.
        validation_fraction: share of each class held out to report validation accuracy (0 for none).
        learning_rate: Adam's learning rate, finite and above 0.
        filters: filters in the first block (doubling per block).
        augment: training-time augmentation: none, shift, flip or flip-shift (see :mod:`edgecnn.build.augment`).
        limit_per_class: use only the first N images of each class.
        strict: fail on an unreadable image instead of skipping it.
        follow_links: follow symbolic links that lead outside ``data``.
        on_progress: progress of loading the images.
        on_epoch: called after each epoch.

    Raises:
        DatasetError: bad data folder; UsageError: bad options (see :func:`check_training_options`) or output path;
        TrainingDivergedError: the loss became NaN or infinite (nothing is written).
    """
    check_training_options(
        image_size=image_size, epochs=epochs, batch_size=batch_size, filters=filters, learning_rate=learning_rate
    )
    out_path = check_output_path(out, suffixes=(".keras",))
    refuse_inputs([out_path], [data])
    flip, shift = parse_augment(augment, image_size)
    folder = scan_folder(data, limit_per_class=limit_per_class, follow_links=follow_links)
    if len(folder.classes) < 2:
        raise DatasetError(f"{folder.root} has one class folder ({folder.classes[0]}): a classifier needs two or more")
    spec = Preprocessing(height=image_size, width=image_size, channels=channels or guess_channels(folder.samples))
    train_samples, val_samples = split_samples(folder.samples, validation_fraction=validation_fraction, seed=seed)
    advance = (on_progress or no_progress)("loading images", len(folder.samples))
    train_set = load_images(train_samples, spec, strict=strict, skipped=folder.skipped, on_progress=advance)
    val_set: LoadedImages | None = (
        load_images(val_samples, spec, strict=strict, on_progress=advance) if val_samples else None
    )

    from edgecnn.build.keras_model import build_model, import_keras

    tf, keras = import_keras()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(spec.shape, len(folder.classes), filters=filters)
    if flip or shift:
        inputs: dict[str, Any] = {
            "x": _augmented_batches(keras, train_set, batch_size, seed=seed, flip=flip, shift=shift)
        }
    else:
        inputs = {"x": train_set.images, "y": train_set.labels, "batch_size": batch_size, "shuffle": True}
    metrics = compile_and_fit(
        keras, model, inputs, learning_rate=learning_rate, epochs=epochs, validation=val_set, on_epoch=on_epoch
    )
    skipped = train_set.skipped + (val_set.skipped if val_set is not None else [])
    info = ModelInfo(
        labels=folder.classes,
        preprocessing=spec,
        input_shape=[-1, *spec.shape],
        input=QuantParams("float32"),
        output=QuantParams("float32"),
        quantization="keras",
        extra={
            "training": {
                "epochs": epochs,
                "batch_size": batch_size,
                "seed": seed,
                "validation_fraction": validation_fraction,
                "learning_rate": learning_rate,
                "filters": filters,
                "augment": augment,
                **fitted_on(train_set, val_set, spec),
                "metrics": metrics,
            },
            "tools": tool_versions("tensorflow-cpu", "tensorflow", "keras", "numpy", "pillow"),
        },
    )
    with atomic_path(out_path) as tmp:
        model.save(tmp)
        embed_keras_info(tmp, info)
    return TrainResult(
        path=out_path,
        info=info,
        metrics=metrics,
        num_train=len(train_set),
        num_validation=len(val_set) if val_set is not None else 0,
        skipped=skipped,
    )
