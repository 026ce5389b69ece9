"""Where something ran: the CPU architecture, system, CPU count, Python, and the board's name on a Raspberry Pi."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def board_name() -> str | None:
    """The board's name from the device tree (``Raspberry Pi 4 Model B Rev 1.4``), or None off such boards."""
    try:
        return Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace") or None
    except OSError:
        return None


def machine_summary() -> dict[str, Any]:
    """Where a benchmark ran: architecture, system and CPU count (and the board's name on a Raspberry Pi)."""
    summary: dict[str, Any] = {
        "arch": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    board = board_name()
    if board:
        summary["board"] = board
    return summary
