"""Training on several devices or machines with TensorFlow's own engine (``edgecnn train --strategy``).

- ``mirrored`` (``tf.distribute.MirroredStrategy``): every local GPU holds a replica of the model; a machine
  without GPUs mirrors over its logical CPU devices (one, unless the process configured more, as the tests do).
- ``multi-worker`` (``tf.distribute.MultiWorkerMirroredStrategy``): one ``edgecnn train`` per machine, each told
  the cluster and its own place in it by the ``TF_CONFIG`` environment variable (:func:`read_cluster`); the chief
  (task ``chief``, else worker 0) alone writes the checkpoint and the model.

``--batch-size`` stays the global batch. Every worker draws each global batch exactly as a one-device run does
(seeded by seed, epoch and batch: the same images in the same order), and replica ``r`` of ``R`` trains on its
rows ``r, r + R, ...``, so together the replicas cover the batch. Each replica divides its summed loss by the
global batch's size and the optimizer sums the gradients over all replicas: a step is one device's step on the
whole batch, except that batch normalization uses each replica's own rows' statistics (as Keras's ``fit`` does).

Keras 3's ``model.fit`` cannot run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585: it all-reduces
the first batch to build the model, which collective ops refuse), so both strategies train with this module's
loop (:func:`fit_distributed`): one ``tf.function`` step runs on every replica (``strategy.run``), differentiates
with ``tf.GradientTape`` and applies the Keras optimizer, whose ``apply_gradients`` all-reduces the gradients.
The default, ``none``, is not this module's: it trains with ``fit`` on one device, unchanged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.build.choices import STRATEGIES
from edgecnn.errors import EdgecnnWarning, EnvironmentProblem, UsageError

CLUSTER_WAIT_S = 600.0
"""How long a worker waits for the chief to start before giving up (exit 3); TensorFlow's own default is to wait
forever. The chief itself waits until every worker has started (TensorFlow offers no bound there: stop it with
Ctrl-C); once training runs, a worker that dies makes the others fail (exit 3) within TensorFlow's heartbeat."""

_TF_CONFIG_HELP = (
    'set TF_CONFIG on every machine to {"cluster": {"worker": ["HOST1:PORT", "HOST2:PORT"]}, '
    '"task": {"type": "worker", "index": N}} with N its place in the list (0 on the chief)'
)


@dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster.

    Attributes:
        workers: every worker's ``host:port``, the chief first.
        rank: this worker's position in ``workers`` (0: the chief, which writes the model).
        chief: the cluster has a ``chief`` job (else worker 0 is the chief).
    """

    workers: tuple[str, ...]
    rank: int
    chief: bool = False


@dataclass(frozen=True)
class Distribution:
    """The strategy training runs under.

    Attributes:
        name: its ``--strategy`` name.
        strategy: the ``tf.distribute`` strategy (None for ``none``: Keras's ``fit`` on one device).
        replicas: model replicas training in step, on all workers together.
        workers: processes (machines) taking part.
        is_chief: this process writes the checkpoint and the model.
    """

    name: str
    strategy: Any
    replicas: int = 1
    workers: int = 1
    is_chief: bool = True

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which models, optimizers and their variables are made for the strategy."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def steps_per_epoch(self, images: int, batch_size: int) -> int:
        """Gradient steps in an epoch: every batch, less a last one too small to give each replica a row."""
        steps = -(-images // batch_size)
        last = images - (steps - 1) * batch_size
        return steps - 1 if last < self.replicas and steps > 1 else steps

    def metadata(self) -> dict[str, Any]:
        """What the model's training metadata records (nothing for ``none``, whose metadata is unchanged)."""
        if self.strategy is None:
            return {}
        return {"strategy": self.name, "replicas": self.replicas, "workers": self.workers}


def read_cluster(value: str | None) -> Cluster:
    """The cluster a ``TF_CONFIG`` value describes (workers and an optional chief, as TensorFlow reads it).

    Raises:
        UsageError: no ``TF_CONFIG``, not JSON, or a cluster or task that is missing or inconsistent.
    """
    if not value:
        raise UsageError(f"--strategy multi-worker needs the TF_CONFIG environment variable: {_TF_CONFIG_HELP}")
    try:
        config = json.loads(value)
    except ValueError as exc:
        raise UsageError(f"TF_CONFIG is not JSON ({exc}): {_TF_CONFIG_HELP}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UsageError(f"TF_CONFIG needs a 'cluster' and a 'task': {_TF_CONFIG_HELP}")
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise UsageError(f"TF_CONFIG's cluster has {', '.join(other)} jobs; only 'chief' and 'worker' train here")
    jobs = {job: cluster.get(job, []) for job in ("chief", "worker")}
    if not all(isinstance(hosts, list) and all(_is_address(h) for h in hosts) for hosts in jobs.values()):
        raise UsageError(f"TF_CONFIG's cluster lists must hold HOST:PORT strings: {_TF_CONFIG_HELP}")
    if len(jobs["chief"]) > 1 or not jobs["chief"] + jobs["worker"]:
        raise UsageError(f"TF_CONFIG's cluster needs workers and at most one chief: {_TF_CONFIG_HELP}")
    kind, index = task.get("type"), task.get("index")
    if kind not in ("chief", "worker") or not isinstance(index, int) or not 0 <= index < len(jobs.get(kind, [])):
        raise UsageError(f"TF_CONFIG's task {task} is not one of its cluster's: {_TF_CONFIG_HELP}")
    workers = tuple(jobs["chief"] + jobs["worker"])
    return Cluster(workers, index + (len(jobs["chief"]) if kind == "worker" else 0), bool(jobs["chief"]))


def _is_address(host: Any) -> bool:
    name, _, port = host.rpartition(":") if isinstance(host, str) else ("", "", "")
    return bool(name) and port.isdigit()


def check_strategy(name: str, *, resume: bool, environ: dict[str, str] | None = None) -> Cluster | None:
    """Check ``--strategy`` and what it needs before any work; the cluster for ``multi-worker``.

    Raises:
        UsageError: an unknown name, a bad ``TF_CONFIG`` (:func:`read_cluster`), or ``--resume`` with
            ``multi-worker`` (the other workers have no copy of the chief's checkpoint).
    """
    env = os.environ if environ is None else environ
    if name not in STRATEGIES:
        raise UsageError(f"unknown --strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    if name != "multi-worker":
        if env.get("TF_CONFIG"):
            warnings.warn(f"TF_CONFIG is set but --strategy is {name}: this machine trains alone "
                          "(--strategy multi-worker joins its cluster)", EdgecnnWarning, stacklevel=3)  # fmt: skip
        return None
    if resume:
        raise UsageError(
            "--resume does not go with --strategy multi-worker (only the chief has the checkpoint): resume on the "
            "chief alone with --strategy none or mirrored, or start again without --resume"
        )
    return read_cluster(env.get("TF_CONFIG"))


def start_distribution(tf: Any, name: str, cluster: Cluster | None) -> Distribution:
    """Start the strategy ``name``: before any model or variable exists (``multi-worker`` must come first).

    A ``multi-worker`` start waits until every worker of ``cluster`` has started (see :data:`CLUSTER_WAIT_S`).

    Raises:
        EnvironmentProblem: the chief did not answer in time.
    """
    if name == "none":
        return Distribution(name, None)
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return Distribution(name, strategy, int(strategy.num_replicas_in_sync))
    assert cluster is not None  # check_strategy read it
    _coordinate(cluster)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError):
        raise EnvironmentProblem(
            f"worker {cluster.rank} heard nothing from the chief at {cluster.workers[0]} within {CLUSTER_WAIT_S:g} s: "
            "start edgecnn train with the same options on every machine of TF_CONFIG, each with its own task"
        ) from None
    return Distribution(name, strategy, int(strategy.num_replicas_in_sync), len(cluster.workers), cluster.rank == 0)


def _coordinate(cluster: Cluster) -> None:
    """Configure TensorFlow's coordination service as the strategy would, but with a bounded wait for the chief.

    The strategy configures it only when nothing has (with no bound: it waits for every worker forever); a private
    API of TensorFlow's, hence the narrow use.
    """
    # The protobuf module from where the strategy itself takes it (its path moves between TensorFlow versions).
    from tensorflow.python.distribute.collective_all_reduce_strategy import coordination_config_pb2
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        return
    jobs = [("chief", 1)] if cluster.chief else []
    jobs.append(("worker", len(cluster.workers) - len(jobs)))

    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{jobs[0][0]}/replica:0/task:0",
        cluster_register_timeout_in_ms=max(1, math.ceil(CLUSTER_WAIT_S * 1000)),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=n, num_tasks=k) for n, k in jobs if k],
    )


@dataclass
class FitOutcome:
    """What :func:`fit_distributed` ended with.

    Attributes:
        metrics: the last epoch's (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``).
        diverged: where the loss stopped being a number, when it did (the weights are garbage); else None.
    """

    metrics: dict[str, float]
    diverged: str | None = None


def fit_distributed(
    tf: Any,
    keras: Any,
    model: Any,
    distribution: Distribution,
    batches: Any,
    *,
    label_smoothing: float,
    epochs: int,
    initial_epoch: int,
    validation: tuple[np.ndarray, np.ndarray] | None,
    batch_size: int,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None,
    callbacks: list[Any],
) -> FitOutcome:
    """Train a compiled ``model`` (made in ``distribution``'s scope) on every replica with the loop described above.

    Args:
        tf: TensorFlow.
        keras: Keras.
        model: the model, compiled with its optimizer (made in ``distribution``'s scope, and built).
        distribution: the strategy (not ``none``).
        batches: the seeded global batches (train's ``_augmented_batches``, positioned at ``initial_epoch``);
            labels are class indices, or one-hot rows when ``label_smoothing`` is above 0.
        label_smoothing: above 0, categorical cross-entropy on one-hot labels with this smoothing.
        epochs: epochs in all (a resumed run counts those before it).
        initial_epoch: epochs already done.
        validation: held-out images and labels in the loss's form, evaluated after each epoch (None: none).
        batch_size: images per validation step.
        on_epoch: called after each epoch with (epoch, epochs, metrics), after ``callbacks``.
        callbacks: Keras callbacks whose ``on_epoch_end`` runs after each epoch (the chief's checkpoint writer).

    Raises:
        EnvironmentProblem: a worker stopped answering (TensorFlow aborts the collectives when its coordination
            service misses the worker's heartbeats).
    """
    strategy, replicas = distribution.strategy, distribution.replicas
    # Per example (not averaged): each replica sums its rows' losses and divides by the global batch's size.
    loss_fn = (
        keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)
        if label_smoothing > 0
        else keras.losses.SparseCategoricalCrossentropy(reduction=None)
    )
    steps: dict[str, Any] = {}

    def replica_step(images: Any, labels: Any) -> tuple[Any, Any]:
        # Every replica gets the whole global batch and keeps its own rows: one trace serves every batch size.
        x, y = _own_rows(tf, images, replicas), _own_rows(tf, labels, replicas)
        with tf.GradientTape() as tape:
            scores = model(x, training=True)
            total = tf.reduce_sum(loss_fn(y, scores))
            objective = total / tf.cast(tf.shape(images)[0], total.dtype)
            if model.losses:  # regularization: added once over all replicas, as the gradients are summed
                objective += tf.add_n(model.losses) / replicas
        gradients = tape.gradient(objective, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return total, _correct(tf, y, scores)

    def train_step(images: Any, labels: Any) -> tuple[Any, Any]:
        total, correct = strategy.run(replica_step, args=(images, labels))
        return (strategy.reduce("SUM", total, axis=None), strategy.reduce("SUM", correct, axis=None))

    # Batch normalization's moving statistics are per replica (Keras 3 makes them without aggregation): each
    # replica averages its own rows' statistics, and the model saved is replica 0's. Averaged over the replicas
    # after each epoch, every replica (and worker) holds the same model again, and a resumed run the one saved.
    moving = [v for v in model.non_trainable_variables if v.path.rsplit("/", 1)[-1].startswith("moving_")]

    def replica_average() -> None:
        averaged = tf.distribute.get_replica_context().all_reduce("MEAN", [tf.identity(v.value) for v in moving])
        for variable, value in zip(moving, averaged):
            variable.assign(value)

    def average_moving() -> None:
        strategy.run(replica_average)

    def replica_eval(images: Any, labels: Any) -> tuple[Any, Any]:
        x, y = _own_rows(tf, images, replicas), _own_rows(tf, labels, replicas)
        scores = model(x, training=False)
        return tf.reduce_sum(loss_fn(y, scores)), _correct(tf, y, scores)

    def eval_step(images: Any, labels: Any) -> tuple[Any, Any]:
        # Through the replicas too: a model called outside strategy.run on two logical CPU devices corrupted
        # TensorFlow's heap (with oneDNN) at the next training step.
        total, correct = strategy.run(replica_eval, args=(images, labels))
        return (strategy.reduce("SUM", total, axis=None), strategy.reduce("SUM", correct, axis=None))

    def compiled(name: str, fn: Callable[..., Any], x: np.ndarray, y: np.ndarray) -> Any:
        if name not in steps:
            signature = [tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in (x, y)]
            steps[name] = tf.function(fn, input_signature=signature)
        return steps[name]

    # Keras's fit (the one-device path) draws two batches to learn their shape and then ends an epoch before
    # training, so epoch k trains on the order drawn for k + 1: the same here, so both see the same batches.
    batches.on_epoch_end()

    compiled_average = tf.function(average_moving)

    def evaluate(x: np.ndarray, y: np.ndarray) -> Any:
        return compiled("eval", eval_step, x, y)

    model.stop_training = False
    for callback in callbacks:
        callback.set_model(model)
    metrics: dict[str, float] = {}
    try:
        for epoch in range(initial_epoch, epochs):
            sums = np.zeros(3)  # loss summed over images, images right, images
            for index, (x, y) in enumerate(_batches_of(batches)):
                if len(x) < replicas:  # a last batch too small for every replica to get a row
                    continue
                total, correct = compiled("train", train_step, x, y)(x, y)
                sums += (float(total), float(correct), len(x))
                if not math.isfinite(float(total)):
                    return FitOutcome({}, f"epoch {epoch + 1}, batch {index + 1}, loss {float(total) / len(x)}")
            batches.on_epoch_end()
            if moving:
                compiled_average()
            metrics = {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2]}
            if validation is not None:
                metrics.update(_evaluate(validation, batch_size, replicas, evaluate))
            metrics = {k: float(v) for k, v in metrics.items()}
            for callback in callbacks:
                callback.on_epoch_end(epoch, dict(metrics))
            if on_epoch is not None:
                on_epoch(epoch + 1, epochs, dict(metrics))
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError) as exc:
        saved = " (the chief's last checkpoint resumes with --strategy mirrored or none)" if callbacks else ""
        raise EnvironmentProblem(
            f"another worker stopped answering ({type(exc).__name__}): every worker must run to the end; start them "
            f"all again{saved}"
        ) from None
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        return FitOutcome({}, "after the last epoch, in the weights")
    return FitOutcome({k: round(v, 6) for k, v in metrics.items()})


def _own_rows(tf: Any, batch: Any, replicas: int) -> Any:
    """This replica's rows of a global batch: ``r, r + R, ...`` for replica ``r`` of ``R``."""
    return batch[tf.distribute.get_replica_context().replica_id_in_sync_group :: replicas]


def _correct(tf: Any, labels: Any, scores: Any) -> Any:
    """Images whose top class is the label (a class index, or the largest entry of a one-hot row)."""
    predicted = tf.argmax(scores, axis=-1)
    truth = tf.argmax(labels, axis=-1) if labels.shape.rank == 2 else tf.cast(labels, predicted.dtype)
    return tf.reduce_sum(tf.cast(tf.equal(predicted, truth), tf.float32))


def _batches_of(batches: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for index in range(len(batches)):
        yield batches[index]


def _chunks(
    images: np.ndarray, labels: np.ndarray, size: int, replicas: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``size`` rows at a time; a last chunk too small to give every replica a row joins the one before."""
    starts = list(range(0, len(images), size))
    if len(starts) > 1 and len(images) - starts[-1] < replicas:
        starts.pop()
    for start, end in zip(starts, [*starts[1:], len(images)]):
        yield images[start:end], labels[start:end]


def _evaluate(
    validation: tuple[np.ndarray, np.ndarray],
    batch_size: int,
    replicas: int,
    step: Callable[[Any, Any], Any],
) -> dict[str, float]:
    images, labels = validation
    sums = np.zeros(2)
    for x, y in _chunks(images, labels, batch_size, replicas):
        total, correct = step(x, y)(x, y)
        sums += (float(total), float(correct))
    return {"val_loss": sums[0] / len(images), "val_accuracy": sums[1] / len(images)}
