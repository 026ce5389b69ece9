"""Latency and throughput of one model on one target, with the protocol of TFLite's ``benchmark_model``.

The model is loaded and allocated (timed apart as initialisation), run ``warmup`` times untimed, then
``runs`` times, each run timed alone around ``invoke``. Inputs are set before each run, outside the timing:
real preprocessed images (cycled) or random pixels through the model's own preprocessing, so random
inputs have the range and dtype the model sees in use.

A model without a sidecar (from another converter; any number of inputs) has no preprocessing: every input
tensor gets random values of its own dtype and range instead (:func:`random_fills`), drawn once before the runs:

- int8: uniform integers -128..127; uint8: 0..255; int16 and uint16: their full range; bool: 0 or 1;
- int32, uint32, int64, uint64: 0..255: such inputs are usually indices, ids or lengths, which values from the
  full range would send out of bounds;
- float inputs: uniform over the real range the model's TFLite Metadata normalization gives input 0 (pixels
  0..255 through ``(pixel - mean) / std``), else over the real range the QUANTIZE operation that reads the input
  maps onto its integer type (a full-integer model with float I/O), else over [0, 1).

Dimensions only known at run time (-1 in the shape signature) are 1, the first dimension ``--batch``. The
report says ``inputs: "random"`` and lists each input tensor and its range (``input_tensors``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.flatbuffer import FlatModel, TensorRecord, read_flatbuffer
from edgecnn.runtime.machine import machine_summary
from edgecnn.runtime.preprocess import Preprocessing, fitting_images, scale_pixels
from edgecnn.runtime.progress import ProgressFn

if TYPE_CHECKING:
    from edgecnn.model.metadata import ModelMetadata
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
        input_tensors: for a model without a sidecar, each input tensor as fed: name, dtype, shape, and the range
            its random values were drawn from (:meth:`RandomFill.to_dict`); empty when the sidecar's preprocessing
            made the inputs.
        instructions: on an emulated microcontroller, instructions per inference by kernel set (``per_inference``:
            ``reference`` and ``cmsis-nn``, each with min/p50/max/mean and its firmware's sizes), their ratio
            (``reference_over_cmsis_nn``) and how they were counted (``note``); None elsewhere.
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
    input_tensors: list[dict[str, Any]] = field(default_factory=list)
    instructions: dict[str, Any] | None = None

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
            "input_tensors": [dict(t) for t in self.input_tensors],
            "init_ms": self.init_ms,
            "latency_ms": dict(self.latency_ms),
            "throughput": self.throughput,
            "machine": dict(self.machine),
            "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped],
            "instructions": self.instructions,
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
            input_tensors=[dict(t) for t in data.get("input_tensors", [])],
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
    return scale_pixels(rng.integers(0, 256, size=(count, spec.height, spec.width, spec.channels)), spec)


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


def no_preprocessing_message(model: str | os.PathLike[str]) -> str:
    """Why real images cannot feed a model without a sidecar, and what to do instead."""
    name = Path(model).name
    return (
        f"--images needs the model's preprocessing (image size, channels, pixel scaling), and {name} has no edgecnn "
        f"sidecar ({Path(model).with_suffix('.json').name}) to give it: drop --images to time it on random inputs of "
        "its own types and ranges, or convert the model with edgecnn convert, which writes the sidecar"
    )


# The integer ranges random inputs are drawn from: the type's full range up to 16 bits; 0..255 for wider integers,
# which are usually indices, ids or lengths that values from the full range would send out of bounds.
_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "bool": (0, 1),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
    "int32": (0, 255),
    "uint32": (0, 255),
    "int64": (0, 255),
    "uint64": (0, 255),
}
_FULL_RANGE = ("bool", "int8", "uint8", "int16", "uint16")
_FLOAT_DTYPES = ("float16", "float32", "float64")
_UNIT = (0.0, 1.0)


@dataclass(frozen=True)
class RandomFill:
    """How random values fill one input tensor of a model without a sidecar.

    Attributes:
        name: the tensor's name.
        dtype: its dtype (``int8``, ``float32``...).
        low / high: integers are drawn uniformly from ``low..high`` (both included), floats from ``[low, high)``.
        source: where the range comes from (``the int8 range``, ``TFLite Metadata normalization``...).
    """

    name: str
    dtype: str
    low: float
    high: float
    source: str

    def draw(self, rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
        """Values for the tensor at ``shape``, in its dtype."""
        if self.dtype == "bool":
            return rng.integers(0, 2, size=tuple(shape)).astype(np.bool_)
        dtype = np.dtype(self.dtype)
        if np.issubdtype(dtype, np.integer):
            return rng.integers(int(self.low), int(self.high), size=tuple(shape), dtype=dtype, endpoint=True)
        return rng.uniform(self.low, self.high, size=tuple(shape)).astype(dtype)

    def to_dict(self, shape: Sequence[int]) -> dict[str, Any]:
        """JSON-ready form, with the shape the tensor was fed at (``input_tensors`` in a benchmark's report)."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": [int(d) for d in shape],
            "low": self.low,
            "high": self.high,
            "source": self.source,
        }


def _quantize_range(flat: FlatModel, tensor: TensorRecord) -> tuple[float, float, str] | None:
    """The real range the QUANTIZE operation reading ``tensor`` maps onto its integer type (None: no such op)."""
    for op in flat.operators:
        if op.name != "QUANTIZE" or not op.inputs or op.inputs[0].index != tensor.index or not op.outputs:
            continue
        out = op.outputs[0]
        limits = _INTEGER_RANGES.get(out.dtype) if out.dtype in ("int8", "uint8", "int16") else None
        if out.quantized and limits is not None:
            low, high = sorted((out.scale * (limits[0] - out.zero_point), out.scale * (limits[1] - out.zero_point)))
            return low, high, f"the real range its QUANTIZE maps onto {out.dtype}"
    return None


def _metadata_range(metadata: ModelMetadata | None) -> tuple[float, float, str] | None:
    """The real range TFLite Metadata's normalization gives 0..255 pixels (None: no usable normalization)."""
    if metadata is None or not metadata.mean or not metadata.std:
        return None
    mean, std = np.asarray(metadata.mean, dtype=np.float64), np.asarray(metadata.std, dtype=np.float64)
    # One value stands for every channel; otherwise one per channel on both sides.
    if mean.size != std.size and 1 not in (mean.size, std.size):
        return None
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        return None
    low, high = float(np.min((0.0 - mean) / std)), float(np.max((255.0 - mean) / std))
    return low, high, "its TFLite Metadata normalization of 0..255 pixels"


def _fill(flat: FlatModel, tensor: TensorRecord, metadata_range: tuple[float, float, str] | None) -> RandomFill:
    """The fill of one input: its integer type's range, or a float range from metadata, QUANTIZE, else [0, 1)."""
    if tensor.dtype in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[tensor.dtype]
        wide = tensor.dtype not in _FULL_RANGE
        source = "0..255: wide integers are usually indices, ids or lengths" if wide else f"the {tensor.dtype} range"
        return RandomFill(tensor.name, tensor.dtype, low, high, source)
    if tensor.dtype not in _FLOAT_DTYPES:
        raise UsageError(
            f"input {tensor.name} is {tensor.dtype}: edgecnn cannot make random values for it (it makes them for "
            "integer, bool and float inputs)"
        )
    found = metadata_range or _quantize_range(flat, tensor)
    low, high, source = found if found is not None else (*_UNIT, "nothing in the model gives its range")
    return RandomFill(tensor.name, tensor.dtype, low, high, source)


def random_fills(model: str | os.PathLike[str]) -> list[RandomFill]:
    """How random values fill each input of a model without a sidecar, in input order (see the module docstring).

    Raises:
        ModelFormatError: the file is not a TFLite model.
        UsageError: an input of a type random values cannot be made for (string, complex...).
    """
    path = Path(model)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read {path} ({exc.strerror or exc}): check the path") from None
    flat = read_flatbuffer(content)
    metadata_range = _metadata_range(_metadata(content))
    # The metadata describes the first input (the image of a classifier); other inputs get their own ranges.
    return [
        _fill(flat, tensor, metadata_range if i == 0 and tensor.dtype in _FLOAT_DTYPES else None)
        for i, tensor in enumerate(flat.inputs)
    ]


def _metadata(content: bytes) -> ModelMetadata | None:
    """The model's TFLite Metadata; None without any, or when it cannot be read (the graph alone then decides)."""
    from edgecnn.model.metadata import read_metadata

    try:
        return read_metadata(content)
    except ModelFormatError:
        return None


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
    """A loaded model that a benchmark can time: its input set apart from the run that is timed.

    ``info`` is the sidecar's metadata, None for a model without one: such a model is fed through
    :meth:`set_tensors` with random values of each input's own type (:func:`random_fills`).
    """

    info: ModelInfo | None
    runtime: str
    path: Path

    def resize(self, batch: int) -> None:
        """Prepare for ``batch`` images per run (UsageError when the model or device cannot)."""
        ...

    def set_input(self, images: np.ndarray) -> None:
        """Put preprocessed images (one batch) into the input tensor."""
        ...

    def input_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the input tensors as allocated now (after :meth:`resize`), in input order."""
        ...

    def set_tensors(self, arrays: Sequence[np.ndarray]) -> None:
        """Put raw values of each input's own dtype and current shape into the input tensors, in input order."""
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
    ``plan.runs`` timed ones, each input set before its run, outside the timing. A model with a sidecar gets real
    images or random pixels through its preprocessing; one without gets random values in every input tensor.

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
        UsageError: a batch the model or device cannot take, images that do not fit the model, or images for a
            model without a sidecar (no preprocessing to feed them through).
    """
    start = time.perf_counter()
    runner = load()
    try:
        runner.resize(plan.batch)
        init_ms = (time.perf_counter() - start) * 1000.0
        if runner.info is not None:
            set_input, inputs = _preprocessed_images(runner, runner.info.preprocessing, plan, seed=seed)
            tensors: list[dict[str, Any]] = []
        else:
            set_input, tensors = _random_tensors(runner, plan, seed=seed)
            inputs = "random"
        seconds = time_runs(set_input, runner.invoke, runs=plan.runs, warmup=plan.warmup, on_progress=on_progress)
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
        input_tensors=tensors,
    )


def _preprocessed_images(
    runner: Timed, spec: Preprocessing, plan: BenchPlan, *, seed: int
) -> tuple[Callable[[int], None], str]:
    """``set_input(i)`` for a model with a sidecar (images, or random pixels through its preprocessing) and how the
    report names the inputs."""
    pool, inputs = bench_inputs(spec, plan.images, count=plan.batch * 2, seed=seed)
    pick = batch_picker(pool, plan.batch)

    def set_input(i: int) -> None:
        runner.set_input(pick(i))

    return set_input, inputs


RANDOM_SETS = 2
"""Sets of random input values a benchmark of a model without a sidecar alternates between."""


def _random_tensors(runner: Timed, plan: BenchPlan, *, seed: int) -> tuple[Callable[[int], None], list[dict[str, Any]]]:
    """``set_input(i)`` for a model without a sidecar (random values in every input) and its tensors as reported.

    Raises:
        UsageError: real images in the plan (no preprocessing to feed them through), or an input random values
            cannot be made for.
        ModelFormatError: the interpreter and the file disagree on the inputs.
    """
    if plan.images is not None:
        raise UsageError(no_preprocessing_message(runner.path))
    fills = random_fills(runner.path)
    shapes = runner.input_shapes()
    if len(fills) != len(shapes):
        raise ModelFormatError(
            f"{runner.path.name} lists {len(fills)} inputs but the interpreter has {len(shapes)}: check the file"
        )
    rng = np.random.default_rng(seed)
    sets = [[fill.draw(rng, shape) for fill, shape in zip(fills, shapes)] for _ in range(RANDOM_SETS)]

    def set_input(i: int) -> None:
        runner.set_tensors(sets[i % RANDOM_SETS])

    return set_input, [fill.to_dict(shape) for fill, shape in zip(fills, shapes)]


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
        model_path: the model (its sidecar supplies the preprocessing for random inputs; a model without one gets
            random values of each input's own type and range).
        target: the name reported as where it ran.
        images: preprocessed real images ``(N, H, W, C)`` to cycle through; random inputs when None.
        runs: timed runs.
        warmup: untimed runs before them.
        batch: images per run (the input tensor is resized).
        num_threads: interpreter threads (None: the runtime's default).
        runtime: force one interpreter package.
        xnnpack: apply the XNNPACK delegate (False: TFLite's builtin kernels only, for comparison).
        seed: seed of the random inputs.
        on_progress: called with 1 after each timed run.

    Raises:
        UsageError: bad counts, images that do not fit the model, or images for a model without a sidecar.
    """
    from edgecnn.runtime.interpreter import TFLiteRunner

    return time_model(
        lambda: TFLiteRunner(
            model_path, num_threads=num_threads, runtime=runtime, xnnpack=xnnpack, require_sidecar=False
        ),
        BenchPlan(images, runs, warmup, batch),
        target=target,
        model=str(model_path),
        threads=num_threads,
        seed=seed,
        on_progress=on_progress,
    )
