"""A stand-in for TFLite's ``benchmark_model`` (the Android arm64 build cannot run here), for the Android tests.

It takes the real tool's flags (``--graph``, ``--num_runs``, ``--warmup_runs``, ``--min_secs``, ``--num_threads``,
``--use_xnnpack``/``--use_gpu``/``--use_nnapi``, ``--input_layer``, ``--input_layer_shape``,
``--input_layer_value_files``, ``--output_filepath``, ``--help``...), really loads the model with ai-edge-litert,
feeds the value files, runs it, and prints its log in the real tool's format (the lines of
tensorflow/lite/tools/benchmark/benchmark_model.cc and benchmark_tflite_model.cc, as in the real outputs quoted
in tests/targets/android/test_benchmark_model_output.py): ``--help`` lists the flags on stderr and exits 1, an
unknown flag is only warned about, a missing or corrupt model fails with the real messages and exit code 1, a value
file of the wrong size aborts (exit 134) as the real TFLITE_LOG(FATAL) does.

It always computes with TFLite's reference kernels, so its outputs can be compared bit-exactly with a reference-kernel
run on the host; the delegate flags change only what it logs.

Environment variables (the tests' wrapper scripts set them):
    EDGECNN_FAKE_BENCHMARK_BUILD=2.8: behave like a TensorFlow 2.8 build: no ``--output_filepath`` (the flag is then
        unconsumed and nothing is written), no ``INFO:`` prefixes, no percentiles.
    EDGECNN_FAKE_NO_GPU=1: the GPU delegate cannot be applied ("Failed to apply GPU delegate.").
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

LEGACY = os.environ.get("EDGECNN_FAKE_BENCHMARK_BUILD") == "2.8"

# (name, type, default, usage text) as BenchmarkModel::GetFlags, BenchmarkTfLiteModel::GetFlags and the delegate
# providers declare them; the order is theirs too.
FLAGS: list[tuple[str, str, str, str]] = [
    ("num_runs", "int32", "50", "expected number of runs, see also min_secs, max_secs"),
    ("min_secs", "float", "1", "minimum number of seconds to rerun for, potentially making the actual number of runs "
     "to be greater than num_runs"),
    ("max_secs", "float", "150", "maximum number of seconds to rerun for, potentially making the actual number of "
     "runs to be less than num_runs."),
    ("run_delay", "float", "-1", "delay between runs in seconds"),
    ("num_threads", "int32", "-1", "number of threads"),
    ("benchmark_name", "string", "", "benchmark name"),
    ("output_prefix", "string", "", "benchmark output prefix"),
    ("warmup_runs", "int32", "1", "minimum number of runs performed on initialization, to allow performance "
     "characteristics to settle, see also warmup_min_secs"),
    ("warmup_min_secs", "float", "0.5", "minimum number of seconds to rerun for, potentially making the actual number "
     "of warm-up runs to be greater than warmup_runs"),
    ("verbose", "bool", "false", "Whether to log parameters whose values are not set. By default, only log those "
     "parameters that are set by parsing their values from the commandline flags."),
    ("dry_run", "bool", "false", "Whether to run the tool just with simply loading the model, allocating tensors etc. "
     "but without actually invoking any op kernels."),
    ("graph", "string", "", "graph file name"),
    ("input_layer", "string", "", "input layer names"),
    ("input_layer_shape", "string", "", "input layer shape"),
    ("input_layer_value_range", "string", "", "A map-like string representing value range for *integer* input "
     "layers."),
    ("input_layer_value_files", "string", "", "A map-like string representing value file. Each item is separated by "
     "',', and the item value consists of input layer name and value file path separated by ':'."),
    ("allow_fp16", "bool", "false", "allow fp16"),
    ("require_full_delegation", "bool", "false", "require delegate to run the entire graph"),
    ("enable_op_profiling", "bool", "false", "enable op profiling"),
    ("output_filepath", "string", "", "File path to export outputs layer as binary data."),
    ("help", "bool", "false", "Print out all supported flags if true."),
    ("use_gpu", "bool", "false", "use gpu"),
    ("use_nnapi", "bool", "false", "use nnapi delegate api"),
    ("use_xnnpack", "bool", "false", "explicitly apply the XNNPACK delegate. Note the XNNPACK delegate could be "
     "implicitly applied by the TF Lite runtime regardless the value of this parameter."),
]  # fmt: skip
if LEGACY:  # --output_filepath arrived in TensorFlow 2.10 (tensorflow/tensorflow#55493)
    FLAGS = [f for f in FLAGS if f[0] != "output_filepath"]

TYPES = {name: kind for name, kind, _, _ in FLAGS}


class Failed(Exception):
    """The run stops: the real tool logs ``Benchmarking failed.`` and exits with EXIT_FAILURE."""


def log(level: str, text: str) -> None:
    """TFLITE_LOG: INFO and WARN on stdout, ERROR on stderr; the ``LEVEL: `` prefix only in TF 2.13 and later."""
    stream = sys.stderr if level == "ERROR" else sys.stdout
    print(text if LEGACY else f"{level}: {text}", file=stream, flush=True)


def runtime_log(level: str, text: str) -> None:
    """What the TFLite runtime itself logs (through its own logger): always prefixed."""
    print(f"{level}: {text}", file=sys.stderr if level == "ERROR" else sys.stdout, flush=True)


def usage(argv0: str) -> str:
    """Flags::Usage: one ``--name=default<TAB>type<TAB>optional<TAB>text`` line per flag."""
    names = [f"--{name}={default}" for name, _, default, _ in FLAGS]
    width = max(len(n) for n in names)
    lines = [f"usage: {argv0} <flags>", "Flags:"]
    lines += [f"\t{n:<{width}}\t{kind}\toptional\t{text}" for n, (_, kind, _, text) in zip(names, FLAGS)]
    return "\n".join(lines)


def parse_flags(argv: list[str]) -> tuple[dict[str, object], list[str], list[str]]:
    """(values, unconsumed arguments, parse errors), as Flags::Parse reads ``--name=value``."""
    values: dict[str, object] = {name: convert(kind, default) for name, kind, default, _ in FLAGS}
    unconsumed, errors = [], []
    for arg in argv:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep or name not in TYPES:
            unconsumed.append(arg)  # "--help" alone too: Flags::Parse then reports a parse failure (usage)
            continue
        try:
            values[name] = convert(TYPES[name], value)
        except ValueError:
            errors.append(f"Failed to parse flag '{name}' against argv '{arg}'")
    return values, unconsumed, errors


def convert(kind: str, text: str) -> object:
    """A flag's text as its type (bool takes true/false/1/0 only, as ParseBoolFlag)."""
    if kind == "bool":
        if text not in ("true", "false", "0", "1"):
            raise ValueError(text)
        return text in ("true", "1")
    if kind == "int32":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def format_double(value: float) -> str:
    """A double as an ostream prints it by default (6 significant digits)."""
    return "nan" if math.isnan(value) else f"{value:.6g}"


def stat_line(durations: list[int]) -> str:
    """Stat::OutputToStream (StatWithPercentiles adds p5/median/p95 in recent versions)."""
    n = len(durations)
    if n == 0:
        line = "count=0"
    elif min(durations) == max(durations):
        line = f"count={n} curr={durations[-1]}" + ("(all same)" if n > 1 else "")
    else:
        avg = sum(durations) / n
        variance = int(sum(d * d for d in durations) / n - avg * avg)
        line = (
            f"count={n} first={durations[0]} curr={durations[-1]} min={min(durations)} max={max(durations)} "
            f"avg={format_double(avg)} std={int(math.sqrt(max(variance, 0)))}"
        )
    if not LEGACY:
        ordered = sorted(durations)

        def percentile(p: int) -> int:
            return ordered[n * p // 100] if ordered else 0  # quiet_NaN of int64 is 0

        line += f" p5={percentile(5)} median={percentile(50)} p95={percentile(95)}"
    return line


def run_phase(invoke, set_inputs, runs: int, min_secs: float, max_secs: float) -> list[int]:  # type: ignore[no-untyped-def]
    """BenchmarkModel::Run: at least ``runs`` runs and ``min_secs`` seconds, at most ``max_secs``."""
    log("INFO", f"Running benchmark for at least {runs} iterations and at least {min_secs:g} seconds but terminate if "
        f"exceeding {max_secs:g} seconds.")  # fmt: skip
    start = time.monotonic()
    durations: list[int] = []
    while (len(durations) < runs or time.monotonic() - start < min_secs) and time.monotonic() - start <= max_secs:
        set_inputs()
        began = time.perf_counter()
        invoke()
        durations.append(int((time.perf_counter() - began) * 1e6))
    log("INFO", stat_line(durations) + "\n")
    return durations


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load(graph: str, threads: int):  # type: ignore[no-untyped-def]
    """The interpreter with the reference kernels, or the real tool's load errors."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = Path(graph)
    if not path.is_file():
        runtime_log("ERROR", f"Could not open '{graph}'.")
        log("ERROR", f"Failed to mmap model {graph}")
        raise Failed
    try:
        interpreter = Interpreter(
            model_content=path.read_bytes(),
            num_threads=threads if threads > 0 else None,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        )
    except ValueError:
        runtime_log("ERROR", "The model is not a valid Flatbuffer buffer")
        log("ERROR", f"Failed to mmap model {graph}")
        raise Failed from None
    log("INFO", f"Loaded model {graph}")
    runtime_log("INFO", "Initialized TensorFlow Lite runtime.")
    return interpreter


def apply_delegates(values: dict[str, object]) -> None:
    """What applying the requested delegates logs (the computation stays on the reference kernels)."""
    if values["use_gpu"]:
        runtime_log("INFO", "Created TensorFlow Lite delegate for GPU.")
        log("INFO", "GPU delegate created.")
        if os.environ.get("EDGECNN_FAKE_NO_GPU"):
            log("ERROR", "Failed to apply GPU delegate.")
            raise Failed
        log("INFO", "Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate.")
    if values["use_nnapi"]:
        runtime_log("INFO", "Created TensorFlow Lite delegate for NNAPI.")
        log("INFO", "NNAPI delegate created.")
        log(
            "INFO",
            "Explicitly applied NNAPI delegate, and the model graph will be completely executed by the delegate.",
        )
    if values["use_xnnpack"]:
        runtime_log("INFO", "Created TensorFlow Lite XNNPACK delegate for CPU.")
        log("INFO", "XNNPACK delegate created.")
        log("INFO", "Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the "
            "delegate.")  # fmt: skip


def prepare_inputs(interpreter, values: dict[str, object]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """PopulateInputLayerInfo + PrepareInputData: value files where given, random data elsewhere."""
    names = [n for n in str(values["input_layer"]).split(",") if n]
    shapes = [s for s in str(values["input_layer_shape"]).split(":") if s]
    if len(names) != len(shapes):
        log("ERROR", f"The number of items in --input_layer_shape ({values['input_layer_shape']}, with {len(shapes)} "
            f"items) must match the number of items in --input_layer ({values['input_layer']}, with {len(names)} "
            "items). For example --input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20")  # fmt: skip
        raise Failed
    files = {}
    for item in [i for i in str(values["input_layer_value_files"]).split(",") if i]:
        name, _, file = item.partition(":")
        if name not in names:
            log("ERROR", f"Cannot find the corresponding input_layer name({name}) in --input_layer as "
                f"{values['input_layer']}")  # fmt: skip
            raise Failed
        files[name] = file
    details = interpreter.get_input_details()
    for j, (name, shape) in enumerate(zip(names, shapes)):
        tensor = details[j]
        if name != tensor["name"]:
            log("WARN", f"Tensor # {tensor['index']} is named {tensor['name']} but flags call it {name}")
        dims = [int(d) for d in shape.split(",")]
        if len(dims) != len(tensor["shape"]):
            log("ERROR", f"Input tensor #{tensor['index']} should have {len(tensor['shape'])} dimensions!")
            raise Failed
        interpreter.resize_tensor_input(tensor["index"], dims)
    interpreter.allocate_tensors()
    data = []
    rng = np.random.default_rng()
    for j, tensor in enumerate(interpreter.get_input_details()):
        dtype, shape = np.dtype(tensor["dtype"]), tuple(tensor["shape"])
        file = files.get(names[j]) if j < len(names) else None
        if file is not None:
            if not Path(file).is_file():
                log("ERROR", f"Failed to read the input_layer_value_file:{file}")
                sys.exit(134)  # TFLITE_LOG(FATAL) aborts
            raw = Path(file).read_bytes()
            if len(raw) != int(np.prod(shape)) * dtype.itemsize:
                log("ERROR", f"The size of {file} is {len(raw)} bytes. It should be "
                    f"{int(np.prod(shape)) * dtype.itemsize} bytes.")  # fmt: skip
                sys.exit(134)
            data.append(np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape))
        elif dtype == np.int8:
            data.append(rng.integers(-127, 128, size=shape).astype(np.int8))
        elif dtype == np.uint8:
            data.append(rng.integers(0, 255, size=shape).astype(np.uint8))
        else:
            data.append(rng.uniform(-0.5, 0.5, size=shape).astype(dtype))
    return data


def benchmark(values: dict[str, object]) -> None:
    graph = str(values["graph"])
    if not graph:
        log("ERROR", "Please specify the name of your TF Lite input file with --graph")
        raise Failed
    log("INFO", "Log parameter values verbosely: [0]")
    for name, label in (("num_runs", "Min num runs"), ("min_secs", "Min runs duration (seconds)"),
                        ("num_threads", "Num threads"), ("warmup_runs", "Min warmup runs"),
                        ("warmup_min_secs", "Min warmup runs duration (seconds)")):  # fmt: skip
        if name in SET:
            log(
                "INFO",
                f"{label}: [{values[name]:g}]" if isinstance(values[name], float) else f"{label}: [{values[name]}]",
            )
    log("INFO", f"Graph: [{graph}]")
    for name, label in (("input_layer", "Input layers"), ("input_layer_shape", "Input shapes"),
                        ("input_layer_value_files", "Input value files"), ("output_filepath",
                        "File path to export outputs layer to"), ("use_gpu", "Use gpu"), ("use_nnapi", "Use NNAPI"),
                        ("use_xnnpack", "Use xnnpack")):  # fmt: skip
        if name in SET:
            value = values[name]
            log("INFO", f"{label}: [{int(value) if isinstance(value, bool) else value}]")
    threads = int(values["num_threads"])  # type: ignore[call-overload]
    if threads > 0:
        log("INFO", f"#threads used for CPU inference: [{threads}]")
    size_mb = Path(graph).stat().st_size / 1e6 if Path(graph).is_file() else 0.0
    start_mem = maxrss_mb()
    started = time.perf_counter()
    interpreter = load(graph, threads)
    apply_delegates(values)
    inputs = prepare_inputs(interpreter, values)
    init_us = int((time.perf_counter() - started) * 1e6)
    init_mem = maxrss_mb() - start_mem
    log("INFO", f"The input model file size (MB): {format_double(size_mb)}")
    log("INFO", f"Initialized session in {format_double(init_us / 1e3)}ms.")
    indices = [t["index"] for t in interpreter.get_input_details()]

    def set_inputs() -> None:
        for index, array in zip(indices, inputs):
            interpreter.set_tensor(index, array)

    max_secs = float(values["max_secs"])  # type: ignore[arg-type]
    warmup = run_phase(interpreter.invoke, set_inputs, int(values["warmup_runs"]), float(values["warmup_min_secs"]),  # type: ignore[arg-type]
                       max_secs)  # fmt: skip
    timed = run_phase(interpreter.invoke, set_inputs, int(values["num_runs"]), float(values["min_secs"]), max_secs)  # type: ignore[arg-type]
    output = str(values.get("output_filepath", ""))
    if output:  # OutputSaver::OnBenchmarkEnd: every output tensor's raw bytes, one after the other
        with open(output, "wb") as f:
            for details in interpreter.get_output_details():
                f.write(interpreter.get_tensor(details["index"]).tobytes())
    first = warmup[0] if warmup else 0
    warm_avg = sum(warmup) / len(warmup) if warmup else math.nan
    timed_avg = sum(timed) / len(timed) if timed else math.nan
    log("INFO", f"Inference timings in us: Init: {init_us}, First inference: {first}, Warmup (avg): "
        f"{format_double(warm_avg)}, Inference (avg): {format_double(timed_avg)}")  # fmt: skip
    log("INFO", "Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
        "the actual memory footprint of the model at runtime. Take the information at your discretion.")  # fmt: skip
    log("INFO", f"Memory footprint delta from the start of the tool (MB): init={format_double(init_mem)} "
        f"overall={format_double(maxrss_mb() - start_mem)}")  # fmt: skip


SET: set[str] = set()


def main(argv: list[str]) -> int:
    log("INFO", "STARTING!")
    values, unconsumed, errors = parse_flags(argv[1:])
    SET.update(a.removeprefix("--").partition("=")[0] for a in argv[1:] if a not in unconsumed)
    for error in errors:
        log("ERROR", error)
    if errors or values["help"] or (unconsumed and unconsumed[0] == "--help"):
        log("ERROR", usage(argv[0]))
        log("ERROR", "Benchmarking failed.")
        return 1
    if unconsumed:
        log("WARN", f"Unconsumed cmdline flags: {' '.join(unconsumed)}")
    try:
        benchmark(values)
    except Failed:
        log("ERROR", "Benchmarking failed.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
