"""The host: this machine's CPU through the runtime layer (XNNPACK kernels, threads, batching)."""

from __future__ import annotations

import importlib.util
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from edgecnn.bundle import read_tflite_info
from edgecnn.errors import ModelFormatError, ModelLoadError, UsageError
from edgecnn.graph import ModelGraph, read_graph
from edgecnn.interpreter import EDGETPU_CUSTOM_OP, RUNTIMES, TFLiteRunner
from edgecnn.targets.base import Availability, Finding, Target

_MODULES = {"ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime", "tensorflow": "tensorflow"}


def installed_runtimes(candidates: tuple[str, ...] = RUNTIMES) -> list[str]:
    """The interpreter packages among ``candidates`` that are installed, with versions (nothing is imported)."""
    found = []
    for name in candidates:
        if importlib.util.find_spec(_MODULES[name]) is not None:
            try:
                found.append(f"{name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                found.append(name)  # importable, but installed without package metadata
    return found


def _ops_line(graph: ModelGraph) -> str:
    return ", ".join(f"{op}×{n}" if n > 1 else op for op, n in graph.ops.items())


def runtime_findings(model: Path, *, runtime: str | None, threads: int | None, batch_note: str = "") -> list[Finding]:
    """Findings every CPU runtime target shares: the bundle, the graph, and whether the runtime loads it.

    Raises:
        ModelFormatError: the file is not a TFLite model, or has no valid sidecar (bad input, not a finding).
    """
    info = read_tflite_info(model)
    graph = read_graph(model, runtime=runtime)
    inp, out = graph.inputs[0], graph.outputs[0]
    findings = [
        Finding(
            "info",
            "model",
            f"{graph.size_bytes:,} bytes, quantization {info.quantization}, input {inp.params.dtype} "
            f"{list(inp.shape)}, output {out.params.dtype} {list(out.shape)}, {len(info.labels)} labels",
        ),
        Finding("info", "operations", _ops_line(graph)),
    ]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        findings.append(
            Finding(
                "error",
                "io",
                f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs: edgecnn runs image classifiers with "
                "one image input and one score output",
            )
        )
    flex = sorted(op for op in graph.ops if op.startswith("Flex"))
    if flex:
        findings.append(
            Finding(
                "error",
                "select-tf-ops",
                f"uses TensorFlow ops ({', '.join(flex)}) that need the Flex delegate, which the runtime-only "
                "interpreters lack: convert with builtin ops only (edgecnn convert does)",
            )
        )
    if inp.dynamic:
        findings.append(
            Finding(
                "warning",
                "dynamic-shape",
                f"input shape signature {list(inp.signature)} is dynamic: it adds shape ops, and tflite-runtime "
                "does not apply XNNPACK to it; convert with a static batch-1 input (edgecnn convert does)" + batch_note,
            )
        )
    try:
        runner = TFLiteRunner(model, num_threads=threads, runtime=runtime)
    except ModelLoadError as exc:
        custom = re.search(r"unresolved custom op: ([\w.-]+?)\.?$", exc.reason, flags=re.IGNORECASE)
        if custom and custom.group(1) == EDGETPU_CUSTOM_OP:
            reason = str(exc)  # names the Edge TPU and the fix
        elif custom:
            reason = (
                f"custom operation {custom.group(1)} has no kernel in the runtime: convert with builtin operations only"
            )
        else:
            reason = exc.reason
        findings.append(Finding("error", "load", f"the interpreter cannot load it: {reason}"))
    except ModelFormatError as exc:
        findings.append(Finding("error", "load", str(exc)))
    else:
        findings.append(Finding("info", "runtime", f"loads in {runner.runtime} with {_threads_text(threads)}"))
        runner.close()
    return findings


def _threads_text(threads: int | None) -> str:
    return "the runtime's default threads" if threads is None else f"{threads} thread{'s' * (threads != 1)}"


def check_threads(threads: int | None) -> int | None:
    """Validate a ``--threads`` value."""
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    return threads


class HostTarget(Target):
    """This machine's CPU.

    Args:
        threads: interpreter threads (None: the runtime's default).
        remote: must be None: the host is this machine.
    """

    name = "host"
    summary = "this machine's CPU (XNNPACK, threads, batching)"

    def __init__(self, *, threads: int | None = None, remote: Any = None) -> None:
        if remote is not None:
            raise UsageError("--host applies to --target rpi only: the host target is this machine")
        self.threads = check_threads(threads)

    @classmethod
    def availability(cls) -> Availability:
        found = installed_runtimes()
        if found:
            return Availability(True, f"interpreter: {found[0]}")
        return Availability(
            False, "no TFLite interpreter is installed", "pip install ai-edge-litert (or tflite-runtime, or tensorflow)"
        )

    def check(self, model: Path) -> list[Finding]:
        return runtime_findings(model, runtime=None, threads=self.threads)

    def open(self, model: Path) -> TFLiteRunner:
        return TFLiteRunner(model, num_threads=self.threads)
