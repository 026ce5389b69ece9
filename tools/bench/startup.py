"""Start-up of the CLI in the runtime-only install, as ratios to ``python -c "import click"`` in the same run.

The runtime-only environment holds edgecnn's core dependencies and no TensorFlow (what a Raspberry Pi gets); it
is ``tools/test_envs.py``'s ``x86/venv-runtime``, built by ``bash tools/setup_test_env.sh``, or a venv given with
``--startup-venv``. Each command is a fresh process: ``import click``, ``edgecnn --help``, ``edgecnn targets`` and
``edgecnn run cifar_int8.tflite IMAGE --json`` (load the int8 model and classify one test image). One untimed
warm-up of each (to fill the file cache), then ``--startup-runs`` interleaved rounds; medians, and each command's
ratio to ``import click`` taken within each round before the median.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from common import (
    HERE,
    Context,
    fmt_ratio,
    log,
    machine_line,
    median,
    quick_banner,
    rotated,
    run_child,
    section_meta,
)

BASE = "import click"
RUN = "edgecnn run cifar_int8.tflite IMAGE --json"


def runtime_venv(context: Context) -> tuple[Path, str]:
    """The runtime-only venv and a note on how current it is.

    Raises:
        RuntimeError: there is none (build it with ``bash tools/setup_test_env.sh``, or give ``--startup-venv``).
    """
    if context.options.startup_venv is not None:
        return Path(context.options.startup_venv), "given with --startup-venv"
    spec = importlib.util.spec_from_file_location("edgecnn_tools_test_envs", HERE.parent / "test_envs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    venv = Path(module.paths()["x86_venv_runtime"])
    if module.is_ready("x86_venv_runtime"):
        return venv, "tools/test_envs.py x86_venv_runtime, current"
    # Built from an older recipe (another dependency pin): still a TensorFlow-free install of this checkout
    # (edgecnn is installed editable), so it measures the same thing; say so rather than rebuild it under others.
    python = venv / "bin" / "python"
    if python.exists() and run_child([python, "-c", "import edgecnn"], check=False).returncode == 0:
        return venv, "tools/test_envs.py x86_venv_runtime, built from an older recipe (not rebuilt)"
    raise RuntimeError("the runtime-only venv is not built: run bash tools/setup_test_env.sh (or give --startup-venv)")


def first_image(context: Context) -> Path:
    """The first test image (by name) of the first class."""
    test = context.cifar / "test"
    first_class = sorted(p for p in test.iterdir() if p.is_dir())[0]
    return sorted(p for p in first_class.iterdir() if p.is_file())[0]


def commands(context: Context) -> dict[str, list[str]]:
    """The commands timed, by name, as arguments to the venv's ``python``."""
    int8 = context.models.int8
    found = {
        BASE: ["-c", "import click"],
        "edgecnn --help": ["-m", "edgecnn", "--help"],
        "edgecnn targets": ["-m", "edgecnn", "targets"],
    }
    if int8 is not None:
        found[RUN] = ["-m", "edgecnn", "run", str(int8), str(first_image(context)), "--json"]
    return found


def measure(context: Context) -> dict[str, Any]:
    """The startup section (see the module docstring)."""
    started, load_start = time.perf_counter(), os.getloadavg()
    venv, venv_note = runtime_venv(context)
    python = venv / "bin" / "python"
    timed = commands(context)
    if context.models.int8 is None:
        log("startup: no int8 model (run the cifar10 section or give --keras/--int8): edgecnn run is left out")
    runs = 3 if context.quick else context.options.startup_runs
    log(f"startup: {len(timed)} commands in {venv}, 1 warm-up + {runs} rounds")
    for args in timed.values():
        run_child([python, *args])
    seconds: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    for number in range(runs):
        for name in rotated(names, number, runs):
            seconds[name].append(run_child([python, *timed[name]]).seconds)
    ratios = {
        name: median([own / base for own, base in zip(values, seconds[BASE])]) for name, values in seconds.items()
    }
    result: dict[str, Any] = {
        "venv": str(venv),
        "venv_note": venv_note,
        "runs": runs,
        "commands": {name: " ".join(["python", *args]) for name, args in timed.items()},
        "median_seconds": {name: median(values) for name, values in seconds.items()},
        "ratio_to_import_click": ratios,
        "seconds_per_run": seconds,
        "help_ratio": ratios["edgecnn --help"],
        "targets_ratio": ratios["edgecnn targets"],
        "run_ratio": ratios.get(RUN),
        "help_goal": 2.0,
    }
    result["meta"] = section_meta(context, started, load_start)
    return result


def render(result: dict[str, Any]) -> str:
    """The Markdown block of BENCHMARKS.md for this section."""
    meta = result["meta"]
    lines = [
        quick_banner(meta),
        f"| command (runtime-only install, median of {result['runs']}, interleaved) | median (s) "
        '| ratio to `python -c "import click"` |',
        "|---|---:|---:|",
    ]
    for name, seconds in result["median_seconds"].items():
        shown = 'python -c "import click"' if name == BASE else name
        ratio = fmt_ratio(result["ratio_to_import_click"][name])
        if name == "edgecnn --help":
            ratio = f"**{ratio}** (goal: at most 2)"
        lines.append(f"| `{shown}` | {seconds:.3f} | {ratio} |")
    lines += [
        "",
        f"- Measured {meta['date']} on {machine_line(meta)}; command: `{meta['command']}`.",
        f"- The venv: `{result['venv']}` ({result['venv_note']}). `edgecnn run` loads the cifar10 int8 model and "
        "classifies one test image (`--json`).",
    ]
    return "\n".join(lines)
