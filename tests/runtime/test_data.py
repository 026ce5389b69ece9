"""Unit tests for edgecnn.runtime.data: scanning image folders, loading, splitting and subsets."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import PHOTO_CLASSES

from edgecnn.errors import DatasetError
from edgecnn.runtime.data import Sample, balanced_subset, collect_images, load_images, scan_folder, split_samples
from edgecnn.runtime.preprocess import Preprocessing

SPEC = Preprocessing(32, 32, 3)


def truncated_copy(source: Path, dest: Path) -> Path:
    """Write the first half of a JPEG's bytes to ``dest``."""
    data = source.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def sample_list(per_class: int) -> list[Sample]:
    """``per_class`` samples of each of 10 classes, as a folder scan lists them (the files need not exist: splits and
    subsets only look at paths and labels)."""
    return [
        Sample(Path("/data") / name / f"{i:04d}.jpg", label)
        for label, name in enumerate(PHOTO_CLASSES)
        for i in range(per_class)
    ]


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    """10 samples of each of 10 classes (100 samples)."""
    return sample_list(10)


# --- scan_folder ------------------------------------------------------------------------------------------


def test_scan_limit_per_class(photos_test: Path) -> None:
    """Classes are the sorted folders; each gives its first N files in sorted order, labelled by position."""
    folder = scan_folder(photos_test, limit_per_class=5)
    assert folder.root == photos_test
    assert folder.classes == PHOTO_CLASSES
    assert folder.classes[:3] == ["eight", "five", "four"]  # by name, not by the digit each folder holds
    assert len(folder.samples) == 50
    assert folder.skipped == []
    for label, name in enumerate(PHOTO_CLASSES):
        expected = sorted((photos_test / name).iterdir())[:5]
        got = [s.path for s in folder.samples if s.label == label]
        assert got == expected
        assert all(p.parent.name == name for p in got)
    # grouped by class, in class order
    assert [s.label for s in folder.samples] == [i for i in range(10) for _ in range(5)]


def test_scan_labels_argument_maps_to_label_index(small_folder: Path) -> None:
    """With labels=, a folder's label is its index in that list and classes is the list itself."""
    labels = list(reversed(PHOTO_CLASSES))  # zero, two, three, six, seven, one, nine, four, five, eight
    folder = scan_folder(small_folder, labels=labels)
    assert folder.classes == labels
    by_folder = {s.path.parent.name: s.label for s in folder.samples}
    assert by_folder == {"one": 5, "three": 2, "zero": 0}
    assert len(folder.samples) == 12


def test_scan_labels_argument_unknown_folder(small_folder: Path) -> None:
    """A class folder missing from labels is a DatasetError naming that folder."""
    with pytest.raises(DatasetError) as info:
        scan_folder(small_folder, labels=["one", "three", "two"])
    assert str(small_folder / "zero") in str(info.value)


def test_scan_missing_folder(tmp_path: Path) -> None:
    """A path that does not exist is a DatasetError naming it."""
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=str(missing)):
        scan_folder(missing)


def test_scan_file_instead_of_folder(tmp_path: Path, photos_test: Path) -> None:
    """A file given as the root is a DatasetError naming it."""
    file = tmp_path / "one.jpg"
    shutil.copyfile(photos_test / "three" / "0000.jpg", file)
    with pytest.raises(DatasetError, match=str(file)):
        scan_folder(file)


def test_scan_empty_folder(tmp_path: Path) -> None:
    """A root without class folders (only loose files or hidden folders) is a DatasetError naming it."""
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DatasetError, match=str(root)):
        scan_folder(root)
    (root / ".git").mkdir()
    (root / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no class folders"):
        scan_folder(root)


def test_scan_class_folder_without_images(small_folder: Path) -> None:
    """A class folder holding no image files is a DatasetError naming that class folder."""
    two = small_folder / "two"
    two.mkdir()
    (two / "notes.txt").write_text("no pictures yet")
    with pytest.raises(DatasetError) as info:
        scan_folder(small_folder)
    assert str(two) in str(info.value)


def test_scan_limit_per_class_zero(small_folder: Path) -> None:
    """limit_per_class below 1 is a DatasetError."""
    with pytest.raises(DatasetError, match="0"):
        scan_folder(small_folder, limit_per_class=0)


def test_scan_lists_non_image_files_as_skipped(small_folder: Path) -> None:
    """A notes.txt among images is skipped with a reason; images are unaffected."""
    notes = small_folder / "three" / "notes.txt"
    notes.write_text("taken in 2009")
    folder = scan_folder(small_folder)
    assert len(folder.samples) == 12
    assert [s.path for s in folder.skipped] == [notes]
    assert "not an image" in folder.skipped[0].reason
    assert ".txt" in folder.skipped[0].reason
    assert folder.skipped[0].to_dict() == {"path": str(notes), "reason": folder.skipped[0].reason}


def test_scan_ignores_hidden_files(small_folder: Path, photos_test: Path) -> None:
    """Hidden files (.DS_Store, AppleDouble ._x.jpg) are neither samples nor skipped; hidden folders are not classes."""
    (small_folder / "three" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    shutil.copyfile(photos_test / "three" / "0000.jpg", small_folder / "three" / "._0000.jpg")
    (small_folder / ".cache").mkdir()
    shutil.copyfile(photos_test / "two" / "0000.jpg", small_folder / ".cache" / "0000.jpg")
    folder = scan_folder(small_folder)
    assert folder.classes == ["one", "three", "zero"]
    assert len(folder.samples) == 12
    assert folder.skipped == []
    assert not any(s.path.name.startswith(".") for s in folder.samples)


def test_scan_finds_images_in_subfolders_and_any_suffix_case(small_folder: Path, photos_test: Path) -> None:
    """Class folders are searched recursively and suffixes match case-insensitively."""
    sub = small_folder / "zero" / "more"
    sub.mkdir()
    shutil.copyfile(photos_test / "zero" / "0030.jpg", sub / "0030.JPG")
    folder = scan_folder(small_folder)
    zeros = [s.path for s in folder.samples if s.label == 2]  # "zero" sorts last of one, three, zero
    assert sub / "0030.JPG" in zeros
    assert len(zeros) == 5


# --- load_images ------------------------------------------------------------------------------------------


def test_load_images_shapes_and_labels(small_folder: Path) -> None:
    """All readable images load into one float32 batch with int64 labels and progress per image."""
    folder = scan_folder(small_folder)
    calls: list[int] = []
    loaded = load_images(folder.samples, SPEC, on_progress=calls.append)
    assert len(loaded) == 12
    assert loaded.images.shape == (12, 32, 32, 3)
    assert loaded.images.dtype == np.float32
    assert loaded.labels.dtype == np.int64
    assert loaded.labels.tolist() == [s.label for s in folder.samples]
    assert loaded.paths == [s.path for s in folder.samples]
    assert calls == [1] * 12
    assert loaded.skipped == []


def test_load_images_skips_truncated_jpeg(small_folder: Path) -> None:
    """A truncated JPEG is left out and reported as unreadable, after the scan's skipped files."""
    bad = truncated_copy(small_folder / "three" / "0000.jpg", small_folder / "three" / "9999.jpg")
    notes = small_folder / "three" / "notes.txt"
    notes.write_text("hello")
    folder = scan_folder(small_folder)
    assert len(folder.samples) == 13
    loaded = load_images(folder.samples, SPEC, skipped=folder.skipped)
    assert len(loaded) == 12
    assert bad not in loaded.paths
    assert [s.path for s in loaded.skipped] == [notes, bad]
    assert "unreadable" in loaded.skipped[1].reason
    assert loaded.images.shape[0] == loaded.labels.shape[0] == 12


def test_load_images_strict_truncated_jpeg(small_folder: Path) -> None:
    """strict=True turns an unreadable image into a DatasetError naming it."""
    bad = truncated_copy(small_folder / "zero" / "0000.jpg", small_folder / "zero" / "0000b.jpg")
    folder = scan_folder(small_folder)
    with pytest.raises(DatasetError) as info:
        load_images(folder.samples, SPEC, strict=True)
    assert str(bad) in str(info.value)


def test_load_images_strict_non_image_file(small_folder: Path) -> None:
    """strict=True with a non-image file found while scanning is a DatasetError naming it."""
    notes = small_folder / "one" / "notes.txt"
    notes.write_text("hello")
    folder = scan_folder(small_folder)
    with pytest.raises(DatasetError) as info:
        load_images(folder.samples, SPEC, strict=True, skipped=folder.skipped)
    assert str(notes) in str(info.value)


def test_load_images_nothing_readable(tmp_path: Path, photos_test: Path) -> None:
    """When no file at all decodes, load_images raises DatasetError even without strict."""
    for cls in ("three", "two"):
        (tmp_path / cls).mkdir()
        truncated_copy(photos_test / cls / "0000.jpg", tmp_path / cls / "0000.jpg")
    folder = scan_folder(tmp_path)
    with pytest.raises(DatasetError):
        load_images(folder.samples, SPEC)


# --- split_samples ----------------------------------------------------------------------------------------


def test_split_deterministic_and_seed_dependent(samples: list[Sample]) -> None:
    """The same seed gives the same split; another seed gives another."""
    a = split_samples(samples, validation_fraction=0.3, seed=1)
    b = split_samples(list(samples), validation_fraction=0.3, seed=1)
    c = split_samples(samples, validation_fraction=0.3, seed=2)
    assert a == b
    assert set(a[1]) != set(c[1])


@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.5])
def test_split_stratified_disjoint_complete(samples: list[Sample], fraction: float) -> None:
    """Each class gives round(n * fraction) to validation; the two parts are disjoint and cover everything."""
    train, val = split_samples(samples, validation_fraction=fraction, seed=0)
    counts = Counter(s.label for s in val)
    n = 10
    assert counts == {label: round(n * fraction) for label in range(10)}
    assert not set(train) & set(val)
    assert sorted(train + val, key=lambda s: s.path) == sorted(samples, key=lambda s: s.path)
    assert len(train) + len(val) == len(samples)


def test_split_uneven_classes_and_minimum_one() -> None:
    """Classes of different sizes are split per class; a small positive fraction still gives one."""
    seven = sample_list(7)
    uneven = [s for s in seven if s.label != 3] + [s for s in seven if s.label == 3][:3]
    _, val = split_samples(uneven, validation_fraction=0.3, seed=0)
    counts = Counter(s.label for s in val)
    assert counts[3] == 1  # round(0.9)
    assert all(counts[label] == 2 for label in range(10) if label != 3)  # round(2.1)
    _, val_small = split_samples(uneven, validation_fraction=0.05, seed=0)
    assert Counter(s.label for s in val_small) == {label: 1 for label in range(10)}


def test_split_zero_fraction_and_invalid(samples: list[Sample]) -> None:
    """Fraction 0 puts everything in training; fractions outside [0, 1) are rejected."""
    train, val = split_samples(samples, validation_fraction=0.0, seed=0)
    assert val == [] and len(train) == 100
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(DatasetError):
            split_samples(samples, validation_fraction=bad, seed=0)


# --- balanced_subset --------------------------------------------------------------------------------------


def test_balanced_subset_equal_counts(samples: list[Sample]) -> None:
    """20 samples from 10 classes gives 2 of each, all distinct."""
    subset = balanced_subset(samples, 20, seed=0)
    assert len(subset) == 20
    assert len(set(subset)) == 20
    assert Counter(s.label for s in subset) == {label: 2 for label in range(10)}
    assert set(subset) <= set(samples)


def test_balanced_subset_uneven_size(samples: list[Sample]) -> None:
    """A size that does not divide evenly still keeps counts within one of each other."""
    counts = Counter(s.label for s in balanced_subset(samples, 25, seed=3))
    assert sum(counts.values()) == 25
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len(counts) == 10


def test_balanced_subset_seeded(samples: list[Sample]) -> None:
    """Same seed, same subset; another seed, another subset."""
    a = balanced_subset(samples, 20, seed=5)
    assert a == balanced_subset(samples, 20, seed=5)
    assert set(a) != set(balanced_subset(samples, 20, seed=6))


def test_balanced_subset_returns_all_when_size_exceeds(samples: list[Sample]) -> None:
    """Asking for more than there are returns every sample once."""
    subset = balanced_subset(samples, 1000, seed=0)
    assert len(subset) == len(samples)
    assert set(subset) == set(samples)


def test_balanced_subset_with_a_small_class(samples: list[Sample]) -> None:
    """A class with fewer samples gives all it has; the others fill the rest evenly."""
    uneven = [s for s in samples if s.label != 0] + [s for s in samples if s.label == 0][:1]
    counts = Counter(s.label for s in balanced_subset(uneven, 28, seed=0))
    assert counts[0] == 1
    assert sum(counts.values()) == 28
    assert all(counts[label] == 3 for label in range(1, 10))


# --- collect_images ---------------------------------------------------------------------------------------


def test_collect_images_recursive_sorted(tmp_path: Path, photos_test: Path) -> None:
    """Folders expand recursively in sorted order; non-image files are skipped; hidden files ignored."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copyfile(photos_test / "three" / "0001.jpg", root / "top.jpg")
    shutil.copyfile(photos_test / "three" / "0002.jpg", root / "sub" / "b.jpg")
    shutil.copyfile(photos_test / "three" / "0003.jpg", root / "sub" / "a.jpeg")
    shutil.copyfile(photos_test / "three" / "0004.jpg", root / "a.png")  # suffix decides listing, not content
    shutil.copyfile(photos_test / "three" / "0005.jpg", root / ".hidden.jpg")
    (root / "notes.txt").write_text("x")
    (root / "sub" / "README").write_text("x")
    images, skipped = collect_images([root])
    assert images == [root / "a.png", root / "sub" / "a.jpeg", root / "sub" / "b.jpg", root / "top.jpg"]
    assert sorted(s.path for s in skipped) == [root / "notes.txt", root / "sub" / "README"]
    readme = next(s for s in skipped if s.path.name == "README")
    assert "no extension" in readme.reason


def test_collect_images_explicit_file_kept_whatever_suffix(tmp_path: Path, photos_test: Path) -> None:
    """A file named directly is kept (in argument order) even without an image suffix."""
    odd = tmp_path / "photo.dat"
    shutil.copyfile(photos_test / "two" / "0000.jpg", odd)
    jpg = photos_test / "two" / "0001.jpg"
    images, skipped = collect_images([jpg, odd])
    assert images == [jpg, odd]
    assert skipped == []


def test_collect_images_missing_path(tmp_path: Path, photos_test: Path) -> None:
    """A path that does not exist is a DatasetError naming it."""
    missing = tmp_path / "gone.jpg"
    with pytest.raises(DatasetError, match=str(missing)):
        collect_images([photos_test / "two" / "0000.jpg", missing])


def test_collect_images_nothing_found(tmp_path: Path) -> None:
    """A folder with no image files is a DatasetError."""
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError):
        collect_images([tmp_path])
