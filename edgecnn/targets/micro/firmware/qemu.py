"""Run edgecnn's firmware harness: under ``qemu-system-arm`` for an emulated board, natively for a host build.

The harness reads ``edgecnn_in.bin`` and writes ``edgecnn_out.bin`` in its working folder (a fresh temporary one
per run), through semihosting on a board (see ``harness.cc`` for the formats). qemu runs with ``-icount shift=0``:
every instruction advances the virtual clock by 1 ns, so the SysTick timer the harness reads counts instructions
(40 per tick at the mps2 boards' 25 MHz), exactly and the same on every run. qemu models no caches, wait states or
pipelines: an instruction count is not a cycle count.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import ModelFormatError, TargetUnavailableError
from edgecnn.targets.micro.boards import get_profile
from edgecnn.targets.micro.firmware.toolchain import find_qemu

SECONDS_PER_EXAMPLE = 10.0
"""Timeout per example on top of :data:`BASE_TIMEOUT_S`: qemu runs a 100-million-instruction inference in 0.2 s."""
BASE_TIMEOUT_S = 60.0
FAULT_STATUS = 70
"""The exit status the start-up's fault handler gives (the firmware crashed)."""


@dataclass(frozen=True)
class HarnessRun:
    """What one harness run returned.

    Attributes:
        outputs: each example's output tensors' bytes, concatenated in output order.
        instructions: instructions each ``Invoke()`` took (0 on the host).
        arena_used: bytes of the tensor arena TFLM used, as the firmware's interpreter reports.
        stack_used: peak bytes of the reserved stack the run touched (0 on the host).
        heap_used: bytes newlib's heap handed out (0 on the host).
        seconds: wall time of the whole run (qemu's start included).
    """

    outputs: list[bytes]
    instructions: list[int]
    arena_used: int
    stack_used: int
    heap_used: int
    seconds: float


def run_harness(
    elf: Path, examples: Sequence[bytes], *, board: str, model_name: str, timeout: float | None = None
) -> HarnessRun:
    """Run the harness firmware ``elf`` on ``examples`` (each the input tensors' bytes, in input order).

    Args:
        elf: the harness built for ``board``.
        examples: the raw input bytes of each example (all the same length: the model's input tensors).
        board: ``host`` or an emulated board (its qemu machine).
        model_name: how messages name the model.
        timeout: seconds before the run is stopped (default: 60 s + 10 s per example).

    Raises:
        ModelFormatError: the firmware refused the model, crashed on it or did not finish (the model is malformed).
        TargetUnavailableError: qemu is missing or could not start.
    """
    if board == "host":
        command = [str(elf)]
        where = "the host firmware"
    else:
        machine = get_profile(board).emulator
        if machine is None:
            raise TargetUnavailableError(f"{board} has no emulator: run firmware on mps2-an386 or mps2-an500")
        command = [
            find_qemu(),
            "-M",
            machine,
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-icount",
            "shift=0",
            "-kernel",
            str(elf),
        ]
        where = f"the firmware on qemu {machine}"
    size = len(examples[0]) if examples else 0
    limit = timeout if timeout is not None else BASE_TIMEOUT_S + SECONDS_PER_EXAMPLE * len(examples)
    with tempfile.TemporaryDirectory(prefix="edgecnn-fw-") as folder:
        work = Path(folder)
        (work / "edgecnn_in.bin").write_bytes(b"ECI1" + struct.pack("<II", len(examples), size) + b"".join(examples))
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=work, capture_output=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            raise ModelFormatError(
                f"{where} did not finish {model_name} within {limit:.0f} s: the model is malformed or far too large "
                "for the board"
            ) from None
        except OSError as exc:
            raise TargetUnavailableError(f"{where} could not start ({exc})") from None
        seconds = time.perf_counter() - start
        said = done.stdout.decode("ascii", "replace").strip().splitlines()
        if done.returncode == FAULT_STATUS:
            raise ModelFormatError(f"{where} crashed (a hard fault) on {model_name}: the model is malformed")
        if done.returncode != 0:
            reason = said[-1] if said else done.stderr.decode("ascii", "replace").strip()[:300]
            raise ModelFormatError(f"{where} stopped on {model_name} (exit {done.returncode}): {reason}")
        return _read_output(work / "edgecnn_out.bin", len(examples), where, seconds)


def _read_output(path: Path, count: int, where: str, seconds: float) -> HarnessRun:
    data = path.read_bytes() if path.is_file() else b""
    if len(data) < 16 or data[:4] != b"ECO1":
        raise TargetUnavailableError(f"{where} wrote no valid edgecnn_out.bin: rebuild the firmware")
    examples, size, arena = struct.unpack_from("<III", data, 4)
    expected = 16 + examples * (size + 8) + 8
    if examples != count or len(data) != expected:
        raise TargetUnavailableError(f"{where} wrote {len(data)} bytes for {examples} examples, not {expected}")
    outputs, instructions = [], []
    offset = 16
    for _ in range(examples):
        outputs.append(data[offset : offset + size])
        instructions.append(struct.unpack_from("<Q", data, offset + size)[0])
        offset += size + 8
    stack, heap = struct.unpack_from("<II", data, offset)
    return HarnessRun(outputs, instructions, arena, stack, heap, seconds)
