"""The suite's own dataset (conftest ``photos``): what the other tests rely on it being."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from helpers import DIGIT_NAMES, PHOTO_CLASSES, write_photos
from PIL import Image


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


def test_photos_are_colour_jpegs_in_word_named_class_folders(photos: Path) -> None:
    for split, low, high in (("train", 139, 146), ("test", 35, 37)):
        folders = sorted(p for p in (photos / split).iterdir())
        assert [p.name for p in folders] == PHOTO_CLASSES != list(DIGIT_NAMES)  # by name, not in digit order
        counts = [len(list(p.iterdir())) for p in folders]
        assert all(low <= n <= high for n in counts), counts
        assert [p.name for p in sorted(folders[0].iterdir())][:2] == ["0000.jpg", "0001.jpg"]
    assert len(list(photos.rglob("*.jpg"))) == 1797
    with Image.open(photos / "test" / "three" / "0000.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))
        pixels = np.asarray(image, dtype=np.float64)
    assert pixels.std() > 20  # a digit on a background, not a flat image
    # Each photo has its own colours, so the three channels differ (a channel-order bug changes the input).
    assert min(np.abs(pixels[..., a] - pixels[..., b]).mean() for a, b in ((0, 1), (1, 2), (0, 2))) > 3


def test_photos_are_written_the_same_every_time(photos: Path, tmp_path: Path) -> None:
    write_photos(tmp_path)
    assert _digests(tmp_path) == _digests(photos)
