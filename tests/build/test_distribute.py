"""Issue 14: distributed training on TensorFlow's own engine, run for real: ``--strategy mirrored`` over two logical
CPU devices (what a machine with two GPUs has) and ``--strategy multi-worker`` as two worker processes on loopback.

The three ways to train agree exactly: the distributed loop on one replica gives fit's weights bit for bit, and two
mirrored replicas give the weights of two workers (each replica trains on the same rows of each batch). A mirrored
run interrupted and resumed ends where the uninterrupted multi-worker run does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import copy_subset, keras_weights, run_cli

from edgecnn.build.distribute import Distribution, read_cluster
from edgecnn.errors import UsageError
from edgecnn.runtime.bundle import read_keras_info

# The cifar10 recipe's every part (ResNet-8, SGD Nesterov with weight decay, the one-cycle schedule, label smoothing,
# flips and shifts) on 16x16 photos in seconds. 10 images a class, a fifth held out: 80 to train, batches of 32,
# 32 and 16, so each of two replicas gets an even number of rows: ResNet-8 training with oneDNN (TensorFlow's CPU
# kernels) dies of heap corruption on an odd batch (1, 3, 5, 7 rows), on one device too.
SMALL = ["--preset", "cifar10", "--image-size", "16", "--filters", "4", "--batch-size", "32", "--epochs", "2",
         "--validation-split", "0.2"]  # fmt: skip
TIMEOUT_S = 180  # a collective that hangs fails the test instead of CI


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory, photos_train: Path) -> Path:
    return copy_subset(photos_train, tmp_path_factory.mktemp("train"), per_class=10)


def _assert_same_weights(a: Path, b: Path) -> None:
    for x, y in zip(keras_weights(a), keras_weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def _run(commands: list[tuple[list[str], dict[str, str]]], cwd: Path) -> list[tuple[int, str, str]]:
    """Run the commands at once, each in its own process group; (exit code, stdout, stderr) of each. A run past
    :data:`TIMEOUT_S` kills every group and fails."""
    base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    started = [
        subprocess.Popen(
            [sys.executable, *argv],
            cwd=cwd,
            env={**base, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for argv, env in commands
    ]
    try:
        outputs = [process.communicate(timeout=TIMEOUT_S) for process in started]
    except subprocess.TimeoutExpired:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"training did not finish within {TIMEOUT_S} s (a hung collective?)")
    return [(process.returncode, out, err) for process, (out, err) in zip(started, outputs)]


def _tf_config(ports: list[int], index: int) -> str:
    workers = [f"localhost:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


# The process splits its CPU into two logical devices before TensorFlow starts, as a machine with two GPUs has,
# trains until an interruption after the first epoch, then resumes with the command line.
MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edgecnn.build.train import train
from edgecnn.cli.main import cli

class Interrupted(Exception):
    pass

def stop(epoch, epochs, metrics):
    raise Interrupted

data, out, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    train(data, out, strategy="mirrored", on_epoch=stop, **options)
except Interrupted:
    print("interrupted", file=sys.stderr)
cli.main(sys.argv[4:], prog_name="edgecnn")
"""


@pytest.fixture(scope="module")
def multi_worker(subset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two workers on loopback, each writing into its own folder: what each printed and left."""
    root = tmp_path_factory.mktemp("workers")
    ports = [_free_port(), _free_port()]
    folders = [root / "chief", root / "other"]
    commands = []
    for index, folder in enumerate(folders):
        folder.mkdir()
        argv = ["-m", "edgecnn", "train", str(subset), "--out", str(folder / "model.keras"), *SMALL,
                "--strategy", "multi-worker", "--json", "-q"]  # fmt: skip
        commands.append((argv, {"TF_CONFIG": _tf_config(ports, index)}))
    return {"folders": folders, "done": _run(commands, root)}


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_writes(multi_worker: dict[str, Any]) -> None:
    (code0, out0, err0), (code1, out1, err1) = multi_worker["done"]
    assert code0 == 0 and code1 == 0, err0[-3000:] + err1[-3000:]
    chief, other = multi_worker["folders"]
    assert sorted(p.name for p in chief.iterdir()) == ["model.keras"]  # the checkpoint is gone once it is written
    assert list(other.iterdir()) == []  # the other worker wrote nothing, not even a checkpoint
    first, second = json.loads(out0), json.loads(out1)
    assert first["model"] == str(chief / "model.keras") and second["model"] is None
    assert first["metrics"] == second["metrics"]  # the same weights, the same (all-reduced) metrics
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    assert set(first["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    training = read_keras_info(chief / "model.keras").extra["training"]
    assert (training["strategy"], training["replicas"], training["workers"]) == ("multi-worker", 2, 2)
    assert training["recipe"]["schedule"] == "one-cycle" and training["num_train"] == 80


@pytest.mark.slow
def test_two_mirrored_replicas_resume_to_the_weights_of_two_workers(
    subset: Path, tmp_path: Path, multi_worker: dict[str, Any]
) -> None:
    out = tmp_path / "mirrored.keras"
    options = dict(zip([a.lstrip("-").replace("-", "_") for a in SMALL[::2]], SMALL[1::2]))
    options["validation_fraction"] = options.pop("validation_split")
    typed = {k: (v if k == "preset" else float(v) if "." in v else int(v)) for k, v in options.items()}
    cli = ["train", str(subset), "--out", str(out), *SMALL, "--strategy", "mirrored", "--resume", "--json", "-q"]
    [(code, stdout, stderr)] = _run([(["-c", MIRRORED_SCRIPT, str(subset), str(out), json.dumps(typed), *cli], {})],
                                    tmp_path)  # fmt: skip
    assert code == 0 and "interrupted" in stderr, stderr[-3000:]
    result = json.loads(stdout)
    assert [h["epoch"] for h in result["history"]] == [2]  # resumed after the first epoch
    training = read_keras_info(out).extra["training"]
    assert (training["strategy"], training["replicas"], training["workers"]) == ("mirrored", 2, 1)
    assert training["resumed_at_epoch"] == 1
    # Replica r of two trains on rows r, r + 2, ... of each batch, as worker r does: the same weights, bit for bit,
    # which also shows the resumed run restored the optimizer's state (momentum, schedule) and the batch order.
    assert multi_worker["done"][0][0] == 0
    _assert_same_weights(out, multi_worker["folders"][0] / "model.keras")
    assert result["metrics"] == json.loads(multi_worker["done"][0][1])["metrics"]


@pytest.mark.slow
def test_the_loop_on_one_replica_trains_as_fit_does(subset: Path, tmp_path: Path) -> None:
    """The loop's loss scaling, label smoothing, weight decay, schedule and batch order are fit's: on one replica
    (this process has one CPU device) it ends with fit's weights and metrics, bit for bit."""
    from edgecnn.build.keras_model import import_keras

    tf, _ = import_keras()
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("mirrored uses every GPU here, not one replica")
    runs = {}
    for strategy in ("none", "mirrored"):
        out = tmp_path / f"{strategy}.keras"
        done = run_cli("train", subset, "--out", out, *SMALL, "--strategy", strategy, "--json", "-q")
        assert done.exit_code == 0, done.stderr
        runs[strategy] = json.loads(done.stdout)
    assert runs["none"]["metrics"] == runs["mirrored"]["metrics"]
    # fit's epoch loss is a float32 running mean, the loop's a float64 sum: equal to 6 digits, as the metrics are.
    assert runs["none"]["history"][0]["loss"] == pytest.approx(runs["mirrored"]["history"][0]["loss"], rel=1e-6)
    _assert_same_weights(tmp_path / "none.keras", tmp_path / "mirrored.keras")
    training = read_keras_info(tmp_path / "mirrored.keras").extra["training"]
    assert (training["strategy"], training["replicas"]) == ("mirrored", 1)
    assert "strategy" not in read_keras_info(tmp_path / "none.keras").extra["training"]  # unchanged by default


@pytest.mark.slow
def test_a_diverging_distributed_run_writes_nothing(subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.keras"
    done = run_cli("train", subset, "--out", out, *SMALL, "--learning-rate", "1e12", "--strategy", "mirrored")
    assert done.exit_code == 1 and "training diverged (epoch 1, batch " in done.stderr, done.stderr
    assert "lower --learning-rate (it was 1e+12)" in done.stderr
    assert list(tmp_path.iterdir()) == []  # neither the model nor a checkpoint


@pytest.mark.slow
def test_a_worker_that_dies_stops_the_chief(subset: Path, tmp_path: Path) -> None:
    ports = [_free_port(), _free_port()]
    base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    workers = []
    for index in (0, 1):
        argv = ["-m", "edgecnn", "train", str(subset), "--out", str(tmp_path / f"{index}.keras"), *SMALL,
                "--epochs", "1000", "--strategy", "multi-worker", "-q"]  # fmt: skip
        env = {**base, "TF_CONFIG": _tf_config(ports, index)}
        workers.append(subprocess.Popen([sys.executable, *argv], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True))  # fmt: skip
    chief, other = workers
    try:
        checkpoint = tmp_path / "0.checkpoint.keras"  # the chief's first epoch is done: the two train in step
        deadline = time.monotonic() + TIMEOUT_S
        while not checkpoint.exists() and chief.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert checkpoint.exists(), chief.stderr.read() if chief.poll() is not None else "no checkpoint in time"
        os.killpg(other.pid, signal.SIGKILL)
        _, stderr = chief.communicate(timeout=TIMEOUT_S)
    finally:
        for process in workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert chief.returncode == 3, stderr[-3000:]
    assert "another worker stopped answering" in stderr and "checkpoint resumes with --strategy mirrored" in stderr
    assert not (tmp_path / "0.keras").exists()


LONE_SCRIPT = """
import sys
import edgecnn.build.distribute as distribute
distribute.CLUSTER_WAIT_S = 5
from edgecnn.cli.main import cli
cli.main(sys.argv[1:], prog_name="edgecnn")
"""


@pytest.mark.slow
def test_a_worker_whose_chief_never_starts_gives_up(subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.keras"
    config = _tf_config([_free_port(), _free_port()], 1)
    argv = ["-c", LONE_SCRIPT, "train", str(subset), "--out", str(out), *SMALL, "--strategy", "multi-worker", "-q"]
    [(code, _, stderr)] = _run([(argv, {"TF_CONFIG": config})], tmp_path)
    assert code == 3, stderr[-3000:]
    assert "worker 1 heard nothing from the chief at localhost:" in stderr and "within 5 s" in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        (None, "--strategy multi-worker needs the TF_CONFIG environment variable"),
        ("{cluster", "TF_CONFIG is not JSON"),
        ('{"cluster": {"worker": ["localhost:1"]}}', "TF_CONFIG needs a 'cluster' and a 'task'"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "is not one of its cluster's"),
        ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "must hold HOST:PORT strings"),
        ('{"cluster": {"ps": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}', "ps jobs"),
    ],
)
def test_a_bad_tf_config_is_refused_before_any_work(
    subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tf_config: str | None, message: str
) -> None:
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    result = run_cli("train", subset, "--out", tmp_path / "m.keras", *SMALL, "--strategy", "multi-worker")
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "TF_CONFIG" in result.stderr


def test_resume_with_multi_worker_is_refused(subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CONFIG", _tf_config([1, 2], 0))
    result = run_cli("train", subset, "--out", tmp_path / "m.keras", *SMALL, "--strategy", "multi-worker", "--resume")
    assert result.exit_code == 2 and "--resume does not go with --strategy multi-worker" in result.stderr


def test_the_cluster_puts_the_chief_first_and_the_option_is_documented() -> None:
    config = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 1}}
    cluster = read_cluster(json.dumps(config))
    assert cluster.workers == ("c:1", "w:1", "w:2") and cluster.rank == 2
    assert read_cluster(json.dumps({**config, "task": {"type": "chief", "index": 0}})).rank == 0
    with pytest.raises(UsageError, match="at most one chief"):
        read_cluster(json.dumps({**config, "cluster": {"chief": ["c:1", "d:1"]}}))
    # A last batch too small to give each replica a row is left out of the epoch (and of the schedule's steps).
    assert Distribution("mirrored", object(), replicas=2).steps_per_epoch(65, 32) == 2
    assert Distribution("none", None).steps_per_epoch(65, 32) == 3
    help_text = " ".join(run_cli("train", "--help").stdout.split())
    assert "--strategy [none|mirrored|multi-worker]" in help_text and "TF_CONFIG" in help_text
