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
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bundle import ModelInfo, check_model_file, read_tflite_info, sidecar_info, sidecar_path
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.preprocess import fitting_images
from edgecnn.runtime.quant import QuantParams, dequantize, quantize
from edgecnn.runtime.runtimes import check_kernels, check_threads, runtime_label, runtime_module


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
        reference_kernels: use TFLite's reference kernels (TensorFlow Lite Micro's code: see
            :data:`~edgecnn.runtime.runtimes.KERNELS`) instead of the optimized ones and XNNPACK.
        xnnpack: apply the XNNPACK delegate (the runtimes' default); False keeps TFLite's optimized builtin
            kernels only.
        runtime: force one of :data:`~edgecnn.runtime.runtimes.RUNTIMES`.
        delegates: delegates from the runtime's ``load_delegate`` (the Edge TPU's), applied in order.

    Raises:
        ModelFormatError: the file is not a valid TFLite model (:func:`edgecnn.model.verify.verify_model`).
        ModelLoadError: the interpreter refused it (an operation it has no kernel for...).
    """
    model = check_model_file(model_path, suffixes=(".tflite",))
    # The interpreter gets the bytes that were verified, not the path: it loads exactly what was checked.
    content = verify_model(model)
    _, module = runtime_module(runtime)
    options: dict[str, Any] = {"model_content": content, "num_threads": check_threads(num_threads)}
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
    except Exception as exc:  # noqa: BLE001 - whatever the runtime raises on a bad file is a refused model
        reason = first_line(exc)
        raise ModelLoadError(_load_failure(model, reason, delegated=bool(delegates)), reason=reason) from None
    return interpreter


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what one-line errors quote."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _io_details(interpreter: Any, model: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The interpreter's input and output details.

    Raises:
        ModelLoadError: the runtime cannot describe them (a tensor name that is not UTF-8 in a corrupt file...).
    """
    try:
        return interpreter.get_input_details(), interpreter.get_output_details()
    except Exception as exc:  # noqa: BLE001 - whatever the runtime raises on a bad file is a refused model
        reason = first_line(exc)
        raise ModelLoadError(_load_failure(model, reason, delegated=False), reason=reason) from None


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
    # A bundle is edgecnn's to rebuild; a model from elsewhere is the user's file to check.
    fix = "re-run edgecnn convert" if sidecar_path(model).is_file() else "check that it is a complete .tflite file"
    return f"{model} is not a valid TFLite model ({reason}): {fix}"


class TFLiteRunner:
    """Runs a ``.tflite`` model on preprocessed float images, batched, and returns float scores.

    With ``require_sidecar=False`` it also takes a model that has no sidecar (a model from another converter, with
    any number of inputs and outputs): :attr:`info` is then None, and the model is fed tensor by tensor
    (:meth:`set_tensors`), as a benchmark does; :meth:`predict`, which needs labels and preprocessing, refuses it.

    Args:
        model_path: the ``.tflite`` model; its sidecar supplies labels and preprocessing.
        num_threads: CPU threads.
        kernels: the kernel set, one of :data:`~edgecnn.runtime.runtimes.KERNELS` (None: ``default``): what the
            ``--kernels`` of host and rpi choose, named in :attr:`runtime` unless it is the default.
        reference_kernels: use TFLite's reference kernels (what TensorFlow Lite Micro computes): the same as
            ``kernels="reference"``.
        xnnpack: apply the XNNPACK delegate (False: TFLite's builtin kernels only).
        max_batch: largest batch handed to the interpreter at once.
        runtime: force one interpreter package.
        delegates: delegates to apply (see :func:`load_interpreter`).
        require_sidecar: refuse a model without a sidecar (what classifying images needs).

    Attributes:
        runtime: the interpreter package, and the kernel set when not the default (``ai-edge-litert (reference
            kernels)``): what reports say ran the model.
        kernels: the kernel set's name.

    Raises:
        ModelFormatError: the model is not a TFLite model, or does not match its sidecar (or has none, when
            ``require_sidecar``).
        UsageError: an unknown kernel set.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        kernels: str | None = None,
        reference_kernels: bool = False,
        xnnpack: bool = True,
        max_batch: int = 64,
        runtime: str | None = None,
        delegates: Sequence[Any] = (),
        require_sidecar: bool = True,
    ) -> None:
        self.path = Path(model_path)
        self.info: ModelInfo | None = read_tflite_info(self.path) if require_sidecar else sidecar_info(self.path)
        self.kernels = "reference" if reference_kernels else check_kernels(kernels)
        name, _ = runtime_module(runtime)
        self.runtime = runtime_label(name, self.kernels)
        self._interpreter = load_interpreter(
            self.path,
            num_threads=num_threads,
            reference_kernels=self.kernels == "reference",
            xnnpack=xnnpack,
            runtime=runtime,
            delegates=delegates,
        )
        self._inputs, outputs = _io_details(self._interpreter, self.path)
        if self.info is not None:
            self._check_sidecar(self.info, self._inputs, outputs)
        # Shapes as allocated at load: dynamic dimensions are 1 there. Batches resize the first dimension only.
        self._shapes = [[int(v) for v in d["shape"]] for d in self._inputs]
        self._input = self._inputs[0] if self._inputs else None
        self._output = outputs[0] if outputs else None
        self.input_params = QuantParams.from_tensor_details(self._input) if self._input else None
        self.output_params = QuantParams.from_tensor_details(self._output) if self._output else None
        first = self._shapes[0] if self._shapes else []
        self._batch = int(first[0]) if first else 1
        self._max_batch = max(1, max_batch)
        self._batching = True

    def _check_sidecar(self, info: ModelInfo, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        """The sidecar must describe the graph the interpreter loaded: one image input, one score output."""
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFormatError(
                f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs: edgecnn runs image classifiers "
                "with one image input and one score output"
            )
        shape = [int(v) for v in inputs[0]["shape"]]
        dtype = QuantParams.from_tensor_details(inputs[0]).dtype
        if shape != list(info.input_shape) or dtype != info.input.dtype:
            raise ModelFormatError(
                f"input of {self.path.name} is {dtype} {shape} but its sidecar says "
                f"{info.input.dtype} {list(info.input_shape)}: the sidecar belongs to another model; "
                "re-run edgecnn convert"
            )
        classes = int(outputs[0]["shape"][-1])
        if classes != len(info.labels):
            raise ModelFormatError(
                f"{self.path.name} outputs {classes} scores but its sidecar lists {len(info.labels)} labels: "
                "re-run edgecnn convert"
            )

    def _resize_inputs(self, size: int | None) -> None:
        """Allocate every input with ``size`` as its first dimension (None: the shapes the model loaded with)."""
        with captured_native_stderr():
            for details, shape in zip(self._inputs, self._shapes):
                if shape:
                    wanted = shape if size is None else [size, *shape[1:]]
                    self._interpreter.resize_tensor_input(details["index"], wanted, strict=False)
            self._interpreter.allocate_tensors()

    def _set_batch(self, size: int) -> bool:
        """Resize the inputs to ``size`` images; False (and batch 1 from then on) if the graph cannot."""
        if size == self._batch:
            return True
        try:
            self._resize_inputs(size)
        except (RuntimeError, ValueError):
            # Some graphs hard-code batch 1 (a RESHAPE to [1, K]): run them one image at a time.
            self._batching = False
            self._resize_inputs(None)
            self._batch = int(self._shapes[0][0]) if self._shapes and self._shapes[0] else 1
            return False
        self._batch = size
        return True

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        self.set_input(chunk)
        self.invoke()
        assert self._output is not None and self.output_params is not None  # a bundle has one output
        return dequantize(self._interpreter.get_tensor(self._output["index"]), self.output_params)

    @property
    def batch(self) -> int:
        """The batch size the interpreter is currently allocated for."""
        return self._batch

    def resize(self, batch: int) -> None:
        """Allocate the interpreter for ``batch`` images (first dimension of every input) per :meth:`invoke`.

        Raises:
            UsageError: the graph hard-codes its batch size (only batch 1 works).
        """
        if batch < 1:
            raise UsageError(f"the batch size must be at least 1, not {batch}")
        if not self._set_batch(batch):
            raise UsageError(f"{self.path.name} only runs one image at a time (its graph fixes batch 1): use --batch 1")

    def input_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the input tensors as currently allocated, in input order."""
        return [tuple(int(v) for v in d["shape"]) for d in self._interpreter.get_input_details()]

    def set_input(self, images: np.ndarray) -> None:
        """Quantize preprocessed float images (as many as the current :attr:`batch`) into the input tensor."""
        if self.input_params is None or self._input is None:
            raise UsageError(f"{self.path.name} has no input tensor")
        self._interpreter.set_tensor(self._input["index"], quantize(images, self.input_params))

    def set_tensors(self, arrays: Sequence[np.ndarray]) -> None:
        """Set every input tensor to raw values of its own dtype and current shape, in input order."""
        for details, values in zip(self._inputs, arrays):
            self._interpreter.set_tensor(details["index"], values)

    def invoke(self) -> None:
        """Run the model once on the input tensors as they stand (what a latency benchmark times).

        Raises:
            ModelFormatError: the runtime failed running it (a bad index among random inputs...).
        """
        try:
            self._interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            hint = (
                ": an input may need values edgecnn cannot guess without a sidecar (indices, lengths)"
                if self.info is None
                else ""
            )
            raise ModelFormatError(f"{self.path.name} failed while running ({first_line(exc)}){hint}") from None

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores for preprocessed images.

        Args:
            images: float32 array ``(N, H, W, C)`` from :func:`edgecnn.runtime.preprocess.load_image`.

        Returns:
            float32 array ``(N, classes)`` of dequantized scores.

        Raises:
            UsageError: the images do not have the model's input shape.
            ModelFormatError: the model has no sidecar (no labels, no preprocessing).
        """
        info = self.info if self.info is not None else read_tflite_info(self.path)  # raises the missing sidecar
        images = fitting_images(images, info.preprocessing, model=self.path.name)
        results = []
        start = 0
        while start < len(images):
            size = min(self._max_batch if self._batching else 1, len(images) - start)
            if not self._set_batch(size):
                size = 1
            results.append(self._invoke(images[start : start + size]))
            start += size
        if not results:
            return np.zeros((0, len(info.labels)), dtype=np.float32)
        return np.concatenate(results).reshape(len(images), -1)

    def close(self) -> None:
        """Release the interpreter."""
        self._interpreter = None
