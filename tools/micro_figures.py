"""Print the TensorFlow Lite Micro figures for BENCHMARKS.md as a markdown table.

For each ``.tflite`` bundle: the flash the model takes, the tensor arena TFLM's recording allocator measures (and
the size with edgecnn's margin), and the time of one ``invoke`` (one image) in the TFLM interpreter beside the host
interpreter with TFLite's reference kernels, timed in the same run with the same inputs and protocol
(:func:`edgecnn.runtime.bench.time_runs`). Both are this machine's CPU; neither is a microcontroller's speed.

    python tools/micro_figures.py /tmp/demo/model_int8.tflite /tmp/c_int8.tflite --runs 100
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.bench import batch_picker, latency_stats, random_images, time_runs
from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.targets.micro.arena import measure_arena
from edgecnn.targets.micro.target import MicroTarget


def _invoke_ms(runner: Any, pick: Callable[[int], np.ndarray], *, runs: int, warmup: int) -> float:
    """Median milliseconds of one invoke, inputs set outside the timing."""
    seconds = time_runs(lambda i: runner.set_input(pick(i)), runner.invoke, runs=runs, warmup=warmup)
    return latency_stats(seconds)["p50"]


def figures(model: Path, *, runs: int, warmup: int) -> dict[str, Any]:
    """One table row for ``model``."""
    info = read_tflite_info(model)
    arena = measure_arena(model)
    pick = batch_picker(random_images(info.preprocessing, 8), 1)
    micro = MicroTarget().in_process().open(model)  # TFLM here, to time invoke alone: for models you made
    host = TFLiteRunner(model, reference_kernels=True, num_threads=1, max_batch=1)
    micro_ms = _invoke_ms(micro, pick, runs=runs, warmup=warmup)
    host_ms = _invoke_ms(host, pick, runs=runs, warmup=warmup)
    row = {
        "model": model.name,
        "flash": model.stat().st_size,
        "used": arena.used_bytes,
        "arena": arena.arena_bytes,
        "micro_ms": micro_ms,
        "host_ms": host_ms,
        "runtime": micro.runtime,
        "host_runtime": host.runtime,
    }
    micro.close()
    host.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help=".tflite bundles (with their sidecars)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    rows = [figures(m, runs=args.runs, warmup=args.warmup) for m in args.models]
    print(
        "| Model | Flash (bytes) | Arena used (bytes) | Arena + margin (bytes) | TFLM invoke p50 (ms) "
        "| Host ref. kernels invoke p50 (ms) | TFLM / host |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["micro_ms"] / r["host_ms"]
        print(
            f"| {r['model']} | {r['flash']:,} | {r['used']:,} | {r['arena']:,} | {r['micro_ms']:.2f} "
            f"| {r['host_ms']:.2f} | {ratio:.1f}x |"
        )
    print(
        f"\n{rows[0]['runtime']} vs {rows[0]['host_runtime']} (BUILTIN_REF, 1 thread), one image per invoke, "
        f"p50 of {args.runs} runs after {args.warmup} warm-up, random inputs through the model's preprocessing; "
        f"{platform.machine()} {platform.system()}, Python {platform.python_version()}. Host CPU times, not a "
        "microcontroller's."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
