"""Quantize a float ``.tflite`` made by another converter, with Google's ai-edge-quantizer.

TensorFlow's converter quantizes only what it converts (a Keras model, a SavedModel); a ``.tflite`` that someone
else converted (from PyTorch through ai-edge-torch, from ONNX...) has no TensorFlow graph left to convert.
ai-edge-quantizer (Google's, LiteRT's own) works on the ``.tflite`` flatbuffer itself:

- ``int8``: weights and activations in int8, ranges calibrated on the same real images TensorFlow's converter gets
  (recipe ``static_wi8_ai8``). Input and output are int8; ``uint8`` makes them uint8 with a QUANTIZE op at each end
  (the quantizer's own ``static_wi8_au8`` policy for the virtual INPUT/OUTPUT ops), ``float32`` leaves them float
  with QUANTIZE/DEQUANTIZE at the ends (INPUT/OUTPUT not quantized) — the graphs TensorFlow's converter writes;
- ``dynamic``: int8 weights, activations quantized at run time (``dynamic_wi8_afp32``);
- ``float16``: float16 weights, dequantized on load (weight-only ``float_casting``), as TensorFlow's float16 mode.

Its output is byte-deterministic: the same model and calibration images give the same bytes, in any process.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from typing import Any

import numpy as np

from edgecnn.errors import MissingDependencyError, ModelFormatError, UsageError
from edgecnn.model.flatbuffer import FlatModel
from edgecnn.runtime.files import captured_native_stderr

SIGNATURE_KEY = "serving_default"
"""The signature added to a model that has none (the quantizer calibrates through a signature)."""

_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP")
"""The operations whose weights float16 casting stores in float16 (the ones ai-edge-quantizer can cast)."""


def check_float_model(flat: FlatModel, *, model: str) -> None:
    """A model to quantize must be float: quantizing again would stack one rounding on another.

    Raises:
        UsageError: the graph is already quantized (:func:`edgecnn.targets.facts.graph_quantization`).
    """
    from edgecnn.targets.facts import graph_quantization

    quantization = graph_quantization(flat)
    if quantization != "none" or flat.inputs[0].dtype != "float32":
        raise UsageError(
            f"{model} is already quantized ({quantization}, {flat.inputs[0].dtype} input): add --quantize none to "
            "bundle it as it is, or give its float model"
        )


def quantize_tflite(flatbuffer: bytes, *, quantize: str, io_type: str, images: np.ndarray | None, model: str) -> bytes:
    """Quantize a float TFLite model with ai-edge-quantizer.

    Args:
        flatbuffer: the float model.
        quantize: ``int8``, ``dynamic`` or ``float16``.
        io_type: input and output type of an ``int8`` model: ``int8``, ``uint8`` or ``float32``.
        images: calibration images for ``int8``, preprocessed as the model takes them (``(N, *input_shape[1:])``).
        model: the model's name, for messages.

    Returns:
        The quantized model's bytes (with a signature, which a model without one gains here), weights inside the
        flatbuffer (:func:`inline_buffers`).

    Raises:
        MissingDependencyError: ai-edge-quantizer is not installed.
        ModelFormatError: the quantizer cannot read or quantize the model (its reason in one line).
    """
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise MissingDependencyError(
            "ai-edge-quantizer", extra="train", purpose="quantize a .tflite from another converter"
        ) from None
    if quantize == "int8" and images is None:
        raise UsageError("--quantize int8 needs calibration images: add --calibration DATA")
    flatbuffer, key, input_name = with_signature(flatbuffer, model=model)

    def run() -> bytes:
        qt = quantizer.Quantizer(flatbuffer)
        qt.load_quantization_recipe(_recipe(quantize, io_type))
        calibration = None
        if quantize == "int8":
            calibration = _calibrate(flatbuffer, quantize, io_type, key, input_name, images)
        return bytes(qt.quantize(calibration, enable_progress_report=False).quantized_model)

    try:
        return inline_buffers(_quietly(run), model=model)
    except (ValueError, RuntimeError, KeyError, IndexError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"ai-edge-quantizer cannot quantize {model} ({reason})") from None


def _calibrate(
    flatbuffer: bytes, quantize: str, io_type: str, key: str, input_name: str, images: np.ndarray
) -> dict[str, Any]:
    """Each tensor's range over the calibration images: the overall min and max, as TensorFlow's converter takes.

    ai-edge-quantizer's own default (``Quantizer.calibrate``) keeps a moving average of per-image ranges instead,
    which narrows them: on CIFAR-10 it cost 4.4 points of int8 accuracy where the overall min/max cost 0.4, the
    same as TensorFlow's converter on the same model (BENCHMARKS.md). Its Calibrator takes the update rule.
    """
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(_recipe(quantize, io_type))
    calibration = calibrator.Calibrator(flatbuffer, qsv_update_func=qsv_utils.min_max_update)
    # One image per step, in order: the recorded ranges, and so the bytes, do not depend on batching.
    samples = [{input_name: images[i : i + 1]} for i in range(len(images))]
    calibration.calibrate({key: samples}, manager)
    return calibration.get_model_qsvs()


def _recipe(quantize: str, io_type: str) -> Any:
    """The ai-edge-quantizer recipe for one mode and I/O type."""
    from ai_edge_quantizer import qtyping, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    ops = qtyping.TFLOperationName
    if quantize == "dynamic":
        return recipe.dynamic_wi8_afp32()
    manager = recipe_manager.RecipeManager()
    if quantize == "float16":
        for op in _WEIGHT_OPS:
            manager.add_weight_only_config(".*", ops(op), 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        return manager.get_quantization_recipe()
    if quantize != "int8":
        raise UsageError(f"--quantize {quantize} is not available for a .tflite: choose int8, dynamic, float16 or none")
    manager.add_static_config(".*", ops.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    if io_type == "uint8":
        # The quantizer's static_wi8_au8 policy: uint8 at the virtual INPUT/OUTPUT ops, so a QUANTIZE op converts
        # between uint8 and the int8 graph at each end.
        uint8 = qtyping.OpQuantizationConfig(
            activation_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=8, symmetric=False, dtype=qtyping.TensorDataType.UINT
            ),
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE
            ),
            compute_precision=qtyping.ComputePrecision.INTEGER,
        )
        for op in (ops.INPUT, ops.OUTPUT):
            manager.add_quantization_config(".*", op, uint8)
    elif io_type == "float32":
        # INPUT/OUTPUT left unquantized: QUANTIZE after the input, DEQUANTIZE before the output.
        for op in (ops.INPUT, ops.OUTPUT):
            manager.add_quantization_config(
                ".*", op, qtyping.OpQuantizationConfig(), algorithm_key=AlgorithmName.NO_QUANTIZE
            )
    return manager.get_quantization_recipe()


def with_signature(flatbuffer: bytes, *, model: str) -> tuple[bytes, str, str]:
    """The model with a signature the quantizer can calibrate through, that signature's key and its input's name.

    A model with one signature is returned as it is. One with none (older converters, hand-built graphs) gains
    :data:`SIGNATURE_KEY` over its main subgraph's input and output; ai-edge-quantizer needs one ("model has 0
    Signatures"), and the written model keeps it.

    Raises:
        ModelFormatError: the model cannot be read, or has several signatures.
    """
    signatures = _signatures(flatbuffer, model=model)
    if len(signatures) > 1:
        raise ModelFormatError(
            f"{model} has {len(signatures)} signatures ({', '.join(sorted(signatures))}): edgecnn quantizes "
            "classifiers with one"
        )
    if signatures:
        ((key, entry),) = signatures.items()
        return flatbuffer, key, entry["inputs"][0]
    return _add_signature(flatbuffer, model=model), SIGNATURE_KEY, "image"


def _signatures(flatbuffer: bytes, *, model: str) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    try:
        return dict(Interpreter(model_content=flatbuffer).get_signature_list())
    except (ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"{model} is not a loadable TFLite model ({str(exc).strip()[:200]})") from None


def _add_signature(flatbuffer: bytes, *, model: str) -> bytes:
    """Set the one signature, :data:`SIGNATURE_KEY`, over subgraph 0's input (``image``) and output (``scores``)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    try:
        root = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    except Exception as exc:  # noqa: BLE001 - the generated reader raises anything on a corrupt buffer
        raise ModelFormatError(f"{model} is not a valid TFLite model ({type(exc).__name__})") from None
    graph = root.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelFormatError(f"{model} has several inputs or outputs: edgecnn quantizes classifiers")

    def tensor_map(name: str, index: int) -> Any:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey = SIGNATURE_KEY
    signature.subgraphIndex = 0
    signature.inputs = [tensor_map("image", graph.inputs[0])]
    signature.outputs = [tensor_map("scores", graph.outputs[0])]
    root.signatureDefs = [signature]
    builder = flatbuffers.Builder(0)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def inline_buffers(flatbuffer: bytes, *, model: str) -> bytes:
    """The model with every weight buffer inside the flatbuffer, as TensorFlow's converter writes models under 2 GB.

    ai-edge-quantizer writes a model whose weights pass 256 KiB with its buffers after the flatbuffer (each buffer an
    ``offset`` and ``size`` into the file). TFLite reads that, but TensorFlow Lite Micro and the TFLite Metadata writer
    (:func:`edgecnn.build.metadata.with_metadata`, which aligns every buffer to 16 bytes when it repacks) take weights
    inside. A model with no such buffer is returned as it is.

    Raises:
        ModelFormatError: the model cannot be read, or a buffer lies outside the file.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    try:
        root = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    except Exception as exc:  # noqa: BLE001 - the generated reader raises anything on a corrupt buffer
        raise ModelFormatError(f"{model} is not a valid TFLite model ({type(exc).__name__})") from None
    outside = [b for b in root.buffers or [] if b.offset > 1]
    if not outside:
        return flatbuffer
    for buffer in outside:
        if buffer.offset + buffer.size > len(flatbuffer):
            raise ModelFormatError(f"{model} has a weight buffer past its end: the file is truncated")
        buffer.data = np.frombuffer(flatbuffer, dtype=np.uint8, count=buffer.size, offset=buffer.offset)
        buffer.offset, buffer.size = 0, 0
    builder = flatbuffers.Builder(0)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _quietly(action: Any) -> Any:
    """Run the quantizer with its console output held: the interpreter's log (C-level stderr), its calibration
    progress bar (Python's stderr), its size report (stdout) and its debugging-option warning."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        captured_native_stderr(on_error=sys.stderr.write),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        return action()
