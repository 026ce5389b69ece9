"""One runtime layer over the TFLite interpreters: ai-edge-litert, else tflite-runtime (:mod:`.runtimes`).

Model I/O is quantized and dequantized here, with :mod:`edgecnn.runtime.quant`, so callers always hand in
preprocessed float images and get float scores back, whatever the model's I/O types.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ModelFormatError, ModelLoadError, UsageError
from edgecnn.runtime.bundle import ModelInfo, check_model_file, read_tflite_info
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.preprocess import fitting_images
from edgecnn.runtime.quant import QuantParams, dequantize, quantize
from edgecnn.runtime.runtimes import check_threads, runtime_module


def load_interpreter(
    model_path: str | os.PathLike[str],
    *,
    num_threads: int | None = None,
    reference_kernels: bool = False,
    xnnpack: bool = True,
    runtime: str | None = None,
    delegates: Sequence[Any] = (),
) -> Any:
    """Create an interpreter for a ``.tflite`` file and allocate its tensors.

    Args:
        model_path: the ``.tflite`` model.
        num_threads: CPU threads for the kernels (runtime default when None).
        reference_kernels: use TFLite's reference kernels (bit-identical to TensorFlow Lite Micro) instead of
            the optimized ones and XNNPACK.
        xnnpack: apply the XNNPACK delegate (the runtimes' default); False keeps TFLite's optimized builtin
            kernels only.
        runtime: force one of :data:`~edgecnn.runtime.runtimes.RUNTIMES`.
        delegates: delegates from the runtime's ``load_delegate`` (the Edge TPU's), applied in order.

    Raises:
        ModelFormatError: the file is not a TFLite model.
        ModelLoadError: the interpreter refused it (an operation it has no kernel for...).
    """
    model = check_model_file(model_path, suffixes=(".tflite",))
    _, module = runtime_module(runtime)
    options: dict[str, Any] = {"model_path": str(model), "num_threads": check_threads(num_threads)}
    if delegates:
        options["experimental_delegates"] = list(delegates)
    if reference_kernels:
        options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_REF
    elif not xnnpack:
        options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        # The delegate announces itself on the C-level stderr; keep that out of the user's output.
        with captured_native_stderr():
            interpreter = module.Interpreter(**options)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(_load_failure(model, reason, delegated=bool(delegates)), reason=reason) from None
    return interpreter


EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
"""The operation edgetpu_compiler puts in place of the graph it maps to the Edge TPU."""


def _load_failure(model: Path, reason: str, *, delegated: bool) -> str:
    """The one-line message for a model the interpreter refused, with the fix."""
    if EDGETPU_CUSTOM_OP in reason:
        if delegated:
            return (
                f"{model} is compiled for the Edge TPU but the delegate did not take its {EDGETPU_CUSTOM_OP}: "
                "install the libedgetpu that matches the edgetpu_compiler that built it"
            )
        return (
            f"{model} is compiled for the Edge TPU ({EDGETPU_CUSTOM_OP}) and runs only through the Edge TPU "
            "delegate: use --target coral, or run the uncompiled model here"
        )
    return f"{model} is not a valid TFLite model ({reason}): re-run edgecnn convert"


class TFLiteRunner:
    """Runs a ``.tflite`` model on preprocessed float images, batched, and returns float scores.

    Args:
        model_path: the ``.tflite`` model; its sidecar supplies labels and preprocessing.
        num_threads: CPU threads.
        reference_kernels: use TFLite's reference kernels (what TensorFlow Lite Micro computes).
        xnnpack: apply the XNNPACK delegate (False: TFLite's builtin kernels only).
        max_batch: largest batch handed to the interpreter at once.
        runtime: force one interpreter package.
        delegates: delegates to apply (see :func:`load_interpreter`).

    Raises:
        ModelFormatError: the model is not a TFLite model, or does not match its sidecar.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        reference_kernels: bool = False,
        xnnpack: bool = True,
        max_batch: int = 64,
        runtime: str | None = None,
        delegates: Sequence[Any] = (),
    ) -> None:
        self.path = Path(model_path)
        self.info: ModelInfo = read_tflite_info(self.path)
        self.runtime, _ = runtime_module(runtime)
        self._interpreter = load_interpreter(
            self.path,
            num_threads=num_threads,
            reference_kernels=reference_kernels,
            xnnpack=xnnpack,
            runtime=runtime,
            delegates=delegates,
        )
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFormatError(
                f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs: edgecnn runs image classifiers "
                "with one image input and one score output"
            )
        self._input, self._output = inputs[0], outputs[0]
        self.input_params = QuantParams.from_tensor_details(self._input)
        self.output_params = QuantParams.from_tensor_details(self._output)
        shape = [int(v) for v in self._input["shape"]]
        if shape != list(self.info.input_shape) or self.input_params.dtype != self.info.input.dtype:
            raise ModelFormatError(
                f"input of {self.path.name} is {self.input_params.dtype} {shape} but its sidecar says "
                f"{self.info.input.dtype} {list(self.info.input_shape)}: the sidecar belongs to another model; "
                "re-run edgecnn convert"
            )
        classes = int(self._output["shape"][-1])
        if classes != len(self.info.labels):
            raise ModelFormatError(
                f"{self.path.name} outputs {classes} scores but its sidecar lists {len(self.info.labels)} labels: "
                "re-run edgecnn convert"
            )
        self._batch = int(shape[0])
        self._max_batch = max(1, max_batch)
        self._batching = True

    def _set_batch(self, size: int) -> bool:
        """Resize the input to ``size`` images; False (and batch 1 from then on) if the graph cannot."""
        if size == self._batch:
            return True
        shape = [size, *self.info.input_shape[1:]]
        try:
            with captured_native_stderr():
                self._interpreter.resize_tensor_input(self._input["index"], shape, strict=False)
                self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError):
            # Some graphs hard-code batch 1 (a RESHAPE to [1, K]): run them one image at a time.
            self._batching = False
            with captured_native_stderr():
                self._interpreter.resize_tensor_input(self._input["index"], self.info.input_shape, strict=False)
                self._interpreter.allocate_tensors()
            self._batch = int(self.info.input_shape[0])
            return False
        self._batch = size
        return True

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        self.set_input(chunk)
        self.invoke()
        return dequantize(self._interpreter.get_tensor(self._output["index"]), self.output_params)

    @property
    def batch(self) -> int:
        """The batch size the interpreter is currently allocated for."""
        return self._batch

    def resize(self, batch: int) -> None:
        """Allocate the interpreter for ``batch`` images per :meth:`invoke`.

        Raises:
            UsageError: the graph hard-codes its batch size (only batch 1 works).
        """
        if batch < 1:
            raise UsageError(f"the batch size must be at least 1, not {batch}")
        if not self._set_batch(batch):
            raise UsageError(f"{self.path.name} only runs one image at a time (its graph fixes batch 1): use --batch 1")

    def set_input(self, images: np.ndarray) -> None:
        """Quantize preprocessed float images (as many as the current :attr:`batch`) into the input tensor."""
        self._interpreter.set_tensor(self._input["index"], quantize(images, self.input_params))

    def invoke(self) -> None:
        """Run the model once on the input tensor as it stands (what a latency benchmark times)."""
        self._interpreter.invoke()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores for preprocessed images.

        Args:
            images: float32 array ``(N, H, W, C)`` from :func:`edgecnn.runtime.preprocess.load_image`.

        Returns:
            float32 array ``(N, classes)`` of dequantized scores.

        Raises:
            UsageError: the images do not have the model's input shape.
        """
        images = fitting_images(images, self.info.preprocessing, model=self.path.name)
        results = []
        start = 0
        while start < len(images):
            size = min(self._max_batch if self._batching else 1, len(images) - start)
            if not self._set_batch(size):
                size = 1
            results.append(self._invoke(images[start : start + size]))
            start += size
        if not results:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        return np.concatenate(results).reshape(len(images), -1)

    def close(self) -> None:
        """Release the interpreter."""
        self._interpreter = None
