"""The Raspberry Pi target: on the Pi, the local runtime with Pi defaults; elsewhere, a Pi over SSH (``--host``),
through ``edgecnn agent`` (:mod:`edgecnn.targets.agent`, :mod:`edgecnn.targets.wire`) and the SSH client
(:mod:`.ssh`)."""

from __future__ import annotations

import os
import shutil

from edgecnn.errors import MissingDependencyError
from edgecnn.runtime.machine import board_name
from edgecnn.runtime.runtimes import RUNTIME_ENV, RUNTIMES, installed_runtimes
from edgecnn.targets import Availability

SUMMARY = "Raspberry Pi: local runtime with Pi defaults, or a Pi over SSH (--host user@address)"
OPTIONS = ("host", "ssh_options", "remote_edgecnn", "kernels")
TARGET = "edgecnn.targets.rpi.target:RpiTarget"

PI_THREADS = 4
"""Pi 4 and Pi 5 have four Cortex-A cores."""

INSTALL_HINT = "pip install edgecnn on the Pi (targets/rpi/README.md has both runtime flavours)"


def pi_runtime() -> str:
    """The Pi runtime installed here: ``$EDGECNN_RUNTIME`` if it names one, else ai-edge-litert, else tflite-runtime.

    Raises:
        MissingDependencyError: neither is installed.
    """
    wanted = os.environ.get(RUNTIME_ENV)
    order = (wanted,) if wanted in RUNTIMES else RUNTIMES
    for name in order:
        if installed_runtimes((name,)):
            return name
    raise MissingDependencyError(
        order[0], purpose="run models as a Raspberry Pi does (or tflite-runtime 2.14; see targets/rpi/README.md)"
    )


def on_a_pi() -> str | None:
    """The board's name when this machine is a Raspberry Pi, else None."""
    board = board_name()
    return board if board and "Raspberry Pi" in board else None


def availability() -> Availability:
    """On a Pi: usable with a Pi runtime. Elsewhere: usable over SSH (an OpenSSH client) or here with Pi defaults."""
    local = installed_runtimes()
    board = on_a_pi()
    if board:
        if local:
            return Availability(True, f"{board} with {local[0]}, {PI_THREADS} threads")
        return Availability(False, f"{board} without ai-edge-litert or tflite-runtime", INSTALL_HINT)
    parts = []
    if shutil.which("ssh"):
        parts.append("a Pi over SSH with --host user@address (OpenSSH client found)")
    if local:
        parts.append(f"here with Pi defaults ({local[0]}, {PI_THREADS} threads)")
    if parts:
        return Availability(True, "runs " + "; or ".join(parts))
    return Availability(
        False,
        "no OpenSSH client to reach a Pi, and no ai-edge-litert or tflite-runtime to run locally",
        "apt install openssh-client (or pip install ai-edge-litert)",
    )
