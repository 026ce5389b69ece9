"""Edge TPU pre-flight: which operations ``edgetpu_compiler`` would map to the Edge TPU, without the compiler.

Each operation is checked against Coral's published requirements (:mod:`edgecnn.targets.coral.ops`):
the operation is in the supported table at a version the last compiler knows, its run-time tensors are
8-bit quantized with shapes fixed at compile time and at most three dimensions larger than one, its weights
are constants, and the table's own constraints hold (no fused activation on pooling, equal dilations...).

The compiler maps one contiguous run of operations: the first unsupported operation after the run has begun
cuts the graph, and it and everything after it run on the CPU even when later operations are supported.
Unsupported operations before the run (a float ``QUANTIZE`` at the input) stay on the CPU without cutting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.model.flatbuffer import FlatModel, OperatorRecord, TensorRecord, multiply_accumulates, read_flatbuffer
from edgecnn.runtime.interpreter import EDGETPU_CUSTOM_OP
from edgecnn.targets.base import Finding
from edgecnn.targets.coral import ops as edgetpu_ops
from edgecnn.targets.facts import ModelFacts

EIGHT_BIT = ("int8", "uint8")


@dataclass(frozen=True)
class OpVerdict:
    """One operation's expected placement.

    Attributes:
        index / name / version: the operation, in execution order.
        macs: its multiply-accumulates per run.
        supported: whether the operation itself meets the Edge TPU's requirements.
        on_tpu: whether the compiler is expected to map it (supported, and inside the mapped run).
        reason: why it is not supported, or why a supported one stays on the CPU ("" when on the Edge TPU).
    """

    index: int
    name: str
    version: int
    macs: int
    supported: bool
    on_tpu: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "index": self.index,
            "op": self.name,
            "version": self.version,
            "macs": self.macs,
            "supported": self.supported,
            "on_tpu": self.on_tpu,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Preflight:
    """Every operation's verdict, where the compiler would cut the graph, and the shares on the Edge TPU."""

    ops: list[OpVerdict]
    compiled: bool

    @property
    def cut(self) -> OpVerdict | None:
        """The first operation after the mapped run began that the compiler cannot map (None: no cut)."""
        started = False
        for op in self.ops:
            if op.on_tpu:
                started = True
            elif started:
                return op
        return None

    @property
    def tpu_ops(self) -> int:
        """Operations expected on the Edge TPU."""
        return sum(op.on_tpu for op in self.ops)

    @property
    def ops_share(self) -> float:
        """Share of operations expected on the Edge TPU."""
        return self.tpu_ops / len(self.ops) if self.ops else 0.0

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of one run of the whole model."""
        return sum(op.macs for op in self.ops)

    @property
    def macs_share(self) -> float:
        """Share of multiply-accumulates expected on the Edge TPU (the share of operations when there are none,
        or when the model is compiled: its edgetpu-custom-op hides what it computes)."""
        if self.total_macs == 0 or self.compiled:
            return self.ops_share
        return sum(op.macs for op in self.ops if op.on_tpu) / self.total_macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        cut = self.cut
        return {
            "compiled": self.compiled,
            "operations": len(self.ops),
            "tpu_operations": self.tpu_ops,
            "ops_share": round(self.ops_share, 4),
            "macs": self.total_macs,
            "macs_share": round(self.macs_share, 4),
            "cut": cut.to_dict() if cut else None,
            "ops": [op.to_dict() for op in self.ops],
        }


def _tensor_problem(tensor: TensorRecord) -> str:
    """Why a run-time tensor rules its operation out ("" when it does not)."""
    if tensor.dtype not in EIGHT_BIT or not tensor.quantized:
        return (
            f"tensor {tensor.name} is {tensor.dtype}{'' if tensor.quantized else ' unquantized'}: "
            "the Edge TPU computes only 8-bit quantized tensors"
        )
    if tensor.dynamic:
        return f"tensor {tensor.name} has a dynamic shape {list(tensor.signature)}: the Edge TPU needs fixed shapes"
    if any(d > 1 for d in tensor.shape[:-3]):
        return (
            f"tensor {tensor.name} {list(tensor.shape)} has more than 3 dimensions larger than 1 "
            "(a batch above 1?): the Edge TPU takes at most 3"
        )
    return ""


def _constraint_problem(op: OperatorRecord, key: str) -> str:
    """Why the table's constraint ``key`` rules ``op`` out ("" when it holds, or cannot be read from the file:
    those that need a constant's values, such as the reduced axes, are left to the compiler)."""
    options = op.options
    if key == "no_fused_activation" and options.get("fused_activation_function", "NONE") != "NONE":
        return f"fused {options['fused_activation_function']} activation: the Edge TPU's {op.name} takes none"
    if key == "same_dilation" and options.get("dilation_h_factor", 1) != options.get("dilation_w_factor", 1):
        return "different dilations in x and y: the Edge TPU needs them equal"
    if key == "fc_default_weights" and options.get("weights_format", 0) != 0:
        return "shuffled fully-connected weights: the Edge TPU takes only the default weights format"
    if key == "output_1d" and op.outputs and sum(d > 1 for d in op.outputs[0].shape) > 1:
        return f"output {list(op.outputs[0].shape)} is not one-dimensional: the Edge TPU's {op.name} needs it to be"
    if key == "softmax_1d_max_16000" and op.inputs:
        shape = op.inputs[0].shape
        if sum(d > 1 for d in shape) > 1 or (shape and max(shape) > 16000):
            return f"softmax over {list(shape)}: the Edge TPU takes a 1-D input of at most 16,000 elements"
    if key == "strides_1" and (options.get("ellipsis_mask", 0) or options.get("new_axis_mask", 0)):
        return "strided slice with an ellipsis or new-axis mask: the Edge TPU needs neither"
    return ""


def _verdict_reason(op: OperatorRecord) -> str:
    """Why ``op`` cannot run on the Edge TPU ("" when it can)."""
    if op.custom:
        if op.name == EDGETPU_CUSTOM_OP:
            return ""
        return f"custom operation {op.name}: the Edge TPU runs only builtin operations from its table"
    rule = edgetpu_ops.SUPPORTED_OPS.get(op.name)
    if rule is None:
        known = edgetpu_ops.NOT_SUPPORTED.get(op.name)
        return f"{op.name} is not among the Edge TPU's supported operations" + (f" ({known})" if known else "")
    if edgetpu_ops.version_too_new(op.name, op.version):
        newest = edgetpu_ops.MAX_OP_VERSIONS[op.name]
        return (
            f"{op.name} version {op.version} is newer than edgetpu_compiler {edgetpu_ops.LAST_COMPILER_VERSION} "
            f"takes (up to version {newest}): the compiler refuses the whole model"
        )
    for tensor in op.activations:
        problem = _tensor_problem(tensor)
        if problem:
            return problem
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        weights = op.inputs[2] if op.name == "TRANSPOSE_CONV" and len(op.inputs) > 2 else op.inputs[1]
        if not weights.constant:
            return f"weights {weights.name} are computed at run time: the Edge TPU needs constant parameters"
    for key in rule.constraints:
        problem = _constraint_problem(op, key)
        if problem:
            return problem
    return ""


def preflight(model: str | Path | bytes | FlatModel) -> Preflight:
    """Predict which operations of a ``.tflite`` model the Edge TPU compiler would map.

    Raises:
        ModelFormatError: the file is not a TFLite model.
    """
    flat = model if isinstance(model, FlatModel) else read_flatbuffer(model)
    verdicts: list[OpVerdict] = []
    started = cut = False
    for op in flat.operators:
        reason = _verdict_reason(op)
        supported = not reason
        if supported and not cut:
            started = True
        elif not supported and started:
            cut = True
        on_tpu = supported and started and not cut
        if supported and not on_tpu:
            reason = "supported, but after the operation where the compiler cuts the graph"
        verdicts.append(OpVerdict(op.index, op.name, op.version, multiply_accumulates(op), supported, on_tpu, reason))
    compiled = any(op.custom and op.name == EDGETPU_CUSTOM_OP for op in flat.operators)
    return Preflight(verdicts, compiled)


def _model_finding(facts: ModelFacts) -> Finding:
    """The model as its sidecar describes it; a model without one, as its graph does (every input and output)."""
    info = facts.info
    if info is None:
        return Finding("info", "model", f"{facts.quantization_text}, {facts.io_text}, {facts.labels_text}")
    return Finding(
        "info",
        "model",
        f"quantization {info.quantization}, input {info.input.dtype} {list(info.input_shape)}, "
        f"output {info.output.dtype}, {len(info.labels)} labels",
    )


def preflight_findings(result: Preflight, *, facts: ModelFacts, min_tpu_share: float | None = None) -> list[Finding]:
    """The pre-flight as ``edgecnn check`` findings: one per operation, the cut, the shares and the verdict."""
    findings = [_model_finding(facts)]
    for op in result.ops:
        where = "Edge TPU" if op.on_tpu else f"CPU: {op.reason}"
        macs = f", {op.macs:,} MACs" if op.macs else ""
        findings.append(Finding("info", "op", f"#{op.index} {op.name} v{op.version}{macs}: {where}"))
    cut = result.cut
    if cut is not None:
        after = sum(1 for op in result.ops if op.index > cut.index)
        findings.append(
            Finding(
                "warning",
                "cut",
                f"the compiler would cut the graph at #{cut.index} {cut.name} ({cut.reason}): it and the {after} "
                "operation(s) after it run on the CPU",
            )
        )
    leading = [op for op in result.ops if not op.on_tpu and (cut is None or op.index < cut.index)]
    if leading and result.tpu_ops:
        names = ", ".join(f"#{op.index} {op.name}" for op in leading)
        findings.append(Finding("warning", "cpu-ops", f"outside the Edge TPU run, on the CPU: {names}"))
    macs = f" and {result.macs_share:.1%} of {result.total_macs:,} multiply-accumulates" if result.total_macs else ""
    findings.append(
        Finding(
            "info",
            "tpu-share",
            f"{result.tpu_ops}/{len(result.ops)} operations ({result.ops_share:.0%}){macs} expected on the Edge TPU",
        )
    )
    if result.tpu_ops == 0:
        first = result.ops[0] if result.ops else None
        why = f": #{first.index} {first.name}: {first.reason}" if first else ""
        findings.append(
            Finding(
                "error",
                "no-tpu-ops",
                f"no operation would run on the Edge TPU{why}; convert with edgecnn convert --target coral",
            )
        )
    if min_tpu_share is not None and result.macs_share < min_tpu_share:
        findings.append(
            Finding(
                "error",
                "min-tpu-share",
                f"{result.macs_share:.1%} of the multiply-accumulates would run on the Edge TPU, below "
                f"--min-tpu-share {min_tpu_share:g} ({min_tpu_share:.1%})",
            )
        )
    if not result.compiled:
        findings.append(
            Finding(
                "info",
                "not-compiled",
                "not compiled yet: edgecnn convert --target coral runs edgetpu_compiler when it is installed",
            )
        )
    return findings
