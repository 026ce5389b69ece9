"""TensorFlow Lite Micro: a model checked against a microcontroller's RAM and flash, and run in TFLM's interpreter.

The tflite-micro package runs TFLM's own reference kernels on this machine's CPU: the arithmetic a
microcontroller's firmware computes (its int8 outputs are bit-identical to TFLite's reference kernels), so
``validate --target micro`` is the accuracy check before flashing. Its recording allocator measures the tensor
arena the firmware must reserve (:mod:`edgecnn.targets.micro.arena`), and board profiles
(:mod:`edgecnn.targets.micro.boards`) or ``--ram``/``--flash`` turn that and the model's size into a verdict.
Timings are this CPU's, not the microcontroller's: TFLM's reference kernels on a desktop core say nothing about
a Cortex-M's speed.

Only TFLM reads the model here: edgecnn's own flatbuffer reader and TFLM's loader, never LiteRT's interpreter or
verifier, so a model that TFLM runs and LiteRT refuses (LiteRT checks quantization parameters TFLM's kernels never
read, such as a bias's ``quantized_dimension``) is checked, measured and exported. A model without a sidecar is
described from its graph (:mod:`edgecnn.targets.facts`), with any number of inputs and outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.errors import ModelFormatError, ModelLoadError, TargetUnavailableError, UsageError
from edgecnn.model.flatbuffer import FlatModel, read_flatbuffer
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bundle import ModelInfo, read_tflite_info, sidecar_info
from edgecnn.runtime.preprocess import fitting_images
from edgecnn.runtime.quant import dequantize, quantize
from edgecnn.targets.base import Finding, Target
from edgecnn.targets.facts import (
    ModelFacts,
    facts_of,
    float16_tensors,
    hybrid_ops,
    io_finding,
    model_facts,
    printable,
)
from edgecnn.targets.micro.arena import ArenaMeasurement, import_tflite_micro, load_here
from edgecnn.targets.micro.boards import DeviceProfile, get_profile, parse_budget_size
from edgecnn.targets.micro.one_image import OneImageRunner
from edgecnn.targets.micro.ops import missing_ops
from edgecnn.targets.session import AgentRunner, child_runner

if TYPE_CHECKING:
    from edgecnn.runtime.bench import BenchPlan, BenchResult
    from edgecnn.runtime.progress import ProgressFn
    from edgecnn.targets.micro.firmware.runner import FirmwareRunner, MeasuredFirmware

HEADROOM_NOTE = (
    "raw headroom against the chip's RAM and flash: the firmware's own code, stack, heap and buffers are not "
    "subtracted (give --ram/--flash what your firmware leaves free for a tighter verdict)"
)
MEASURED_NOTE = (
    "the linked firmware's own sections (edgecnn's harness, TFLM, newlib): a board's SDK, RTOS and drivers come on top"
)
BENCH_NOTE = (
    "times are TFLM's reference kernels on this machine's CPU, not the microcontroller's: use them to compare "
    "models, never as the device's latency"
)


def tflm_runtime() -> str:
    """``tflite-micro <version>``, as runners and benchmarks name the interpreter."""
    return f"tflite-micro {import_tflite_micro().__version__}"


@dataclass(frozen=True)
class Budget:
    """The memory a model is checked against: a profile's, or ``--ram``/``--flash`` (which override a profile's).

    ``ram_from``/``flash_from`` name where each size came from (the profile's name, ``--ram``, ``--flash``).
    """

    ram_bytes: int | None
    flash_bytes: int | None
    ram_from: str
    flash_from: str
    profile: DeviceProfile | None = None


def refuse_for_micro(model: Path, flat: FlatModel, info: ModelInfo | None) -> None:
    """Refuse, with its own message, what the flatbuffer shows TFLM cannot run, before TFLM's terser refusal.

    Raises:
        ModelFormatError: float16 or hybrid weights, I/O a bundle cannot have, or operations TFLM has no kernel for.
    """
    errors = [f for f in _format_findings(facts_of(flat, info)) if f.severity == "error"]
    missing = missing_ops(op.name for op in flat.operators)
    if errors:
        raise ModelFormatError(f"{model.name} cannot run in TensorFlow Lite Micro: {errors[0].message}")
    if missing:
        raise ModelFormatError(
            f"{model.name} cannot run in TensorFlow Lite Micro, which has no kernel for {', '.join(missing)}: "
            "rebuild the model from layers TFLM runs, or register a custom kernel in the firmware"
        )


class MicroRunner(OneImageRunner):
    """A model in the TFLM interpreter with the arena a firmware would give it: float images in, scores out.

    Images run one at a time, quantized and dequantized with the sidecar's parameters, as the firmware's
    harness does. With ``require_sidecar=False`` it also takes a model without a sidecar, with any number of
    inputs: :attr:`info` is then None and the model is fed tensor by tensor (:meth:`set_tensors`), as a
    benchmark does.

    TFLM runs in the process that makes this runner: only the child process a :class:`MicroTarget` starts does
    (:meth:`MicroTarget.open` gives a runner over that child), because TFLM can crash on a model that passed
    edgecnn's verifier.

    Raises:
        ModelFormatError: the bundle is invalid (or has no sidecar, when ``require_sidecar``), or TFLM cannot load
            it.
        MissingDependencyError: tflite-micro is not installed.
    """

    def __init__(self, model: Path, *, require_sidecar: bool = True) -> None:
        self.path = model
        self.info: ModelInfo | None = read_tflite_info(model) if require_sidecar else sidecar_info(model)
        content = verify_model(model)  # the bytes TFLM gets: checked before any native code reads them
        flat = read_flatbuffer(content)
        refuse_for_micro(model, flat, self.info)
        # Measured, loaded with the firmware's arena and run once on zeros: what crashes TFLM crashes here, in the
        # child process this runner lives in.
        self._interpreter, self.arena = load_here(content, model.name)
        self._inputs = len(flat.inputs)
        self.runtime = f"{tflm_runtime()} (reference kernels on the host CPU)"
        if self.info is not None:
            self._check_io(self.info)

    def _check_io(self, info: ModelInfo) -> None:
        """The sidecar must describe the model TFLM loaded: its quantization parameters feed every image."""
        details = self._interpreter.get_input_details(0)
        dtype, shape = np.dtype(details["dtype"]).name, [int(v) for v in details["shape"]]
        classes = int(self._interpreter.get_output_details(0)["shape"][-1])
        if dtype != info.input.dtype or shape != list(info.input_shape) or classes != len(info.labels):
            raise ModelFormatError(
                f"{self.path.name} takes {dtype} {shape} and gives {classes} scores in TFLM, but its sidecar says "
                f"{info.input.dtype} {list(info.input_shape)} and {len(info.labels)} labels: the "
                "sidecar belongs to another model; re-run edgecnn convert"
            )

    def set_input(self, images: np.ndarray) -> None:
        """Quantize one preprocessed image ``(1, H, W, C)`` into the input tensor."""
        self._interpreter.set_input(quantize(images, self._sidecar().input), 0)

    def input_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the input tensors, in input order."""
        return [tuple(int(v) for v in self._interpreter.get_input_details(i)["shape"]) for i in range(self._inputs)]

    def set_tensors(self, arrays: Sequence[np.ndarray]) -> None:
        """Set every input tensor to raw values of its own dtype and shape, in input order."""
        for i, values in enumerate(arrays):
            self._interpreter.set_input(values, i)

    def invoke(self) -> None:
        """Run the model once on the input tensor as it stands (what the benchmark times).

        Raises:
            TargetUnavailableError: TFLM failed while running.
        """
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:
            raise TargetUnavailableError(f"TFLM failed running {self.path.name} ({exc}): report it as a bug") from None

    def output(self) -> np.ndarray:
        """The raw output tensor of the last run (int8 for an int8 model)."""
        return self._interpreter.get_output(0)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` for preprocessed float images ``(N, H, W, C)``.

        Raises:
            UsageError: the images do not have the model's input shape.
        """
        info = self._sidecar()
        images = fitting_images(images, info.preprocessing, model=self.path.name)
        scores = np.zeros((len(images), len(info.labels)), dtype=np.float32)
        for i in range(len(images)):
            self.set_input(images[i : i + 1])
            self.invoke()
            scores[i] = dequantize(self.output(), info.output).reshape(-1)
        return scores

    def close(self) -> None:
        """Release the interpreter and its arena."""
        self._interpreter = None


def _counted(names: list[str]) -> str:
    counts = Counter(names)
    return ", ".join(f"{name}×{n}" if n > 1 else name for name, n in sorted(counts.items()))


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1)


class MicroTarget(Target):
    """A microcontroller running TensorFlow Lite Micro: TFLM's own interpreter here, or the model's firmware on an
    emulated Cortex-M board.

    TFLM trusts the model file, so it never runs in edgecnn's process: ``check`` measures the arena in a child
    process (:func:`~edgecnn.targets.micro.arena.measure_arena`), and :meth:`open` and ``bench`` run the model
    in a child process (:mod:`edgecnn.targets.session`); a crash there is one error line (exit 2). On an emulated
    board (``mps2-an386``, ``mps2-an500``) the model runs as firmware built with TFLM (:mod:`.firmware`) under
    qemu-system-arm, itself a process of its own, and ``bench`` counts instructions per inference.

    Args:
        threads: TFLM runs on one core: None or 1.
        board: a board profile (``nano33ble``, ``esp32s3``, ``stm32f746g-disco``, ``pico``, ``nrf5340dk``,
            ``mps2-an386``, ``mps2-an500``) whose RAM and flash ``check`` measures the model against; an emulated
            one also runs the model as firmware.
        ram: RAM for the arena, in bytes (or a size such as ``256K``); overrides the profile's.
        flash: flash for the model, in bytes (or ``1M``); overrides the profile's.
        kernels: ``reference`` (TFLM's, the default) or ``cmsis-nn`` (Arm's; firmware on an emulated board only).
        tflm_dir: TFLM's source trees for building firmware (None: ``$EDGECNN_TFLM_DIR``; without either, ``check``
            reports estimates only and an emulated board is unavailable).
    """

    name = "micro"
    isolated_by = "TensorFlow Lite Micro"
    bench_note = BENCH_NOTE
    quantize_modes = ("int8", "none")
    io_types = ("int8", "uint8", "float32")

    def __init__(
        self,
        *,
        threads: int | None = None,
        board: str | None = None,
        ram: int | str | None = None,
        flash: int | str | None = None,
        kernels: str | None = None,
        tflm_dir: str | None = None,
    ) -> None:
        from edgecnn.targets.micro.firmware.build import check_kernels

        if threads is not None and threads != 1:
            raise UsageError(f"TensorFlow Lite Micro runs on one core: drop --threads {threads} for --target micro")
        self.threads = 1
        self.isolated = True
        self.board = board
        self.budget = _budget(board, ram, flash)
        profile = self.budget.profile if self.budget is not None else None
        self.emulated = profile is not None and profile.emulator is not None
        self.kernels = check_kernels(kernels or "reference", board or "host")
        if self.kernels != "reference" and not self.emulated:
            raise UsageError(
                f"--kernels {self.kernels} runs only as firmware on an emulated board: add --board mps2-an386 or "
                "mps2-an500 (TFLM's Python interpreter has its reference kernels only)"
            )
        self.tflm_dir = tflm_dir

    @property
    def where(self) -> str:
        if not self.board:
            return "micro"
        return f"micro {self.board} ({self.kernels} kernels)" if self.emulated else f"micro {self.board}"

    def check(self, model: Path) -> list[Finding]:
        return self.inspect(model)[0]

    def inspect(self, model: Path) -> tuple[list[Finding], dict[str, Any]]:
        """Findings: the model's flash, its operations, what TFLM cannot run, the measured arena and the budget.

        The model is read by edgecnn's flatbuffer reader and loaded by TFLM alone (never by LiteRT). A model without
        a sidecar is described from its graph.

        Raises:
            ModelFormatError: the file is not a TFLite model, or has an invalid sidecar (bad input, not a finding).
            MissingDependencyError: tflite-micro is missing.
        """
        facts = model_facts(model)
        flat = facts.flat
        findings = [
            _model_finding(facts),
            Finding("info", "operations", _counted([o.name for o in flat.operators])),
        ]
        findings += _format_findings(facts)
        explained = any(f.severity == "error" for f in findings)
        missing = missing_ops(op.name for op in flat.operators)
        arena, reason = _measure(model)
        findings += _load_findings(missing, arena, reason, explained=explained)
        measured = None
        if arena is not None and not explained and not missing:
            firmware_findings, measured = self._measure_firmware(model)
            findings += firmware_findings
        budget_findings, budget = _budget_findings(self.budget, flat.size_bytes, arena, measured)
        findings += budget_findings
        details = {
            "flash_bytes": flat.size_bytes,
            "arena": arena.to_dict() if arena is not None else None,
            "firmware": measured.to_dict() if measured is not None else None,
            "budget": budget,
            "fits": arena is not None and not any(f.severity == "error" for f in findings),
            "missing_ops": missing,
        }
        return findings, details

    def _measure_firmware(self, model: Path) -> tuple[list[Finding], MeasuredFirmware | None]:
        """The linked firmware's flash and RAM for the board (and what a run used, on an emulated one), or why not."""
        from edgecnn.targets.micro.firmware.runner import measure_firmware

        profile = self.budget.profile if self.budget is not None else None
        if profile is None:
            return [], None
        if profile.cpu is None:
            return [Finding("info", "firmware", f"not measured: edgecnn builds no firmware for {profile.title}")], None
        try:
            measured = measure_firmware(model, board=profile.name, kernels=self.kernels, tflm=self.tflm_dir)
        except TargetUnavailableError as exc:
            return [Finding("info", "firmware", f"not measured, the budget uses estimates: {exc}")], None
        except ModelFormatError as exc:
            return [Finding("error", "firmware", str(exc))], None
        sizes = measured.sizes
        text = (
            f"linked for {profile.cpu} with {self.kernels} kernels: flash {measured.flash:,} bytes "
            f"(text {sizes.text:,} + data {sizes.data:,}; the model alone {model.stat().st_size:,}), "
            f"RAM {measured.ram:,} bytes (data {sizes.data:,} + bss {sizes.bss:,} with the {sizes.arena:,}-byte arena "
            f"+ stack {sizes.stack:,}"
        )
        if measured.ran:
            text += (
                f" + heap {measured.heap_used:,}); a run on qemu used {measured.arena_used:,} bytes of the arena and "
                f"{measured.stack_used:,} of the stack"
            )
        else:
            text += "; newlib's heap not counted: no emulator runs this board)"
        return [Finding("info", "firmware", text)], measured

    def open(self, model: Path) -> MicroRunner | AgentRunner | FirmwareRunner:
        """The firmware on an emulated board; else a runner over a child process running TFLM (in this process
        only for :meth:`in_process`'s copy)."""
        if self.emulated:
            from edgecnn.targets.micro.firmware.runner import FirmwareRunner

            return FirmwareRunner(model, board=str(self.board), kernels=self.kernels, tflm=self.tflm_dir)
        if self.isolated:
            return child_runner(self, model)
        return MicroRunner(model)

    def open_timed(self, model: Path) -> MicroRunner:
        """TFLM in this process, for any ``.tflite``: what ``bench`` times in its child process."""
        return MicroRunner(model, require_sidecar=False)

    def bench(self, model: Path, plan: BenchPlan, *, on_progress: ProgressFn | None = None) -> BenchResult:
        """On an emulated board, instructions per inference with reference and CMSIS-NN kernels
        (:func:`~edgecnn.targets.micro.firmware.runner.bench_firmware`); elsewhere TFLM's interpreter timed on this
        CPU in a child process."""
        if not self.emulated:
            return super().bench(model, plan, on_progress=on_progress)
        from edgecnn.targets.micro.firmware.runner import bench_firmware

        return bench_firmware(
            model, plan, board=str(self.board), tflm=self.tflm_dir, target=self.where, on_progress=on_progress
        )


def _budget(board: str | None, ram: int | str | None, flash: int | str | None) -> Budget | None:
    """The budget the options describe (None: no board and no sizes)."""
    profile = get_profile(board) if board is not None else None
    if profile is None and ram is None and flash is None:
        return None
    ram = parse_budget_size(ram, option="--ram") if ram is not None else None
    flash = parse_budget_size(flash, option="--flash") if flash is not None else None
    return Budget(
        ram_bytes=ram if ram is not None else (profile.ram_bytes if profile else None),
        flash_bytes=flash if flash is not None else (profile.flash_bytes if profile else None),
        ram_from="--ram" if ram is not None or profile is None else profile.name,
        flash_from="--flash" if flash is not None or profile is None else profile.name,
        profile=profile,
    )


def _measure(model: Path) -> tuple[ArenaMeasurement | None, str | None]:
    """(the arena measurement, None), or (None, TFLM's reason) when TFLM cannot load the model."""
    from edgecnn.targets.micro.arena import measure_arena

    try:
        return measure_arena(model), None
    except ModelLoadError as exc:
        return None, exc.reason


def _model_finding(facts: ModelFacts) -> Finding:
    return Finding("info", "model", f"{facts.flat.size_bytes:,} bytes of flash for the model, {facts.summary}")


def _format_findings(facts: ModelFacts) -> list[Finding]:
    """What TFLM cannot run whatever the board: float16 or hybrid weights (and, for a bundle, several inputs or
    outputs); float32 costs."""
    flat = facts.flat
    io = io_finding(facts, takes="check, bench (random inputs) and export micro")
    findings = [io] if io is not None else []
    half = float16_tensors(flat)
    if half:
        findings.append(
            Finding(
                "error",
                "float16",
                f"{len(half)} weight tensors are float16 (a --quantize float16 model), which TensorFlow Lite Micro "
                "has no kernels for: convert with --quantize int8",
            )
        )
    hybrid = hybrid_ops(flat)
    if hybrid:
        findings.append(
            Finding(
                "error",
                "hybrid",
                f"{_counted(hybrid)} keep int8 weights but compute in float32 (a --quantize dynamic, hybrid model), "
                "which TensorFlow Lite Micro cannot run: convert with --quantize int8 (full integer, calibrated)",
            )
        )
    if facts.info is None:  # a bundle is converted with batch 1; a model from elsewhere may not be
        findings += [
            Finding(
                "warning",
                "dynamic-shape",
                f"input {printable(t.name)} has the dynamic shape {list(t.signature)}: TFLM runs it as "
                f"{list(t.shape)}, but the shape operations a dynamic batch adds cost flash and time; convert with a "
                "static batch-1 input",
            )
            for t in flat.inputs
            if t.dynamic
        ]
    if facts.quantization == "none" and not half and not hybrid:
        findings.append(
            Finding(
                "warning",
                "float32",
                "a float32 model: TFLM runs it, but it takes about 4x the flash and arena of int8 and is slow on "
                "microcontrollers without an FPU (the Pico's Cortex-M0+): convert with --quantize int8",
            )
        )
    return findings


def _load_findings(
    missing: list[str], arena: ArenaMeasurement | None, reason: str | None, *, explained: bool
) -> list[Finding]:
    """The missing-ops finding (confirmed by loading), TFLM's own refusal, or the measured arena.

    ``explained``: an earlier error (float16, hybrid, io) already says why TFLM does not load the model.
    """
    findings = []
    if missing:
        severity = "error" if arena is None else "warning"  # loaded anyway: edgecnn's op table is behind TFLM's
        confirmed = f" (TFLM stops at the first: {reason})" if reason else ""
        findings.append(
            Finding(
                severity,
                "missing-ops",
                f"TensorFlow Lite Micro has no kernel for {', '.join(missing)}{confirmed}: rebuild the model from "
                "layers TFLM runs (convolutions, pooling, dense, softmax...) or register a custom kernel in the "
                "firmware",
            )
        )
    if arena is None:
        if not missing and not explained:
            findings.append(Finding("error", "load", f"the TFLite Micro interpreter cannot load it (TFLM: {reason})"))
        return findings
    findings.append(
        Finding(
            "info",
            "arena",
            f"TFLM needs a {arena.used_bytes:,}-byte tensor arena (measured by its recording allocator); give the "
            f"firmware {arena.arena_bytes:,} bytes ({arena.margin_bytes:,} bytes of margin for optimized kernels' "
            "scratch buffers and alignment)",
        )
    )
    return findings


def _budget_findings(
    budget: Budget | None,
    flash_needed: int,
    arena: ArenaMeasurement | None,
    measured: MeasuredFirmware | None = None,
) -> tuple[list[Finding], dict[str, Any] | None]:
    """The verdicts on flash and RAM: the linked firmware's measured figures when there are some, else the model's
    bytes and the arena (estimates that leave the firmware's own code, stack and heap out)."""
    if budget is None:
        return [], None
    findings = []
    estimate = {"flash_needed_bytes": flash_needed, "ram_needed_bytes": arena.arena_bytes if arena else None}
    details: dict[str, Any] = {
        "board": budget.profile.name if budget.profile else None,
        "title": budget.profile.title if budget.profile else None,
        "source": budget.profile.source if budget.profile else None,
        "ram_bytes": budget.ram_bytes,
        "flash_bytes": budget.flash_bytes,
        **estimate,
        "estimate": estimate,
        "judged_on": "estimate",
        "headroom": HEADROOM_NOTE,
    }
    if measured is not None:
        details.update(
            flash_needed_bytes=measured.flash,
            ram_needed_bytes=measured.ram,
            judged_on="measured firmware",
            headroom=MEASURED_NOTE,
        )
        checks = [
            ("flash", measured.flash, budget.flash_bytes, "the linked firmware (text + data)", budget.flash_from),
            ("ram", measured.ram, budget.ram_bytes, "the linked firmware (data + bss, stack, heap)", budget.ram_from),
        ]
    else:
        checks = [("flash", flash_needed, budget.flash_bytes, "the model", budget.flash_from)]
    if measured is None and arena is not None:
        checks.append(
            ("ram", arena.arena_bytes, budget.ram_bytes, "the tensor arena (measured + margin)", budget.ram_from)
        )
    for kind, needed, have, what, source in checks:
        details[f"{kind}_headroom_bytes"] = None if have is None else have - needed
        details[f"{kind}_headroom_percent"] = None if have is None else _percent(have - needed, have)
        if have is not None:
            findings.append(_budget_finding(kind, needed, have, what, source))
    return findings, details


_FIXES = {
    "flash": "shrink the model (int8, fewer filters or layers) or pick a board with more flash",
    "ram": "shrink the activations (a smaller input, fewer filters before the first pooling) or pick a board with "
    "more RAM",
}


def _budget_finding(kind: str, needed: int, have: int, what: str, source: str) -> Finding:
    """The verdict on one memory: ``have`` bytes of it (from ``source``) against ``needed``."""
    memory = f"{kind.upper() if kind == 'ram' else kind} ({source})"
    left = have - needed
    if left < 0:
        return Finding(
            "error",
            kind,
            f"{what} needs {needed:,} bytes, {needed / have:.2f} times the {have:,} bytes of {memory}: "
            f"{-left:,} bytes short; {_FIXES[kind]}",
        )
    return Finding(
        "info",
        kind,
        f"{what} takes {needed:,} of {have:,} bytes of {memory}, {_percent(needed, have)}%: headroom {left:,} bytes "
        f"({_percent(left, have)}%)"
        + ("" if what.startswith("the linked firmware") else ", raw (the firmware's own use is not subtracted)"),
    )
