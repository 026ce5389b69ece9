"""``edgecnn train``: fit a classifier on an image folder with a recipe, seeded and checkpointed, and save it with
its metadata."""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgecnn.build.augment import augment_batch, parse_augment
from edgecnn.build.distribute import Distribution, check_strategy, fit_distributed, start_distribution
from edgecnn.errors import EXIT_VERDICT_FAILED, DatasetError, EdgecnnError, EdgecnnWarning, UsageError
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
        history: one entry per epoch trained in this run: ``epoch``, ``seconds`` since training started (image
            loading included) and the epoch's metrics (the learning curve).
        written: False on a ``multi-worker`` worker other than the chief, which trains in step but writes nothing.
    """

    path: Path
    info: ModelInfo
    metrics: dict[str, float]
    num_train: int
    num_validation: int
    skipped: list[Any] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    written: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model": str(self.path) if self.written else None,
            "labels": self.info.labels,
            "preprocessing": self.info.preprocessing.to_dict(),
            "metrics": self.metrics,
            "num_train": self.num_train,
            "num_validation": self.num_validation,
            "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped],
            "history": [dict(h) for h in self.history],
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


def _augmented_batches(
    keras: Any,
    data: LoadedImages,
    batch_size: int,
    *,
    seed: int,
    flip: bool,
    shift: int,
    classes: int | None = None,
    epoch: int = 0,
) -> Any:
    """Shuffled, augmented training batches; each epoch's order and each batch's draws are seeded, so a run resumed
    at ``epoch`` sees what an uninterrupted one would. ``classes``: labels as one-hot rows of that many classes."""

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = epoch
            self.order = np.random.default_rng([seed, epoch]).permutation(len(data))

        def __len__(self) -> int:
            return -(-len(data) // batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            chosen = self.order[index * batch_size : (index + 1) * batch_size]
            rng = np.random.default_rng([seed, self.epoch, index])
            labels = data.labels[chosen] if classes is None else one_hot(data.labels[chosen], classes)
            return augment_batch(data.images[chosen], rng, flip=flip, shift=shift), labels

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
    optimizer: Any = None,
    label_smoothing: float = 0.0,
    initial_epoch: int = 0,
    callbacks: list[Any] | None = None,
) -> dict[str, float]:
    """Compile ``model`` and fit it quietly; the final metrics.

    Shared by training and quantization-aware fine-tuning (``keras`` is Keras 3 or tf-keras, whichever built
    ``model``). A model that is already compiled (resumed from a checkpoint, with its optimizer's state) is fitted
    as it is.

    Args:
        keras: the Keras module that built the model.
        model: the model.
        inputs: what ``fit`` trains on (``x`` and ``y``, batch size and shuffling, or a dataset as ``x``); labels are
            class indices, or one-hot rows when ``label_smoothing`` is above 0.
        learning_rate: Adam's learning rate (when no ``optimizer`` is given).
        epochs: passes over the data, in all (a resumed run counts the epochs before it).
        validation: held-out images reported after each epoch (None: none).
        on_epoch: called after each epoch with (epoch, epochs, metrics).
        optimizer: the optimizer (None: Adam at ``learning_rate``).
        label_smoothing: above 0, categorical cross-entropy on one-hot labels with this smoothing.
        initial_epoch: epochs already done (a resumed run).
        callbacks: more Keras callbacks (the checkpoint writer).

    Raises:
        TrainingDivergedError: the loss or a weight became NaN or infinite (training stops at the first such step).
    """
    compile_once(keras, model, optimizer=optimizer, learning_rate=learning_rate, label_smoothing=label_smoothing)

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
            initial_epoch=initial_epoch,
            validation_data=_validation_data(validation, model, label_smoothing),
            callbacks=[*(callbacks or []), _Report()],  # a checkpoint is written before on_epoch hears of it
        )
    # The weights too: a loss can stay finite for a step after a weight has overflowed.
    if not diverged and not all(np.isfinite(w).all() for w in model.get_weights()):
        diverged.append("after the last epoch, in the weights")
    if diverged:
        raise diverged_error(diverged[0], learning_rate)
    return {k: round(float(v[-1]), 6) for k, v in history.history.items()}


def compile_once(keras: Any, model: Any, *, optimizer: Any, learning_rate: float, label_smoothing: float) -> None:
    """Compile ``model`` with edgecnn's loss and metrics, unless it already is (resumed with its optimizer's state).

    Args:
        keras: the Keras module that built the model.
        model: the model.
        optimizer: the optimizer (None: Adam at ``learning_rate``).
        learning_rate: Adam's learning rate (when no ``optimizer`` is given).
        label_smoothing: above 0, categorical cross-entropy on one-hot labels with this smoothing.
    """
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        smoothing = label_smoothing > 0
        model.compile(
            optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(learning_rate),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
            if smoothing
            else "sparse_categorical_crossentropy",
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")] if smoothing else ["accuracy"],
        )


def diverged_error(where: str, learning_rate: float) -> TrainingDivergedError:
    """The error for a loss that stopped being a number at ``where``."""
    return TrainingDivergedError(
        f"training diverged ({where}): no model written; lower --learning-rate (it was {learning_rate:g}) "
        "or check the images"
    )


def _validation_data(validation: LoadedImages | None, model: Any, label_smoothing: float) -> Any:
    """The validation images and their labels in the form the loss takes (one-hot with label smoothing)."""
    if validation is None:
        return None
    if label_smoothing > 0:
        return validation.images, one_hot(validation.labels, int(model.output_shape[-1]))
    return validation.images, validation.labels


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """Class indices as float32 one-hot rows."""
    return np.eye(classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    preset: str = "default",
    image_size: int | None = None,
    channels: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    learning_rate: float | None = None,
    filters: int | None = None,
    augment: str | None = None,
    limit_per_class: int | None = None,
    strict: bool = False,
    follow_links: bool = False,
    resume: bool = False,
    strategy: str = "none",
    on_progress: Progress | None = None,
    on_epoch: EpochFn | None = None,
) -> TrainResult:
    """Train a classifier on an image folder with a recipe (:mod:`edgecnn.build.presets`) and save it as
    ``.keras`` with edgecnn metadata.

    Runs with the same data and seed give the same weights: Python, numpy and TensorFlow are seeded and
    TensorFlow's deterministic ops are switched on. After each epoch the model, with its optimizer's state, is
    saved to a checkpoint beside ``out`` (:func:`checkpoint_path`); ``resume`` continues from it after an
    interruption, to the same final weights as an uninterrupted run. The checkpoint is removed once ``out`` is
    written. ``strategy`` trains on several devices or machines (:mod:`edgecnn.build.distribute`).

    Args:
        data: image folder ``DATA/<class>/<image>``.
        out: the ``.keras`` file to write (its folder must exist).
        preset: the recipe (``default``, ``cifar10``); every option below that is None comes from it.
        image_size: images are resized to ``image_size`` x ``image_size``, between :data:`MIN_IMAGE_SIZE` and
            :data:`MAX_IMAGE_SIZE`.
        channels: 1 or 3; guessed from the images when None.
        epochs: passes over the training images.
        batch_size: images per gradient step.
        seed: seed of the split, the initial weights and the shuffling.
        validation_fraction: share of each class held out to report validation accuracy (0 for none).
        learning_rate: the learning rate (the peak of a one-cycle schedule), finite and above 0.
        filters: filters in the first block (doubling per block).
        augment: training-time augmentation: none, shift, flip or flip-shift (see :mod:`edgecnn.build.augment`).
        limit_per_class: use only the first N images of each class.
        strict: fail on an unreadable image instead of skipping it.
        follow_links: follow symbolic links that lead outside ``data``.
        resume: continue from the checkpoint of an interrupted run with the same data and recipe (from the
            start when there is none).
        strategy: ``none`` (one device), ``mirrored`` (every local GPU, else every logical CPU device) or
            ``multi-worker`` (the machines of ``TF_CONFIG``; only the chief writes ``out`` and the checkpoint).
        on_progress: progress of loading the images.
        on_epoch: called after each epoch.

    Raises:
        DatasetError: bad data folder; UsageError: bad options (see :func:`check_training_options`), an output
        path, a bad ``TF_CONFIG``, or a checkpoint of another recipe or data; TrainingDivergedError: the loss became
        NaN or infinite (nothing is written); EnvironmentProblem: a ``multi-worker`` peer did not start or stopped
        answering.
    """
    from edgecnn.build.presets import get_preset

    started = time.perf_counter()
    history: list[dict[str, float]] = []

    def record(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": epoch, "seconds": round(time.perf_counter() - started, 1), **metrics})
        if on_epoch is not None:
            on_epoch(epoch, epochs, metrics)

    recipe = get_preset(preset, image_size=image_size, epochs=epochs, batch_size=batch_size,
                        learning_rate=learning_rate, filters=filters, augment=augment)  # fmt: skip
    check_training_options(
        image_size=recipe.image_size,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        filters=recipe.filters,
        learning_rate=recipe.learning_rate,
    )
    cluster = check_strategy(strategy, resume=resume)
    out_path = check_output_path(out, suffixes=(".keras",))
    refuse_inputs([out_path], [data])
    flip, shift = parse_augment(recipe.augment, recipe.image_size)
    folder = scan_folder(data, limit_per_class=limit_per_class, follow_links=follow_links)
    if len(folder.classes) < 2:
        raise DatasetError(f"{folder.root} has one class folder ({folder.classes[0]}): a classifier needs two or more")
    size = recipe.image_size
    spec = Preprocessing(height=size, width=size, channels=channels or guess_channels(folder.samples))
    train_samples, val_samples = split_samples(folder.samples, validation_fraction=validation_fraction, seed=seed)
    advance = (on_progress or no_progress)("loading images", len(folder.samples))
    train_set = load_images(train_samples, spec, strict=strict, skipped=folder.skipped, on_progress=advance)
    val_set: LoadedImages | None = (
        load_images(val_samples, spec, strict=strict, on_progress=advance) if val_samples else None
    )
    provenance = fitted_on(train_set, val_set, spec)
    run = {"recipe": recipe.to_dict(), "seed": seed, "validation_fraction": validation_fraction,
           "data_fingerprint": provenance["data_fingerprint"], "classes": folder.classes}  # fmt: skip

    from edgecnn.build.keras_model import import_keras

    tf, keras = import_keras()
    distribution = start_distribution(tf, strategy, cluster)  # before any variable exists, as multi-worker needs
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    checkpoint = checkpoint_path(out_path)
    with distribution.scope():  # the model and its optimizer's variables get a copy on every replica
        model, done = _resumed(checkpoint, run) if resume else (None, 0)
        if model is None:
            model = _new_model(recipe, spec.shape, len(folder.classes))
    # Batches drawn from (seed, epoch, batch) rather than Keras's shuffling, so a resumed run sees the same ones.
    classes = len(folder.classes) if recipe.label_smoothing > 0 else None
    batches = _augmented_batches(keras, train_set, recipe.batch_size, seed=seed, flip=flip, shift=shift,
                                 classes=classes, epoch=done)  # fmt: skip
    # shuffle=False: Keras would also shuffle the batches' order with its own random state, which a resumed run
    # does not share; the batches are already drawn in a seeded order.
    inputs: dict[str, Any] = {"x": batches, "shuffle": False}
    steps = distribution.steps_per_epoch(len(train_set), recipe.batch_size)
    # Only the chief writes: the other workers of a cluster hold the same weights.
    callbacks = [_checkpointer(keras, checkpoint, run, spec, folder.classes)] if distribution.is_chief else []
    try:
        if distribution.strategy is None:
            metrics = compile_and_fit(
                keras,
                model,
                inputs,
                learning_rate=recipe.learning_rate,
                epochs=recipe.epochs,
                validation=val_set,
                on_epoch=record,
                optimizer=_optimizer(keras, recipe, steps),
                label_smoothing=recipe.label_smoothing,
                initial_epoch=done,
                callbacks=callbacks,
            )
        else:
            metrics = _fit_distributed(tf, keras, model, distribution, batches, recipe=recipe, steps=steps,
                                       validation=val_set, initial_epoch=done, on_epoch=record,
                                       callbacks=callbacks)  # fmt: skip
    except TrainingDivergedError:
        if distribution.is_chief:
            checkpoint.unlink(missing_ok=True)  # resuming would diverge the same way: nothing is left behind
        raise
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
                "preset": recipe.name,
                "epochs": recipe.epochs,
                "batch_size": recipe.batch_size,
                "seed": seed,
                "validation_fraction": validation_fraction,
                "learning_rate": recipe.learning_rate,
                "filters": recipe.filters,
                "augment": recipe.augment,
                **({"recipe": recipe.to_dict()} if recipe.name != "default" else {}),
                **({"resumed_at_epoch": done} if done else {}),
                **distribution.metadata(),
                **provenance,
                "metrics": metrics,
            },
            "tools": tool_versions("tensorflow-cpu", "tensorflow", "keras", "numpy", "pillow"),
        },
    )
    if distribution.is_chief:
        with atomic_path(out_path) as tmp:
            model.save(tmp)
            embed_keras_info(tmp, info)
        checkpoint.unlink(missing_ok=True)
    return TrainResult(
        path=out_path,
        info=info,
        metrics=metrics,
        num_train=len(train_set),
        num_validation=len(val_set) if val_set is not None else 0,
        skipped=skipped,
        history=history,
        written=distribution.is_chief,
    )


def _fit_distributed(
    tf: Any,
    keras: Any,
    model: Any,
    distribution: Distribution,
    batches: Any,
    *,
    recipe: Any,
    steps: int,
    validation: LoadedImages | None,
    initial_epoch: int,
    on_epoch: EpochFn,
    callbacks: list[Any],
) -> dict[str, float]:
    """Train under ``distribution`` with :func:`~edgecnn.build.distribute.fit_distributed`; the final metrics.

    Raises:
        TrainingDivergedError: the loss or a weight became NaN or infinite.
    """
    with distribution.scope():
        optimizer = _optimizer(keras, recipe, steps)
        compile_once(keras, model, optimizer=optimizer, learning_rate=recipe.learning_rate,
                     label_smoothing=recipe.label_smoothing)  # fmt: skip
        if not model.optimizer.built:  # its variables are made here, not inside a replica's step
            model.optimizer.build(model.trainable_variables)
    outcome = fit_distributed(
        tf,
        keras,
        model,
        distribution,
        batches,
        label_smoothing=recipe.label_smoothing,
        epochs=recipe.epochs,
        initial_epoch=initial_epoch,
        validation=_validation_data(validation, model, recipe.label_smoothing),
        batch_size=recipe.batch_size,
        on_epoch=on_epoch,
        callbacks=callbacks,
    )
    if outcome.diverged is not None:
        raise diverged_error(outcome.diverged, recipe.learning_rate)
    return outcome.metrics


def checkpoint_path(out: Path) -> Path:
    """Where training ``out`` keeps its checkpoint: ``OUT-stem.checkpoint.keras`` beside it."""
    return out.with_name(f"{out.stem}.checkpoint.keras")


def _new_model(recipe: Any, shape: tuple[int, int, int], classes: int) -> Any:
    from edgecnn.build.keras_model import build_model, build_resnet8

    if recipe.architecture == "resnet8":
        return build_resnet8(shape, classes, filters=recipe.filters)
    return build_model(shape, classes, filters=recipe.filters)


def _optimizer(keras: Any, recipe: Any, steps_per_epoch: int) -> Any:
    """The recipe's optimizer with its learning-rate schedule (steps count gradient updates)."""
    rate: Any = recipe.learning_rate
    if recipe.schedule == "one-cycle":
        warmup = recipe.warmup_epochs * steps_per_epoch
        # Warm up linearly from a tenth of the peak, then decay along a cosine to 0.1% of it: Keras's own schedule
        # (serialized with the optimizer, so a checkpoint resumes it where it was).
        rate = keras.optimizers.schedules.CosineDecay(
            recipe.learning_rate / 10,
            decay_steps=max(1, recipe.epochs * steps_per_epoch - warmup),
            alpha=1e-3,  # of the rate decay starts from (the peak)
            warmup_target=recipe.learning_rate,
            warmup_steps=warmup,
        )
    decay = recipe.weight_decay or None
    if recipe.optimizer == "sgd-nesterov":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    return keras.optimizers.Adam(rate, weight_decay=decay)


def _checkpointer(keras: Any, checkpoint: Path, run: dict[str, Any], spec: Preprocessing, labels: list[str]) -> Any:
    """A callback that saves the model, its optimizer's state and the epoch after every epoch, atomically."""

    class _Checkpoint(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if self.model.stop_training:  # diverged: nothing worth resuming from
                return
            info = ModelInfo(labels=labels, preprocessing=spec, input_shape=[-1, *spec.shape],
                             input=QuantParams("float32"), output=QuantParams("float32"), quantization="keras",
                             extra={"checkpoint": {**run, "epochs_done": epoch + 1}})  # fmt: skip
            with atomic_path(checkpoint) as tmp:
                self.model.save(tmp)
                embed_keras_info(tmp, info)

    return _Checkpoint()


def _resumed(checkpoint: Path, run: dict[str, Any]) -> tuple[Any, int]:
    """(the model with its optimizer, epochs done) from ``checkpoint``; (None, 0) when there is none.

    Raises:
        UsageError: the checkpoint is of another recipe, seed or data, or unreadable.
    """
    from edgecnn.build.keras_model import import_keras
    from edgecnn.runtime.bundle import read_keras_info

    if not checkpoint.is_file():
        warnings.warn(f"--resume: no checkpoint at {checkpoint}, so training starts from the first epoch",
                      EdgecnnWarning, stacklevel=3)  # fmt: skip
        return None, 0
    try:
        saved = read_keras_info(checkpoint).extra.get("checkpoint", {})
    except EdgecnnError as exc:
        raise UsageError(f"cannot resume from {checkpoint} ({exc}): delete it to train from the start") from None
    differs = [key for key in run if saved.get(key) != run[key]]
    if differs:
        raise UsageError(
            f"{checkpoint} is from a run with another {', '.join(differs)}: resume with the same data and options, "
            "or delete it to train from the start"
        )
    _, keras = import_keras()
    try:
        model = keras.models.load_model(checkpoint, compile=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad archive
        raise UsageError(f"cannot resume from {checkpoint} ({exc}): delete it to train from the start") from None
    return model, int(saved["epochs_done"])
