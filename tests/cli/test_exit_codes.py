"""One meaning per exit code, for every command (README, "Exit codes"):

0 success; 1 a verdict failed (gate, check, budget); 2 usage or bad input; 3 the environment (a target, device,
runtime or extra unavailable); 130 interrupted (Ctrl-C), with no "Aborted!", no traceback and nothing half-written;
70 an internal error: one line that says it is a bug and how to see the traceback (``--debug``, ``EDGECNN_DEBUG=1``).

Every command is run for 0, 2, 70 and 130 here; 3 for every command that needs something this machine may lack
(in the runtime-only environment, without TensorFlow or TFLite Micro, and against an SSH port nobody listens on);
1 for the commands whose verdict a small input can fail (validate, check). The other verdicts have tests of their
own: convert --max-drop and diagnose in tests/build/test_quality.py, export micro --board in
tests/targets/micro/test_micro_export.py, demo's gate through validate.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import envs
import pytest
from helpers import copy_subset, run_cli

from edgecnn.cli.main import cli

ALL_COMMANDS = {
    "train",
    "convert",
    "diagnose",
    "finetune",
    "validate",
    "demo",
    "run",
    "targets",
    "check",
    "inspect",
    "bench",
    "export micro",
    "agent",
}

# The one library function each command calls: replaced to fail from inside, to see how the CLI ends.
CALLS = {
    "train": ("edgecnn.build.train", "train"),
    "convert": ("edgecnn.build.for_target", "convert_for_target"),
    "diagnose": ("edgecnn.build.diagnose", "diagnose"),
    "finetune": ("edgecnn.build.qat", "finetune_qat"),
    "validate": ("edgecnn.workflows.validate", "validate"),
    "demo": ("edgecnn.workflows.demo", "run_demo"),
    "run": ("edgecnn.workflows.run", "classify"),
    "targets": ("edgecnn.targets", "list_targets"),
    "check": ("edgecnn.targets", "check_model"),
    "inspect": ("edgecnn.model.inspect", "inspect_model"),
    "bench": ("edgecnn.workflows.bench", "bench_model"),
    "export micro": ("edgecnn.targets.micro.export", "export_micro"),
    "agent": ("edgecnn.targets.agent", "serve_stdio"),
}


def _commands() -> set[str]:
    """Every command the CLI has, subcommands by their full name."""
    found = set()
    for name, command in cli.commands.items():
        if isinstance(command, click.Group):
            found |= {f"{name} {sub}" for sub in command.commands}
        else:
            found.add(name)
    return found


def test_every_command_is_covered() -> None:
    assert _commands() == ALL_COMMANDS == set(CALLS)


@pytest.fixture
def args(models: dict[str, Path], small_folder: Path, photos_train: Path, tmp_path: Path) -> dict[str, list[object]]:
    """Arguments that make each command succeed, on the suite's small model and images."""
    return {
        "train": ["train", small_folder, "--out", tmp_path / "m.keras", "--epochs", 1, "--image-size", 8],
        "convert": ["convert", models["keras"], "--out", tmp_path / "c.tflite", "--quantize", "none"],
        "diagnose": ["diagnose", models["keras"], "--calibration", photos_train],
        "finetune": ["finetune", models["keras"], small_folder, "--out", tmp_path / "q.tflite", "--epochs", 1],
        "validate": ["validate", small_folder, "-r", models["float"], "-c", models["int8"], "--max-drop", 100],
        "demo": ["demo", "--out", tmp_path / "demo"],
        "run": ["run", models["int8"], small_folder],
        "targets": ["targets"],
        "check": ["check", models["int8"]],
        "inspect": ["inspect", models["int8"]],
        "bench": ["bench", models["int8"], "--runs", 2, "--warmup", 0],
        "export micro": ["export", "micro", models["int8"], "--out", tmp_path / "firmware"],
        "agent": ["agent"],
    }


# A meaningless option value for each command: one line, exit 2, before any work.
BAD_INPUT = {
    "train": (["--epochs", 0], "--epochs"),
    "convert": (["--calibration-size", 0, "--calibration", "."], "--calibration-size"),
    "diagnose": (["--data-limit", 0], "--data-limit"),
    "finetune": (["--learning-rate", "nan"], "--learning-rate"),
    "validate": (["--min-agreement", "nan"], "--min-agreement"),
    "demo": (["--epochs", 0], "--epochs"),
    "run": (["--top-k", 0], "--top-k"),
    "targets": (["--no-such-option"], "--no-such-option"),
    "check": (["--threads", 100000], "--threads"),
    "inspect": (["--no-such-option"], "--no-such-option"),
    "bench": (["--runs", 0], "--runs"),
    "export micro": (["--name", "1st-model"], "not a C identifier"),
    "agent": (["--no-such-option"], "--no-such-option"),
}


def _one_line(result: object, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", sorted(ALL_COMMANDS - {"demo", "agent"}))
def test_success_is_0(command: str, args: dict[str, list[object]]) -> None:
    result = run_cli(*args[command], "--json") if command != "targets" else run_cli("targets", "--json")
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)  # --json: one JSON document on stdout, nothing else there


def test_the_agent_answers_and_ends_with_0() -> None:
    """``edgecnn agent`` greets, then ends cleanly when its input ends (in a process of its own: it owns fd 1)."""
    done = subprocess.run(
        [sys.executable, "-m", "edgecnn", "agent"], input=b"", capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["agent"] == "edgecnn"


@pytest.mark.parametrize("command", sorted(ALL_COMMANDS))
def test_bad_input_is_2(command: str, args: dict[str, list[object]]) -> None:
    extra, fragment = BAD_INPUT[command]
    line = _one_line(run_cli(*args[command], *extra), 2)
    assert line.startswith("edgecnn: error: ") and fragment in line


@pytest.mark.slow
def test_a_failed_gate_is_1(models: dict[str, Path], small_folder: Path, photos_train: Path, tmp_path: Path) -> None:
    """A candidate much worse than its reference: validate exits 1 and names the gate, with both numbers."""
    from edgecnn.build.convert import convert
    from edgecnn.build.train import train

    few = copy_subset(photos_train, tmp_path / "few", per_class=3)  # all ten classes, as the reference has
    weak = train(few, tmp_path / "weak.keras", image_size=32, epochs=1, filters=2, seed=3)
    candidate = convert(weak.path, tmp_path / "weak.tflite", calibration=few).path
    result = run_cli("validate", small_folder, "-r", models["keras"], "-c", candidate, "--min-agreement", 0.99)
    assert result.exit_code == 1, result.stderr
    assert "edgecnn: gate failed: min-agreement: top-1 agreement" in result.stderr
    assert "validation FAILED" in result.stdout


def test_a_failed_check_is_1(models: dict[str, Path]) -> None:
    result = run_cli("check", "--target", "micro", "--ram", "1K", models["int8"])
    assert result.exit_code == 1, result.stderr
    assert "CANNOT run" in result.stdout


# --------------------------------------------------------------------------------------------- the environment


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["run", "validate", "check", "bench"])
def test_an_unreachable_device_is_3(command: str, args: dict[str, list[object]], closed_port: int) -> None:
    """The device is the problem, not the input: exit 3, one line that says so."""
    target = ["--target", "rpi", "--host", f"pi@127.0.0.1:{closed_port}", "--ssh-option", "StrictHostKeyChecking=no"]
    line = _one_line(run_cli(*args[command], *target), 3)
    assert "cannot reach pi@127.0.0.1" in line or "over SSH" in line, line


@pytest.mark.parametrize("command", ["run", "bench"])
def test_a_missing_accelerator_runtime_is_3(
    command: str, args: dict[str, list[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGECNN_EDGETPU_LIBRARY", "/nonexistent/libedgetpu.so.1")
    line = _one_line(run_cli(*args[command], "--target", "coral"), 3)
    assert "the Edge TPU runtime /nonexistent/libedgetpu.so.1 is not installed" in line


@pytest.mark.parametrize("command", ["train", "convert", "diagnose", "finetune", "demo", "export micro"])
def test_a_missing_extra_is_3(command: str, args: dict[str, list[object]]) -> None:
    """In the runtime-only install (no TensorFlow, no TFLite Micro) the commands that need them say which extra to
    install, and exit 3."""
    python = envs.venv("x86_venv_runtime") / "bin" / "python"  # skips (fails under CI) when it is not built
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"
    done = subprocess.run(
        [str(python), "-m", "edgecnn", *map(str, args[command])],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 3, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not installed" in lines[0] and "pip install" in lines[0], done.stderr


# ------------------------------------------------------------------------------------ a bug, and Ctrl-C


def _raising(error: BaseException) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise error

    return fail


@pytest.mark.parametrize("command", sorted(ALL_COMMANDS))
def test_a_bug_is_70_in_one_line_and_debug_shows_the_traceback(
    command: str, args: dict[str, list[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, name = CALLS[command]
    monkeypatch.setattr(f"{module}.{name}", _raising(ZeroDivisionError("an impossible division")))
    line = _one_line(run_cli(*args[command]), 70)
    assert line.startswith("edgecnn: internal error (a bug in edgecnn): ZeroDivisionError: an impossible division")
    assert "--debug" in line and "EDGECNN_DEBUG=1" in line
    debug = run_cli("--debug", *args[command])
    assert debug.exit_code == 70 and "Traceback" in debug.stderr and "ZeroDivisionError" in debug.stderr
    monkeypatch.setenv("EDGECNN_DEBUG", "1")
    assert "Traceback" in run_cli(*args[command]).stderr


@pytest.mark.parametrize("command", sorted(ALL_COMMANDS))
def test_ctrl_c_is_130_without_aborted(
    command: str, args: dict[str, list[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, name = CALLS[command]
    monkeypatch.setattr(f"{module}.{name}", _raising(KeyboardInterrupt()))
    result = run_cli(*args[command])
    assert result.exit_code == 130, (result.exit_code, result.stderr)
    assert result.stderr.strip() == "" and result.stdout == ""


@pytest.mark.slow
def test_a_real_ctrl_c_leaves_nothing_half_written(tmp_path: Path) -> None:
    """SIGINT while the demo trains, converts or validates: exit 130, no traceback, no temporary files left."""
    for delay in (4.0, 10.0):
        out = tmp_path / f"demo{delay:.0f}"
        process = subprocess.Popen(
            [sys.executable, "-m", "edgecnn", "demo", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr
        assert stderr.strip() == "" and stdout == ""
        leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
        assert leftovers == []
