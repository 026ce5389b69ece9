"""Training-time augmentation: flips and shifts on real images, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.build.augment import augment_batch, parse_augment
from edgecnn.errors import UsageError
from edgecnn.runtime.data import load_images, scan_folder
from edgecnn.runtime.preprocess import Preprocessing


@pytest.fixture(scope="module")
def batch(cifar_test: Path) -> np.ndarray:
    return load_images(scan_folder(cifar_test, limit_per_class=2).samples, Preprocessing(32, 32, 3)).images


def test_flip_mirrors_about_half(batch: np.ndarray) -> None:
    out = augment_batch(batch, np.random.default_rng(0), flip=True, shift=0)
    mirrored = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch)]
    unchanged = [np.array_equal(o, b) for o, b in zip(out, batch)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 3 <= sum(mirrored) <= 17


def test_shift_crops_a_window_of_the_reflected_image(batch: np.ndarray) -> None:
    out = augment_batch(batch, np.random.default_rng(1), flip=False, shift=4)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    padded = np.pad(batch, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    for o, p in zip(out, padded):
        offsets = [(y, x) for y in range(9) for x in range(9) if np.array_equal(p[y : y + 32, x : x + 32], o)]
        assert offsets, "output is not a shifted window of its input"
    assert not np.array_equal(out, batch)


def test_seeded_and_input_untouched(batch: np.ndarray) -> None:
    before = batch.copy()
    a = augment_batch(batch, np.random.default_rng([3, 1, 2]), flip=True, shift=4)
    b = augment_batch(batch, np.random.default_rng([3, 1, 2]), flip=True, shift=4)
    c = augment_batch(batch, np.random.default_rng([3, 1, 3]), flip=True, shift=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(batch, before)


def test_parse_augment() -> None:
    assert parse_augment("none", 32) == (False, 0)
    assert parse_augment("flip-shift", 32) == (True, 4)
    assert parse_augment("shift", 8) == (False, 1)
    with pytest.raises(UsageError, match="unknown --augment 'rotate'"):
        parse_augment("rotate", 32)
