"""The cached target-test environments (built by ``tools/setup_test_env.sh``), for tests to locate and run.

A missing environment skips the test with the command that builds it, except under CI (``$CI`` set), where it
fails: CI must never pass by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = "bash tools/setup_test_env.sh"


def _load_tool() -> ModuleType:
    """Import ``tools/test_envs.py`` (not a package) by its path."""
    name = "edgecnn_tools_test_envs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "test_envs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


test_envs = _load_tool()


def in_ci() -> bool:
    """True when ``$CI`` is set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def missing(what: str) -> NoReturn:
    """Skip (or under CI, fail) because ``what`` is not available."""
    skip_or_fail(f"{what}: build it with `{SETUP}` (as root)")


def skip_or_fail(message: str) -> NoReturn:
    """Skip with ``message``; under CI, where everything a test needs must be there, fail with it."""
    if in_ci():
        pytest.fail(f"{message}; CI is set, so this fails instead of skipping", pytrace=False)
    pytest.skip(message)


def require(name: str) -> Path:
    """The path of the environment ``name`` (a key of ``test_envs.paths()``), built from its current recipe."""
    if not test_envs.is_ready(name):
        missing(f"test environment {name} is missing or out of date ({test_envs.paths()[name]})")
    return Path(test_envs.paths()[name])


def arm64_python(flavour: str) -> list[str]:
    """The command line that runs the emulated Raspberry Pi's python3.11 with ``flavour``'s wheels."""
    if not test_envs.paths()["qemu"]:
        missing(f"{test_envs.QEMU} is not installed (apt-get install qemu-user-static)")
    require("arm64_root")
    require(f"arm64_site_{flavour.replace('-', '_')}")
    return test_envs.arm64_python(flavour)


def venv(name: str) -> Path:
    """An x86 venv (``x86_venv_tflite_runtime`` or ``x86_venv_runtime``)."""
    return require(name)


def run(command: list[str], *, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    """Run a command; return its stdout, or fail the test showing stderr."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}", pytrace=False)
    return done.stdout


def venv_python_of(name: str) -> Path:
    """The python of the x86 venv ``name``, built from its current recipe (else skip, or fail under CI)."""
    return test_envs.venv_python(require(name))


def tflite_support_wheel() -> Path:
    """tflite-support's wheel (``$EDGECNN_TFLITE_SUPPORT_WHEEL``, or the one the test environments downloaded): its
    own generated metadata reader is the oracle for the TFLite Metadata edgecnn writes."""
    configured = os.environ.get("EDGECNN_TFLITE_SUPPORT_WHEEL")
    if configured:
        if not Path(configured).is_file():
            missing(f"$EDGECNN_TFLITE_SUPPORT_WHEEL {configured} is not a file")
        return Path(configured)
    found = sorted(require("wheels").glob("tflite_support-0.4.4-*.whl"))
    if not found:
        missing(f"tflite-support's wheel is not in {test_envs.paths()['wheels']}")
    return found[0]
