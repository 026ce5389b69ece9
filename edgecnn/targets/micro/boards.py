"""Microcontroller boards as memory budgets: how much RAM and flash a model may be checked against.

Sizes are the chip's (or the board's, for flash outside the chip) as the vendor states them, in binary units
(1 KB = 1024 bytes, as memory vendors count). They are raw: the firmware's code, stack, heap, radio stacks and
buffers share the same RAM and flash with the model, and how much they take depends on the firmware, not on the
model. So ``edgecnn check --target micro`` reports the headroom left after the model (flash) and its tensor arena
(RAM) against these raw sizes, and says so, rather than subtracting a guessed reserve; give ``--ram``/``--flash``
what your firmware leaves free for a tighter verdict.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from edgecnn.errors import UsageError
from edgecnn.units import parse_size

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class DeviceProfile:
    """One board's memory budget.

    Attributes:
        name: the ``--board`` name.
        title: the board and chip, as a person names them.
        ram_bytes: on-chip SRAM a tensor arena can live in.
        flash_bytes: flash the model's bytes can be stored in (the firmware's code shares it).
        notes: what the numbers leave out (other cores, external RAM, the module variant).
        source: where the numbers come from.
        cpu: the Arm core firmware is built for (``cortex-m4f``...), as the firmware Makefile names it; None for
            a core edgecnn builds no firmware for (the ESP32-S3's Xtensa).
        emulator: the ``qemu-system-arm -M`` machine that runs this board's firmware, or None: a board with one
            runs, validates and benchmarks the built firmware; the others are built only to measure its size.
    """

    name: str
    title: str
    ram_bytes: int
    flash_bytes: int
    notes: str
    source: str
    cpu: str | None = None
    emulator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "title": self.title,
            "ram_bytes": self.ram_bytes,
            "flash_bytes": self.flash_bytes,
            "notes": self.notes,
            "source": self.source,
            "cpu": self.cpu,
            "emulator": self.emulator,
        }


PROFILES: dict[str, DeviceProfile] = {
    profile.name: profile
    for profile in (
        DeviceProfile(
            name="nano33ble",
            title="Arduino Nano 33 BLE Sense (Nordic nRF52840, Cortex-M4F 64 MHz)",
            ram_bytes=256 * KIB,
            flash_bytes=1 * MIB,
            notes="the nRF52840's RAM and flash; the Arduino Mbed OS core and its BLE stack use part of both",
            source="Arduino Nano 33 BLE Sense datasheet/tech specs (docs.arduino.cc): 1 MB flash + 256 KB RAM",
            cpu="cortex-m4f",
        ),
        DeviceProfile(
            name="esp32s3",
            title="Espressif ESP32-S3-DevKitC-1 N8 (ESP32-S3-WROOM-1-N8, dual Xtensa LX7 240 MHz)",
            ram_bytes=512 * KIB,
            flash_bytes=8 * MIB,
            notes=(
                "512 KB internal SRAM (ESP-IDF takes part of it for caches, Wi-Fi and FreeRTOS); flash is the "
                "N8 module's 8 MB (N16/N32 modules have 16/32 MB: use --flash); PSRAM of the R2/R8 modules is "
                "not counted (give --ram to place the arena there)"
            ),
            source=(
                "Espressif ESP32-S3 datasheet (512 KB SRAM) and ESP32-S3-DevKitC-1 user guide "
                "(docs.espressif.com: ESP32-S3-WROOM-1-N8, 8 MB quad SPI flash, no PSRAM)"
            ),
        ),
        DeviceProfile(
            name="stm32f746g-disco",
            title="ST STM32F746G-DISCO (STM32F746NG, Cortex-M7 216 MHz)",
            ram_bytes=320 * KIB,
            flash_bytes=1 * MIB,
            notes=(
                "320 KB system SRAM (DTCM + SRAM1 + SRAM2); the 16 KB ITCM RAM, 4 KB backup SRAM, and the "
                "board's external SDRAM and 16 MB QSPI flash are not counted"
            ),
            source=(
                "ST STM32F746NG product page/datasheet: 1 MB flash, 320 KB SRAM (+16 KB ITCM, +4 KB backup; "
                "340 KB RAM in all, as ST's STM32F746G-DISCO page counts it)"
            ),
            cpu="cortex-m7",
        ),
        DeviceProfile(
            name="pico",
            title="Raspberry Pi Pico (RP2040, dual Cortex-M0+ 133 MHz)",
            ram_bytes=264 * KIB,
            flash_bytes=2 * MIB,
            notes="264 KB on-chip SRAM in six banks; 2 MB QSPI flash on the board, read in place (XIP)",
            source=(
                "Raspberry Pi Pico product brief (datasheets.raspberrypi.com/pico/pico-product-brief.pdf): "
                "264KB on-chip SRAM; 2MB on-board QSPI flash"
            ),
            cpu="cortex-m0plus",
        ),
        DeviceProfile(
            name="nrf5340dk",
            title="Nordic nRF5340 DK, application core (Cortex-M33 128 MHz)",
            ram_bytes=512 * KIB,
            flash_bytes=1 * MIB,
            notes=(
                "the application core's RAM and flash; the network core's own 64 KB RAM and 256 KB flash run the "
                "radio and are not counted"
            ),
            source=(
                "Nordic nRF5340 product specification; Zephyr nrf5340_cpuapp_qkaa.dtsi (flash0 1024 KB, sram0 512 KB)"
            ),
            cpu="cortex-m33",
        ),
        DeviceProfile(
            name="mps2-an386",
            title="Arm MPS2+ AN386 (Cortex-M4F, 25 MHz), as qemu-system-arm emulates it",
            ram_bytes=4 * MIB,
            flash_bytes=4 * MIB,
            notes=(
                "an FPGA prototyping board: its 4 MB ZBT SRAMs stand in for flash (code at 0x0) and RAM (0x20000000); "
                "qemu runs the firmware instruction by instruction and models no timing"
            ),
            source="Arm Application Note AN386; qemu's hw/arm/mps2.c (machine mps2-an386)",
            cpu="cortex-m4f",
            emulator="mps2-an386",
        ),
        DeviceProfile(
            name="mps2-an500",
            title="Arm MPS2+ AN500 (Cortex-M7, 25 MHz), as qemu-system-arm emulates it",
            ram_bytes=4 * MIB,
            flash_bytes=4 * MIB,
            notes=(
                "an FPGA prototyping board: its 4 MB ZBT SRAMs stand in for flash (code at 0x0) and RAM (0x20000000); "
                "qemu runs the firmware instruction by instruction and models no timing (nor the M7's caches)"
            ),
            source="Arm Application Note AN500; qemu's hw/arm/mps2.c (machine mps2-an500)",
            cpu="cortex-m7",
            emulator="mps2-an500",
        ),
    )
}
"""Known boards by ``--board`` name."""

EMULATED_BOARDS = tuple(name for name, profile in PROFILES.items() if profile.emulator is not None)
"""The boards whose firmware edgecnn runs under qemu-system-arm."""


def get_profile(name: str) -> DeviceProfile:
    """The profile called ``name``.

    Raises:
        UsageError: no such profile; the message names the closest match and every known one.
    """
    if name in PROFILES:
        return PROFILES[name]
    close = difflib.get_close_matches(name.lower(), list(PROFILES), n=1, cutoff=0.4)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UsageError(f"unknown --board {name!r}: {hint}known boards: {', '.join(PROFILES)} (or give --ram and --flash)")


def parse_budget_size(text: str | int, *, option: str = "size") -> int:
    """Bytes from ``2097152``, ``256K``, ``256KB``, ``256KiB``, ``1M``, ``1MB``, ``1.5M`` (K = 1024 bytes).

    Args:
        text: the size as typed (an int passes through after checking it).
        option: how error messages name it (``--ram``).

    Raises:
        UsageError: not a size, not a whole number of bytes, or not positive.
    """
    try:
        value = parse_size(text, whole=True)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a size: give a whole number of bytes or K/M suffixes, such as 256K or 1M"
        ) from None
    if value <= 0:
        raise UsageError(f"{option} {text!r} must be a positive number of bytes, such as 256K or 1M")
    return value
