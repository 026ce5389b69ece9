"""The Coral Edge TPU: a model compiled by ``edgetpu_compiler``, run through libedgetpu's TFLite delegate.

The delegate is a shared library (``libedgetpu.so.1`` on Linux) loaded through the interpreter's external
delegate API, so any of edgecnn's runtimes (ai-edge-litert, tflite-runtime) drives it. Each way it
can fail has its own message: the library missing, the library present but no usable Edge TPU, a model that
was never compiled (it runs, on the CPU: a warning), and a compiled model without the delegate.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnWarning, ModelLoadError, TargetUnavailableError, UsageError
from edgecnn.runtime.bundle import read_tflite_info, sidecar_info
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.runtime.runtimes import check_threads, runtime_module
from edgecnn.targets.base import Finding, Target, TargetBuild
from edgecnn.targets.coral import edgetpu_library, open_library
from edgecnn.targets.session import AgentRunner, child_runner

_DEVICE = re.compile(r"^(usb|pci)(:\S+)?$")


def check_device(device: str | None) -> str | None:
    """Validate a ``--device`` value: ``usb``, ``usb:N``, ``pci``, ``pci:N`` (or a sysfs path after ``usb:``)."""
    if device is not None and not _DEVICE.match(device):
        raise UsageError(f"--device {device!r} is not an Edge TPU: use usb, usb:0, pci or pci:0 (the first found)")
    return device


def load_edgetpu_delegate(device: str | None = None, *, runtime: str | None = None) -> Any:
    """The Edge TPU delegate for ``device`` (None: the first Edge TPU found), from the runtime's ``load_delegate``.

    Raises:
        TargetUnavailableError: the runtime library is missing, or it found no usable Edge TPU.
    """
    library = edgetpu_library()
    open_library(library)
    _, module = runtime_module(runtime)
    options = {"device": device} if device else {}
    try:
        with captured_native_stderr():
            return module.load_delegate(library, options)
    except ValueError as exc:
        detail = " ".join(str(exc).split("\n")[1:]).strip()
        which = f" at {device}" if device else ""
        raise TargetUnavailableError(
            f"the Edge TPU runtime {library} is installed but found no usable Edge TPU{which}"
            f"{f' ({detail})' if detail else ''}: plug the accelerator in (a USB 3 port for the USB one), check "
            "that lsusb or lspci lists it and that your user may open it (Coral's udev rules, the plugdev group)"
        ) from None


def is_compiled(model: Path) -> bool:
    """True when ``edgetpu_compiler`` has compiled the model (it holds an ``edgetpu-custom-op``)."""
    from edgecnn.model.flatbuffer import read_flatbuffer
    from edgecnn.runtime.interpreter import EDGETPU_CUSTOM_OP

    return any(op.custom and op.name == EDGETPU_CUSTOM_OP for op in read_flatbuffer(model).operators)


def not_compiled_warning(model: Path) -> str:
    """What to say when an uncompiled model is run on the Edge TPU target."""
    return (
        f"{model.name} is not compiled for the Edge TPU, so it runs on the CPU: compile it with "
        "edgecnn convert --target coral (needs edgetpu_compiler) and run the _edgetpu.tflite it writes"
    )


def open_on_edgetpu(
    model: Path,
    *,
    device: str | None,
    threads: int | None,
    runtime: str | None = None,
    require_sidecar: bool = True,
) -> tuple[TFLiteRunner, Any]:
    """A runner with the Edge TPU delegate applied, and the delegate (kept alive as long as the runner).

    Args:
        require_sidecar: refuse a model without a sidecar (False: a benchmark feeds its tensors directly).

    Raises:
        TargetUnavailableError: no runtime, no device, or the delegate failed on this model.
        ModelFormatError: the model is not a valid bundle.
    """
    # A bad bundle is the user's file, reported before the device is touched.
    if require_sidecar:
        read_tflite_info(model)
    else:
        sidecar_info(model)
    delegate = load_edgetpu_delegate(device, runtime=runtime)
    try:
        # Edge TPU models are compiled for batch 1: never resize them.
        runner = TFLiteRunner(
            model,
            num_threads=threads,
            runtime=runtime,
            delegates=[delegate],
            max_batch=1,
            require_sidecar=require_sidecar,
        )
    except ModelLoadError as exc:
        raise _delegate_failure(model, exc) from None
    return runner, delegate


def _delegate_failure(model: Path, exc: ModelLoadError) -> Exception:
    """The error for a model the interpreter refused with the Edge TPU delegate applied."""
    if "delegate" in exc.reason.lower():
        return TargetUnavailableError(
            f"the Edge TPU delegate failed to prepare {model.name} ({exc.reason}): check that no other process "
            "uses the device and that libedgetpu matches the compiler that built the model"
        )
    return exc


class _EdgeTpuRunner:
    """A :class:`TFLiteRunner` that keeps its delegate alive (the interpreter does not own it)."""

    def __init__(self, runner: TFLiteRunner, delegate: Any) -> None:
        self._runner, self._delegate = runner, delegate
        self.info = runner.info
        self.path = runner.path
        self.runtime = f"{runner.runtime} + {edgetpu_library()}"

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._runner.predict(images)

    def resize(self, batch: int) -> None:
        """The Edge TPU runs compiled models one image at a time.

        Raises:
            UsageError: a batch other than 1.
        """
        if batch != 1:
            raise UsageError(f"the Edge TPU runs compiled models one image at a time: use --batch 1, not {batch}")

    def set_input(self, images: np.ndarray) -> None:
        self._runner.set_input(images)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return self._runner.input_shapes()

    def set_tensors(self, arrays: Sequence[np.ndarray]) -> None:
        self._runner.set_tensors(arrays)

    def invoke(self) -> None:
        self._runner.invoke()

    def close(self) -> None:
        self._runner.close()
        self._delegate = None


class CoralTarget(Target):
    """A Coral Edge TPU (USB Accelerator, M.2/PCIe module, Dev Board) attached to this machine.

    The delegate is native code edgecnn cannot verify, so models run through it in a child process
    (:mod:`edgecnn.targets.session`): a crash there is one error line (exit 2), never a dead pipeline.

    Args:
        threads: interpreter threads for the operations left on the CPU.
        device: ``usb``, ``usb:N``, ``pci`` or ``pci:N`` (None: the first Edge TPU found).
        min_tpu_share: ``check`` fails (an error finding) when less than this share (0-1) of the model's
            multiply-accumulates would run on the Edge TPU.
    """

    name = "coral"
    isolated_by = "the Edge TPU delegate"
    crash_hint = ", or libedgetpu does not match the edgetpu_compiler that built it"

    def __init__(
        self,
        *,
        threads: int | None = None,
        device: str | None = None,
        min_tpu_share: float | None = None,
    ) -> None:
        if min_tpu_share is not None and not 0.0 <= min_tpu_share <= 1.0:
            raise UsageError(f"--min-tpu-share is a fraction between 0 and 1, not {min_tpu_share}")
        self.threads = check_threads(threads)
        self.device = check_device(device)
        self.min_tpu_share = min_tpu_share
        self.isolated = True

    def child_options(self) -> dict[str, Any]:
        return {"device": self.device} if self.device else {}

    @property
    def where(self) -> str:
        return f"coral {self.device}" if self.device else "coral"

    quantize_modes = ("int8",)
    io_types = ("int8", "uint8")

    def check(self, model: Path) -> list[Finding]:
        return self.inspect(model)[0]

    def inspect(self, model: Path) -> tuple[list[Finding], dict[str, Any]]:
        """The Edge TPU pre-flight; a model without a sidecar is described from its graph.

        Raises:
            ModelFormatError: the file is not a TFLite model, or has an invalid sidecar.
        """
        from edgecnn.targets.coral.preflight import preflight, preflight_findings
        from edgecnn.targets.facts import model_facts

        facts = model_facts(model)
        result = preflight(facts.flat)
        findings = preflight_findings(result, facts=facts, min_tpu_share=self.min_tpu_share)
        if not result.compiled:
            # The Edge TPU delegate runs inside LiteRT: a model LiteRT's verifier or kernels refuse (a zero
            # stride, a zero point XNNPACK rejects) cannot run there either, whatever the pre-flight says.
            from edgecnn.targets.cpu import load_finding

            findings.append(load_finding(model, runtime=None, threads=self.threads))
        return findings, {"preflight": result.to_dict()}

    def build(self, model: Path) -> TargetBuild:
        """Pre-flight the converted model, then compile it with ``edgetpu_compiler`` when that is installed."""
        from edgecnn.targets.coral.compiler import compile_for_edgetpu, compile_summary

        findings, details = self.inspect(model)
        compiled = compile_for_edgetpu(model)
        details["compile"] = compiled.to_dict()
        findings = [f for f in findings if f.code != "not-compiled"]  # replaced by what the compile step says
        if not compiled.compiled:
            findings.append(Finding("warning", "not-compiled", compiled.message))
            return TargetBuild(self.name, model, findings, details)
        assert compiled.model is not None and compiled.report is not None
        findings.append(Finding("info", "compiled", compile_summary(compiled.report)))
        files = [compiled.model, compiled.model.with_suffix(".json")] + ([compiled.log] if compiled.log else [])
        return TargetBuild(self.name, compiled.model, findings, details, files)

    def open(self, model: Path) -> _EdgeTpuRunner | AgentRunner:
        """A runner over a child process that runs the delegate (in this process only for :meth:`in_process`'s
        copy)."""
        if self.isolated:
            return child_runner(self, model)
        return self._open(model, require_sidecar=True)

    def open_timed(self, model: Path) -> _EdgeTpuRunner:
        """The delegate in this process, for any ``.tflite``: what ``bench`` times in its child process."""
        return self._open(model, require_sidecar=False)

    def _open(self, model: Path, *, require_sidecar: bool) -> _EdgeTpuRunner:
        runner, delegate = open_on_edgetpu(
            model, device=self.device, threads=self.threads, require_sidecar=require_sidecar
        )
        if not is_compiled(model):
            warnings.warn(not_compiled_warning(model), EdgecnnWarning, stacklevel=3)
        return _EdgeTpuRunner(runner, delegate)
