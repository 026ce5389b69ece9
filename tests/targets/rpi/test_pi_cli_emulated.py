"""The ``edgecnn`` command on an emulated Raspberry Pi 4: ``--target rpi`` is the local runtime with Pi defaults.

One emulated aarch64 process per runtime flavour runs ``targets``, ``check``, ``bench`` and ``run`` through
the real CLI (emulation gives correctness, not speed: the bench figures are only checked for shape); one more
runs ``run``, ``bench`` and ``check`` with ``--kernels reference``, whose int8 scores are the host's to the bit.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import envs
import numpy as np
import pytest

from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.data import Sample, load_images, scan_folder
from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.targets import make_target

SCRIPT = """\
import contextlib, io, json, sys
from edgecnn.cli.main import cli

results = {}
for name, args in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(args, prog_name="edgecnn", standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code
    results[name] = {"code": code, "stdout": out.getvalue()}
print(json.dumps(results))
"""


pytestmark = pytest.mark.slow  # emulated aarch64 processes


def run_in_one_process(
    python: list[str], commands: list[tuple[str, list[str]]], folder: Path
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run edgecnn commands in one emulated Python process (each takes seconds to start): the JSON of each that
    exited 0, by name, and the process."""
    script = folder / "cli.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGECNN_RUNTIME")}
    done = subprocess.run(
        [*python, str(script), json.dumps(commands)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = {name: json.loads(r["stdout"]) for name, r in json.loads(done.stdout).items() if r["code"] == 0}
    return results, done


@pytest.mark.parametrize(("flavour", "runtime"), [("litert", "ai-edge-litert"), ("tflite-runtime", "tflite-runtime")])
def test_cli_on_an_emulated_pi(
    flavour: str, runtime: str, models: dict[str, Path], photos_test: Path, tmp_path: Path
) -> None:
    python = envs.arm64_python(flavour)  # skips (fails under CI) when the emulated Pi is not built
    model = str(models["int8"])
    images = [s.path for s in scan_folder(photos_test, limit_per_class=1).samples]
    commands = [
        ("targets", ["targets", "--json"]),
        ("check", ["check", "--target", "rpi", model, "--json"]),
        ("bench", ["bench", "--target", "rpi", model, "--runs", "3", "--warmup", "1", "--json"]),
        ("run", ["run", "--target", "rpi", model, *map(str, images), "--top-k", "10", "--json"]),
    ]
    results, done = run_in_one_process(python, commands, tmp_path)
    assert set(results) == {"targets", "check", "bench", "run"}, done.stdout[-3000:]

    rpi = next(t for t in results["targets"]["targets"] if t["name"] == "rpi")
    assert rpi["usable"] and rpi["detail"].startswith(f"Raspberry Pi 4 Model B Rev 1.1 with {runtime} ")
    assert results["check"]["passed"] and results["check"]["target"] == "rpi"

    bench = results["bench"]
    assert (bench["threads"], bench["runtime"], bench["runs"]) == (4, runtime, 3)
    assert bench["machine"]["arch"] == "aarch64" and bench["machine"]["board"].startswith("Raspberry Pi 4")

    run = results["run"]
    assert run["runtime"] == runtime and run["target"] == "rpi" and run["num_images"] == 10
    # The Pi's optimized kernels against x86's reference kernels: the same top-1, scores within 8 output steps.
    info = read_tflite_info(model)
    loaded = load_images([Sample(p, -1) for p in images], info.preprocessing, strict=True)
    runner = TFLiteRunner(model, reference_kernels=True, runtime="ai-edge-litert")
    expected = runner.predict(loaded.images)
    runner.close()
    pi = np.array(
        [[dict((t["label"], t["score"]) for t in p["top"])[label] for label in info.labels] for p in run["predictions"]]
    )
    assert np.max(np.abs(pi - expected)) <= 8 * info.output.scale
    assert list(pi.argmax(1)) == list(expected.argmax(1))


def test_reference_kernels_on_an_emulated_pi(models: dict[str, Path], photos_test: Path, tmp_path: Path) -> None:
    """``--target rpi --kernels reference`` on the Pi (ai-edge-litert): run, bench and check in one emulated process;
    run's int8 scores are the host's reference kernels' to the bit, and every report names the kernels."""
    python = envs.arm64_python("litert")  # skips (fails under CI) when the emulated Pi is not built
    model = str(models["int8"])
    images = [s.path for s in scan_folder(photos_test, limit_per_class=2).samples]
    kernels = ["--target", "rpi", "--kernels", "reference", "--json"]
    commands = [
        ("run", ["run", model, *map(str, images), "--top-k", "10", *kernels]),
        ("bench", ["bench", model, "--runs", "2", "--warmup", "0", *kernels]),
        ("check", ["check", model, *kernels]),
    ]
    results, done = run_in_one_process(python, commands, tmp_path)
    assert set(results) == {"run", "bench", "check"}, done.stdout[-3000:]

    runtime = "ai-edge-litert (reference kernels)"
    assert results["bench"]["runtime"] == runtime and results["bench"]["machine"]["arch"] == "aarch64"
    loaded = next(f["message"] for f in results["check"]["findings"] if f["code"] == "runtime")
    assert results["check"]["passed"] and loaded == f"loads in {runtime} with 4 threads"
    run = results["run"]
    assert run["runtime"] == runtime and run["target"] == "rpi" and run["num_images"] == 20
    info = read_tflite_info(model)
    loaded_images = load_images([Sample(p, -1) for p in images], info.preprocessing, strict=True)
    host = make_target("host", kernels="reference").open(Path(model))
    expected = host.predict(loaded_images.images)
    host.close()
    pi = np.array(
        [[dict((t["label"], t["score"]) for t in p["top"])[label] for label in info.labels] for p in run["predictions"]]
    )
    assert np.array_equal(pi, expected)  # the int8 scores, dequantized: equal floats are equal int8 values
