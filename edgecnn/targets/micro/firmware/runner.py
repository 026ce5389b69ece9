"""The model as firmware on an emulated Cortex-M board: a runner, a benchmark in instructions, and measured sizes.

:class:`FirmwareRunner` is what ``run`` and ``validate --target micro --board mps2-an386`` score images with: the
images are quantized on the host with the sidecar's parameters (the one routine every target uses), the firmware
runs them all in one qemu process, and its raw outputs are dequantized on the host. With reference kernels the
firmware's int8 outputs equal TFLM's Python interpreter's bit for bit.

:func:`bench_firmware` counts instructions per inference for both kernel sets; :func:`measure_firmware` gives the
linked image's flash and RAM, and on an emulated board the arena, stack and heap a run really used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.model.flatbuffer import FlatModel, read_flatbuffer
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bench import BenchPlan, BenchResult, time_model
from edgecnn.runtime.bundle import ModelInfo, read_tflite_info, sidecar_info
from edgecnn.runtime.preprocess import fitting_images
from edgecnn.runtime.progress import ProgressFn
from edgecnn.runtime.quant import dequantize, quantize
from edgecnn.targets.micro.boards import get_profile
from edgecnn.targets.micro.firmware import KERNELS
from edgecnn.targets.micro.firmware.build import Firmware, build_firmware
from edgecnn.targets.micro.firmware.elf import FirmwareSizes, firmware_sizes
from edgecnn.targets.micro.firmware.qemu import HarnessRun, run_harness
from edgecnn.targets.micro.one_image import OneImageRunner

INSTRUCTIONS_NOTE = (
    "instructions counted by qemu (-icount shift=0, SysTick x 40: exact to 40 instructions, the same on every run); "
    "qemu models no caches, wait states or pipelines, so they are not cycles; wall times are the emulator's"
)


class FirmwareRunner(OneImageRunner):
    """The model's firmware on ``board``: preprocessed float images in, dequantized scores out.

    Args:
        model: a ``.tflite`` bundle (or, with ``require_sidecar=False``, any ``.tflite``: fed tensor by tensor).
        board: an emulated board (``mps2-an386``, ``mps2-an500``) or ``host`` (a native build).
        kernels: ``reference`` or ``cmsis-nn``.
        tflm: TFLM's source folder (None: ``$EDGECNN_TFLM_DIR``).

    Raises:
        ModelFormatError: the bundle is invalid, or TFLM cannot run the model.
        TargetUnavailableError: the toolchain, qemu or TFLM's sources are missing.
    """

    def __init__(
        self,
        model: Path,
        *,
        board: str,
        kernels: str = "reference",
        tflm: str | os.PathLike[str] | None = None,
        require_sidecar: bool = True,
    ) -> None:
        self.path = model
        self.info: ModelInfo | None = read_tflite_info(model) if require_sidecar else sidecar_info(model)
        # The export the build starts with refuses what TFLM cannot run, each with its fix.
        self.flat: FlatModel = read_flatbuffer(verify_model(model))
        self.board = board
        self.firmware: Firmware = build_firmware(model, board=board, kernels=kernels, tflm=tflm)
        where = "on this machine" if board == "host" else f"on qemu {get_profile(board).emulator}"
        self.runtime = f"TFLM firmware {where}, {kernels} kernels, built by {self.firmware.compiler}"
        self.last_run: HarnessRun | None = None
        self._example: bytes = b""
        self.recorded: list[bytes] = []

    def run_examples(self, examples: Sequence[bytes]) -> HarnessRun:
        """Run raw examples (each the input tensors' bytes) through the firmware in one go."""
        self.last_run = run_harness(self.firmware.elf, examples, board=self.board, model_name=self.path.name)
        return self.last_run

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` for preprocessed float images ``(N, H, W, C)``, all in one firmware run.

        Raises:
            UsageError: the images do not have the model's input shape.
        """
        info = self._sidecar()
        images = fitting_images(images, info.preprocessing, model=self.path.name)
        if len(images) == 0:
            return np.zeros((0, len(info.labels)), dtype=np.float32)
        examples = [quantize(images[i : i + 1], info.input).tobytes() for i in range(len(images))]
        run = self.run_examples(examples)
        dtype = np.dtype(info.output.dtype)
        raw = np.stack([np.frombuffer(out, dtype=dtype) for out in run.outputs])
        return dequantize(raw, info.output).reshape(len(images), -1)

    # The benchmark protocol (edgecnn.runtime.bench.Timed): it picks and sets each run's input; the firmware
    # records them, and bench_firmware runs them all on the board afterwards.

    def set_input(self, images: np.ndarray) -> None:
        """Quantize one preprocessed image ``(1, H, W, C)`` as the next example."""
        self._example = quantize(images, self._sidecar().input).tobytes()

    def input_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the input tensors, in input order."""
        return [tuple(int(v) for v in t.shape) for t in self.flat.inputs]

    def set_tensors(self, arrays: Sequence[np.ndarray]) -> None:
        """Raw values for every input tensor, in input order, as the next example."""
        self._example = b"".join(
            np.ascontiguousarray(a, dtype=np.dtype(t.dtype)).tobytes() for a, t in zip(arrays, self.flat.inputs)
        )

    def invoke(self) -> None:
        """Record the example as set (the firmware runs the recorded examples afterwards)."""
        self.recorded.append(self._example)

    def close(self) -> None:
        """Nothing stays open: each run is its own process."""


def bench_firmware(
    model: Path,
    plan: BenchPlan,
    *,
    board: str,
    tflm: str | os.PathLike[str] | None,
    target: str,
    on_progress: ProgressFn | None = None,
) -> BenchResult:
    """Instructions per inference of the model's firmware on ``board``, with reference and with CMSIS-NN kernels.

    The inputs are the benchmark protocol's (real images or random ones, ``plan.warmup`` + ``plan.runs`` of them); each
    kernel set's firmware runs them all in one qemu process. The result's latency and throughput are the emulator's
    wall time (what a run through qemu costs, nothing about the chip); ``instructions`` holds the figures that matter.
    """
    recorder = FirmwareRunner(model, board=board, kernels=KERNELS[0], tflm=tflm, require_sidecar=False)
    protocol = time_model(lambda: recorder, plan, target=target, model=str(model), threads=1)
    examples = recorder.recorded[plan.warmup :]
    counts: dict[str, dict[str, Any]] = {}
    seconds = 0.0
    for kernels in KERNELS:
        runner = (
            recorder
            if kernels == KERNELS[0]
            else FirmwareRunner(model, board=board, kernels=kernels, tflm=tflm, require_sidecar=False)
        )
        run = runner.run_examples(examples)
        seconds += run.seconds
        sizes = firmware_sizes(runner.firmware.elf).to_dict()
        counts[kernels] = {**instruction_stats(run.instructions), "firmware": sizes}
    if on_progress is not None:
        on_progress(plan.runs)
    reference, cmsis = (counts[k]["p50"] for k in KERNELS)
    instructions = {
        "per_inference": counts,
        "reference_over_cmsis_nn": reference / cmsis if cmsis else None,
        "note": INSTRUCTIONS_NOTE,
    }
    per_run_ms = 1000.0 * seconds / max(2 * len(examples), 1)
    machine = {**protocol.machine, "note": INSTRUCTIONS_NOTE}
    return replace(
        protocol,
        runtime=f"TFLM firmware on qemu {get_profile(board).emulator}, built by {recorder.firmware.compiler}",
        latency_ms={"min": None, "p50": None, "p90": None, "max": None, "mean": per_run_ms, "std": None},
        throughput=1000.0 / per_run_ms if per_run_ms else 0.0,
        machine=machine,
        instructions=instructions,
    )


def instruction_stats(counts: Sequence[int]) -> dict[str, Any]:
    """min, p50, max and mean of instruction counts (p50 the lower median: an instruction count is whole)."""
    ordered = sorted(counts)
    return {
        "runs": len(ordered),
        "min": ordered[0],
        "p50": ordered[(len(ordered) - 1) // 2],
        "max": ordered[-1],
        "mean": float(np.mean(ordered)),
    }


@dataclass(frozen=True)
class MeasuredFirmware:
    """A firmware's measured memory: the linked image's sections and, on an emulated board, what a run used.

    Attributes:
        board: the board it was built for.
        kernels: the kernel set.
        sizes: the ELF's text, data, bss, arena and reserved stack.
        ran: False when the board has no emulator (the sizes alone are measured).
        arena_used: bytes of the arena TFLM's allocator used in the firmware (None when it did not run).
        stack_used: peak bytes of stack the run touched (None when it did not run).
        heap_used: bytes of heap newlib's stdio took (None when it did not run; counted in :attr:`ram`).
    """

    board: str
    kernels: str
    sizes: FirmwareSizes
    ran: bool
    arena_used: int | None = None
    stack_used: int | None = None
    heap_used: int | None = None

    @property
    def flash(self) -> int:
        """Flash: text + data."""
        return self.sizes.flash

    @property
    def ram(self) -> int:
        """RAM: data + bss (arena included) + the reserved stack + the heap the run used."""
        return self.sizes.ram + (self.heap_used or 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "board": self.board,
            "kernels": self.kernels,
            **self.sizes.to_dict(),
            "flash_bytes": self.flash,
            "ram_bytes": self.ram,
            "ran": self.ran,
            "arena_used_bytes": self.arena_used,
            "stack_used_bytes": self.stack_used,
            "heap_used_bytes": self.heap_used,
        }


def measure_firmware(
    model: Path, *, board: str, kernels: str = "reference", tflm: str | os.PathLike[str] | None = None
) -> MeasuredFirmware:
    """Build (or take from the cache) the model's firmware for ``board`` and measure it; run it once on zeros on an
    emulated board.

    Raises:
        TargetUnavailableError: the toolchain or TFLM's sources are missing.
        ModelFormatError: TFLM cannot run the model (the firmware refused it or crashed).
    """
    firmware = build_firmware(model, board=board, kernels=kernels, tflm=tflm)
    sizes = firmware_sizes(firmware.elf)
    if get_profile(board).emulator is None:
        return MeasuredFirmware(board, kernels, sizes, ran=False)
    flat = read_flatbuffer(verify_model(model))
    zeros = bytes(sum(int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in flat.inputs))
    run = run_harness(firmware.elf, [zeros], board=board, model_name=model.name)
    return MeasuredFirmware(board, kernels, sizes, True, run.arena_used, run.stack_used, run.heap_used)
