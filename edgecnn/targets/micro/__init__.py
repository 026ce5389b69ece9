"""The microcontroller target: TensorFlow Lite Micro's interpreter (:mod:`.target`), the tensor arena it measures
(:mod:`.arena`), board budgets (:mod:`.boards`), its op table (:mod:`.ops`) and the C++ export (:mod:`.export`)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from importlib import metadata

from edgecnn.targets import Availability

SUMMARY = (
    "a microcontroller: TFLite Micro's reference kernels run here, RAM/flash budgets per board (--board), the model "
    "as firmware on emulated Cortex-M boards (--board mps2-an386, mps2-an500)"
)
OPTIONS = ("board", "ram", "flash", "kernels", "tflm_dir")
RENAMED = {"device": "board"}
"""Options that had another name: a board was ``--device`` before ``--device`` came to mean an Edge TPU."""
TARGET = "edgecnn.targets.micro.target:MicroTarget"

INSTALL = 'pip install "edgecnn[micro]" (the tflite-micro interpreter)'


def availability() -> Availability:
    """Usable when tflite-micro is installed (found without importing it)."""
    if importlib.util.find_spec("tflite_micro") is None:
        return Availability(False, "tflite-micro is not installed", INSTALL)
    try:
        version = metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    return Availability(
        True, f"interpreter: tflite-micro {version} (TFLM's reference kernels on this CPU); {_firmware_detail()}"
    )


def _firmware_detail() -> str:
    """Whether firmware for the emulated boards can be built and run here (found on PATH, nothing is run)."""
    tools = ("arm-none-eabi-g++", "make", "qemu-system-arm")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"firmware on mps2-an386/mps2-an500: no {', '.join(missing)} (see targets/micro/README.md)"
    if not os.environ.get("EDGECNN_TFLM_DIR"):
        return "firmware on mps2-an386/mps2-an500: toolchain and qemu found; give TFLM's sources with --tflm-dir"
    return "firmware on mps2-an386/mps2-an500: toolchain, qemu and $EDGECNN_TFLM_DIR found"
