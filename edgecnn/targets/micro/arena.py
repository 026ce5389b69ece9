"""The tensor arena a model needs in TensorFlow Lite Micro, measured by TFLM itself rather than guessed.

TFLM keeps every tensor, scratch buffer and bookkeeping struct in one byte array, the arena, that the firmware
allocates up front. The tflite-micro Python interpreter loads a model with TFLM's ``RecordingMicroAllocator``,
whose ``PrintAllocations()`` writes to the C-level stderr::

    [RecordingMicroAllocator] Arena allocation total 72512 bytes
    [RecordingMicroAllocator] Arena allocation head 65536 bytes
    [RecordingMicroAllocator] Arena allocation tail 6976 bytes

"total" is head (the tensors the memory planner lays out, at their peak) plus tail (persistent structs, quantization
parameters, kernel op data). TFLM plans and allocates everything while loading (``AllocateTensors``, where each
kernel's Prepare asks for its buffers); ``Invoke`` allocates nothing more, and the figure is the same before and
after a run. The Python wrapper gives TFLM exactly ``arena_size`` bytes and keeps its own objects (the interpreter,
the op resolver) outside them; the figure does include the recording allocator's own bookkeeping in the tail,
which a firmware's plain ``MicroAllocator`` has in a slightly smaller form. Checked on edgecnn's models: an arena of
exactly the total runs the model, and 16 bytes less fails.

Too small an arena can crash TFLM instead of failing (it dereferences an allocation that failed), so the
measurement loads a model only with an arena known to be large enough: a generous one first, then the measured
size plus the margin.

TFLM trusts the model file: it checks almost no offset or index, so a malformed model can make it read unrelated
memory and die with SIGSEGV. Every model is verified first (:func:`edgecnn.model.verify.verify_model`), and the
measurement itself runs in a child process (:mod:`edgecnn.targets.micro.probe`): it loads the model with the
generous arena, then with the firmware's, and runs it once on zeros. A crash there (a signal) or a hang is a
malformed model, refused in one line (exit 2), and never takes edgecnn down. TFLM never loads a model in edgecnn's
own process: ``run``, ``validate`` and ``bench --target micro`` run it in a child process too
(:mod:`edgecnn.targets.session`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgecnn.errors import (
    MissingDependencyError,
    ModelFormatError,
    ModelLoadError,
    TargetUnavailableError,
    remote_error,
)
from edgecnn.model.flatbuffer import FIX
from edgecnn.model.verify import verify_model
from edgecnn.runtime.files import captured_native_stderr, temporary_folder
from edgecnn.runtime.interpreter import first_line  # a helper only: that module imports no interpreter package
from edgecnn.targets.session import child_environment, crash_error

ARENA_MARGIN_FRACTION = 0.10
"""Added to the measured arena for the firmware's copy.

The measurement runs TFLM's reference kernels on a 64-bit host; a firmware's arena need differs by build:
optimized kernels (CMSIS-NN on Cortex-M, ESP-NN on the ESP32-S3) ask for scratch buffers the reference kernels
do not (CMSIS-NN's int8 convolution takes an im2col buffer of about 4 x input channels x kernel taps bytes), a
firmware arena that is not 16-byte aligned loses up to 15 bytes to TFLM's alignment, and TFLM versions change
their bookkeeping. (A 32-bit MCU's pointers and structs are smaller than the host's, which pulls the other way.)
10% covers the scratch buffers of the convolutions edgecnn trains with room to spare; it is a judgment, not a
measurement: measure on the device (``RecordingMicroAllocator`` there) to cut it.
"""

ARENA_MARGIN_MIN_BYTES = 1024
"""The margin's floor: for small models 10% would not cover one convolution's optimized-kernel scratch buffer."""

ARENA_ALIGNMENT = 16
"""TFLM aligns the arena and its buffers to 16 bytes (``MicroArenaBufferAlignment``); sizes are rounded to it."""

PROBE_TIMEOUT_S = 120.0
"""How long the child process may take to load and run a model once: TFLM loads edgecnn's models in milliseconds,
so a probe that takes longer is stuck on a malformed model."""

_FIRST_ARENA = 256 * 1024
_MAX_ARENA = 1 << 30
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_TOO_SMALL = re.compile(r"Failed to (resize buffer|allocate)", re.IGNORECASE)
_SOURCE_PREFIX = re.compile(r"^\S+\.(cc|h)(:\d+)?\s+")

T = TypeVar("T")


@dataclass(frozen=True)
class ArenaMeasurement:
    """The arena TFLM needs for one model, and the size to give the firmware.

    Attributes:
        used_bytes: what TFLM's recording allocator reported ("Arena allocation total N bytes").
        arena_bytes: ``used_bytes`` plus the margin, rounded up to 16 bytes: the size to give the firmware.
        margin_bytes: ``arena_bytes - used_bytes``.
    """

    used_bytes: int
    arena_bytes: int
    margin_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "used_bytes": self.used_bytes,
            "arena_bytes": self.arena_bytes,
            "margin_bytes": self.margin_bytes,
            "margin_fraction": ARENA_MARGIN_FRACTION,
            "margin_min_bytes": ARENA_MARGIN_MIN_BYTES,
        }

    @classmethod
    def from_used(cls, used_bytes: int) -> ArenaMeasurement:
        """The measurement for ``used_bytes``, with the stated margin added."""
        margin = max(math.ceil(used_bytes * ARENA_MARGIN_FRACTION), ARENA_MARGIN_MIN_BYTES)
        arena = _round_up(used_bytes + margin)
        return cls(used_bytes=used_bytes, arena_bytes=arena, margin_bytes=arena - used_bytes)


def _round_up(size: int) -> int:
    return -(-size // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


def _missing_tflite_micro() -> MissingDependencyError:
    return MissingDependencyError(
        "tflite-micro", extra="micro", purpose="run models in the TensorFlow Lite Micro interpreter"
    )


def import_tflite_micro() -> Any:
    """The ``tflite_micro`` package, imported on first use.

    Raises:
        MissingDependencyError: tflite-micro is not installed (the ``micro`` extra brings it).
    """
    try:
        import tflite_micro
    except ImportError:
        raise _missing_tflite_micro() from None
    return tflite_micro


def _content(model: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """The model's bytes, verified (what TFLM may be given), and how messages name it.

    Raises:
        ModelFormatError: unreadable, or not a valid TFLite model.
    """
    name = "the model" if isinstance(model, (bytes, bytearray, memoryview)) else Path(model).name
    return verify_model(model), name


def _quietly(action: Callable[[], T]) -> tuple[T | None, BaseException | None, list[str]]:
    """Run ``action`` with fd 2 captured: (its result or None, the exception it raised or None, TFLM's lines)."""
    lines: list[str] = []
    with captured_native_stderr(lines=lines):
        try:
            return action(), None, lines
        # RuntimeError/ValueError when TFLM returns an error; the wrapper's own Python parse of the flatbuffer (it
        # counts resource variables before TFLM sees the bytes) raises anything on a corrupt file: all are refusals.
        except Exception as exc:  # noqa: BLE001
            failure: BaseException = exc
    return None, failure, lines


def tflm_reason(lines: list[str]) -> str:
    """One line from what TFLM printed when it refused a model: its first message, and the node that failed."""
    messages = [_SOURCE_PREFIX.sub("", line.strip()) for line in lines if line.strip()]
    if not messages:
        return "TFLM failed without a message"
    node = next((m for m in messages if m.startswith("Node ") and "failed" in m), None)
    first = messages[0].rstrip(".")
    return f"{first} ({node})" if node and node != messages[0] else first


def _load(content: bytes, arena_size: int) -> tuple[Any, str | None]:
    """(interpreter, None) or (None, TFLM's reason). Only call with an arena known not to crash TFLM."""
    runtime = import_tflite_micro().runtime
    interpreter, failure, lines = _quietly(lambda: runtime.Interpreter.from_bytes(content, arena_size=arena_size))
    if failure is not None:
        return None, tflm_reason(lines) if lines else first_line(failure)
    return interpreter, None


def _initial_arena(content: bytes) -> int:
    """A first arena so generous that loading fails only for a reason other than its size.

    The arena holds the activations (at most all of them), bookkeeping of a few hundred bytes per tensor and
    operator, and kernel scratch buffers; twice the model's size plus 256 KB is far above that for CNNs (whose
    weights, which stay in the flatbuffer, outweigh their activations) and costs the host nothing.
    """
    return _round_up(max(_FIRST_ARENA, 2 * len(content) + _FIRST_ARENA))


def _used_bytes(interpreter: Any) -> int:
    _, failure, lines = _quietly(interpreter.print_allocations)
    match = next((m for line in lines if (m := _TOTAL.search(line))), None)
    if failure is not None or match is None:
        raise TargetUnavailableError(
            "the tflite-micro interpreter did not report its arena use (no 'Arena allocation total' line): "
            "install the tflite-micro version the micro extra pins"
        )
    return int(match.group(1))


def _refusal(name: str, reason: str) -> ModelLoadError:
    """The error for a model TFLM refuses at any arena size; ``reason`` keeps TFLM's own words."""
    return ModelLoadError(
        f"TensorFlow Lite Micro cannot load {name} ({reason}): run edgecnn check --target micro on it, which "
        "names what TFLM lacks and the fix",
        reason=reason,
    )


def _loaded_generously(content: bytes, name: str) -> tuple[Any, int]:
    """Load with a generous arena, growing it while TFLM only lacks memory; returns (interpreter, its arena size).

    Raises:
        ModelFormatError: TFLM refuses the model for another reason (an op it lacks, float16 or hybrid weights).
    """
    arena = _initial_arena(content)
    while True:
        interpreter, reason = _load(content, arena)
        if interpreter is not None:
            return interpreter, arena
        assert reason is not None
        if not _TOO_SMALL.search(reason) or arena >= _MAX_ARENA:
            raise _refusal(name, reason)
        arena *= 4  # from a generous start, so never down where a too-small arena crashes TFLM


def measure_arena(model: bytes | str | os.PathLike[str], *, name: str | None = None) -> ArenaMeasurement:
    """Measure the arena a ``.tflite`` model needs in TFLM, with TFLM's recording allocator, in a child process.

    Args:
        model: the flatbuffer's bytes, or a ``.tflite`` file.
        name: how messages name the model (default: the file's name, or "the model" for bytes).

    Returns:
        What TFLM used, and the size (with :data:`ARENA_MARGIN_FRACTION`) to give the firmware.

    Raises:
        ModelLoadError: TFLM cannot load the model (a :class:`ModelFormatError` whose ``reason`` is TFLM's own,
            such as an operation it has no kernel for, or float16/hybrid weights).
        ModelFormatError: the model is not a valid TFLite model, or TFLM crashed on it or hung.
        MissingDependencyError: tflite-micro is not installed.
    """
    content, default = _content(model)
    return probe_arena(content, name or default)


def load_here(content: bytes, name: str) -> tuple[Any, ArenaMeasurement]:
    """Measure the arena in this process, then load the model with the size a firmware gets (``arena_bytes``, margin
    included) and run it once on zeros; the loaded interpreter and the measurement.

    Only a process of its own calls this, on verified bytes: the probe (:mod:`edgecnn.targets.micro.probe`) and
    the child process that runs a micro target's models (:mod:`edgecnn.targets.agent`), so TFLM crashing there
    never takes edgecnn down.

    Raises:
        ModelLoadError: TFLM refuses the model, at loading or running.
    """
    generous, _ = _loaded_generously(content, name)
    measurement = ArenaMeasurement.from_used(_used_bytes(generous))
    del generous
    interpreter, reason = _load(content, measurement.arena_bytes)
    if interpreter is None:
        raise _refusal(name, reason or "unknown")
    _run_on_zeros(interpreter, content, name)
    return interpreter, measurement


def measure_here(content: bytes, name: str) -> ArenaMeasurement:
    """:func:`load_here`'s measurement: the probe's work."""
    return load_here(content, name)[1]


def _run_on_zeros(interpreter: Any, content: bytes, name: str) -> None:
    """Run the model once with every input zero: what crashes at run time crashes here, in the child."""
    import numpy as np

    from edgecnn.model.flatbuffer import read_flatbuffer

    for i in range(len(read_flatbuffer(content).inputs)):
        details = interpreter.get_input_details(i)
        interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), i)
    _, failure, lines = _quietly(interpreter.invoke)
    if failure is not None:
        reason = tflm_reason(lines) if lines else first_line(failure)
        raise ModelLoadError(f"TensorFlow Lite Micro failed running {name} ({reason})", reason=reason)


def probe_arena(content: bytes, name: str) -> ArenaMeasurement:
    """Run :func:`measure_here` in a child process on verified bytes (passed as a file); its JSON result back.

    Raises:
        ModelLoadError: TFLM refuses the model.
        ModelFormatError: TFLM crashed on the model (a signal) or did not finish within :data:`PROBE_TIMEOUT_S`.
        MissingDependencyError: tflite-micro is not installed.
    """
    if importlib.util.find_spec("tflite_micro") is None:
        raise _missing_tflite_micro()
    with temporary_folder("probe-") as folder:
        path = folder / "model.tflite"
        path.write_bytes(content)
        command = [sys.executable, "-m", "edgecnn.targets.micro.probe", str(path), name]
        try:
            # check=False: a non-zero exit or a signal is the answer here (a crashed TFLM), not an error to raise.
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=child_environment(), check=False
            )
        except subprocess.TimeoutExpired:
            raise ModelFormatError(
                f"TensorFlow Lite Micro did not finish loading {name} within {PROBE_TIMEOUT_S:.0f} s: the model is "
                f"malformed; {FIX}"
            ) from None
    if done.returncode < 0:
        raise crash_error("TensorFlow Lite Micro", name, done.returncode)
    return _probe_result(done, name)


def _probe_result(done: subprocess.CompletedProcess[str], name: str) -> ArenaMeasurement:
    """The measurement the child printed (its last stdout line, JSON), or the error it reported, raised here."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if done.returncode != 0 or not isinstance(result, dict) or not result:
        last = next((ln.strip() for ln in reversed(done.stderr.splitlines()) if ln.strip()), "no message")
        raise ModelFormatError(
            f"TensorFlow Lite Micro failed on {name} (exit {done.returncode}: {last}): the model is malformed; {FIX}"
        )
    if "refused" in result:
        raise _refusal(name, str(result["refused"]))
    if "error" in result:
        raise remote_error(str(result["error"]), str(result["message"]))
    return ArenaMeasurement.from_used(int(result["used_bytes"]))
