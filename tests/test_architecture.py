"""The layering holds: import-linter's contracts (pyproject.toml), and what the light commands import.

``edgecnn --help`` and ``edgecnn targets`` must import neither numpy, Pillow nor an interpreter, so they answer at
once on a Raspberry Pi; the runtime side must never import TensorFlow (checked for a full run in
tests/cli/test_commands.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "PIL", "ai_edge_litert", "tflite_runtime", "tflite_micro", "tensorflow", "keras")


def test_import_contracts_are_kept() -> None:
    """Layers (cli > workflows > build > evidence > targets > runtime > model), no TensorFlow on the runtime side,
    nothing but the CLI imports the CLI, targets independent of each other, no import cycles."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[dev]' installs import-linter")
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " 0 broken." in done.stdout.split("Contracts:")[-1].splitlines()[0], done.stdout[-3000:]


@pytest.mark.parametrize("args", [["--help"], ["targets"], ["targets", "--json"], ["run", "--help"]])
def test_light_commands_import_nothing_heavy(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from edgecnn.cli.main import cli\n"
        f"code = cli.main({args!r}, prog_name='edgecnn', standalone_mode=False)\n"
        f"print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout[-2000:]
