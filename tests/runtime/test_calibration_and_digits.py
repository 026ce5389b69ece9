"""Unlabelled image folders (calibration) and the embedded digits dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.errors import DatasetError
from edgecnn.runtime.data import balanced_subset, scan_folder, scan_images, write_digits


def test_scan_images_groups_by_top_level_folder(small_folder: Path) -> None:
    folder = scan_images(small_folder)
    assert folder.classes == ["one", "three", "zero"] and len(folder.samples) == 12
    assert sorted({s.label for s in balanced_subset(folder.samples, 6, seed=0)}) == [0, 1, 2]


def test_scan_images_takes_a_flat_folder_and_counts_non_images(small_folder: Path) -> None:
    flat = small_folder / "three"
    (flat / "notes.txt").write_text("not an image")
    folder = scan_images(flat)
    assert folder.classes == [""] and len(folder.samples) == 4 and {s.label for s in folder.samples} == {0}
    assert [s.path.name for s in folder.skipped] == ["notes.txt"]


def test_scan_images_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files found"):
        scan_images(tmp_path / "empty")


def test_digits_are_real_images_split_per_class(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    train, test = write_digits(tmp_path / "digits", seed=0)
    train_folder, test_folder = scan_folder(train), scan_folder(test)
    assert train_folder.classes == [str(d) for d in range(10)]
    assert len(train_folder.samples) + len(test_folder.samples) == 1797
    assert 355 <= len(test_folder.samples) <= 362  # 20% of each class
    names = {s.path.name for s in train_folder.samples}
    assert names.isdisjoint(s.path.name for s in test_folder.samples)
    sample = test_folder.samples[0]
    pixels = np.asarray(Image.open(sample.path))
    digits = load_digits()
    index = int(sample.path.stem)
    assert digits.target[index] == int(sample.path.parent.name)
    np.testing.assert_array_equal(pixels, np.rint(digits.images[index] * 255 / 16).astype(np.uint8))


def test_digits_rewritten_with_another_seed_never_overlap(tmp_path: Path) -> None:
    write_digits(tmp_path, seed=0)
    train, test = write_digits(tmp_path, seed=1)
    train_names = {s.path.name for s in scan_folder(train).samples}
    test_names = {s.path.name for s in scan_folder(test).samples}
    assert train_names.isdisjoint(test_names) and len(train_names | test_names) == 1797
