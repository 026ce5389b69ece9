"""``edgecnn bench`` and ``--target`` on this machine: the protocol's figures, real images, bad counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from edgecnn.runtime.bench import benchmark
from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.targets import make_target


def _json(result: object) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_bench_reports_the_benchmark_model_protocol(models: dict[str, Path]) -> None:
    report = _json(run_cli("bench", models["int8"], "--runs", "9", "--warmup", "3", "--threads", "1", "--json"))
    assert (report["runs"], report["warmup"], report["threads"], report["batch"]) == (9, 3, 1, 1)
    assert report["target"] == "host" and report["runtime"] == "ai-edge-litert" and report["inputs"] == "random"
    ms = report["latency_ms"]
    assert 0 < ms["min"] <= ms["p50"] <= ms["p90"] <= ms["max"] and ms["min"] <= ms["mean"] <= ms["max"]
    assert report["throughput"] == pytest.approx(1000.0 / ms["mean"], rel=1e-6)
    assert report["init_ms"] > 0 and report["machine"]["cpus"] >= 1


def test_bench_on_real_images_in_batches(models: dict[str, Path], small_folder: Path) -> None:
    (small_folder / "notes.txt").write_text("not an image")
    report = _json(run_cli("bench", models["int8"], "--images", small_folder, "--batch", "5", "--runs", "4", "--json"))
    assert report["inputs"] == "images:12" and report["batch"] == 5 and report["num_skipped"] == 1
    text = run_cli("bench", models["float"], "--runs", "3", "--images", small_folder, "--image-limit", "2")
    assert text.exit_code == 0 and "inputs images:2" in text.stdout and "p50" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "0"], "--runs must be at least 1"),
        (["--warmup", "-1"], "--warmup cannot be negative"),
        (["--batch", "0"], "--batch must be at least 1"),
        (["--threads", "0"], "--threads must be between 1 and 256"),
        (["--threads", "100000"], "--threads must be between 1 and 256"),
        (["--target", "raspi"], "did you mean 'rpi'?"),
        (["--ssh-option", "Port=22"], "--ssh-option applies to --target rpi, not --target host"),
        (["--target", "rpi", "--ssh-option", "Port=22"], "need --host"),
        (["--host", "pi@pi"], "--host applies to --target rpi, not --target host"),
    ],
)
def test_bench_bad_options(models: dict[str, Path], args: list[str], message: str) -> None:
    result = run_cli("bench", models["int8"], *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_benchmark_times_only_invoke_on_the_inputs_given(models: dict[str, Path]) -> None:
    """Real images cycle through whole batches; the figures come from the timed runs only."""
    images = np.zeros((3, 32, 32, 3), dtype=np.float32)
    result = benchmark(models["int8"], images=images, runs=5, warmup=0, batch=2, num_threads=1)
    assert result.inputs == "images:3" and result.batch == 2 and result.runs == 5
    builtin = benchmark(models["int8"], runs=2, warmup=0, xnnpack=False)
    assert builtin.runs == 2 and builtin.latency_ms["min"] > 0
    with pytest.raises(Exception, match="do not fit"):
        benchmark(models["int8"], images=np.zeros((2, 8, 8, 1), np.float32), runs=1)


def test_rpi_target_here_runs_with_pi_defaults(models: dict[str, Path], small_folder: Path) -> None:
    """Without --host the rpi target is the local runtime with 4 threads; the int8 scores equal the host's."""
    target = make_target("rpi")
    runner = target.open(models["int8"])
    host = TFLiteRunner(models["int8"])
    images = np.random.default_rng(0).uniform(0, 1, (6, 32, 32, 3)).astype(np.float32)
    try:
        assert runner.runtime == "ai-edge-litert"
        assert np.array_equal(runner.predict(images), host.predict(images))
    finally:
        runner.close()
        host.close()
    local = _json(run_cli("run", "--target", "rpi", models["int8"], small_folder, "--json"))
    plain = _json(run_cli("run", models["int8"], small_folder, "--json"))
    assert local["target"] == "rpi" and plain["target"] == "host"
    assert local["predictions"] == plain["predictions"]


def test_validate_on_a_target_records_where_the_candidate_ran(models: dict[str, Path], small_folder: Path) -> None:
    report = _json(
        run_cli(
            "validate", small_folder, "-r", models["float"], "-c", models["int8"],
            "--target", "rpi", "--max-drop", "100", "--json",
        )
    )  # fmt: skip
    assert report["candidate_target"] == "rpi" and report["candidate_runtime"] == "ai-edge-litert"
    keras = run_cli("run", "--target", "rpi", models["keras"], small_folder)
    assert keras.exit_code == 2 and ".tflite" in keras.stderr
