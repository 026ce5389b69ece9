"""What a target knows about a model: its sidecar's metadata when it has one, else what its graph says.

A ``.tflite`` from another converter has no edgecnn sidecar, so no labels and no preprocessing; it may have several
inputs and outputs. ``check``, ``bench`` and ``export micro`` still work on it, from the flatbuffer alone
(:func:`edgecnn.model.flatbuffer.read_flatbuffer`: inputs, outputs, dtypes, quantization, operations): findings
describe what is known and say what is not, and nothing refuses a model for lacking a sidecar. A model that has a
sidecar is described by it, as before, and a sidecar that is invalid or belongs to other model bytes is still an
error (exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecnn.model.flatbuffer import FlatModel, TensorRecord, read_flatbuffer
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bundle import ModelInfo, sidecar_info, sidecar_path
from edgecnn.targets.base import Finding

NO_SIDECAR = "no sidecar: labels and preprocessing unknown"
"""What findings say about a model without a sidecar, where a bundle's findings count its labels."""


@dataclass(frozen=True)
class ModelFacts:
    """A model's graph, its sidecar's metadata (None for a model from elsewhere) and its quantization.

    Attributes:
        flat: the main subgraph, read from the file.
        info: the sidecar's metadata; None when the model has no sidecar.
        quantization: the sidecar's ``quantization``; without one, what the graph shows
            (:func:`graph_quantization`).
    """

    flat: FlatModel
    info: ModelInfo | None
    quantization: str

    @property
    def io_text(self) -> str:
        """The inputs and outputs: ``input int8 [1, 32, 32, 3], output int8 [1, 10]``, every one named when several."""
        return f"{tensors_text(self.flat.inputs, 'input')}, {tensors_text(self.flat.outputs, 'output')}"

    @property
    def labels_text(self) -> str:
        """``10 labels``, or that the model has no sidecar to give labels and preprocessing."""
        return NO_SIDECAR if self.info is None else f"{len(self.info.labels)} labels"

    @property
    def summary(self) -> str:
        """Quantization, I/O and labels in one phrase, as a check's ``model`` finding gives them."""
        if self.info is None:
            return f"{self.quantization_text}, {self.io_text}, {self.labels_text}"
        inp, out = self.flat.inputs[0], self.flat.outputs[0]
        return (
            f"quantization {self.quantization}, input {inp.dtype} {list(inp.shape)}, "
            f"output {out.dtype} {list(out.shape)}, {self.labels_text}"
        )

    @property
    def quantization_text(self) -> str:
        """``quantization int8``, with where it was read when the model has no sidecar."""
        return f"quantization {self.quantization}" + ("" if self.info is not None else " (read from the graph)")


def model_facts(model: Path) -> ModelFacts:
    """Read a ``.tflite`` model and its sidecar, if it has one.

    Raises:
        ModelFormatError: the file is missing, not a ``.tflite``, not a valid TFLite model
            (:func:`~edgecnn.model.verify.verify_model`), or has a sidecar that is invalid or was written for other
            model bytes.
    """
    info = sidecar_info(model)
    # The one gate before any target sees the model: every target's check reads it through here.
    return facts_of(read_flatbuffer(verify_model(model)), info)


def facts_of(flat: FlatModel, info: ModelInfo | None) -> ModelFacts:
    """The facts of a graph already read, with its sidecar's metadata (None: it has none)."""
    return ModelFacts(flat, info, info.quantization if info is not None else graph_quantization(flat))


def io_finding(facts: ModelFacts, *, takes: str) -> Finding | None:
    """Several inputs or outputs: an error for a bundle (its sidecar describes one image and one score vector),
    information for a model from elsewhere, which ``takes`` (the commands that work on it) take as it is."""
    inputs, outputs = len(facts.flat.inputs), len(facts.flat.outputs)
    if inputs == 1 and outputs == 1:
        return None
    counts = f"{inputs} inputs and {outputs} outputs"
    if facts.info is not None:
        return Finding(
            "error", "io", f"{counts}: edgecnn runs image classifiers with one image input and one score output"
        )
    return Finding(
        "info", "io", f"{counts}: {takes} take it; run and validate need one image input and one score output"
    )


def no_sidecar_note(model: Path) -> str:
    """The note for a result made without a sidecar: what was left out, and where it would come from."""
    return (
        f"{model.name} has no sidecar ({sidecar_path(model).name}): its labels and preprocessing are unknown and "
        "were left out; edgecnn convert writes a bundle with both"
    )


def printable(name: str) -> str:
    """A name read from a model file, with control characters escaped: findings print it on a terminal."""
    return name if name.isprintable() else ascii(name)[1:-1]


def tensor_text(tensor: TensorRecord) -> str:
    """``int8 [1, 32, 32, 3]``: a tensor's dtype and shape (its signature where a dimension is dynamic)."""
    shape = list(tensor.signature) if tensor.dynamic else list(tensor.shape)
    return f"{tensor.dtype} {shape}"


def tensors_text(tensors: Sequence[TensorRecord], role: str) -> str:
    """``input int8 [1, 8, 8, 1]`` for one tensor; ``2 inputs (a float32 [1, 4], b int8 [1, 2])`` for several."""
    if len(tensors) == 1:
        return f"{role} {tensor_text(tensors[0])}"
    listed = ", ".join(f"{printable(t.name)} {tensor_text(t)}" for t in tensors)
    return f"{len(tensors)} {role}s ({listed})"


def float16_tensors(flat: FlatModel) -> list[str]:
    """Names of the float16 tensors in a model (``--quantize float16`` leaves them): TFLM has no float16 kernels."""
    seen = {t.index: t.name for op in flat.operators for t in (*op.inputs, *op.outputs) if t.dtype == "float16"}
    return [seen[i] for i in sorted(seen)]


def hybrid_ops(flat: FlatModel) -> list[str]:
    """Operators that keep int8 weights but compute in float (``--quantize dynamic``): TFLM refuses hybrid models.

    Full-integer models with float32 I/O have float32 tensors only around their QUANTIZE/DEQUANTIZE operations,
    which take no constant integer input, so they are not counted.
    """
    hybrid = []
    for op in flat.operators:
        int_weights = any(t.constant and t.dtype in ("int8", "uint8") for t in op.inputs)
        float_math = any(t.dtype == "float32" for t in op.activations)
        if int_weights and float_math:
            hybrid.append(op.name)
    return hybrid


def graph_quantization(flat: FlatModel) -> str:
    """The quantization a graph shows, named as ``edgecnn convert --quantize`` names it.

    ``float16`` (float16 weights), ``dynamic`` (int8 weights, float computation), ``int8`` (8-bit quantized
    activations: full integer, whatever the I/O types), ``int16x8`` (16-bit activations, 8-bit weights), else
    ``none`` (float32).
    """
    if float16_tensors(flat):
        return "float16"
    if hybrid_ops(flat):
        return "dynamic"
    computed = {t.index: t for op in flat.operators for t in op.activations if t.quantized}
    dtypes = {t.dtype for t in computed.values()}
    if dtypes & {"int8", "uint8"}:
        return "int8"
    if "int16" in dtypes:
        return "int16x8"
    return "none"
