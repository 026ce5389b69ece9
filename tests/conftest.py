"""Shared fixtures: the real CIFAR-10 image folders and small models trained on fixed subsets of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import copy_subset

ROOT = Path(__file__).resolve().parents[1]
CIFAR10 = Path(os.environ.get("EDGECNN_CIFAR10", ROOT.parent / "shared" / "datasets" / "cifar10"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not CIFAR10.is_dir():
        raise pytest.UsageError(f"CIFAR-10 image folders not found at {CIFAR10}: set EDGECNN_CIFAR10")


@pytest.fixture(scope="session")
def cifar_train() -> Path:
    """The real CIFAR-10 training folder (read-only)."""
    return CIFAR10 / "train"


@pytest.fixture(scope="session")
def cifar_test() -> Path:
    """The real CIFAR-10 test folder (read-only)."""
    return CIFAR10 / "test"


@pytest.fixture
def small_folder(tmp_path: Path, cifar_test: Path) -> Path:
    """A writable copy of 3 classes x 4 real CIFAR-10 test images, for tests that add bad files."""
    return copy_subset(cifar_test, tmp_path / "data", per_class=4, classes=["airplane", "cat", "ship"])


@pytest.fixture(scope="session")
def cifar_models(tmp_path_factory: pytest.TempPathFactory, cifar_train: Path) -> dict[str, Path]:
    """A small CNN trained on a fixed class-balanced CIFAR-10 subset (60 per class), converted three ways.

    Keys: ``keras``, ``int8`` (int8 I/O), ``float`` (no quantization), ``int8_float_io`` (int8 inside,
    float32 I/O), ``dir``. Built once per session; TensorFlow is imported only when a test asks for it.
    """
    from edgecnn.build.convert import convert
    from edgecnn.build.train import train

    out = tmp_path_factory.mktemp("cifar_models")
    keras_path = out / "model.keras"
    train(cifar_train, keras_path, image_size=32, epochs=6, filters=8, limit_per_class=60, seed=0)
    models = {"keras": keras_path, "dir": out}
    for key, options in {
        "int8": {"quantize": "int8"},
        "int8_float_io": {"quantize": "int8", "io": "float32"},
        "float": {"quantize": "none"},
    }.items():
        convert(keras_path, out / f"{key}.tflite", calibration=cifar_train, calibration_size=100, **options)
        models[key] = out / f"{key}.tflite"
    return models
