"""What every target that runs a ``.tflite`` in a CPU interpreter shares (host, rpi, android): the findings about
the bundle, its graph, and whether the runtime loads it.

A model without a sidecar (from another converter, with any number of inputs and outputs) is described from its
graph (:mod:`edgecnn.targets.facts`); it is checked the same way otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgecnn.errors import ModelFormatError, ModelLoadError
from edgecnn.model.graph import ModelGraph, read_graph
from edgecnn.runtime.interpreter import EDGETPU_CUSTOM_OP, TFLiteRunner
from edgecnn.targets.base import Finding
from edgecnn.targets.facts import ModelFacts, io_finding, model_facts, printable


def _ops_line(graph: ModelGraph) -> str:
    return ", ".join(f"{op}×{n}" if n > 1 else op for op, n in graph.ops.items())


def _model_finding(facts: ModelFacts, graph: ModelGraph) -> Finding:
    """The model's size, quantization, I/O and labels (a model without a sidecar: every input and output)."""
    return Finding("info", "model", f"{graph.size_bytes:,} bytes, {facts.summary}")


def runtime_findings(
    model: Path, *, runtime: str | None, threads: int | None, kernels: str | None = None, batch_note: str = ""
) -> list[Finding]:
    """Findings every CPU runtime target shares: the model, the graph, and whether the runtime loads it (with
    ``kernels``, a :data:`~edgecnn.runtime.runtimes.KERNELS` name; None: the default ones).

    Raises:
        ModelFormatError: the file is not a TFLite model, or has an invalid sidecar (bad input, not a finding).
    """
    facts = model_facts(model)
    graph = read_graph(model)
    findings = [_model_finding(facts, graph), Finding("info", "operations", _ops_line(graph))]
    io = io_finding(facts, takes="check and bench (random inputs)")
    if io is not None:
        findings.append(io)
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
    for inp in graph.inputs:
        if inp.dynamic:
            findings.append(
                Finding(
                    "warning",
                    "dynamic-shape",
                    f"{_which(inp.name, graph)}shape signature {list(inp.signature)} is dynamic: it adds shape ops, "
                    "and tflite-runtime does not apply XNNPACK to it; convert with a static batch-1 input (edgecnn "
                    "convert does)" + batch_note,
                )
            )
    findings.append(load_finding(model, runtime=runtime, threads=threads, kernels=kernels))
    return findings


def load_finding(model: Path, *, runtime: str | None, threads: int | None, kernels: str | None = None) -> Finding:
    """Whether the interpreter loads the model (its own verifier and kernels' checks) with ``kernels``: an ``error``
    finding naming why not, else ``info`` naming the runtime (and the kernels, when not the default ones). Every
    target that runs in LiteRT (a delegate included) shares it."""
    try:
        runner = TFLiteRunner(model, num_threads=threads, runtime=runtime, kernels=kernels, require_sidecar=False)
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
        return Finding("error", "load", f"the interpreter cannot load it: {reason}")
    except ModelFormatError as exc:
        return Finding("error", "load", str(exc))
    runner.close()
    return Finding("info", "runtime", f"loads in {runner.runtime} with {_threads_text(threads)}")


def _which(name: str, graph: ModelGraph) -> str:
    """``input `` for a model's only input (as bundles' findings always said), ``input NAME `` among several."""
    return "input " if len(graph.inputs) == 1 else f"input {printable(name)} "


def _threads_text(threads: int | None) -> str:
    return "the runtime's default threads" if threads is None else f"{threads} thread{'s' * (threads != 1)}"
