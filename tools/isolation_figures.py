"""What running TensorFlow Lite Micro in a child process costs: the same work in a child and in this process.

For each ``.tflite`` bundle, interleaved ``--rounds`` times, both ways:

- **open**: open a micro runner (the child: start it, send the bundle, load; in process: the same loading, arena
  measurement and run on zeros, here) and close it;
- **predict**: scores for ``--images`` preprocessed random images once the runner is open (the child: float32
  arrays over the pipe, in chunks; in process: straight into the interpreter);
- **invoke p50**: the median ``invoke`` of ``bench`` (the child times inside itself, on its own clock).

Prints a markdown table of medians and the child/in-process ratio of each::

    python tools/isolation_figures.py /tmp/demo/model_int8.tflite --rounds 5 --images 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.bench import BenchPlan, random_images
from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.targets.micro.target import MicroTarget


def _one_round(target: MicroTarget, model: Path, images: np.ndarray) -> dict[str, float]:
    """open, predict and invoke p50 (seconds; milliseconds for invoke) for one way of running."""
    start = time.perf_counter()
    runner = target.open(model)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    runner.predict(images)
    predicted = time.perf_counter() - start
    runner.close()
    bench = target.bench(model, BenchPlan(None, 50, 5, 1))
    return {"open": opened, "predict": predicted, "invoke": float(bench.latency_ms["p50"] or 0.0)}


def figures(model: Path, *, rounds: int, count: int) -> list[dict[str, Any]]:
    """One row per measure: the medians both ways and their ratio."""
    images = random_images(read_tflite_info(model).preprocessing, count, seed=0)
    ways = {"child": MicroTarget(), "in process": MicroTarget().in_process()}
    seen: dict[str, dict[str, list[float]]] = {way: {} for way in ways}
    for _ in range(rounds):
        for way, target in ways.items():  # interleaved, so drift on a shared machine hits both alike
            for key, value in _one_round(target, model, images).items():
                seen[way].setdefault(key, []).append(value)
    rows = []
    for key, unit in (("open", "s"), ("predict", "s"), ("invoke", "ms")):
        child, here = (statistics.median(seen[way][key]) for way in ways)
        rows.append({"model": model.name, "measure": key, "unit": unit, "child": child, "here": here,
                     "ratio": child / here if here else float("nan")})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"| model | measure | child | in process | ratio (child / in process) |  ({args.images} images, "
          f"median of {args.rounds} interleaved rounds)")  # fmt: skip
    print("|---|---|---:|---:|---:|")
    for model in args.models:
        for row in figures(model, rounds=args.rounds, count=args.images):
            label = {"open": "open + close", "predict": f"predict {args.images} images", "invoke": "invoke p50"}
            print(f"| {row['model']} | {label[row['measure']]} | {row['child']:.3f} {row['unit']} | "
                  f"{row['here']:.3f} {row['unit']} | {row['ratio']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
