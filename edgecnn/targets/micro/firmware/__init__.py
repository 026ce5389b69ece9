"""Firmware for the exported model: a make project that builds it with TensorFlow Lite Micro for the host or an Arm
Cortex-M board, and the machinery that builds it once, runs it under ``qemu-system-arm`` and measures it.

The C and make sources beside these modules are the project's template (``firmware.mk``, ``main.cc``, the harness,
the precompiled header and the mps2 boards' start-up and linker script); :mod:`.project` writes them next to an
export. :mod:`.toolchain` finds the compilers, qemu and TFLM's trees, :mod:`.build` builds and caches firmware,
:mod:`.elf` reads its sizes, :mod:`.qemu` runs it and :mod:`.runner` makes it a target runner.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent
"""The folder of the template files."""

SUPPORT_FILES = ("firmware.mk", "harness.cc", "tflm_pch.h", "boards/mps2.ld", "boards/mps2_startup.c")
"""Template files a project carries in its ``edgecnn_firmware/`` folder, unchanged."""

SUPPORT_DIR = "edgecnn_firmware"

KERNELS = ("reference", "cmsis-nn")
"""The kernel sets firmware is built with: TFLM's reference kernels, or Arm's CMSIS-NN (Cortex-M only)."""
