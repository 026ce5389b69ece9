"""What every target that runs a ``.tflite`` in a CPU interpreter shares (host, rpi, android): the findings about
the bundle, its graph, and whether the runtime loads it."""

from __future__ import annotations

import re
from pathlib import Path

from edgecnn.errors import ModelFormatError, ModelLoadError
from edgecnn.model.graph import ModelGraph, read_graph
from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.interpreter import EDGETPU_CUSTOM_OP, TFLiteRunner
from edgecnn.targets.base import Finding


def _ops_line(graph: ModelGraph) -> str:
    return ", ".join(f"{op}×{n}" if n > 1 else op for op, n in graph.ops.items())


def runtime_findings(model: Path, *, runtime: str | None, threads: int | None, batch_note: str = "") -> list[Finding]:
    """Findings every CPU runtime target shares: the bundle, the graph, and whether the runtime loads it.

    Raises:
        ModelFormatError: the file is not a TFLite model, or has no valid sidecar (bad input, not a finding).
    """
    info = read_tflite_info(model)
    graph = read_graph(model)
    inp, out = graph.inputs[0], graph.outputs[0]
    findings = [
        Finding(
            "info",
            "model",
            f"{graph.size_bytes:,} bytes, quantization {info.quantization}, input {inp.dtype} "
            f"{list(inp.shape)}, output {out.dtype} {list(out.shape)}, {len(info.labels)} labels",
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
