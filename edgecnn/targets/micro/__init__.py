"""The microcontroller target: TensorFlow Lite Micro's interpreter (:mod:`.target`), the tensor arena it measures
(:mod:`.arena`), board budgets (:mod:`.boards`), its op table (:mod:`.ops`) and the C++ export (:mod:`.export`)."""

from __future__ import annotations

import importlib.util
from importlib import metadata

from edgecnn.targets import Availability

SUMMARY = "a microcontroller: TFLite Micro's reference kernels run here, RAM/flash budgets per board (--board)"
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
    return Availability(True, f"interpreter: tflite-micro {version} (TFLM's reference kernels on this CPU)")
