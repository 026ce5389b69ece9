"""The TFLite runner on test photos: batching, I/O quantization against the interpreter's own, runtimes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import MissingDependencyError, UsageError
from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.data import load_images, scan_folder
from edgecnn.runtime.interpreter import TFLiteRunner, runtime_module


@pytest.fixture(scope="module")
def test_images(models: dict[str, Path], photos_test: Path) -> np.ndarray:
    spec = read_tflite_info(models["int8"]).preprocessing
    return load_images(scan_folder(photos_test, limit_per_class=5).samples, spec).images


def test_batched_equals_one_at_a_time(models: dict[str, Path], test_images: np.ndarray) -> None:
    for reference_kernels in (False, True):
        batched = TFLiteRunner(models["int8"], max_batch=16, reference_kernels=reference_kernels)
        single = TFLiteRunner(models["int8"], max_batch=1, reference_kernels=reference_kernels)
        np.testing.assert_array_equal(batched.predict(test_images), single.predict(test_images))


def test_io_quantization_matches_the_interpreters_own(models: dict[str, Path], test_images: np.ndarray) -> None:
    """edgecnn's quantize/dequantize around an int8-I/O model equals TFLite's QUANTIZE/DEQUANTIZE ops.

    Both models hold the same int8 graph (same calibration); one has float32 I/O, so the interpreter itself
    quantizes the input and dequantizes the output. With the reference kernels the scores must be identical.
    """
    ours = TFLiteRunner(models["int8"], reference_kernels=True).predict(test_images)
    theirs = TFLiteRunner(models["int8_float_io"], reference_kernels=True).predict(test_images)
    np.testing.assert_array_equal(ours, theirs)


def test_outputs_are_dequantized_probabilities(models: dict[str, Path], test_images: np.ndarray) -> None:
    runner = TFLiteRunner(models["int8"])
    scores = runner.predict(test_images)
    assert scores.dtype == np.float32 and scores.shape == (len(test_images), 10)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=0.05)  # softmax, up to int8 steps of 1/256
    # Optimized kernels may differ from the reference ones by a few output steps, never more.
    reference = TFLiteRunner(models["int8"], reference_kernels=True).predict(test_images)
    assert np.max(np.abs(scores - reference)) <= 4 * runner.output_params.scale


def test_float_model_matches_keras(models: dict[str, Path], test_images: np.ndarray) -> None:
    from edgecnn.build.keras_model import KerasRunner

    keras_scores = KerasRunner(models["keras"]).predict(test_images)
    tflite_scores = TFLiteRunner(models["float"]).predict(test_images)
    np.testing.assert_allclose(tflite_scores, keras_scores, atol=1e-4)


def test_wrong_input_shape_is_refused(models: dict[str, Path]) -> None:
    runner = TFLiteRunner(models["int8"])
    with pytest.raises(UsageError, match=r"do not fit int8.tflite, which takes \(32, 32, 3\)"):
        runner.predict(np.zeros((2, 28, 28, 3), np.float32))


def test_runtime_choice_errors() -> None:
    with pytest.raises(UsageError, match="unknown runtime 'onnx'"):
        runtime_module("onnx")
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r"tflite-runtime is not installed.*pip install"):
            runtime_module("tflite-runtime")
