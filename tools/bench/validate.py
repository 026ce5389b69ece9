"""``edgecnn validate`` end to end against a plain loop, its time split, and its peak memory.

Each measurement is a fresh process, timed from outside (wall seconds from start to exit, Python's start-up and
imports included) with its peak resident memory from ``os.wait4`` (``common.run_child``):

- ``edgecnn validate CIFAR/test -r cifar.keras -c cifar_int8.tflite --json -q`` over the test split;
- ``plain_loop.py``: one image at a time, Keras eager (the plain loop) and, stricter, Keras through a
  ``tf.function`` traced once (the compiled loop); both also run the int8 model;
- ``edgecnn validate`` on 100 images per class, whose peak memory the full run's is compared with: a command that
  streams uses about the same memory for 1,000 images and 10,000.

One untimed warm-up round first (the full validate, which reads every test image into the file cache, and each
loop on a few images), then ``--validate-runs`` rounds in which the commands are interleaved; medians. The loops
may run on a class-balanced subset (``--plain-loop-images``); their time is then scaled to the test split per
image (set-up once, loop time per image), and the scaling is recorded. Their accuracy is checked against a
validate run on the same images.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from common import (
    HERE,
    Context,
    edgecnn_command,
    fmt_pct,
    fmt_ratio,
    log,
    machine_line,
    median,
    quick_banner,
    run_child,
    section_meta,
)

SMALL_PER_CLASS = 100
LOOPS = ("plain", "compiled")


def validate_command(context: Context, per_class: int | None) -> list[str]:
    """``edgecnn validate`` of the float and int8 models on ``per_class`` images per class (None: all)."""
    keras, int8 = context.models.keras, context.models.int8
    if keras is None or int8 is None:
        raise RuntimeError("no cifar10 models: run the cifar10 section or give --keras (and --int8)")
    command = [*edgecnn_command(), "validate", str(context.cifar / "test"), "-r", str(keras), "-c", str(int8)]
    command += ["--json", "-q"]
    return command + ([] if per_class is None else ["--limit-per-class", str(per_class)])


def loop_command(context: Context, loop: str, per_class: int | None) -> list[str]:
    """``plain_loop.py`` over ``per_class`` images per class (None: all)."""
    keras, int8 = context.models.keras, context.models.int8
    assert keras is not None and int8 is not None
    command = [sys.executable, str(HERE / "plain_loop.py"), str(context.cifar / "test"), str(keras), str(int8)]
    command += [] if per_class is None else ["--per-class", str(per_class)]
    return command + (["--compiled"] if loop == "compiled" else [])


def loop_per_class(context: Context, classes: int) -> int | None:
    """Images per class the loops run on: ``--plain-loop-images`` spread over the classes, else the validate set."""
    wanted = context.options.plain_loop_images
    if wanted is None:
        return context.test_limit
    per_class = max(1, wanted // classes)
    if context.test_limit is not None:
        per_class = min(per_class, context.test_limit)
    return per_class


def measure(context: Context) -> dict[str, Any]:
    """The validate section (see the module docstring)."""
    started, load_start = time.perf_counter(), os.getloadavg()
    runs = 1 if context.quick else context.options.validate_runs
    limit = context.test_limit
    small = min(SMALL_PER_CLASS, limit) if limit is not None else SMALL_PER_CLASS
    if context.quick:
        small = max(1, (limit or 10) // 4)
    classes = sum(1 for p in (context.cifar / "test").iterdir() if p.is_dir())
    loop_limit = loop_per_class(context, classes)

    log("validate: warm-up round (untimed)")
    run_child(validate_command(context, limit), ok_codes=(0, 1))
    for loop in LOOPS:
        run_child(loop_command(context, loop, 2))

    rounds: list[dict[str, Any]] = []
    for number in range(runs):
        log(f"validate: round {number + 1}/{runs}: edgecnn validate")
        full = run_child(validate_command(context, limit), ok_codes=(0, 1))
        record: dict[str, Any] = {
            "validate_seconds": full.seconds,
            "validate_peak_rss_mb": full.peak_rss_mb,
            "validate_json_seconds": full.json().get("seconds"),
        }
        report = full.json()
        for loop in LOOPS:
            log(f"validate: round {number + 1}/{runs}: {loop} loop")
            child = run_child(loop_command(context, loop, loop_limit))
            record[loop] = {**child.json(), "wall_seconds": child.seconds, "peak_rss_mb": child.peak_rss_mb}
        log(f"validate: round {number + 1}/{runs}: edgecnn validate on {small} images per class (memory)")
        small_run = run_child(validate_command(context, small), ok_codes=(0, 1))
        record["small_peak_rss_mb"] = small_run.peak_rss_mb
        record["small_seconds"] = small_run.seconds
        rounds.append(record)

    images = report["num_images"]
    if loop_limit == limit:
        check = report
    else:
        log(f"validate: accuracy check on the loops' {loop_limit} images per class (untimed)")
        check = run_child(validate_command(context, loop_limit), ok_codes=(0, 1)).json()
    result = summarize(rounds, images=images, check=check, small_images=small_run.json()["num_images"])
    result.update(
        {
            "test_images": images,
            "plain_loop_images": rounds[0]["plain"]["images"],
            "plain_loop_per_class": loop_limit,
            "runs": runs,
            "warmup_runs": 1,
            "rounds": rounds,
            "validate_accuracy": {
                "reference": report["reference_accuracy"],
                "candidate": report["candidate_accuracy"],
            },
        }
    )
    result["meta"] = section_meta(context, started, load_start)
    return result


def scaled_seconds(loop: dict[str, Any], images: int) -> float:
    """A loop's wall seconds for ``images`` images: as measured when it ran on them all, else set-up (its wall time
    minus its loop time) plus the loop time per image times ``images``."""
    if loop["images"] == images:
        return float(loop["wall_seconds"])
    fixed = loop["wall_seconds"] - loop["loop_seconds"]
    return float(fixed + loop["loop_seconds"] / loop["images"] * images)


def summarize(rounds: list[dict[str, Any]], *, images: int, check: dict[str, Any], small_images: int) -> dict[str, Any]:
    """Medians over rounds, speed-ups within each round, the time split and the accuracy check."""
    result: dict[str, Any] = {
        "validate_seconds": median([r["validate_seconds"] for r in rounds]),
        "peak_rss_mb": median([r["validate_peak_rss_mb"] for r in rounds]),
        "peak_rss_mb_max": max(r["validate_peak_rss_mb"] for r in rounds),
        "peak_rss_mb_small": median([r["small_peak_rss_mb"] for r in rounds]),
        "small_images": small_images,
    }
    result["peak_rss_ratio_full_vs_small"] = result["peak_rss_mb"] / result["peak_rss_mb_small"]
    for loop in LOOPS:
        result[f"{loop}_loop_seconds"] = median([scaled_seconds(r[loop], images) for r in rounds])
        result[f"speedup_vs_{loop}_loop"] = median(
            [scaled_seconds(r[loop], images) / r["validate_seconds"] for r in rounds]
        )
        result[f"{loop}_loop_split_seconds"] = {
            stage: median([r[loop]["seconds"][stage] for r in rounds])
            for stage in ("setup", "decode", "preprocess", "reference", "candidate", "total")
        }
        first = rounds[0][loop]
        result[f"{loop}_loop_accuracy"] = {
            "reference": first["reference_accuracy"],
            "candidate": first["candidate_accuracy"],
            "validate_reference": check["reference_accuracy"],
            "validate_candidate": check["candidate_accuracy"],
            # Keras on a batch of 1 and on validate's batches can differ in the last bits, which can flip a
            # near-tied image: a difference of an image or two is arithmetic, more would be a different pipeline.
            "max_difference_images": round(
                max(
                    abs(first["reference_accuracy"] - check["reference_accuracy"]),
                    abs(first["candidate_accuracy"] - check["candidate_accuracy"]),
                )
                * first["images"]
            ),
        }
    splits = [r["validate_json_seconds"] for r in rounds if isinstance(r.get("validate_json_seconds"), dict)]
    if splits:
        stages = sorted({key for split in splits for key in split})
        split = {stage: median([s[stage] for s in splits if stage in s]) for stage in stages}
        inference = split.get("reference", 0.0) + split.get("candidate", 0.0)
        result["split_seconds"] = split
        result["split_source"] = "validate --json 'seconds' (busy seconds per stage inside the command)"
        result["inference_is_largest"] = inference >= max(split.get("decode", 0.0), split.get("preprocess", 0.0))
    else:
        result["split_seconds"] = None
        result["split_source"] = "validate --json printed no 'seconds' key (this edgecnn does not report its split)"
        result["inference_is_largest"] = None
    result["speedup_goal"] = 3.0
    return result


def _cell(seconds: float | None) -> str:
    """Seconds for a table cell ("-" for a stage that was not reported)."""
    return "-" if seconds is None else f"{seconds:.2f}"


def render(result: dict[str, Any]) -> str:
    """The Markdown block of BENCHMARKS.md for this section."""
    meta = result["meta"]
    images = result["test_images"]
    plain, compiled = result["plain_loop_split_seconds"], result["compiled_loop_split_seconds"]
    lines = [
        quick_banner(meta),
        f"| command, {images:,} test images | wall s (median of {result['runs']}) | validate's speed-up "
        "| peak RSS MB |",
        "|---|---:|---:|---:|",
        f"| `edgecnn validate` | {result['validate_seconds']:.1f} | 1.00 | {result['peak_rss_mb']:.0f} |",
        f"| plain loop (Keras eager, batch 1) | {result['plain_loop_seconds']:.1f} "
        f"| **{fmt_ratio(result['speedup_vs_plain_loop'])}** (goal ≥ 3) | "
        f"{median([r['plain']['peak_rss_mb'] for r in result['rounds']]):.0f} |",
        f"| compiled loop (Keras `tf.function`, batch 1) | {result['compiled_loop_seconds']:.1f} "
        f"| {fmt_ratio(result['speedup_vs_compiled_loop'])} "
        f"| {median([r['compiled']['peak_rss_mb'] for r in result['rounds']]):.0f} |",
        f"| `edgecnn validate`, {result['small_images']:,} images | - | - | {result['peak_rss_mb_small']:.0f} |",
        "",
        "| where the time goes (busy seconds) | total | start-up, models | scan | decode | preprocess "
        "| Keras float | int8 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    split = result.get("split_seconds")
    if split:
        lines.append("| `edgecnn validate` (its `--json` `seconds`) | " + " | ".join(
            _cell(split.get(k)) for k in ("total", "open", "scan", "decode", "preprocess", "reference", "candidate")
        ) + " |")  # fmt: skip
    else:
        lines.append("| `edgecnn validate` | (not reported: its `--json` has no `seconds`) | | | | | | |")
    for name, loop in (("plain loop", plain), ("compiled loop", compiled)):
        lines.append(f"| {name} ({result['plain_loop_images']:,} images) | " + " | ".join(
            _cell(loop.get(k)) for k in ("total", "setup", "scan", "decode", "preprocess", "reference", "candidate")
        ) + " |")  # fmt: skip
    scaled = result["plain_loop_images"] != images
    accuracy = result["plain_loop_accuracy"]
    lines += [
        "",
        f"- Measured {meta['date']} on {machine_line(meta)}; command: `{meta['command']}`; {meta['seconds']:.0f} s.",
        "- Wall time of each command as a fresh process, start-up and model loading included; one untimed warm-up "
        f"round, then {result['runs']} interleaved round(s); speed-ups are taken within each round, then the median.",
        (
            f"- The loops ran on {result['plain_loop_images']:,} class-balanced images; their time for {images:,} is "
            "their set-up plus their loop time per image times the images."
            if scaled
            else f"- The loops ran on the same {images:,} images."
        ),
        f"- Accuracy check: the plain loop gives {fmt_pct(accuracy['reference'])} float and "
        f"{fmt_pct(accuracy['candidate'])} int8 against validate's {fmt_pct(accuracy['validate_reference'])} and "
        f"{fmt_pct(accuracy['validate_candidate'])} on the same images "
        f"({accuracy['max_difference_images']} image(s) apart at most).",
        "- Time split: busy seconds per stage. validate's come from its `--json` (`open`: loading both models; "
        "the stages run one after another on one thread, so they add up to at most the total); the loops' "
        "`start-up, models` is their imports and model loading, the rest their loop. "
        + (
            "Inference (Keras + int8) is validate's largest per-image stage."
            if result.get("inference_is_largest")
            else "Inference is not validate's largest per-image stage."
            if result.get("inference_is_largest") is False
            else ""
        ),
    ]
    if result["small_images"] < images:
        ratio = result["peak_rss_ratio_full_vs_small"]
        lines.append(
            f"- Peak RSS (1 MB = 10^6 bytes) over {images:,} images is {ratio:.2f}x that over "
            f"{result['small_images']:,} in the same rounds"
            + (": validate streams the images instead of holding them." if ratio < 1.1 else ".")
        )
    return "\n".join(lines)
