"""How fast ``edgecnn --help`` answers, as a ratio to ``python -c "import click"`` measured in the same run.

Runs in the runtime-only environment (edgecnn's core dependencies, no TensorFlow: what a Raspberry Pi gets), built
by ``bash tools/setup_test_env.sh`` (``tools/test_envs.py``), or in the venv given with ``--venv``. Each command is
a fresh process; the two are interleaved, 7 runs each by default, after one untimed warm-up of each (to fill the
file cache), and the medians are compared. The goal (issue 11) is a ratio of at most 2.

    python tools/bench_startup.py                 # the runtime-only venv of tools/test_envs.py
    python tools/bench_startup.py --venv .venv --runs 7 --json /tmp/startup.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

COMMANDS = {
    "import click": ["-c", "import click"],
    "edgecnn --help": ["-m", "edgecnn", "--help"],
    "edgecnn targets": ["-m", "edgecnn", "targets"],
}


def _runtime_venv() -> Path:
    spec = importlib.util.spec_from_file_location("edgecnn_tools_test_envs", HERE / "test_envs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.is_ready("x86_venv_runtime"):
        sys.exit("bench_startup: the runtime-only venv is not built: run bash tools/setup_test_env.sh (or give --venv)")
    return Path(module.paths()["x86_venv_runtime"])


def _seconds(python: Path, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(python: Path, runs: int) -> dict[str, object]:
    """Median wall time of each command (interleaved runs) and its ratio to ``import click``."""
    for args in COMMANDS.values():
        _seconds(python, args)  # warm-up, untimed
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, args in COMMANDS.items():
            times[name].append(_seconds(python, args))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["import click"]
    return {
        "python": str(python),
        "runs": runs,
        "median_seconds": {name: round(value, 4) for name, value in medians.items()},
        "ratio_to_import_click": {name: round(value / base, 2) for name, value in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, help="a venv with edgecnn installed [the runtime-only test venv]")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command [7]")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    options = parser.parse_args()
    venv = options.venv or _runtime_venv()
    result = measure(venv / "bin" / "python", options.runs)
    print("| command | median (s) | ratio to `import click` |\n|---|---|---|")
    for name, seconds in result["median_seconds"].items():  # type: ignore[union-attr]
        print(f"| `{name}` | {seconds:.3f} | {result['ratio_to_import_click'][name]:.2f} |")  # type: ignore[index]
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
