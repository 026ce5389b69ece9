"""The cifar10 recipe end to end through the CLI: train (or reuse), convert to int8, validate on host and TFLM, budget.

Every figure comes from the commands a user runs, each a fresh process:

- ``edgecnn train CIFAR/train --out W/cifar.keras --preset cifar10 --json`` (timed: wall seconds of the process), or
  ``--keras`` with ``--train-json`` to reuse a model trained earlier;
- ``edgecnn convert ... --calibration CIFAR/train --calibration-size 500 --json``;
- ``edgecnn validate CIFAR/test -r cifar.keras -c cifar_int8.tflite --json``: float and int8 (LiteRT) accuracy,
  measured in one run on the same images;
- ``edgecnn validate CIFAR/test -r cifar_int8.tflite -c cifar_int8.tflite --target micro --json``: the TFLM accuracy,
  beside LiteRT's on the same images;
- ``edgecnn check --target micro --board nano33ble cifar_int8.tflite --json``: the tensor arena TFLM needs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from common import (
    Context,
    edgecnn_command,
    fmt_pct,
    log,
    machine_line,
    quick_banner,
    run_child,
    section_meta,
)

BOARD = "nano33ble"


def limit_options(context: Context) -> list[str]:
    """``--limit-per-class`` for the validate commands when the run uses part of the test split."""
    return [] if context.test_limit is None else ["--limit-per-class", str(context.test_limit)]


def train_seconds_from_json(record: dict[str, Any]) -> tuple[float | None, str]:
    """Training seconds from a JSON record of an earlier training, and where the figure came from.

    Accepts what ``edgecnn train --json`` prints (``history``: one entry per epoch whose ``seconds`` count from the
    start of training, image loading included, so the last entry is the total up to the last epoch, not a sum) and
    the record of ``edgecnn.build.train.train`` with a logging callback (``train_seconds``, the whole call, and
    ``curve``, the same per-epoch entries).
    """
    for key in ("train_seconds", "seconds", "total_seconds"):
        if isinstance(record.get(key), (int, float)):
            return float(record[key]), f"train JSON: {key!r} (the whole training call)"
    for key in ("history", "curve"):
        entries = record.get(key)
        if isinstance(entries, list) and entries and isinstance(entries[-1].get("seconds"), (int, float)):
            return float(entries[-1]["seconds"]), (
                f"train JSON: the last {key!r} entry's seconds (counted from the start of training, image loading "
                "included; model saving and start-up excluded)"
            )
    return None, "unknown: the train JSON holds no seconds"


def curve(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-epoch learning curve of a training record (``history`` or ``curve``)."""
    entries = record.get("history") or record.get("curve") or []
    return [dict(entry) for entry in entries]


def train(context: Context) -> dict[str, Any]:
    """Train the cifar10 preset with the CLI (or reuse ``--keras``) and return what was measured."""
    options = context.options
    if options.keras is not None:
        keras = Path(options.keras)
        context.models.keras = keras
        record: dict[str, Any] = {}
        if options.train_json is not None:
            record = json.loads(Path(options.train_json).read_text())
        seconds, source = train_seconds_from_json(record) if record else (None, "unknown: no --train-json given")
        if record:
            source = f"from --train-json, an earlier run ({source})"
        log(f"cifar10: reusing {keras} (train seconds: {source})")
        return {
            "reused_model": str(keras),
            "train_json": None if options.train_json is None else str(options.train_json),
            "train_seconds": seconds,
            "train_seconds_source": source,
            "train_wall_seconds": None,
            "history": curve(record),
            "metrics": record.get("metrics"),
        }
    keras = context.work / "cifar.keras"
    command = [*edgecnn_command(), "train", str(context.cifar / "train"), "--out", str(keras)]
    command += ["--preset", "cifar10", "--json", "-q"]
    if context.quick:
        command += ["--epochs", "1", "--limit-per-class", "50"]  # the preset's network, not its accuracy
    log(f"cifar10: training ({' '.join(command[2:])})")
    child = run_child(command)
    record = child.json()
    (context.work / "train.json").write_text(child.stdout)
    context.models.keras = keras
    context.models.train_json = context.work / "train.json"
    seconds, source = train_seconds_from_json(record)
    log(f"cifar10: trained in {child.seconds:.0f} s wall")
    return {
        "reused_model": None,
        "train_command": " ".join(["edgecnn", *command[3:]]),
        "train_seconds": child.seconds,
        "train_seconds_source": "wall seconds of the edgecnn train process (start-up, loading, training, saving)",
        "train_seconds_in_json": seconds,
        "train_wall_seconds": child.seconds,
        "train_peak_rss_mb": round(child.peak_rss_mb, 1),
        "history": curve(record),
        "metrics": record.get("metrics"),
        "num_train": record.get("num_train"),
        "num_validation": record.get("num_validation"),
    }


def ensure_int8(context: Context) -> dict[str, Any]:
    """Convert the Keras model to full int8 with the CLI (500 calibration images), unless ``--int8`` gave one."""
    if context.options.int8 is not None:
        context.models.int8 = Path(context.options.int8)
        return {"reused_int8": str(context.models.int8)}
    if context.models.keras is None:
        raise RuntimeError("no Keras model: run the cifar10 section or give --keras")
    out = context.work / "cifar_int8.tflite"
    size = "100" if context.quick else "500"
    command = [*edgecnn_command(), "convert", str(context.models.keras), "--out", str(out)]
    command += ["--calibration", str(context.cifar / "train"), "--calibration-size", size, "--json", "-q"]
    log("cifar10: int8 conversion")
    child = run_child(command)
    context.models.int8 = out
    record = child.json()
    return {
        "convert_seconds": round(child.seconds, 1),
        "calibration_size": int(size),
        "float_tflite_bytes": record.get("float_size_bytes"),
    }


def measure(context: Context) -> dict[str, Any]:
    """The cifar10 section: training, conversion, float/int8/TFLM accuracy, weights and arena sizes."""
    started, load_start = time.perf_counter(), os.getloadavg()
    result = train(context)
    result.update(ensure_int8(context))
    keras, int8 = context.models.keras, context.models.int8
    assert keras is not None and int8 is not None
    test = str(context.cifar / "test")

    log("cifar10: validate float vs int8 (LiteRT)")
    validate = [*edgecnn_command(), "validate", test, "--json", "-q", *limit_options(context)]
    # Exit 1 (a gate failed) still measured both models: a result here, not an error.
    host = run_child([*validate, "-r", str(keras), "-c", str(int8)], ok_codes=(0, 1)).json()
    log("cifar10: validate int8 LiteRT vs TFLM")
    micro = run_child([*validate, "-r", str(int8), "-c", str(int8), "--target", "micro"], ok_codes=(0, 1)).json()
    log(f"cifar10: check --target micro --board {BOARD}")
    check = run_child(
        [*edgecnn_command(), "check", "--target", "micro", "--board", BOARD, str(int8), "--json"], ok_codes=(0, 1)
    ).json()
    arena = check.get("details", {}).get("arena", {})
    size = int8.stat().st_size
    result.update(
        {
            "test_images": host.get("num_images"),
            "float_accuracy": host["reference_accuracy"],
            "int8_accuracy": host["candidate_accuracy"],
            "int8_minus_float_pp": round(100 * (host["candidate_accuracy"] - host["reference_accuracy"]), 2),
            "int8_float_agreement": host.get("agreement"),
            "tflm_accuracy": micro["candidate_accuracy"],
            "tflm_litert_int8_accuracy": micro["reference_accuracy"],
            "tflm_litert_agreement": micro.get("agreement"),
            "weights_bytes": size,
            "weights_kb": round(size / 1000, 1),
            "weights_kb_unit": "kB = 1000 bytes (the int8 .tflite file, TFLite Metadata included)",
            "arena_bytes": arena.get("arena_bytes"),
            "arena_used_bytes": arena.get("used_bytes"),
            "arena_kb": None if arena.get("arena_bytes") is None else round(arena["arena_bytes"] / 1000, 1),
            "arena_kb_unit": "kB = 1000 bytes (TFLM's measured arena plus edgecnn's margin)",
            "board": BOARD,
            "fits_board": check.get("details", {}).get("fits"),
        }
    )
    if context.options.keep_models is not None:
        keep = Path(context.options.keep_models)
        keep.mkdir(parents=True, exist_ok=True)
        for path in (keras, int8, int8.with_suffix(".json")):
            if path.exists() and path.parent != keep:
                shutil.copy2(path, keep / path.name)
    result["meta"] = section_meta(context, started, load_start)
    return result


def render(result: dict[str, Any]) -> str:
    """The Markdown block of BENCHMARKS.md for this section."""
    meta = result["meta"]
    seconds = result.get("train_seconds")
    train_cell = "-" if seconds is None else f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    arena = result.get("arena_bytes")
    arena_cell = "-" if arena is None else f"{arena / 1000:.1f} kB ({result.get('arena_used_bytes', 0):,} B used)"
    epochs = len(result.get("history") or [])
    lines = [
        quick_banner(meta),
        "| recipe | test images | train time | float top-1 | int8 top-1 (LiteRT) | int8 − float | TFLM top-1 "
        f"| int8 `.tflite` | TFLM arena ({result.get('board', BOARD)}) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| `cifar10` preset, {epochs} epochs | {result.get('test_images', '-'):,} | {train_cell} "
        f"| {fmt_pct(result['float_accuracy'])} | {fmt_pct(result['int8_accuracy'])} "
        f"| {result['int8_minus_float_pp']:+.2f} pp | {fmt_pct(result['tflm_accuracy'])} "
        f"| {result['weights_kb']:.1f} kB | {arena_cell} |",
        "",
        f"- Measured {meta['date']} on {machine_line(meta)}; command: `{meta['command']}`.",
        f"- Train time: {result['train_seconds_source']}. kB = 1000 bytes. TFLM agrees with LiteRT's int8 on "
        f"{fmt_pct(result.get('tflm_litert_agreement'))} of the images; int8 agrees with float on "
        f"{fmt_pct(result.get('int8_float_agreement'))}.",
    ]
    history = result.get("history") or []
    if history:
        marks = [h for h in history if h["epoch"] in (1, 5, 10, 15, 20, 25, 30, 35) or h is history[-1]]
        points = " · ".join(f"{h['epoch']}: {fmt_pct(h.get('val_accuracy'))}" for h in marks)
        lines.append(f"- Validation accuracy by epoch (held-out training images): {points}.")
    return "\n".join(lines)
