"""edgecnn's benchmark harness: one command that measures everything BENCHMARKS.md's harness tables show.

Usage (from the project root, with ``pip install -e ".[train,micro,bench]"`` and the runtime-only test venv that
``bash tools/setup_test_env.sh`` builds):

    python tools/bench/run.py                                   # everything, about 55 minutes on 2 cores
    python tools/bench/run.py --keras cifar.keras --train-json train.json    # reuse a trained model
    python tools/bench/run.py --only host --only startup --keras cifar.keras
    python tools/bench/run.py --only parity --demo-dir edgecnn-demo   # kernel parity on `edgecnn demo`'s model
    python tools/bench/run.py --quick                           # minutes; figures are placeholders

Sections, in order (``--only`` picks some; the others keep their figures in ``--out``):

- ``cifar10`` (``cifar10.py``): train the ``cifar10`` preset with ``edgecnn train`` (timed), convert to int8,
  float vs int8 vs TFLM accuracy on the test split, weights and arena size;
- ``host`` (``host.py``): TFLite int8 and float against ONNX Runtime and Keras on the same network, 1 and 2 threads,
  batch 1 and 64, and the roofline against a float32 matrix product;
- ``validate`` (``validate.py``): ``edgecnn validate`` end to end against a plain loop (``plain_loop.py``), its split
  of time and its peak memory;
- ``startup`` (``startup.py``): ``edgecnn --help`` and ``edgecnn run`` on one image against ``import click``;
- ``parity`` (``parity.py``): the demo's int8 digits model on x86 (XNNPACK, reference kernels), the emulated
  Raspberry Pi 4 (ai-edge-litert, tflite-runtime), TFLM on the host and Cortex-M4F firmware under qemu (reference,
  CMSIS-NN) on the same images: top-1 agreement and the largest output-step difference of every pair.

Every figure is a median of repeated runs after an untimed warm-up, and every comparison is measured in the same
run as what it is compared with (ratios are taken within each repeat). Results go to ``benchmarks/results.json``
(written atomically after each section) and into BENCHMARKS.md between ``<!-- bench:SECTION -->`` markers, so the
hand-written text around the tables stays. Nothing reaches the network. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import cifar10
import host
import parity
import startup
import validate
from common import (
    BENCHMARKS_MD,
    DEFAULT_CIFAR,
    DEFAULT_OUT,
    Context,
    log,
    machine,
    replace_block,
    today,
    versions,
    write_json_atomically,
    write_text_atomically,
)

SECTIONS = {"cifar10": cifar10, "host": host, "validate": validate, "startup": startup, "parity": parity}
QUICK_OUT = Path(tempfile.gettempdir()) / "edgecnn-bench-quick" / "results.json"
QUICK_TEST_PER_CLASS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=DEFAULT_CIFAR, help="CIFAR-10 image folders (train/, test/)")
    parser.add_argument("--out", type=Path, help=f"results JSON [{DEFAULT_OUT.relative_to(DEFAULT_OUT.parents[1])}; "
                        f"--quick: {QUICK_OUT}]")  # fmt: skip
    parser.add_argument("--only", action="append", choices=tuple(SECTIONS), help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="tiny subsets and few repeats, for developing the harness")
    parser.add_argument("--keras", type=Path, help="reuse this trained cifar10 .keras model instead of training")
    parser.add_argument("--train-json", type=Path, help="with --keras: what `edgecnn train --json` printed for it")
    parser.add_argument("--int8", type=Path, help="reuse this int8 .tflite of --keras (sidecar beside it)")
    parser.add_argument("--work", type=Path, help="folder for models and intermediate files [a temporary one]")
    parser.add_argument("--keep-models", type=Path, help="copy the trained and converted models here")
    parser.add_argument("--test-per-class", type=int, help="use the first N test images of each class [all]")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="host thread counts [1 2]")
    parser.add_argument("--repeats", type=int, default=5, help="host: interleaved repeats [5]")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="host: largest score difference vs Keras")
    parser.add_argument("--validate-runs", type=int, default=3, help="validate: timed rounds after the warm-up [3]")
    parser.add_argument("--plain-loop-images", type=int, help="validate: time the loops on N class-balanced images "
                        "and scale per image [the whole test split]")  # fmt: skip
    parser.add_argument("--startup-runs", type=int, default=7, help="startup: timed rounds after the warm-up [7]")
    parser.add_argument("--startup-venv", type=Path, help="startup: a venv with edgecnn [the runtime-only test venv]")
    parser.add_argument("--demo-dir", type=Path, help="parity: an `edgecnn demo --out` folder [a fresh demo run]")
    parser.add_argument("--parity-images-per-class", type=int, help="parity: first N test digits of each class "
                        "[40: the whole test split; --quick: 1]")  # fmt: skip
    parser.add_argument("--tflm-dir", type=Path, help="parity: TFLM's sources for the firmware [$EDGECNN_TFLM_DIR, "
                        "else ../shared/third_party/tflm]")  # fmt: skip
    parser.add_argument("--benchmarks-md", type=Path, help="the Markdown file whose tables are rewritten "
                        "[BENCHMARKS.md; --quick: none unless given]")  # fmt: skip
    parser.add_argument("--no-write-benchmarks", action="store_true", help="do not edit the Markdown file")
    args = parser.parse_args(argv)
    if args.train_json is not None and args.keras is None:
        parser.error("--train-json goes with --keras")
    if args.int8 is not None and args.keras is None:
        parser.error("--int8 goes with --keras (the float model it was converted from)")
    per_class = 1 if args.parity_images_per_class is None else args.parity_images_per_class
    if min(args.repeats, args.validate_runs, args.startup_runs, *args.threads, per_class) < 1:
        parser.error(
            "--repeats, --validate-runs, --startup-runs, --threads and --parity-images-per-class must be at least 1"
        )
    if args.quick and args.test_per_class is None:
        args.test_per_class = QUICK_TEST_PER_CLASS
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    if args.benchmarks_md is None and not args.quick:
        args.benchmarks_md = BENCHMARKS_MD
    return args


def load_results(path: Path) -> dict[str, Any]:
    """The results of earlier runs, so that ``--only`` replaces some sections and keeps the others."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def update_markdown(path: Path, results: dict[str, Any], names: list[str]) -> list[str]:
    """Rewrite the blocks of ``names`` in the Markdown file; returns the sections that have no markers there."""
    text = path.read_text()
    missing = []
    for name in names:
        try:
            text = replace_block(text, name, SECTIONS[name].render(results[name]))
        except KeyError:
            missing.append(name)
    write_text_atomically(path, text)
    return missing


def run(args: argparse.Namespace, work: Path) -> int:
    """Run the chosen sections; write the results after each. Returns the exit status (1 if a section failed)."""
    names = [name for name in SECTIONS if args.only is None or name in args.only]
    context = Context(options=args, work=work, quick=args.quick)
    if "cifar10" not in names and args.keras is not None:
        context.models.keras = args.keras
        if {"host", "validate", "startup"} & set(names):
            cifar10.ensure_int8(context)
    results = load_results(args.out)
    results["meta"] = {
        "updated": today(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "sections_run": names,
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "errors": {},
    }
    done: list[str] = []
    for name in names:
        started = time.perf_counter()
        log(f"== {name}")
        try:
            results[name] = SECTIONS[name].measure(context)
        except Exception as error:  # noqa: BLE001  (one failed section must not lose the others' figures)
            log(f"{name} failed: {error}")
            traceback.print_exc(file=sys.stderr)
            results["meta"]["errors"][name] = str(error)
            continue
        done.append(name)
        write_json_atomically(args.out, results)
        log(f"== {name} done in {time.perf_counter() - started:.0f} s; wrote {args.out}")
    write_json_atomically(args.out, results)
    if done and args.benchmarks_md is not None and not args.no_write_benchmarks:
        missing = update_markdown(args.benchmarks_md, results, done)
        log(f"rewrote {', '.join(n for n in done if n not in missing)} in {args.benchmarks_md}")
        if missing:
            log(f"no <!-- bench:NAME --> markers for {', '.join(missing)} in {args.benchmarks_md}: not written")
    return 1 if results["meta"]["errors"] else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgecnn_bench_")))
        else:
            work = args.work
            work.mkdir(parents=True, exist_ok=True)
        status = run(args, work)
    sys.exit(status)


if __name__ == "__main__":
    main()
