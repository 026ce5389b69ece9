"""TFLite's ``benchmark_model`` tool: its command lines, and pure parsers of what it prints.

The tool (``tensorflow/lite/tools/benchmark``) loads a ``.tflite`` model, applies the delegates its flags ask
for, runs ``--warmup_runs`` untimed and ``--num_runs`` timed invocations, and logs one ``count=... first=...
curr=... min=... max=... avg=... std=...`` line per phase (recent versions add ``p5=... median=... p95=...``),
then ``Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ...``.
All times are microseconds. Lines may carry an ``INFO:`` prefix (TF 2.13+) or a logcat prefix (the Android app).

Which flags a binary has depends on its version and build, so they are read from its own ``--help`` (which
lists ``--name=default<TAB>type<TAB>optional<TAB>text`` per flag) instead of assumed: ``--output_filepath``,
which writes the raw bytes of every output tensor after the last run, exists since TensorFlow 2.10
(tensorflow/tensorflow#55493), and an unknown flag is only warned about ("Unconsumed cmdline flags"), not refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from edgecnn.errors import TargetUnavailableError

OUTPUT_DUMP_FLAG = "output_filepath"
"""The flag that writes the output tensors' raw bytes after the last run (TensorFlow 2.10 and later)."""

INPUT_NAME = "input"
"""The name given to the input in ``--input_layer``: the tool only warns when it differs from the tensor's name, and
the real names (``serving_default_input:0``) hold ``:``, which the value-file flag would need escaped (differently
in different versions)."""

DELEGATE_FLAGS: dict[str, tuple[str, str]] = {
    "cpu": ("use_xnnpack", "false"),
    "xnnpack": ("use_xnnpack", "true"),
    "gpu": ("use_gpu", "true"),
    "nnapi": ("use_nnapi", "true"),
}
"""edgecnn's delegate names → the benchmark_model flag and value that select them. ``cpu`` is TFLite's builtin
kernels without XNNPACK (an explicit ``--use_xnnpack=false`` turns off the default XNNPACK delegate)."""

_FLAG_RE = re.compile(r"^\s*--([A-Za-z0-9_]+)=", re.MULTILINE)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_PAIR_RE = re.compile(rf"\b([a-z0-9]+)=({_NUMBER})", re.IGNORECASE)
_TIMINGS_RE = re.compile(r"timings in us:\s*(.*)$", re.IGNORECASE)
_TIMING_ITEM_RE = re.compile(rf"([A-Za-z][A-Za-z ()]*?):\s*({_NUMBER})", re.IGNORECASE)
_MEMORY_RE = re.compile(rf"footprint[^:\n]*\(MB\):\s*init=({_NUMBER})\s+overall=({_NUMBER})", re.IGNORECASE)
_PEAK_RE = re.compile(rf"peak memory footprint \(MB\) via periodic monitoring:\s*({_NUMBER})", re.IGNORECASE)
# A log line's text follows "INFO: ", "ERROR: " or a logcat prefix ("05-30 15:16:44.857  3380  3380 I tflite  : ").
_PREFIX_RE = re.compile(r"^(?:\S+ \S+\s+\d+\s+\d+ [VDIWEF] [^:]*:\s*|(?:INFO|WARN|WARNING|ERROR|FATAL|VERBOSE): )")
_ERROR_PREFIX_RE = re.compile(r"^(?:\S+ \S+\s+\d+\s+\d+ [EF] |(?:ERROR|FATAL): )")
_FAILURES = (
    "Failed to apply",
    "Failed to mmap model",
    "Failed to allocate tensors",
    "Failed to initialize the interpreter",
    "Failed to invoke",
    "Failed to read the input_layer_value_file",
    "Failed to parse flag",
    "Could not open",
    "is not a valid Flatbuffer",
    "should have",  # "Input tensor #0 should have 4 dimensions!"
    "It should be",  # "The size of in.bin is 12 bytes. It should be 3072 bytes."
    "Didn't find op for builtin opcode",
    "Encountered unresolved custom op",
    "not found",  # the device shell: "benchmark_model: not found"
    "Permission denied",
    "not executable",
    "Exec format error",
    "Benchmarking failed",
)


@dataclass(frozen=True)
class RunStats:
    """One ``count=...`` line: the runs of one phase (warm-up or timed), in microseconds.

    Attributes:
        count: runs in the phase.
        first / curr: the first and the last run.
        min / max / avg / std: over all runs (std is the population standard deviation).
        p5 / median / p95: printed by recent versions only (None otherwise).
    """

    count: int
    first: float
    curr: float
    min: float
    max: float
    avg: float
    std: float
    p5: float | None = None
    median: float | None = None
    p95: float | None = None


@dataclass(frozen=True)
class BenchmarkLog:
    """What one benchmark_model run printed, in microseconds and megabytes; None for what it did not print.

    Attributes:
        warmup / inference: the warm-up and timed phases (None for an empty phase, ``count=0``).
        init_us: loading the model, applying delegates and allocating tensors.
        first_inference_us / warmup_avg_us / inference_avg_us: from the ``Inference timings`` line.
        memory_init_mb / memory_overall_mb: the memory footprint line (where the platform reports it).
        peak_memory_mb: with ``--report_peak_memory_footprint=true``.
    """

    warmup: RunStats | None = None
    inference: RunStats | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None

    @property
    def complete(self) -> bool:
        """True when the timed phase ran and the closing timings line was printed."""
        return self.inference is not None and self.inference_avg_us is not None


def parse_help(text: str) -> frozenset[str]:
    """The flag names a benchmark_model ``--help`` lists (one ``--name=default`` per line)."""
    return frozenset(_FLAG_RE.findall(text.replace("\r\n", "\n")))


def message(line: str) -> str:
    """A log line without its ``INFO:``/``ERROR:`` or logcat prefix."""
    return _PREFIX_RE.sub("", line.strip(), count=1).strip()


def _number(text: str) -> float:
    return float(text)


def parse_stats(line: str) -> RunStats | None:
    """Parse one ``count=...`` line (any prefix); None for ``count=0`` or a line without ``count=``.

    The tool prints ``count=N curr=X`` (plus ``(all same)`` when N > 1) when every run took the same time; then
    first, min, max and avg are X and std is 0.
    """
    start = line.find("count=")
    if start < 0:
        return None
    values = {k.lower(): _number(v) for k, v in _PAIR_RE.findall(line[start:])}
    count = int(values.get("count", 0))
    if count <= 0 or "curr" not in values:
        return None
    curr = values["curr"]
    percentiles = {
        k: (None if k not in values or math.isnan(values[k]) else values[k]) for k in ("p5", "median", "p95")
    }
    if "min" not in values:  # every run took the same time
        return RunStats(count, curr, curr, curr, curr, curr, 0.0, **percentiles)
    return RunStats(
        count=count,
        first=values.get("first", curr),
        curr=curr,
        min=values["min"],
        max=values["max"],
        avg=values["avg"],
        std=values.get("std", 0.0),
        **percentiles,
    )


def _timings(text: str) -> dict[str, float]:
    """The ``Inference timings in us`` line as {key: value}, in either of its two historical forms.

    TF 2.x: ``Init: a, First inference: b, Warmup (avg): c, Inference (avg): d``. TF 1.x and early 2.x:
    ``Average inference timings in us: Warmup: c, Init: a, Inference: d`` (or ``no stats: d``).
    """
    found: dict[str, float] = {}
    items = _TIMING_ITEM_RE.findall(text)
    for key, value in items:
        name = key.strip().lower()
        if name == "init":
            found["init"] = _number(value)
        elif name == "first inference":
            found["first"] = _number(value)
        elif name.startswith("warmup"):
            found["warmup"] = _number(value)
        elif name.startswith("inference") or name == "no stats":
            found["inference"] = _number(value)
    if "inference" not in found and items:  # the old form names the last item after the benchmark
        found["inference"] = _number(items[-1][1])
    return found


def parse_log(text: str) -> BenchmarkLog:
    """Parse everything benchmark_model printed (stdout and stderr together, any version).

    A ``count=`` line belongs to the phase announced by the ``Running benchmark for at least ...`` line before it
    (the first such line is the warm-up, the second the timed runs), so per-operator profiling tables, which
    also print ``count=``, are not mistaken for them.
    """
    phases: list[RunStats | None] = []
    waiting = False
    timings: dict[str, float] = {}
    memory: tuple[float, float] | None = None
    peak = None
    for raw in text.replace("\r\n", "\n").splitlines():
        line = message(raw)
        if line.startswith("Running benchmark for at least"):
            waiting = True
            continue
        if waiting and line.startswith("count="):
            phases.append(parse_stats(line))
            waiting = False
            continue
        found = _TIMINGS_RE.search(line)
        if found:
            timings = _timings(found.group(1))
            continue
        footprint = _MEMORY_RE.search(line)
        if footprint:
            memory = (_number(footprint.group(1)), _number(footprint.group(2)))
            continue
        peak_match = _PEAK_RE.search(line)
        if peak_match:
            peak = _number(peak_match.group(1))
    warmup = phases[0] if len(phases) >= 1 else None
    inference = phases[1] if len(phases) >= 2 else None
    return BenchmarkLog(
        warmup=warmup,
        inference=inference,
        init_us=timings.get("init"),
        first_inference_us=timings.get("first"),
        warmup_avg_us=timings.get("warmup"),
        inference_avg_us=timings.get("inference"),
        memory_init_mb=memory[0] if memory else None,
        memory_overall_mb=memory[1] if memory else None,
        peak_memory_mb=peak,
    )


def benchmark_error(text: str) -> str | None:
    """The line that best explains why a run failed: the first error naming a cause, else the first error line.

    ``Benchmarking failed.`` (the tool's last word on any failure) is used only when nothing says more.
    """
    errors = []
    for raw in text.replace("\r\n", "\n").splitlines():
        if not raw.strip():
            continue
        line = message(raw)
        if _ERROR_PREFIX_RE.match(raw.strip()) or any(key in line for key in _FAILURES):
            errors.append(line)
    specific = [e for e in errors if "Benchmarking failed" not in e]
    for line in specific:
        if any(key in line for key in _FAILURES):
            return line
    if specific:
        return specific[0]
    return errors[0] if errors else None


def delegate_flag(delegate: str, flags: frozenset[str]) -> list[str]:
    """The arguments that select ``delegate`` (see :data:`DELEGATE_FLAGS`).

    Raises:
        TargetUnavailableError: the binary was built without that delegate (its ``--help`` lacks the flag).
    """
    name, value = DELEGATE_FLAGS[delegate]
    if name in flags:
        return [f"--{name}={value}"]
    if delegate == "cpu":  # a build from before XNNPACK: its CPU path is the builtin kernels already
        return []
    raise TargetUnavailableError(
        f"this benchmark_model has no --{name} (it was built without the {delegate.upper()} delegate): choose "
        "another --delegate, or use a build that has it (see targets/android/README.md)"
    )


def benchmark_args(
    *,
    graph: str,
    flags: frozenset[str],
    delegate: str,
    threads: int | None,
    runs: int,
    warmup: int,
    input_shape: Sequence[int] | None = None,
    input_file: str | None = None,
    output_file: str | None = None,
) -> list[str]:
    """The flags of one benchmark_model run (the binary's path goes first, by the caller).

    Args:
        graph: the model's path on the device.
        flags: what the binary's ``--help`` lists (:func:`parse_help`).
        delegate: one of :data:`DELEGATE_FLAGS`.
        threads: ``--num_threads`` (None: the tool's default).
        runs / warmup: timed and untimed runs; ``--min_secs=0``/``--warmup_min_secs=0`` make them exact
            (otherwise the tool keeps running for at least 1 s and 0.5 s).
        input_shape: with ``input_file``: the input's shape, batch first.
        input_file: raw little-endian bytes of the input tensor, fed with ``--input_layer_value_files``.
        output_file: where ``--output_filepath`` writes the output tensors' raw bytes.

    Raises:
        TargetUnavailableError: the binary lacks a flag the request needs.
    """
    args = [f"--graph={graph}"]
    if threads is not None:
        args.append(f"--num_threads={threads}")
    args += [f"--num_runs={runs}", f"--warmup_runs={warmup}"]
    args += [f"--{name}=0" for name in ("min_secs", "warmup_min_secs") if name in flags]
    args += delegate_flag(delegate, flags)
    if input_file is not None:
        if "input_layer_value_files" not in flags:
            raise TargetUnavailableError(
                "this benchmark_model has no --input_layer_value_files, so it cannot be fed real images: use "
                "TensorFlow 2.2 or later (see targets/android/README.md)"
            )
        if input_shape is None:
            raise ValueError("input_file needs input_shape")
        args += [
            f"--input_layer={INPUT_NAME}",
            f"--input_layer_shape={','.join(str(int(d)) for d in input_shape)}",
            f"--input_layer_value_files={INPUT_NAME}:{input_file}",
        ]
    if output_file is not None:
        if OUTPUT_DUMP_FLAG not in flags:
            raise TargetUnavailableError(no_output_dump_message())
        args.append(f"--{OUTPUT_DUMP_FLAG}={output_file}")
    return args


def no_output_dump_message() -> str:
    """The error for a binary without :data:`OUTPUT_DUMP_FLAG`."""
    return (
        f"this benchmark_model has no --{OUTPUT_DUMP_FLAG} (the output dump), so the phone's scores cannot be read "
        "back and accuracy cannot be measured there: it measures latency only (edgecnn bench --target android); "
        "for run and validate use a build of TensorFlow 2.10 or later, such as the nightly "
        "android_aarch64_benchmark_model (see targets/android/README.md)"
    )
