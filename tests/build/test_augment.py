"""Training-time augmentation: flips and shifts, seeded (pure functions: no dataset needed)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.build.augment import augment_batch, parse_augment
from edgecnn.errors import UsageError


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """20 seeded 32x32 RGB images in [0, 1] with no symmetry, so a flip or a shift always changes them."""
    return np.random.default_rng(0).uniform(0.0, 1.0, (20, 32, 32, 3)).astype(np.float32)


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
