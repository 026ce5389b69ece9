"""Keras pieces shared by training and conversion: importing TensorFlow, the network, loading (edgecnn's own
models and models from elsewhere: ``.keras``, ``.h5``, SavedModel), running."""

from __future__ import annotations

import json
import math
import os
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import MissingDependencyError, ModelFormatError, UsageError
from edgecnn.runtime.bundle import ModelInfo, check_model_file, read_keras_info
from edgecnn.runtime.files import captured_native_stderr
from edgecnn.runtime.preprocess import fitting_images


def import_keras() -> tuple[Any, Any]:
    """Import TensorFlow and Keras quietly, or say which extra brings them.

    Returns:
        The ``tensorflow`` and ``keras`` modules.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ INFO/WARNING lines out
    try:
        # The full ``tensorflow`` wheel (the qat extra pulls it in beside tensorflow-cpu) probes for CUDA when it
        # loads and when it first lists devices, and says so on the C-level stderr whatever TF_CPP_MIN_LOG_LEVEL
        # is: do both here, with that stream captured (it is replayed only if the import fails).
        with captured_native_stderr(on_error=sys.stderr.write):
            import keras
            import tensorflow as tf

            tf.config.list_physical_devices()
    except ImportError:
        raise MissingDependencyError(
            "tensorflow", extra="train", purpose="train, convert or run .keras models"
        ) from None
    return tf, keras


def count_blocks(image_size: int) -> int:
    """Number of conv-conv-pool blocks: halve the image while at least 2 pixels remain, at most 3 times."""
    return max(1, min(3, int(math.log2(max(image_size, 2))) - 1))


def build_model(input_shape: tuple[int, int, int], num_classes: int, *, filters: int = 32, dropout: float = 0.2) -> Any:
    """The classic image classifier: (conv → ReLU → conv → ReLU → max pool) × blocks, then a dense softmax.

    Each convolution is followed by batch normalization (it trains faster and more reliably on small data, and
    TFLite folds it into the convolution, so the exported graph is plain CONV_2D → ReLU).
    A global-average-pooling head (rather than Flatten) keeps the parameter count small and lets a
    batch-1 TFLite model be resized to any batch. Every layer is named explicitly, because TFLite's bytes
    depend on layer names and Keras's automatic names change between sessions.

    Args:
        input_shape: (height, width, channels).
        num_classes: number of output classes.
        filters: filters in the first block; each further block doubles them.
        dropout: dropout rate before the classifier.
    """
    _, keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for block in range(1, count_blocks(min(input_shape[:2])) + 1):
        width = filters * 2 ** (block - 1)
        for conv in (1, 2):
            # No bias: the batch normalization that follows has its own shift, and folds into the conv on export.
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="edgecnn_cnn")


def build_resnet8(input_shape: tuple[int, int, int], num_classes: int, *, filters: int = 16) -> Any:
    """MLPerf Tiny's image-classification network (ResNet-8): a stem convolution, then three residual stacks.

    Stack ``k`` has ``filters * 2**k`` filters; the second and third halve the image (a strided 3x3 convolution,
    with a strided 1x1 convolution on the shortcut so the sum's shapes match, written as a subsampling 1x1 max pool
    and a 1x1 convolution). Each stack is conv → BN → ReLU →
    conv → BN, added to its shortcut, then ReLU. With 16 filters on 32x32x3 images and 10 classes it has 78k
    weights (about 80 KB in int8). In TFLite the batch normalizations fold into the convolutions and each sum
    is one ADD, which TFLite Micro, the Edge TPU and every CPU runtime run.

    Args:
        input_shape: (height, width, channels).
        num_classes: number of output classes.
        filters: filters of the stem and the first stack.
    """
    _, keras = import_keras()
    layers = keras.layers

    def conv_bn(x: Any, width: int, name: str, *, stride: int = 1, size: int = 3) -> Any:
        x = layers.Conv2D(width, size, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        return layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.ReLU(name="stem_relu")(conv_bn(inputs, filters, "stem"))
    for stack in range(3):
        width, stride = filters * 2**stack, 1 if stack == 0 else 2
        name = f"stack{stack + 1}"
        y = layers.ReLU(name=f"{name}_relu1")(conv_bn(x, width, f"{name}_a", stride=stride))
        y = conv_bn(y, width, f"{name}_b")
        # The shortcut's strided 1x1 convolution, written as a 1x1 max pool with that stride (which keeps every
        # other pixel, as the convolution's stride does) followed by a 1x1 convolution: the same function, but
        # TensorFlow 2.21's oneDNN CPU kernels abort the process when they train a strided 1x1 convolution over
        # fewer than 16 channels on a batch of odd size (--filters 8 and an odd last batch).
        shortcut = (
            x
            if stride == 1
            else conv_bn(
                layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x), width, f"{name}_shortcut", size=1
            )
        )
        x = layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="edgecnn_resnet8")


def _reason(exc: BaseException) -> str:
    """An exception's first line (or its type), for a one-line error message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_keras_file(model_file: Path, *, trust: bool = False) -> Any:
    """``keras.models.load_model`` with safe mode on (off with ``trust``), every failure as one ModelFormatError
    line."""
    _, keras = import_keras()
    try:
        return keras.models.load_model(model_file, safe_mode=not trust, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad archive; all mean the same here
        raise ModelFormatError(f"{model_file} is not a loadable Keras model ({_reason(exc)})") from None


def load_keras_model(model_path: str | os.PathLike[str], *, trust: bool = False) -> tuple[Any, ModelInfo]:
    """Load a ``.keras`` model written by ``edgecnn train`` with Keras's safe mode on (off with ``trust``: for a
    file you trust, whose Python code may then run).

    Raises:
        ModelFormatError: not a Keras model, no edgecnn metadata, or input not matching the metadata.
    """
    model_file = check_model_file(model_path, suffixes=(".keras",))
    info = read_keras_info(model_file)
    model = _load_keras_file(model_file, trust=trust)
    shape = tuple(model.input_shape[1:])
    if shape != info.preprocessing.shape:
        raise ModelFormatError(
            f"{model_file.name} takes inputs {shape} but its metadata says {info.preprocessing.shape}: retrain it"
        )
    return model, info


KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
"""Keras model files: Keras 3's ``.keras`` archive and the legacy HDF5 format."""

MAX_CONFIG_BYTES = 64 * 1024 * 1024
"""A Keras model configuration (JSON) larger than this is not read: the largest real ones are a few MB."""

_CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
"""Layers whose configuration can carry Python code (or name a Python function) to run when the model loads."""


def load_outside_keras(model_path: str | os.PathLike[str], *, trust: bool = False) -> Any:
    """Load a model trained elsewhere: a Keras 3 ``.keras``, a legacy ``.h5``, or a TensorFlow SavedModel folder.

    Nothing in the file is run as Python: Keras's safe mode stays on, and a model with a ``Lambda`` layer is refused
    before Keras reads it (safe mode refuses only lambdas, not a ``Lambda`` that names a function). A SavedModel is
    loaded with ``tf.saved_model.load`` (its graph, no Python objects) as a :class:`SavedModelFunction`.

    With ``trust`` (``--trust-model``, for a file you trust) safe mode is off and ``Lambda`` layers load: their
    Python code runs. Nothing is ever unpickled either way.

    Returns:
        A Keras model, or a :class:`SavedModelFunction` (which has ``inputs``, ``outputs`` and is called the same way).

    Raises:
        ModelFormatError: missing, not a Keras model or SavedModel, unloadable, or holding Python code.
        UsageError: a SavedModel whose input edgecnn cannot feed (several inputs, unknown image size, a batch of N).
    """
    path = Path(model_path)
    if path.is_dir():
        return SavedModelFunction(path)
    model_file = check_model_file(path, suffixes=KERAS_SUFFIXES)
    if not trust:
        _refuse_code_layers(model_file, _keras_config(model_file))
    return _load_keras_file(model_file, trust=trust)


def _keras_config(model_file: Path) -> Any:
    """The model configuration stored in a ``.keras`` archive (``config.json``) or an HDF5 file (``model_config``)."""
    if model_file.suffix.lower() == ".keras":
        try:
            with zipfile.ZipFile(model_file) as archive:
                entry = archive.getinfo("config.json")
                if entry.file_size > MAX_CONFIG_BYTES:
                    raise ModelFormatError(f"{model_file}'s config.json is {entry.file_size} bytes: not a Keras model")
                text = archive.read(entry)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError, zlib.error) as exc:
            raise ModelFormatError(f"{model_file} is not a loadable Keras model ({_reason(exc)})") from None
    else:
        try:
            import h5py

            with h5py.File(model_file, "r") as h5:
                text = h5.attrs.get("model_config")
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, ValueError, KeyError... for a damaged file
            raise ModelFormatError(f"{model_file} is not a loadable Keras model (HDF5: {_reason(exc)})") from None
        if text is None:
            raise ModelFormatError(
                f"{model_file} holds weights only (no model_config): save the whole model with model.save()"
            )
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{model_file} has no readable model configuration ({_reason(exc)})") from None


def _refuse_code_layers(model_file: Path, config: Any) -> None:
    """Refuse a configuration that holds a layer which would run Python code from the file."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") in _CODE_LAYERS:
                name = item.get("config", {}).get("name", "") if isinstance(item.get("config"), dict) else ""
                raise ModelFormatError(
                    f"{model_file.name} has a {item['class_name']} layer {name!r}, whose Python code would run when "
                    "it loads: refused; if you trust the file, add --trust-model (or rebuild it with built-in "
                    "layers, or export it as a SavedModel)"
                )
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@dataclass(frozen=True)
class SignatureTensor:
    """One input or output of a SavedModel signature: its name and shape (None where unknown), as Keras shows them."""

    name: str
    shape: tuple[int | None, ...]


class SavedModelFunction:
    """A TensorFlow SavedModel's serving signature, called like a Keras model on a batch of float images.

    Attributes:
        path: the SavedModel folder.
        signature_key: the signature used (``serving_default``, or the only one).
        inputs / outputs: the signature's tensors (name and shape), as a Keras model's ``inputs``/``outputs``.
    """

    def __init__(self, folder: Path) -> None:
        if not (folder / "saved_model.pb").is_file() and not (folder / "saved_model.pbtxt").is_file():
            raise ModelFormatError(f"{folder} is a folder but not a SavedModel (no saved_model.pb): check the path")
        tf, _ = import_keras()
        self.path = folder
        try:
            with captured_native_stderr():
                # Only the graph and its variables: tf.saved_model.load revives no Python objects from the folder.
                self._loaded = tf.saved_model.load(str(folder))
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types for a damaged SavedModel
            raise ModelFormatError(f"{folder} is not a loadable SavedModel ({_reason(exc)})") from None
        signatures = dict(self._loaded.signatures)
        if not signatures:
            raise ModelFormatError(f"{folder.name} has no signature: export it with a serving signature")
        if "serving_default" in signatures or len(signatures) == 1:
            self.signature_key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        else:
            raise UsageError(
                f"{folder.name} has signatures {', '.join(sorted(signatures))} and none is serving_default: "
                "export it with one serving signature"
            )
        self._function = signatures[self.signature_key]
        _, specs = self._function.structured_input_signature
        if len(specs) != 1:
            raise UsageError(
                f"{folder.name} takes {len(specs)} inputs ({', '.join(sorted(specs))}): edgecnn classifies with one "
                "image input"
            )
        ((self._input_name, self._input_spec),) = specs.items()
        shape = self._input_spec.shape
        if shape.rank is None:
            raise UsageError(f"{folder.name}'s input has an unknown rank: export it with a fixed input shape")
        dims = tuple(shape.as_list())
        if self._input_spec.dtype != tf.float32:
            raise UsageError(
                f"{folder.name} takes {self._input_spec.dtype.name} input: edgecnn converts models that take float32 "
                "images"
            )
        if any(d is None for d in dims[1:]):
            raise UsageError(
                f"{folder.name} takes inputs of shape {list(dims)} (None: any size): export it with a fixed image size"
            )
        if dims and dims[0] not in (None, 1):
            raise UsageError(
                f"{folder.name} takes batches of exactly {dims[0]}: export it with a batch dimension of None or 1"
            )
        self.inputs = [SignatureTensor(self._input_name, dims)]
        self.outputs = [
            SignatureTensor(name, tuple(spec.shape.as_list()) if spec.shape.rank is not None else ())
            for name, spec in sorted(self._function.structured_outputs.items())
        ]

    @property
    def name(self) -> str:
        """The folder's name."""
        return self.path.name

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The input's shape, batch first, as Keras's ``model.input_shape``."""
        return self.inputs[0].shape

    def __call__(self, images: np.ndarray, training: bool = False) -> Any:
        """The scores for a batch of images (a dict of outputs for a signature with several)."""
        tf, _ = import_keras()
        outputs = self._function(**{self._input_name: tf.constant(images, dtype=tf.float32)})
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs

    def batch1_function(self) -> Any:
        """The signature as a concrete function of one image (batch 1): no dynamic-shape ops once converted."""
        tf, _ = import_keras()
        spec = tf.TensorSpec([1, *self.input_shape[1:]], tf.float32, name=self._input_name)
        function = self._function
        name = self._input_name

        @tf.function(input_signature=[spec])
        def one_image(image: Any) -> Any:
            return function(**{name: image})

        return one_image.get_concrete_function()

    def tflite_converter(self, tf: Any) -> Any:
        """A TFLiteConverter for the batch-1 function.

        The loaded SavedModel goes with it: without that object the converter cannot freeze the variables, and the
        model it writes reads uninitialised ones (it outputs NaN); ``from_saved_model`` keeps the dynamic batch.
        """
        return tf.lite.TFLiteConverter.from_concrete_functions([self.batch1_function()], self._loaded)


class KerasRunner:
    """Runs a Keras model (or a SavedModel) on preprocessed float images: the float reference for validation.

    Args:
        model_path: a ``.keras`` from ``edgecnn train`` (its metadata describes it), or with ``info`` any model
            :func:`load_outside_keras` loads.
        info: labels and preprocessing of a model from elsewhere (from options, or from the candidate's sidecar).
        model: the model, already loaded (None: load it from ``model_path``).
        batch_size: images per call.
        trust: load it with Keras's safe mode off (``--trust-model``: its Python code may run).

    Raises:
        ModelFormatError: the model cannot be loaded, or takes other inputs than ``info`` describes.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        info: ModelInfo | None = None,
        model: Any = None,
        batch_size: int = 256,
        trust: bool = False,
    ) -> None:
        self.path = Path(model_path)
        if info is None:
            self.model, self.info = load_keras_model(self.path, trust=trust)
        else:
            self.model = model if model is not None else load_outside_keras(self.path, trust=trust)
            self.info = info
            shape = tuple(self.model.input_shape[1:])
            if shape != info.preprocessing.shape:
                raise ModelFormatError(
                    f"{self.path.name} takes inputs {shape}, not {info.preprocessing.shape} as its description says "
                    "(check --layout)"
                )
        self._batch_size = batch_size
        self._forward: Any = None  # the model's call as one TensorFlow graph, traced on first use

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` for float images (``(N, H, W, C)``, or ``(N, C, H, W)`` for an NCHW model)."""
        images = fitting_images(images, self.info.preprocessing, model=self.path.name)
        chunks = [
            np.asarray(self._call(images[i : i + self._batch_size]), dtype=np.float32).reshape(
                min(self._batch_size, len(images) - i), -1
            )
            for i in range(0, len(images), self._batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.info.labels)), np.float32)

    def _call(self, images: np.ndarray) -> Any:
        """The model on one batch, in inference mode.

        Called eagerly, a Keras model runs layer by layer from Python: 92 ms for 256 CIFAR-10 images with the
        cifar10 preset's ResNet-8 here, against 49 ms as one graph (``tools/bench``). The graph is traced once,
        for any batch size; a model that cannot be traced (a layer from elsewhere) runs eagerly, as before.
        """
        if self._forward is None:
            tf, _ = import_keras()
            model = self.model

            def forward(batch: Any) -> Any:
                return model(batch, training=False)

            spec = tf.TensorSpec((None, *images.shape[1:]), tf.float32)
            graph = tf.function(forward, input_signature=[spec], autograph=False)
            try:
                graph.get_concrete_function()
            except Exception:  # noqa: BLE001 - any tracing failure: the eager call below gives the real error, if any
                self._forward = forward
            else:
                self._forward = graph
        return self._forward(images)

    def close(self) -> None:
        """Drop the model."""
        self.model = None
