"""Running ``edgetpu_compiler`` on a converted model, and keeping its report with the compiled bundle."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelFormatError, TargetUnavailableError
from edgecnn.runtime.bundle import read_tflite_info, write_tflite
from edgecnn.runtime.files import write_bytes_atomic
from edgecnn.targets.coral.compiler_report import CompilerReport, parse_report

COMPILER = "edgetpu_compiler"

INSTALL = (
    "on x86-64 Debian/Ubuntu add Coral's apt repository and install it: "
    "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo gpg --dearmor -o "
    "/usr/share/keyrings/coral-edgetpu.gpg; echo 'deb [signed-by=/usr/share/keyrings/coral-edgetpu.gpg] "
    "https://packages.cloud.google.com/apt coral-edgetpu-stable main' | sudo tee "
    "/etc/apt/sources.list.d/coral-edgetpu.list; sudo apt-get update && sudo apt-get install edgetpu-compiler "
    "(targets/coral/README.md; other systems: Coral's compiler Docker recipe)"
)
"""How to get the compiler, which Coral ships only for x86-64 Linux."""

TIMEOUT_S = 600.0


@dataclass(frozen=True)
class CompileResult:
    """What compiling for the Edge TPU gave.

    Attributes:
        compiled: whether ``edgetpu_compiler`` ran and wrote a model.
        model: the compiled ``<stem>_edgetpu.tflite`` (with its own sidecar), or None.
        log: the compiler's operation log written beside it, or None.
        report: the compiler's report, parsed.
        message: why nothing was compiled ("" when compiled).
    """

    compiled: bool
    model: Path | None = None
    log: Path | None = None
    report: CompilerReport | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "compiled": self.compiled,
            "model": str(self.model) if self.model else None,
            "log": str(self.log) if self.log else None,
            "report": self.report.to_dict() if self.report else None,
            "message": self.message,
        }


def compiled_name(model: Path) -> Path:
    """Where the compiled model goes: ``model_int8.tflite`` → ``model_int8_edgetpu.tflite`` beside it."""
    return model.with_name(f"{model.stem}_edgetpu.tflite")


def compile_for_edgetpu(model: Path, *, timeout: float = TIMEOUT_S) -> CompileResult:
    """Compile a converted int8 bundle with ``edgetpu_compiler -s`` when it is on PATH.

    The compiled model gets its own sidecar: the source's labels and preprocessing (the compiler keeps the
    input and output tensors) plus the parsed report under ``edgetpu``.

    Returns:
        ``compiled=False`` with the install instructions when the compiler is not on PATH.

    Raises:
        ModelFormatError: the bundle is invalid, or the compiler refused the model (its error, one line).
        TargetUnavailableError: the compiler did not finish within ``timeout`` seconds.
    """
    info = read_tflite_info(model)
    compiler = shutil.which(COMPILER)
    if compiler is None:
        return CompileResult(False, message=f"{COMPILER} is not on PATH, so {model.name} was not compiled: {INSTALL}")
    # The compiler writes into -o; a private folder beside the model keeps half-written files out of sight.
    with tempfile.TemporaryDirectory(prefix=".edgetpu-", dir=model.parent) as folder:
        try:
            done = subprocess.run(
                [compiler, "-s", "-o", folder, str(model)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TargetUnavailableError(
                f"{COMPILER} did not finish compiling {model.name} within {timeout:.0f} s: try a smaller model"
            ) from None
        out = Path(folder) / compiled_name(model).name
        log_file = out.with_suffix(".log")
        log_text = log_file.read_text(errors="replace") if log_file.is_file() else None
        try:
            report: CompilerReport | None = parse_report(done.stdout + done.stderr, log=log_text)
        except ModelFormatError:
            report = None  # not the compiler's usual output: a crash; its last line says why
        if done.returncode != 0 or not out.is_file() or report is None or not report.success:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            reason = (report.failure_message() if report else None) or f"{COMPILER} failed: {tail[0]}"
            raise ModelFormatError(f"{reason}; see what it can map with edgecnn check --target coral {model}")
        dest = compiled_name(model)
        section = {"compiled_from": model.name, "compiled_from_sha256": info.model_sha256, "compiler": report.to_dict()}
        write_tflite(dest, out.read_bytes(), replace(info, extra={**info.extra, "edgetpu": section}))
        log_dest = None
        if log_text is not None:
            log_dest = dest.with_suffix(".log")
            write_bytes_atomic(log_dest, log_text.encode())
    return CompileResult(True, dest, log_dest, report)


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    return f"{value / 1024**2:.2f} MiB" if value >= 1024**2 else f"{value / 1024:.2f} KiB"


def compile_summary(report: CompilerReport) -> str:
    """One line: what the compiler mapped, and the memory it used."""
    return (
        f"edgetpu_compiler {report.compiler_version or '?'}: {report.ops_on_tpu}/{report.total_ops} operations on "
        f"the Edge TPU in {report.subgraphs} subgraph(s); on-chip memory {_size(report.on_chip_used_bytes)} used, "
        f"{_size(report.on_chip_remaining_bytes)} free; off-chip {_size(report.off_chip_used_bytes)}"
    )
