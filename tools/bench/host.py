"""Host inference of the cifar10 network: TFLite int8 and float against ONNX Runtime and Keras, and a roofline.

The network is the cifar10 section's model. It is converted to float TFLite (``convert(quantize="none")``) beside
the int8 model, and exported to ONNX with Keras's own exporter (``model.export(..., format="onnx")``, tf2onnx
underneath). Before anything is timed, ONNX Runtime, float TFLite and the Keras worker must give Keras's scores on
real test images (and int8 its top-1 mostly).

Every runtime is timed with edgecnn's protocol (``edgecnn.runtime.bench.time_runs``: input set outside the timing,
untimed warm-up runs, then each run timed alone), on the same random arrays from the model's preprocessing:

- TFLite int8 and float: ``edgecnn.runtime.bench.benchmark`` (ai-edge-litert, XNNPACK, ``num_threads``);
- ONNX Runtime float: one timed run is one ``run_with_iobinding`` (CPU provider, ``intra_op_num_threads``, one
  inter-op thread, sequential execution, input and preallocated output bound);
- Keras float: the model's call under a ``tf.function`` traced once per batch size, in a worker process whose
  TensorFlow pools were sized before TensorFlow started (``keras_worker.py``).

Batch 1 gives the p50 latency, batch 64 the throughput. The roofline compares the float TFLite batch throughput
times the FLOPs of one image (2 x the MACs ``edgecnn.model.inspect`` counts for convolutions and fully connected
layers) with what a 2048 x 2048 float32 ``numpy`` matrix product reaches on as many threads (OpenBLAS, held to the
thread count with threadpoolctl). Every configuration is measured once per repeat, in a rotating order, and
ratios are taken within each repeat before their median is reported.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    HERE,
    Context,
    fmt_ratio,
    log,
    machine_line,
    median,
    quick_banner,
    rotated,
    section_meta,
)

TFLITE_INT8, TFLITE_FLOAT, ORT, KERAS = "tflite_int8", "tflite_float", "onnxruntime_float", "keras_float"
RUNTIMES = (TFLITE_INT8, TFLITE_FLOAT, ORT, KERAS)
NAMES = {
    TFLITE_INT8: "TFLite int8 (XNNPACK)",
    TFLITE_FLOAT: "TFLite float (XNNPACK)",
    ORT: "ONNX Runtime float",
    KERAS: "Keras float (`tf.function`)",
}
BASELINES = (ORT, KERAS)
MATMUL = "matmul"
POOL_SIZE = 128  # random images cycled through: two different batches of 64


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep Keras's, tf2onnx's and TensorFlow's chatter (stdout prints, warnings, INFO logs) off the console."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(keras_path: Path, out: Path) -> Path:
    """Export the network of a ``.keras`` model to ONNX with Keras's exporter (dynamic batch dimension).

    A model loaded from a file has never been called, and Keras then refuses to guess its signature: it is given
    explicitly, with ``None`` as the batch, so ONNX Runtime runs batch 1 and 64 from one file.
    """
    from edgecnn.build.keras_model import import_keras, load_keras_model

    tf, _ = import_keras()
    model, _ = load_keras_model(keras_path)
    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=model.inputs[0].name.split(":")[0])]
    with quiet():
        model.export(str(out), format="onnx", verbose=False, input_signature=signature)
    return out


def float_tflite(keras_path: Path, out: Path) -> Path:
    """The float32 TFLite conversion of a ``.keras`` model (resized to the batch when timed)."""
    from edgecnn.build.convert import convert

    with quiet():
        return convert(keras_path, out, quantize="none").path


def ort_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session: ``threads`` intra-op threads, one inter-op thread, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_ort(path: Path, pool: np.ndarray, *, threads: int, batch: int, runs: int, warmup: int) -> list[float]:
    """Seconds of each timed ``run_with_iobinding`` (input bound outside the timing, output preallocated)."""
    import onnxruntime as ort

    from edgecnn.runtime.bench import batch_picker, time_runs

    session = ort_session(path, threads)
    binding = session.io_binding()
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    output = ort.OrtValue.ortvalue_from_shape_and_type([batch, session.get_outputs()[0].shape[-1]], np.float32)
    binding.bind_ortvalue_output(name_out, output)
    pick = batch_picker(pool, batch)
    bound: list[np.ndarray] = []  # keeps the bound array alive while ONNX Runtime reads it

    def set_input(i: int) -> None:
        bound[:] = [pick(i)]
        binding.bind_cpu_input(name_in, bound[0])

    return time_runs(set_input, lambda: session.run_with_iobinding(binding), runs=runs, warmup=warmup)


def time_tflite(path: Path, pool: np.ndarray, *, threads: int, batch: int, runs: int, warmup: int) -> list[float]:
    """Seconds of each timed ``invoke`` of a ``.tflite`` model through ``edgecnn.runtime.bench``'s runner."""
    from edgecnn.runtime.bench import batch_picker, time_runs
    from edgecnn.runtime.interpreter import TFLiteRunner

    runner = TFLiteRunner(path, num_threads=threads, require_sidecar=False)
    try:
        runner.resize(batch)
        pick = batch_picker(pool, batch)
        return time_runs(lambda i: runner.set_input(pick(i)), runner.invoke, runs=runs, warmup=warmup)
    finally:
        runner.close()


class KerasWorker:
    """A ``keras_worker.py`` process with ``threads`` intra-op threads, kept for the whole section."""

    def __init__(self, model: Path, threads: int) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "keras_worker.py"), str(model), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, wait for its answer.

        Raises:
            RuntimeError: the worker died (TensorFlow failed to load the model, or crashed).
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Keras worker exited ({self.process.wait()}); run keras_worker.py to see why")
        return json.loads(line)

    def close(self) -> None:
        """End the worker (closing its stdin ends its loop)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def matmul_seconds(threads: int, *, size: int, runs: int, warmup: int) -> list[float]:
    """Seconds of each timed ``size`` x ``size`` float32 matrix product at ``threads`` BLAS threads.

    threadpoolctl holds OpenBLAS to the thread count in this process; without it, a child process with
    ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` set does the timing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        code = (
            "import json,sys,time,numpy as np\n"
            f"a=np.random.default_rng(0).standard_normal(({size},{size}),dtype=np.float32);b=a.T.copy();s=[]\n"
            f"for i in range({warmup + runs}):\n"
            " t=time.perf_counter();a@b;s.append(time.perf_counter()-t)\n"
            f"print(json.dumps(s[{warmup}:]))"
        )
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        return json.loads(done.stdout)
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.ascontiguousarray(a.T)
    out = np.empty_like(a)
    seconds = []
    with threadpool_limits(limits=threads, user_api="blas"):
        for i in range(warmup + runs):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            if i >= warmup:
                seconds.append(time.perf_counter() - start)
    return seconds


def blas_info() -> list[dict[str, Any]]:
    """numpy's BLAS as threadpoolctl sees it (library, version, kernel architecture), empty without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "threading_layer")
    return [
        {k: v for k, v in pool.items() if k in keys} for pool in threadpool_info() if pool.get("user_api") == "blas"
    ]


def check_parity(context: Context, files: dict[str, Path], workers: dict[int, KerasWorker]) -> dict[str, Any]:
    """Scores of every runtime against Keras (eager) on real test images.

    Raises:
        RuntimeError: ONNX Runtime or the Keras worker differ from Keras by more than ``--tolerance``: then it is
            not the same network, and timing it would compare different things.
    """
    import onnxruntime  # noqa: F401  (fail here, before any timing, when the bench extra is missing)

    from edgecnn.build.keras_model import KerasRunner
    from edgecnn.runtime.bundle import read_keras_info
    from edgecnn.runtime.data import balanced_subset, load_images, scan_folder
    from edgecnn.runtime.interpreter import TFLiteRunner

    keras_path = context.models.keras
    assert keras_path is not None
    spec = read_keras_info(keras_path).preprocessing
    per_class = 2 if context.quick else 10
    folder = scan_folder(context.cifar / "test", limit_per_class=per_class)
    images = load_images(balanced_subset(folder.samples, len(folder.samples), seed=0), spec).images
    reference = KerasRunner(keras_path).predict(images)
    session = ort_session(files[ORT], 1)
    scores = {ORT: np.asarray(session.run(None, {session.get_inputs()[0].name: images})[0], dtype=np.float32)}
    for runtime in (TFLITE_FLOAT, TFLITE_INT8):
        scores[runtime] = TFLiteRunner(files[runtime], num_threads=1, require_sidecar=False).predict(images)
    saved = context.work / "parity_images.npy"
    np.save(saved, images)
    scores[KERAS] = np.load(workers[min(workers)].ask({"predict": str(saved)})["scores"])
    parity = {
        "images": len(images),
        "max_abs_diff_vs_keras_eager": {
            name: float(np.abs(values - reference).max()) for name, values in scores.items() if name != TFLITE_INT8
        },
        "int8_top1_agreement": float(np.mean(scores[TFLITE_INT8].argmax(1) == reference.argmax(1))),
    }
    for name in (ORT, KERAS, TFLITE_FLOAT):
        if parity["max_abs_diff_vs_keras_eager"][name] > context.options.tolerance:
            raise RuntimeError(
                f"{NAMES[name]} scores differ from Keras by {parity['max_abs_diff_vs_keras_eager'][name]:.3g} "
                f"(tolerance {context.options.tolerance:g}): not the same network"
            )
    return parity


def measure_once(
    runtime: str,
    threads: int,
    files: dict[str, Path],
    pool: np.ndarray,
    workers: dict[int, KerasWorker],
    counts: dict[str, int],
) -> dict[str, Any]:
    """Batch-1 latency and batch-64 throughput of one runtime at one thread count (one repeat)."""
    batch = counts["batch"]
    figures: dict[str, Any] = {}
    plans = ((1, counts["runs"], counts["warmup"]), (batch, counts["batch_runs"], counts["batch_warmup"]))
    for size, runs, warmup in plans:
        if runtime == KERAS:
            seconds = workers[threads].ask({"batch": size, "runs": runs, "warmup": warmup, "seed": 0})["seconds"]
        elif runtime == ORT:
            seconds = time_ort(files[ORT], pool, threads=threads, batch=size, runs=runs, warmup=warmup)
        else:
            seconds = time_tflite(files[runtime], pool, threads=threads, batch=size, runs=runs, warmup=warmup)
        key = "batch_1" if size == 1 else "batch_n"
        figures[key] = {"p50_ms": 1000 * median(seconds), "img_s": size * len(seconds) / sum(seconds)}
    return figures


def build_files(context: Context) -> dict[str, Path]:
    """The int8, float TFLite and ONNX forms of the cifar10 network."""
    keras, int8 = context.models.keras, context.models.int8
    if keras is None or int8 is None:
        raise RuntimeError("no cifar10 models: run the cifar10 section or give --keras (and --int8)")
    log("host: float TFLite conversion and ONNX export")
    return {
        TFLITE_INT8: int8,
        TFLITE_FLOAT: float_tflite(keras, context.work / "cifar_float.tflite"),
        ORT: export_onnx(keras, context.work / "cifar.onnx"),
    }


def counts_for(context: Context) -> dict[str, int]:
    """Timed and warm-up runs of each measurement (``--quick``: a handful)."""
    if context.quick:
        return {"runs": 20, "warmup": 3, "batch": 64, "batch_runs": 3, "batch_warmup": 1, "repeats": 2,
                "matmul_size": 1024, "matmul_runs": 3}  # fmt: skip
    options = context.options
    return {"runs": 200, "warmup": 10, "batch": 64, "batch_runs": 20, "batch_warmup": 3,
            "repeats": options.repeats, "matmul_size": 2048, "matmul_runs": 5}  # fmt: skip


def measure(context: Context) -> dict[str, Any]:
    """The host section: every runtime at every thread count and batch size, ratios, and the roofline."""
    from edgecnn.model.inspect import inspect_model
    from edgecnn.runtime.bench import random_images
    from edgecnn.runtime.bundle import read_keras_info

    started, load_start = time.perf_counter(), os.getloadavg()
    files = build_files(context)
    counts = counts_for(context)
    threads_list = list(context.options.threads)
    keras_path = context.models.keras
    assert keras_path is not None
    spec = read_keras_info(keras_path).preprocessing
    macs = inspect_model(files[TFLITE_FLOAT]).macs
    flops = 2 * macs
    pool = random_images(spec, POOL_SIZE, seed=0)
    log(f"host: starting Keras workers ({', '.join(map(str, threads_list))} threads)")
    workers = {threads: KerasWorker(keras_path, threads) for threads in threads_list}
    try:
        log("host: parity check against Keras on real test images")
        parity = check_parity(context, files, workers)
        configs = [(runtime, threads) for threads in threads_list for runtime in (*RUNTIMES, MATMUL)]
        raw: list[dict[str, Any]] = []
        for repeat in range(counts["repeats"]):
            for number, (runtime, threads) in enumerate(rotated(configs, repeat, counts["repeats"]), 1):
                if runtime == MATMUL:
                    size, runs = counts["matmul_size"], counts["matmul_runs"]
                    numpy_s = matmul_seconds(threads, size=size, runs=runs, warmup=1)
                    tf_s = workers[threads].ask({"matmul": size, "runs": runs, "warmup": 1})["seconds"]
                    found = {
                        "numpy": 2 * size**3 / median(numpy_s) / 1e9,
                        "tensorflow": 2 * size**3 / median(tf_s) / 1e9,
                    }
                    gflops = max(found.values())
                    raw.append({"runtime": MATMUL, "threads": threads, "repeat": repeat, "gflops": gflops, **found})
                    shown = f"{gflops:.1f} GFLOP/s (numpy {found['numpy']:.1f}, TensorFlow {found['tensorflow']:.1f})"
                else:
                    figures = measure_once(runtime, threads, files, pool, workers, counts)
                    raw.append({"runtime": runtime, "threads": threads, "repeat": repeat, **figures})
                    shown = f"p50 {figures['batch_1']['p50_ms']:.3f} ms, {figures['batch_n']['img_s']:,.0f} img/s"
                log(f"host: repeat {repeat + 1}/{counts['repeats']} [{number}/{len(configs)}] {runtime}, "
                    f"{threads} thread(s): {shown}")  # fmt: skip
    finally:
        for worker in workers.values():
            worker.close()
    result = summarize(raw, threads_list, counts, flops)
    result.update(
        {
            "network": {"keras": str(keras_path), "macs_per_image": macs, "flops_per_image": flops},
            "bytes": {name: path.stat().st_size for name, path in files.items()},
            "parity": parity,
            "protocol": {
                **counts,
                "inputs": "random pixels through the model's preprocessing, the same arrays for every runtime",
                "keras": "model(x, training=False) under a tf.function traced once per batch size (graph mode, "
                "no XLA), in a worker process with intra_op threads = threads, inter_op = 1",
                "ratios": "speed ratios (>1: faster than the comparison): comparison p50 / own p50 at batch 1, own "
                "img/s / comparison img/s at the large batch; taken within each repeat, median over repeats",
                "roofline": "TFLite float img/s at the large batch x FLOPs per image (2 x MACs of convolutions and "
                "fully connected layers) / the float32 matmul's FLOP/s at the same thread count, same repeat: the "
                "faster of numpy's (OpenBLAS, threadpoolctl) and TensorFlow's (tf.linalg.matmul in the worker)",
                "blas": blas_info(),
            },
            "raw": raw,
        }
    )
    result["meta"] = section_meta(context, started, load_start)
    return result


def summarize(raw: list[dict[str, Any]], threads_list: list[int], counts: dict[str, int], flops: int) -> dict[str, Any]:
    """Medians over repeats, within-repeat ratios against ONNX Runtime and Keras, and the roofline fractions."""
    index = {(r["runtime"], r["threads"], r["repeat"]): r for r in raw}
    repeats = sorted({r["repeat"] for r in raw})
    runtimes: dict[str, Any] = {}
    roofline: dict[str, Any] = {}
    for runtime in RUNTIMES:
        runtimes[runtime] = {}
        for threads in threads_list:
            own = [index[(runtime, threads, r)] for r in repeats]
            entry: dict[str, Any] = {
                "p50_ms_batch_1": median([o["batch_1"]["p50_ms"] for o in own]),
                "img_s_batch_1": median([o["batch_1"]["img_s"] for o in own]),
                f"img_s_batch_{counts['batch']}": median([o["batch_n"]["img_s"] for o in own]),
                "p50_ms_batch_1_per_repeat": [o["batch_1"]["p50_ms"] for o in own],
                f"img_s_batch_{counts['batch']}_per_repeat": [o["batch_n"]["img_s"] for o in own],
            }
            for base in BASELINES:
                other = [index[(base, threads, r)] for r in repeats]
                entry[f"vs_{base}"] = {
                    "latency_speed_batch_1": median(
                        [b["batch_1"]["p50_ms"] / o["batch_1"]["p50_ms"] for o, b in zip(own, other)]
                    ),
                    f"throughput_batch_{counts['batch']}": median(
                        [o["batch_n"]["img_s"] / b["batch_n"]["img_s"] for o, b in zip(own, other)]
                    ),
                }
            runtimes[runtime][f"threads_{threads}"] = entry
    for threads in threads_list:
        matmul = [index[(MATMUL, threads, r)]["gflops"] for r in repeats]
        fractions = {
            runtime: median(
                [index[(runtime, threads, r)]["batch_n"]["img_s"] * flops / 1e9 / m for r, m in zip(repeats, matmul)]
            )
            for runtime in RUNTIMES
        }
        roofline[f"threads_{threads}"] = {
            "matmul_gflops": median(matmul),
            "matmul_gflops_per_repeat": matmul,
            "matmul_gflops_numpy": median([index[(MATMUL, threads, r)]["numpy"] for r in repeats]),
            "matmul_gflops_tensorflow": median([index[(MATMUL, threads, r)]["tensorflow"] for r in repeats]),
            "tflite_float_gflops": median(
                [index[(TFLITE_FLOAT, threads, r)]["batch_n"]["img_s"] * flops / 1e9 for r in repeats]
            ),
            "fraction": fractions[TFLITE_FLOAT],
            "fraction_by_runtime": fractions,
        }
    first = f"threads_{min(threads_list)}"
    return {
        "runtimes": runtimes,
        "roofline": roofline,
        "roofline_fraction": roofline[first]["fraction"],
        "roofline_fraction_threads": min(threads_list),
        "roofline_goal": 0.5,
    }


def render(result: dict[str, Any]) -> str:
    """The Markdown block of BENCHMARKS.md for this section."""
    meta, counts = result["meta"], result["protocol"]
    batch = counts["batch"]
    lines = [
        quick_banner(meta),
        f"| runtime | threads | model bytes | p50 ms (batch 1) | img/s (batch {batch}) | speed vs ORT, batch 1 "
        f"| speed vs ORT, batch {batch} | speed vs Keras, batch 1 | speed vs Keras, batch {batch} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = {TFLITE_INT8: TFLITE_INT8, TFLITE_FLOAT: TFLITE_FLOAT, ORT: ORT, KERAS: None}
    for threads_key in next(iter(result["runtimes"].values())):
        threads = threads_key.split("_")[1]
        for runtime in RUNTIMES:
            entry = result["runtimes"][runtime][threads_key]
            size = result["bytes"].get(keys[runtime] or "", None)
            ort, keras = entry[f"vs_{ORT}"], entry[f"vs_{KERAS}"]
            lines.append(
                f"| {NAMES[runtime]} | {threads} | {'-' if size is None else f'{size:,}'} "
                f"| {entry['p50_ms_batch_1']:.3f} | {entry[f'img_s_batch_{batch}']:,.0f} "
                f"| {fmt_ratio(ort['latency_speed_batch_1'])} | {fmt_ratio(ort[f'throughput_batch_{batch}'])} "
                f"| {fmt_ratio(keras['latency_speed_batch_1'])} | {fmt_ratio(keras[f'throughput_batch_{batch}'])} |"
            )
    lines += [
        "",
        "| threads | float32 matmul GFLOP/s (numpy, TensorFlow) | TFLite float GFLOP/s (batch "
        f"{batch}) | roofline fraction (goal ≥ 0.5) | ORT | Keras | TFLite int8 (int8 ops as FLOPs) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threads_key, roof in result["roofline"].items():
        by = roof["fraction_by_runtime"]
        lines.append(
            f"| {threads_key.split('_')[1]} | {roof['matmul_gflops']:.1f} ({roof['matmul_gflops_numpy']:.1f}, "
            f"{roof['matmul_gflops_tensorflow']:.1f}) | {roof['tflite_float_gflops']:.1f} "
            f"| **{roof['fraction']:.2f}** | {by[ORT]:.2f} | {by[KERAS]:.2f} | {by[TFLITE_INT8]:.2f} |"
        )
    parity = result["parity"]
    diffs = parity["max_abs_diff_vs_keras_eager"]
    lines += [
        "",
        f"- Measured {meta['date']} on {machine_line(meta)}; command: `{meta['command']}`; {meta['seconds']:.0f} s.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "python") + ".",
        f"- Protocol: {counts['runs']} timed runs after {counts['warmup']} warm-up at batch 1, "
        f"{counts['batch_runs']} after {counts['batch_warmup']} at batch {batch}; {counts['repeats']} interleaved "
        "repeats, medians. Speed ratios above 1 mean faster than the comparison, taken within each repeat. "
        f"The roofline: {result['network']['flops_per_image'] / 1e6:.1f} MFLOP per image (2 x "
        f"{result['network']['macs_per_image']:,} MACs) x img/s over the FLOP/s of a {counts['matmul_size']}² "
        "float32 matrix product at the same thread count, the faster of numpy's ("
        + ", ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')}" for b in counts["blas"])
        + ") and TensorFlow's, measured in the same repeat.",
        f"- Parity on {parity['images']} real test images, max |score diff| against Keras eager: ONNX Runtime "
        f"{diffs[ORT]:.1e}, Keras `tf.function` {diffs[KERAS]:.1e}, TFLite float {diffs[TFLITE_FLOAT]:.1e}; int8 "
        f"top-1 agreement {100 * parity['int8_top1_agreement']:.1f}%.",
    ]
    return "\n".join(lines)
