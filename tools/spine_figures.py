"""Measure the spine's figures: accuracy, int8 drop, sizes and stage times, for the demo and a CIFAR-10 model.

Usage (from the project root, with the train extra installed):

    python tools/spine_figures.py --cifar ../shared/datasets/cifar10 --per-class 500 --epochs 15 \
        --augment flip-shift --out /tmp/figures

Prints a Markdown table for BENCHMARKS.md. Sizes and accuracies are deterministic for a seed; times are
wall-clock on the machine that runs it and are reported next to the comparison measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgecnn.build.convert import convert
from edgecnn.build.train import train
from edgecnn.workflows.demo import run_demo
from edgecnn.workflows.validate import validate_models


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def row(name: str, report, conversion, train_s: float | None, convert_s: float | None, validate_s: float | None) -> str:
    return (
        f"| {name} | {report.num_images} | {100 * report.reference_accuracy:.2f}% | "
        f"{100 * report.candidate_accuracy:.2f}% | {report.accuracy_drop_pp:.2f} | {100 * report.agreement:.2f}% | "
        f"{conversion.float_size_bytes:,} | {conversion.size_bytes:,} | "
        f"{conversion.size_bytes / conversion.float_size_bytes:.3f} | "
        f"{seconds(train_s)} | {seconds(convert_s)} | {seconds(validate_s)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, required=True, help="CIFAR-10 image folders (train/, test/)")
    parser.add_argument("--per-class", type=int, default=500, help="training images per class")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--augment", default="flip-shift", help="training augmentation for the CIFAR-10 model")
    parser.add_argument("--out", type=Path, required=True, help="folder for the models")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    demo, demo_s = timed(run_demo, args.out / "demo")
    lines = [
        "| model | test images | float top-1 | int8 top-1 | drop (pp) | agreement | float bytes | int8 bytes "
        "| int8/float size | train s | convert s | validate s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # The demo times its stages together; report its total separately.
    lines.append(row("demo (digits 8x8)", demo.report, demo.conversion, None, None, None))

    keras_path = args.out / "cifar.keras"
    _, train_s = timed(
        train, args.cifar / "train", keras_path, image_size=32, epochs=args.epochs,
        limit_per_class=args.per_class, seed=0, augment=args.augment,
    )  # fmt: skip
    conversion, convert_s = timed(
        convert, keras_path, args.out / "cifar_int8.tflite", calibration=args.cifar / "train", seed=0
    )
    report, validate_s = timed(validate_models, keras_path, conversion.path, args.cifar / "test", max_drop=1.0)
    lines.append(
        row(f"CIFAR-10 32x32 ({args.per_class}/class, {args.epochs} epochs, augment {args.augment})", report,
            conversion, train_s,
            convert_s, validate_s)
    )  # fmt: skip
    print("\n".join(lines))
    print(f"\ndemo wall time: {demo_s:.1f} s (edgecnn demo reports {demo.seconds:.1f} s)")


if __name__ == "__main__":
    main()
