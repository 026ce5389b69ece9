"""Shared fixtures: a photo-like image-folder dataset written by the suite, a small model trained on it, and the real
CIFAR-10 folders for the few tests (marked ``cifar10``) whose point needs real photos.

Most tests run on ``photos_train`` / ``photos_test``: scikit-learn's handwritten digits written once per session as
32x32 RGB JPEGs (tests/helpers.py ``write_photos``), so ``pytest`` needs no dataset beside the clone. CIFAR-10 is
read from ``$EDGECNN_CIFAR10``, else ``<repo>/../shared/datasets/cifar10``; a missing folder skips the ``cifar10``
tests, except under CI, where it fails them (CI always has the dataset). ``EDGECNN_CIFAR10`` set to a missing path
means "no dataset": ``../shared`` is not tried then.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import copy_subset, write_photos

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = ROOT.parent / "shared" / "datasets" / "cifar10"
CIFAR10_FIXTURES = {"cifar10", "cifar_train", "cifar_test"}
SMALL_CLASSES = ["one", "three", "zero"]
"""small_folder's classes: sorted by name they are not in digit order (label 0 is "one", label 2 is "zero")."""


def cifar10_root() -> Path:
    """Where CIFAR-10 is looked for: ``$EDGECNN_CIFAR10`` when set (even to a missing path), else ../shared."""
    configured = os.environ.get("EDGECNN_CIFAR10", "")
    return Path(configured) if configured else SHARED_CIFAR10


def cifar10_missing() -> str | None:
    """Why the CIFAR-10 folders cannot be used (one line naming both places they are looked for), or None."""
    root = cifar10_root()
    if (root / "train").is_dir() and (root / "test").is_dir():
        return None
    configured = os.environ.get("EDGECNN_CIFAR10", "")
    if configured:
        return (
            f"$EDGECNN_CIFAR10={configured} holds no CIFAR-10 image folders (train/, test/); {SHARED_CIFAR10} is "
            "not tried while it is set: point it at the dataset, or unset it"
        )
    return f"no CIFAR-10 image folders (train/, test/) at {SHARED_CIFAR10}: put them there or set $EDGECNN_CIFAR10"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that reads CIFAR-10 must say so with the ``cifar10`` marker (so ``-m "not cifar10"`` leaves it out)."""
    unmarked = [
        item.nodeid
        for item in items
        if CIFAR10_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("cifar10") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests using CIFAR-10 fixtures without @pytest.mark.cifar10: {', '.join(unmarked)}")


@pytest.fixture(autouse=True)
def _no_tflm_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Firmware is built only where a test asks for it (tests/targets/micro/test_firmware.py sets the variable back):
    a developer's ``$EDGECNN_TFLM_DIR`` would otherwise make every ``check --target micro --board`` link firmware."""
    monkeypatch.delenv("EDGECNN_TFLM_DIR", raising=False)


# --- the photo-like dataset every test uses ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits as photos: ``train/<word>/NNNN.jpg`` (139-146 per class), ``test/<word>/NNNN.jpg`` (35-37)."""
    root = tmp_path_factory.mktemp("photos")
    write_photos(root)
    return root


@pytest.fixture(scope="session")
def photos_train(photos: Path) -> Path:
    """The training folder (treat as read-only: copy before changing anything)."""
    return photos / "train"


@pytest.fixture(scope="session")
def photos_test(photos: Path) -> Path:
    """The test folder (treat as read-only: copy before changing anything)."""
    return photos / "test"


@pytest.fixture
def small_folder(tmp_path: Path, photos_test: Path) -> Path:
    """A writable copy of 3 classes x 4 test photos (``one``, ``three``, ``zero``), for tests that add bad files."""
    return copy_subset(photos_test, tmp_path / "data", per_class=4, classes=SMALL_CLASSES)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory, photos_train: Path) -> dict[str, Path]:
    """A small CNN trained on a fixed class-balanced subset of the photos (60 per class), converted three ways.

    Keys: ``keras``, ``int8`` (int8 I/O), ``float`` (no quantization), ``int8_float_io`` (int8 inside,
    float32 I/O), ``dir``. Built once per session; TensorFlow is imported only when a test asks for it.
    """
    from edgecnn.build.convert import convert
    from edgecnn.build.train import train

    out = tmp_path_factory.mktemp("models")
    keras_path = out / "model.keras"
    train(photos_train, keras_path, image_size=32, epochs=6, filters=8, limit_per_class=60, seed=0)
    built = {"keras": keras_path, "dir": out}
    for key, options in {
        "int8": {"quantize": "int8"},
        "int8_float_io": {"quantize": "int8", "io": "float32"},
        "float": {"quantize": "none"},
    }.items():
        convert(keras_path, out / f"{key}.tflite", calibration=photos_train, calibration_size=100, **options)
        built[key] = out / f"{key}.tflite"
    return built


# --- real CIFAR-10, only for tests marked cifar10 ---------------------------------------------------------------


@pytest.fixture(scope="session")
def cifar10() -> Path:
    """The CIFAR-10 folder (``train/`` and ``test/``, read-only); skips when it is missing, fails under CI."""
    from envs import in_ci

    reason = cifar10_missing()
    if reason is None:
        return cifar10_root()
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so a missing CIFAR-10 fails instead of skipping", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cifar_train(cifar10: Path) -> Path:
    """The real CIFAR-10 training folder (read-only)."""
    return cifar10 / "train"


@pytest.fixture(scope="session")
def cifar_test(cifar10: Path) -> Path:
    """The real CIFAR-10 test folder (read-only)."""
    return cifar10 / "test"


@pytest.fixture(scope="session")
def cifar_keras(tmp_path_factory: pytest.TempPathFactory, cifar_train: Path) -> Path:
    """The small CNN of ``models`` trained on a fixed class-balanced CIFAR-10 subset (60 per class)."""
    from edgecnn.build.train import train

    out = tmp_path_factory.mktemp("cifar_model") / "model.keras"
    train(cifar_train, out, image_size=32, epochs=6, filters=8, limit_per_class=60, seed=0)
    return out
