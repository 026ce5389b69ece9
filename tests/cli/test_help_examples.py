"""Every command's ``--help`` shows an example, and every example runs, as written, on a tiny model.

The examples name ``photos/train``, ``photos/test``, ``model.keras`` and the files earlier examples write; the test
lays out ``photos/`` from the suite's images and runs the examples in the order a user would (train first), each in
the same folder. A verdict may fail on so small a model (exit 1); anything else must succeed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import copy_subset, run_cli

from edgecnn.cli.main import cli

ORDER = ["", "train", "convert", "diagnose", "finetune", "validate", "run", "bench", "check", "inspect", "export micro",
         "export", "targets", "demo", "agent"]  # fmt: skip
"""Every command, with the group itself first: the order that makes each example's inputs exist."""

VERDICTS = {"convert", "diagnose", "validate", "check", "export", "demo"}
"""Commands whose verdict may fail (exit 1) on a model trained for seconds."""


def _command(path: str) -> click.Command:
    command: click.Command = cli
    for name in path.split():
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def examples(path: str) -> list[str]:
    """The ``edgecnn ...`` lines of a command's --help."""
    result = run_cli(*path.split(), "--help")
    assert result.exit_code == 0, result.stderr
    return [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("edgecnn ")]


def test_every_command_is_in_the_order() -> None:
    found = {""}
    for name, command in cli.commands.items():
        found.add(name)
        if isinstance(command, click.Group):
            found |= {f"{name} {sub}" for sub in command.commands}
    assert found == set(ORDER)


@pytest.mark.parametrize("path", ORDER)
def test_every_help_has_an_example(path: str) -> None:
    assert examples(path), f"edgecnn {path} --help shows no example"
    assert _command(path).help


@pytest.mark.slow
def test_every_example_runs(
    photos_train: Path, photos_test: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_subset(photos_train, tmp_path / "photos" / "train", per_class=20)
    copy_subset(photos_test, tmp_path / "photos" / "test", per_class=6)
    monkeypatch.chdir(tmp_path)
    ran: set[str] = set()
    for path in ORDER:
        for line in examples(path):
            if line in ran:
                continue
            ran.add(line)
            words = shlex.split(line)[1:]
            if words[0] == "agent":
                # The agent owns its process's stdout (fd 1): run it as the SSH session would, in a process of its own.
                done = subprocess.run([sys.executable, "-m", "edgecnn", *words], input=b"", capture_output=True,
                                      timeout=120, check=False)  # fmt: skip
                assert done.returncode == 0, (line, done.stderr)
                assert json.loads(done.stdout.splitlines()[0])["agent"] == "edgecnn"
                continue
            result = run_cli(*words)
            allowed = (0, 1) if words[0] in VERDICTS else (0,)
            assert result.exit_code in allowed, (line, result.exit_code, result.stderr[-3000:])
            assert "Traceback" not in result.stderr, line
    assert len(ran) >= len(ORDER)
