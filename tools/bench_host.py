"""Host latency and throughput of int8 and float TFLite models, next to ONNX Runtime on the same network.

Usage (from the project root, with ``pip install -e ".[train,bench]"``):

    python tools/bench_host.py --json /tmp/bench_host.json      # --cifar defaults to ../shared/datasets/cifar10

Builds two models: the demo's (8x8 digits, via ``edgecnn.workflows.demo.run_demo``) and the default CNN trained on a
class-balanced CIFAR-10 subset. Each is converted to full int8 and to float TFLite, and the same Keras network
is exported to ONNX with Keras's ``model.export(..., format="onnx")`` (tf2onnx underneath; a model loaded from
a file needs an explicit ``input_signature``); the ONNX and float TFLite outputs are checked against Keras on real
test images before anything is timed. Both ``.tflite`` files are also timed with TFLite's builtin kernels only,
the default XNNPACK delegate off (``--no-xnnpack-off-rows`` skips those rows).

Every runtime is timed with edgecnn's own protocol (``edgecnn.runtime.bench.time_runs``: inputs set outside the timing,
``warmup`` untimed runs, then each run timed alone): TFLite through ``edgecnn.runtime.bench.benchmark``, ONNX Runtime
through an I/O binding so that one timed run is one ``run_with_iobinding``. Both get the same random arrays from
the model's preprocessing. The whole set of measurements is repeated ``--repeats`` times in a rotating order and
each figure is the median over the repeats; ratios against ONNX Runtime are taken within each repeat (measured
minutes apart at most), then their median is reported. Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.build.convert import convert
from edgecnn.build.train import train
from edgecnn.runtime.bench import batch_picker, benchmark, latency_stats, machine_summary, random_images, time_runs
from edgecnn.runtime.data import balanced_subset, load_images, scan_folder
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.workflows.demo import run_demo

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CIFAR = REPO.parent / "shared" / "datasets" / "cifar10"
VARIANTS = ("TFLite int8", "TFLite float", "ONNX Runtime float")
BUILTIN_VARIANTS = {"TFLite int8, no XNNPACK": "TFLite int8", "TFLite float, no XNNPACK": "TFLite float"}
"""Extra rows: the same ``.tflite`` files with TFLite's builtin kernels only (the default XNNPACK delegate off)."""
BASELINE = "ONNX Runtime float"
VERSIONED = ("ai-edge-litert", "onnxruntime", "tf2onnx", "onnx", "tensorflow-cpu", "tensorflow", "keras", "numpy")
POOL_SIZE = 64  # random images cycled through; batches of up to 32 alternate between two different inputs


@dataclass
class ModelSet:
    """One network in every form that is timed.

    Attributes:
        name: the model's row label.
        keras: the ``.keras`` model.
        files: variant name → the file that variant runs.
        spec: the model's preprocessing (shape and scaling of its inputs).
        test_dir: a labelled image folder for the parity check.
        parity: figures of the parity check (filled by :func:`check_parity`).
    """

    name: str
    keras: Path
    files: dict[str, Path]
    spec: Preprocessing
    test_dir: Path
    parity: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Bytes of each variant's model file."""
        return {variant: path.stat().st_size for variant, path in self.files.items()}


@dataclass(frozen=True)
class Measurement:
    """One configuration measured once: p50 latency at batch 1 and throughput at the larger batch."""

    model: str
    variant: str
    threads: int
    repeat: int
    p50_ms: float
    throughput: float
    latency_ms: dict[str, float]
    init_ms: float


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(f"[bench_host {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=DEFAULT_CIFAR, help="CIFAR-10 image folders (train/, test/)")
    parser.add_argument("--per-class", type=int, default=200, help="CIFAR-10 training images per class")
    parser.add_argument(
        "--epochs", type=int, default=3, help="CIFAR-10 training epochs (the shape matters, not accuracy)"
    )
    parser.add_argument("--filters", type=int, default=32, help="filters in the first block (product default)")
    parser.add_argument("--image-size", type=int, default=32, help="CIFAR-10 model input size (product default)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure")
    parser.add_argument("--runs", type=int, default=200, help="timed runs at batch 1")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before them")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the throughput measurement")
    parser.add_argument("--batch-runs", type=int, default=30, help="timed runs at --batch")
    parser.add_argument("--batch-warmup", type=int, default=3, help="untimed runs before them")
    parser.add_argument("--repeats", type=int, default=5, help="passes over every configuration, in rotating order")
    parser.add_argument("--parity-per-class", type=int, default=4, help="test images per class for the parity check")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest score difference ONNX vs Keras")
    parser.add_argument(
        "--xnnpack-off-rows",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time both TFLite models with the default XNNPACK delegate off (TFLite's builtin kernels)",
    )
    parser.add_argument("--out", type=Path, help="folder for the models (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, help="also write every measurement and the summary here")
    args = parser.parse_args(argv)
    if min(args.runs, args.batch, args.batch_runs, args.repeats, *args.threads) < 1:
        parser.error("--runs, --batch, --batch-runs, --repeats and --threads must be at least 1")
    return args


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep Keras's, tf2onnx's and TensorFlow's chatter (stdout prints, warnings, INFO logs) off the console."""
    tf2onnx_logger = logging.getLogger("tf2onnx")
    level = tf2onnx_logger.level
    tf2onnx_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        tf2onnx_logger.setLevel(level)


def export_onnx(keras_path: Path, out: Path) -> Path:
    """Export the network of a ``.keras`` model to ONNX with Keras's own exporter (tf2onnx underneath).

    A model loaded from a file has never been called, and Keras then refuses to guess its signature ("The model
    provided has never called"): the signature is given explicitly, with a dynamic batch dimension, so ONNX
    Runtime runs any batch size.
    """
    from edgecnn.build.keras_model import import_keras, load_keras_model

    tf, _ = import_keras()
    model, _ = load_keras_model(keras_path)
    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=model.inputs[0].name.split(":")[0])]
    with quiet():
        model.export(str(out), format="onnx", verbose=False, input_signature=signature)
    return out


def float_tflite(keras_path: Path, out: Path) -> Path:
    """The float32 TFLite conversion of a ``.keras`` model (batch-1 static input, resized when batched)."""
    with quiet():
        return convert(keras_path, out, quantize="none").path


def build_demo(out: Path) -> ModelSet:
    """Run ``edgecnn demo`` (8x8 digits) and add the float TFLite and ONNX forms of its network."""
    log("demo: training and converting (edgecnn.workflows.demo.run_demo)")
    with quiet():
        demo = run_demo(out, on_stage=lambda stage: log(f"demo: {stage}"))
    keras_path = demo.training.path
    log("demo: float TFLite and ONNX export")
    files = {
        "TFLite int8": demo.conversion.path,
        "TFLite float": float_tflite(keras_path, out / "model_float.tflite"),
        "ONNX Runtime float": export_onnx(keras_path, out / "model.onnx"),
    }
    return ModelSet("demo (digits 8x8)", keras_path, files, demo.training.info.preprocessing, demo.test_dir)


def build_cifar(cifar: Path, out: Path, *, per_class: int, epochs: int, filters: int, image_size: int) -> ModelSet:
    """Train the default CNN on a class-balanced CIFAR-10 subset, then convert and export it."""
    out.mkdir(parents=True, exist_ok=True)
    log(f"cifar: training on {per_class} images per class for {epochs} epochs")
    with quiet():
        training = train(
            cifar / "train",
            out / "model.keras",
            image_size=image_size,
            epochs=epochs,
            filters=filters,
            limit_per_class=per_class,
            seed=0,
        )
    log("cifar: int8 conversion (calibration on the train folder), float TFLite and ONNX export")
    with quiet():
        int8 = convert(training.path, out / "model_int8.tflite", quantize="int8", calibration=cifar / "train", seed=0)
    files = {
        "TFLite int8": int8.path,
        "TFLite float": float_tflite(training.path, out / "model_float.tflite"),
        "ONNX Runtime float": export_onnx(training.path, out / "model.onnx"),
    }
    name = f"CIFAR-10 {image_size}x{image_size} (filters {filters})"
    return ModelSet(name, training.path, files, training.info.preprocessing, cifar / "test")


def ort_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session: ``threads`` intra-op threads, one inter-op thread, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_predict(path: Path, images: np.ndarray) -> np.ndarray:
    """Scores of an ONNX model for preprocessed images (one thread)."""
    session = ort_session(path, 1)
    return np.asarray(session.run(None, {session.get_inputs()[0].name: images})[0], dtype=np.float32)


def check_parity(models: ModelSet, *, per_class: int, tolerance: float) -> dict[str, Any]:
    """Compare ONNX Runtime, float and int8 TFLite against Keras on real test images.

    Raises:
        RuntimeError: the ONNX model's scores differ from Keras's by more than ``tolerance`` (then it is not
            the same network, and timing it would compare different things).
    """
    from edgecnn.build.keras_model import KerasRunner
    from edgecnn.runtime.interpreter import TFLiteRunner

    folder = scan_folder(models.test_dir, limit_per_class=per_class)
    samples = balanced_subset(folder.samples, len(folder.samples), seed=0)
    images = load_images(samples, models.spec).images
    reference = KerasRunner(models.keras).predict(images)
    onnx_scores = ort_predict(models.files[BASELINE], images)
    runners = {v: TFLiteRunner(models.files[v], num_threads=1) for v in ("TFLite float", "TFLite int8")}
    float_scores = runners["TFLite float"].predict(images)
    int8_scores = runners["TFLite int8"].predict(images)
    parity = {
        "images": len(images),
        "onnx_max_abs_diff": float(np.abs(onnx_scores - reference).max()),
        "tflite_float_max_abs_diff": float(np.abs(float_scores - reference).max()),
        "int8_top1_agreement": float(np.mean(int8_scores.argmax(1) == reference.argmax(1))),
    }
    if parity["onnx_max_abs_diff"] > tolerance:
        raise RuntimeError(
            f"{models.name}: ONNX scores differ from Keras by {parity['onnx_max_abs_diff']:.3g} "
            f"(tolerance {tolerance:g}): the export is not the same network"
        )
    return parity


def time_ort(path: Path, pool: np.ndarray, *, threads: int, batch: int, runs: int, warmup: int) -> dict[str, Any]:
    """Time ONNX Runtime with edgecnn's protocol: one timed run is one ``run_with_iobinding``.

    The input is bound (outside the timing) to the next batch of ``pool``; the output is bound once to a
    preallocated buffer, so a timed run holds no copy or allocation that a TFLite ``invoke`` does not.

    Returns:
        ``latency_ms`` (:func:`edgecnn.runtime.bench.latency_stats`), ``throughput`` (images/s) and ``init_ms``.
    """
    import onnxruntime as ort

    start = time.perf_counter()
    session = ort_session(path, threads)
    binding = session.io_binding()
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    output = ort.OrtValue.ortvalue_from_shape_and_type([batch, session.get_outputs()[0].shape[-1]], np.float32)
    binding.bind_ortvalue_output(name_out, output)
    init_ms = (time.perf_counter() - start) * 1000.0
    pick = batch_picker(pool, batch)
    bound: list[np.ndarray] = []  # keeps the bound array alive while ONNX Runtime reads it

    def set_input(i: int) -> None:
        bound[:] = [pick(i)]
        binding.bind_cpu_input(name_in, bound[0])

    seconds = time_runs(set_input, lambda: session.run_with_iobinding(binding), runs=runs, warmup=warmup)
    return {
        "latency_ms": latency_stats(seconds),
        "throughput": batch * runs / max(sum(seconds), 1e-12),
        "init_ms": init_ms,
    }


def time_tflite(
    path: Path, pool: np.ndarray, *, threads: int, batch: int, runs: int, warmup: int, xnnpack: bool = True
) -> dict[str, Any]:
    """Time a ``.tflite`` model with :func:`edgecnn.runtime.bench.benchmark` on the same input pool."""
    result = benchmark(path, images=pool, runs=runs, warmup=warmup, batch=batch, num_threads=threads, xnnpack=xnnpack)
    return {"latency_ms": result.latency_ms, "throughput": result.throughput, "init_ms": result.init_ms}


def time_tflite_builtin(
    path: Path, pool: np.ndarray, *, threads: int, batch: int, runs: int, warmup: int
) -> dict[str, Any]:
    """Time a ``.tflite`` model with XNNPACK off (TFLite's builtin kernels), same protocol and inputs."""
    return time_tflite(path, pool, threads=threads, batch=batch, runs=runs, warmup=warmup, xnnpack=False)


def timer_for(variant: str) -> Callable[..., dict[str, Any]]:
    """The timing function of a variant."""
    if variant == BASELINE:
        return time_ort
    return time_tflite_builtin if variant in BUILTIN_VARIANTS else time_tflite


def measure_once(models: ModelSet, variant: str, threads: int, repeat: int, args: argparse.Namespace) -> Measurement:
    """p50 latency at batch 1 and throughput at ``--batch`` for one model, variant and thread count."""
    pool = random_images(models.spec, POOL_SIZE, seed=0)
    timer = timer_for(variant)
    path = models.files[BUILTIN_VARIANTS.get(variant, variant)]
    single = timer(path, pool, threads=threads, batch=1, runs=args.runs, warmup=args.warmup)
    batched = timer(path, pool, threads=threads, batch=args.batch, runs=args.batch_runs, warmup=args.batch_warmup)
    return Measurement(
        model=models.name,
        variant=variant,
        threads=threads,
        repeat=repeat,
        p50_ms=single["latency_ms"]["p50"],
        throughput=batched["throughput"],
        latency_ms=single["latency_ms"],
        init_ms=single["init_ms"],
    )


def rotated(items: list[Any], repeat: int, repeats: int) -> list[Any]:
    """``items`` started at a different place on each repeat, so no configuration always runs first or last."""
    shift = (repeat * len(items)) // repeats
    return items[shift:] + items[:shift]


def measured_variants(args: argparse.Namespace) -> list[str]:
    """The variants this run times, in table order."""
    return [*VARIANTS, *(BUILTIN_VARIANTS if args.xnnpack_off_rows else ())]


def measure_all(model_sets: list[ModelSet], args: argparse.Namespace) -> list[Measurement]:
    """Every configuration, ``--repeats`` times, interleaved."""
    configs = [(m, v, t) for m in model_sets for t in args.threads for v in measured_variants(args)]
    measurements = []
    for repeat in range(args.repeats):
        for number, (models, variant, threads) in enumerate(rotated(configs, repeat, args.repeats), 1):
            measurement = measure_once(models, variant, threads, repeat, args)
            log(
                f"repeat {repeat + 1}/{args.repeats} [{number}/{len(configs)}] {models.name} | {variant} | "
                f"{threads} thread(s): p50 {measurement.p50_ms:.3f} ms, {measurement.throughput:,.0f} img/s"
            )
            measurements.append(measurement)
    return measurements


def summarize(
    measurements: list[Measurement], model_sets: list[ModelSet], variants: list[str], threads: list[int]
) -> list[dict[str, Any]]:
    """One row per model, variant and thread count: medians over the repeats and within-repeat ratios."""
    index = {(m.model, m.variant, m.threads, m.repeat): m for m in measurements}
    repeats = sorted({m.repeat for m in measurements})
    rows = []
    for models in model_sets:
        sizes = models.sizes()
        for count in threads:
            for variant in variants:
                own = [index[(models.name, variant, count, r)] for r in repeats]
                base = [index[(models.name, BASELINE, count, r)] for r in repeats]
                rows.append(
                    {
                        "model": models.name,
                        "variant": variant,
                        "threads": count,
                        "bytes": sizes[BUILTIN_VARIANTS.get(variant, variant)],
                        "p50_ms": statistics.median(m.p50_ms for m in own),
                        "throughput": statistics.median(m.throughput for m in own),
                        "p50_vs_ort": statistics.median(o.p50_ms / b.p50_ms for o, b in zip(own, base)),
                        "throughput_vs_ort": statistics.median(o.throughput / b.throughput for o, b in zip(own, base)),
                        "p50_ms_per_repeat": [m.p50_ms for m in own],
                        "throughput_per_repeat": [m.throughput for m in own],
                    }
                )
    return rows


def versions() -> dict[str, str]:
    """Installed versions of the runtimes and converters involved (missing ones left out)."""
    found = {"python": sys.version.split()[0]}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def render(rows: list[dict[str, Any]], meta: dict[str, Any], args: argparse.Namespace) -> str:
    """The Markdown table and the lines that say what was measured, where and with what."""
    lines = [
        f"| model | variant | threads | model bytes | p50 ms (batch 1) | p50 min-max over repeats "
        f"| img/s (batch {args.batch}) | p50 / ORT float | img/s / ORT float |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        spread = f"{min(row['p50_ms_per_repeat']):.3f}-{max(row['p50_ms_per_repeat']):.3f}"
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['threads']} | {row['bytes']:,} | {row['p50_ms']:.3f} | "
            f"{spread} | {row['throughput']:,.0f} | {row['p50_vs_ort']:.2f} | {row['throughput_vs_ort']:.2f} |"
        )
    machine = meta["machine"]
    lines += [
        "",
        f"- Measured {meta['date']} on {machine['arch']}, {machine['cpus']} CPUs ({meta['cpu']}), "
        f"Python {machine['python']}; total {meta['seconds']:.0f} s (models {meta['build_seconds']:.0f} s). "
        f"1-minute load average {meta['load_average']['start'][0]:.2f} before timing, "
        f"{meta['load_average']['end'][0]:.2f} after (the machine is shared).",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "python") + ".",
        f"- Protocol: random inputs from each model's preprocessing (the same arrays for every runtime), "
        f"{args.runs} timed runs after {args.warmup} warm-up at batch 1, {args.batch_runs} after "
        f"{args.batch_warmup} at batch {args.batch}; {args.repeats} interleaved repeats, medians shown; ratios are "
        "the median of the per-repeat ratios against ONNX Runtime float at the same thread count.",
    ]
    for name, parity in meta["parity"].items():
        lines.append(
            f"- Parity on {parity['images']} real test images, {name}: ONNX vs Keras max |score diff| "
            f"{parity['onnx_max_abs_diff']:.1e}, TFLite float vs Keras {parity['tflite_float_max_abs_diff']:.1e}, "
            f"int8 top-1 agreement with Keras {100 * parity['int8_top1_agreement']:.1f}%."
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Path) -> tuple[str, dict[str, Any]]:
    """Build the models under ``out``, check parity, measure, and return the Markdown and the JSON report."""
    started = time.perf_counter()
    model_sets = [
        build_demo(out / "demo"),
        build_cifar(
            args.cifar,
            out / "cifar",
            per_class=args.per_class,
            epochs=args.epochs,
            filters=args.filters,
            image_size=args.image_size,
        ),
    ]
    parity = {}
    for models in model_sets:
        log(f"{models.name}: parity check against Keras on real test images")
        parity[models.name] = check_parity(models, per_class=args.parity_per_class, tolerance=args.tolerance)
    build_s = time.perf_counter() - started
    load_start = os.getloadavg()
    measurements = measure_all(model_sets, args)
    load_end = os.getloadavg()
    rows = summarize(measurements, model_sets, measured_variants(args), args.threads)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine_summary(),
        "cpu": cpu_model(),
        "versions": versions(),
        "parity": parity,
        "sizes": {m.name: m.sizes() for m in model_sets},
        "load_average": {"start": load_start, "end": load_end},
        "build_seconds": build_s,
        "seconds": time.perf_counter() - started,
    }
    report = {
        "command": " ".join(sys.argv),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **meta,
        "rows": rows,
        "measurements": [asdict(m) for m in measurements],
    }
    return render(rows, meta, args), report


def main(argv: list[str] | None = None) -> None:
    """Entry point: print the table; write the JSON report with ``--json``."""
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.out is None:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_host_")))
        else:
            out = args.out
            out.mkdir(parents=True, exist_ok=True)
        table, report = run(args, out)
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
