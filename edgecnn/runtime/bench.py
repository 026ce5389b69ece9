"""Latency and throughput of one model on one target, with the protocol of TFLite's ``benchmark_model``.

The model is loaded and allocated (timed apart as initialisation), run ``warmup`` times untimed, then
``runs`` times, each run timed alone around ``invoke``. Inputs are set before each run, outside the timing:
real preprocessed images (cycled) or random pixels through the model's own preprocessing, so random
inputs have the range and dtype the model sees in use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgecnn.errors import UsageError
from edgecnn.runtime.machine import machine_summary
from edgecnn.runtime.preprocess import Preprocessing, fitting_images, scale_pixels
from edgecnn.runtime.progress import ProgressFn

if TYPE_CHECKING:
    from edgecnn.runtime.bundle import ModelInfo

LATENCY_KEYS = ("min", "p50", "p90", "max", "mean", "std")


@dataclass(frozen=True)
class BenchResult:
    """What :func:`benchmark` measured. Times are milliseconds; throughput is images per second.

    Attributes:
        target: where the model ran (``host``, ``rpi``, ``rpi pi@raspberrypi``...).
        model: the ``.tflite`` file.
        runtime: the interpreter package that ran it.
        threads: interpreter threads (None: the runtime's default).
        batch: images per run.
        runs / warmup: timed runs, and untimed runs before them.
        inputs: ``random`` or ``images:N`` (N real images, cycled).
        init_ms: loading the model and allocating its tensors.
        latency_ms: min, p50, p90, max, mean and std of one run; None where the tool that timed the runs does not
            report that statistic (TFLite's benchmark_model reports no p90, and a median only in recent versions).
        throughput: images per second over the timed runs (batch x runs / their total time).
        machine: the CPU architecture, system and number of CPUs where it ran.
        skipped: image files left out (unreadable or not images).
    """

    target: str
    model: str
    runtime: str
    threads: int | None
    batch: int
    runs: int
    warmup: int
    inputs: str
    init_ms: float
    latency_ms: dict[str, float | None]
    throughput: float
    machine: dict[str, Any] = field(default_factory=dict)
    skipped: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (keys documented in the README)."""
        return {
            "target": self.target,
            "model": self.model,
            "runtime": self.runtime,
            "threads": self.threads,
            "batch": self.batch,
            "runs": self.runs,
            "warmup": self.warmup,
            "inputs": self.inputs,
            "init_ms": self.init_ms,
            "latency_ms": dict(self.latency_ms),
            "throughput": self.throughput,
            "machine": dict(self.machine),
            "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """Inverse of :meth:`to_dict` (a result sent back by a remote device)."""
        return cls(
            target=str(data["target"]),
            model=str(data["model"]),
            runtime=str(data["runtime"]),
            threads=None if data["threads"] is None else int(data["threads"]),
            batch=int(data["batch"]),
            runs=int(data["runs"]),
            warmup=int(data["warmup"]),
            inputs=str(data["inputs"]),
            init_ms=float(data["init_ms"]),
            latency_ms={k: _optional_float(data["latency_ms"][k]) for k in LATENCY_KEYS},
            throughput=float(data["throughput"]),
            machine=dict(data.get("machine", {})),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """min/p50/p90/max/mean/std in milliseconds (percentiles interpolate linearly, as numpy does)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "min": float(ms.min()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
    }


def random_images(spec: Preprocessing, count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` images of uniformly random pixels, through the model's own preprocessing."""
    rng = np.random.default_rng(seed)
    return scale_pixels(rng.integers(0, 256, size=(count, *spec.shape)), spec)


def bench_inputs(
    spec: Preprocessing, images: np.ndarray | None, *, count: int, seed: int = 0
) -> tuple[np.ndarray, str]:
    """The pool a benchmark cycles through and how to report it: ``count`` random images (``random``), or the
    given preprocessed images checked against the model's input (``images:N``).

    Raises:
        UsageError: no images, or images that do not fit the model.
    """
    if images is None:
        return random_images(spec, count, seed=seed), "random"
    pool = fitting_images(images, spec, model="the model")
    if len(pool) == 0:
        raise UsageError("no benchmark images: give --images a folder or files with readable images")
    return pool, f"images:{len(pool)}"


def batch_picker(pool: np.ndarray, batch: int) -> Callable[[int], np.ndarray]:
    """``pick(i)``: the i-th input batch, cycling through whole batches of ``pool``.

    A pool smaller than one batch is repeated to fill it. Batches are contiguous copies, ready to hand to
    an interpreter.
    """
    groups = max(1, len(pool) // batch)

    def pick(i: int) -> np.ndarray:
        first = (i % groups) * batch
        return np.ascontiguousarray(np.take(pool, np.arange(first, first + batch), axis=0, mode="wrap"))

    return pick


def time_runs(
    set_input: Callable[[int], None],
    invoke: Callable[[], None],
    *,
    runs: int,
    warmup: int,
    on_progress: ProgressFn | None = None,
) -> list[float]:
    """Run ``warmup`` untimed then ``runs`` timed invocations; ``set_input(i)`` before each, outside the timing.

    Returns:
        The duration of each timed run, in seconds.
    """
    check_counts(runs=runs, warmup=warmup)
    for i in range(warmup):
        set_input(i)
        invoke()
    durations = []
    for i in range(runs):
        set_input(warmup + i)
        start = time.perf_counter()
        invoke()
        durations.append(time.perf_counter() - start)
        if on_progress is not None:
            on_progress(1)
    return durations


@dataclass(frozen=True)
class BenchPlan:
    """What a benchmark runs: the inputs and the counts, checked when made.

    Attributes:
        images: preprocessed real images ``(N, H, W, C)`` to cycle through; None for random pixels through the
            model's preprocessing.
        runs: timed runs.
        warmup: untimed runs before them.
        batch: images per run.
    """

    images: np.ndarray | None = None
    runs: int = 50
    warmup: int = 5
    batch: int = 1

    def __post_init__(self) -> None:
        check_counts(runs=self.runs, warmup=self.warmup, batch=self.batch)


def check_counts(*, runs: int, warmup: int, batch: int = 1) -> None:
    """Raise :class:`UsageError` for counts a benchmark cannot use."""
    if runs < 1:
        raise UsageError(f"--runs must be at least 1, not {runs}")
    if warmup < 0:
        raise UsageError(f"--warmup cannot be negative, not {warmup}")
    if batch < 1:
        raise UsageError(f"--batch must be at least 1, not {batch}")


class Timed(Protocol):
    """A loaded model that a benchmark can time: its input set apart from the run that is timed."""

    info: ModelInfo
    runtime: str

    def resize(self, batch: int) -> None:
        """Prepare for ``batch`` images per run (UsageError when the model or device cannot)."""
        ...

    def set_input(self, images: np.ndarray) -> None:
        """Put preprocessed images (one batch) into the input tensor."""
        ...

    def invoke(self) -> None:
        """Run the model once on the input tensor as it stands."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


def time_model(
    load: Callable[[], Timed],
    plan: BenchPlan,
    *,
    target: str,
    model: str,
    threads: int | None = None,
    seed: int = 0,
    note: str | None = None,
    on_progress: ProgressFn | None = None,
) -> BenchResult:
    """The benchmark protocol every target that runs a model in this process feeds (host, rpi, coral, micro).

    ``load()`` loads the model and allocates it (timed apart as ``init``); then ``plan.warmup`` untimed runs and
    ``plan.runs`` timed ones, each input set before its run, outside the timing.

    Args:
        load: opens the model (a runner with ``runtime``, ``resize``, ``set_input``, ``invoke`` and ``close``).
        plan: the inputs and counts.
        target: the name reported as where it ran.
        model: the model as the user named it.
        threads: the interpreter threads, as reported (None: the runtime's default).
        seed: seed of the random inputs.
        note: a caveat reported with the machine (TFLM's host timings are not a microcontroller's).
        on_progress: called with 1 after each timed run.

    Raises:
        UsageError: a batch the model or device cannot take, or images that do not fit the model.
    """
    start = time.perf_counter()
    runner = load()
    try:
        runner.resize(plan.batch)
        init_ms = (time.perf_counter() - start) * 1000.0
        pool, inputs = bench_inputs(runner.info.preprocessing, plan.images, count=plan.batch * 2, seed=seed)
        pick = batch_picker(pool, plan.batch)
        seconds = time_runs(
            lambda i: runner.set_input(pick(i)),
            runner.invoke,
            runs=plan.runs,
            warmup=plan.warmup,
            on_progress=on_progress,
        )
    finally:
        runner.close()
    machine = machine_summary()
    if note:
        machine["note"] = note
    return BenchResult(
        target=target,
        model=model,
        runtime=runner.runtime,
        threads=threads,
        batch=plan.batch,
        runs=plan.runs,
        warmup=plan.warmup,
        inputs=inputs,
        init_ms=init_ms,
        latency_ms=latency_stats(seconds),
        throughput=plan.batch * plan.runs / max(sum(seconds), 1e-12),
        machine=machine,
    )


def benchmark(
    model_path: str | os.PathLike[str],
    *,
    target: str = "host",
    images: np.ndarray | None = None,
    runs: int = 50,
    warmup: int = 5,
    batch: int = 1,
    num_threads: int | None = None,
    runtime: str | None = None,
    xnnpack: bool = True,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
) -> BenchResult:
    """Benchmark a ``.tflite`` model in this process's interpreter (:func:`time_model` over a TFLite runner).

    Args:
        model_path: the model (its sidecar supplies the preprocessing for random inputs).
        target: the name reported as where it ran.
        images: preprocessed real images ``(N, H, W, C)`` to cycle through; random pixels when None.
        runs: timed runs.
        warmup: untimed runs before them.
        batch: images per run (the input tensor is resized).
        num_threads: interpreter threads (None: the runtime's default).
        runtime: force one interpreter package.
        xnnpack: apply the XNNPACK delegate (False: TFLite's builtin kernels only, for comparison).
        seed: seed of the random inputs.
        on_progress: called with 1 after each timed run.

    Raises:
        UsageError: bad counts, or images that do not fit the model.
    """
    from edgecnn.runtime.interpreter import TFLiteRunner

    return time_model(
        lambda: TFLiteRunner(model_path, num_threads=num_threads, runtime=runtime, xnnpack=xnnpack),
        BenchPlan(images, runs, warmup, batch),
        target=target,
        model=str(model_path),
        threads=num_threads,
        seed=seed,
        on_progress=on_progress,
    )
