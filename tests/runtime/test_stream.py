"""Validation streams its images (issue 14): a batch is decoded, scored by both models and dropped, so memory holds
one batch whatever the folder's size; the time spent decoding, preprocessing and in each model is reported."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

from edgecnn.errors import DatasetError
from edgecnn.runtime.data import ImageStream, Sample, load_images, scan_folder, stream_labelled
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.runners import score_stream

SPEC = Preprocessing(32, 32, 3)


def _noise_folder(root: Path, *, classes: int, per_class: int) -> Path:
    """``root/c<k>/NNN.png``: seeded random 32x32 RGB images (PNG, so decoding is exact)."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"c{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 random images in 3 classes: 300 x 32 x 32 x 3 float32 = 3.7 MB when all held at once."""
    return _noise_folder(tmp_path_factory.mktemp("noise"), classes=3, per_class=100)


def test_the_stream_gives_what_loading_everything_gives_in_batches(noise: Path) -> None:
    folder = scan_folder(noise)
    everything = load_images(folder.samples, SPEC)
    stream = ImageStream(folder.samples, SPEC, batch_size=64)
    batches = list(stream)
    assert [len(images) for images, _ in batches] == [64, 64, 64, 64, 44]
    np.testing.assert_array_equal(np.concatenate([images for images, _ in batches]), everything.images)
    np.testing.assert_array_equal(np.concatenate([labels for _, labels in batches]), everything.labels)
    np.testing.assert_array_equal(stream.labels, everything.labels)
    assert stream.paths == everything.paths and len(stream) == 300
    assert stream.seconds["decode"] > 0 and stream.seconds["preprocess"] > 0


def test_memory_holds_one_batch_not_the_folder(noise: Path) -> None:
    stream = stream_labelled(noise, ["c0", "c1", "c2"], SPEC, batch_size=16)
    tracemalloc.start()
    try:
        total = sum(len(images) for images, _ in stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held_at_once = total * 32 * 32 * 3 * 4
    assert total == 300
    # 16 images are 197 kB; loading the folder at once would hold 3.7 MB (twice, while stacking).
    assert peak < held_at_once / 4, f"peak {peak:,} B while streaming {held_at_once:,} B of images"


def test_unreadable_files_are_skipped_and_counted_then_not_read_again(noise: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(noise, data)
    (data / "c1" / "050.png").write_bytes(b"not an image")
    stream = stream_labelled(data, ["c0", "c1", "c2"], SPEC, batch_size=32)
    first = np.concatenate([images for images, _ in stream])
    assert len(first) == 299 == len(stream) and [s.path.name for s in stream.skipped] == ["050.png"]
    second = np.concatenate([images for images, _ in stream])  # validation's stages read the same files again
    np.testing.assert_array_equal(first, second)
    assert len(stream.skipped) == 1


def test_a_file_that_breaks_between_passes_is_an_error_not_a_shifted_label(noise: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(noise, data)
    stream = stream_labelled(data, ["c0", "c1", "c2"], SPEC)
    list(stream)
    (data / "c2" / "010.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"010\.png was read a moment ago and now cannot be"):
        list(stream)


def test_strict_stops_at_the_first_unreadable_file(noise: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    samples = [Sample(next((noise / "c0").iterdir()), 0), Sample(bad, 1)]
    with pytest.raises(DatasetError, match=r"bad\.png is not a readable image"):
        list(ImageStream(samples, SPEC, strict=True))


def test_a_folder_of_unreadable_files_is_an_error(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"nothing")
    samples = [Sample(path, 0) for path in sorted(tmp_path.iterdir())]
    with pytest.raises(DatasetError, match="none of the 3 image files could be read"):
        list(ImageStream(samples, SPEC))


class _Scaled:
    """A model stand-in for scoring arithmetic only: its scores are the mean of each image's channels."""

    def __init__(self, labels: list[str]) -> None:
        self.info = SimpleNamespace(labels=labels, preprocessing=SPEC)
        self.calls: list[int] = []

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        return images.mean(axis=(1, 2))

    def close(self) -> None:
        pass


def test_score_stream_gives_every_runner_every_batch_once(noise: Path) -> None:
    first, second = _Scaled(["a", "b", "c"]), _Scaled(["a", "b", "c"])
    seconds: dict[str, float] = {}
    stream = stream_labelled(noise, ["c0", "c1", "c2"], SPEC, batch_size=100)
    scores = score_stream({"first": first, "second": second}, stream, seconds=seconds)
    expected = load_images(scan_folder(noise).samples, SPEC).images.mean(axis=(1, 2))
    np.testing.assert_allclose(scores["first"], expected, rtol=1e-6)
    np.testing.assert_array_equal(scores["first"], scores["second"])
    assert first.calls == second.calls == [100, 100, 100]
    assert set(seconds) == {"first", "second"}


def test_validate_json_says_where_the_time_went(models: dict[str, Path], photos_test: Path) -> None:
    result = run_cli(
        "validate", photos_test, "-r", models["keras"], "-c", models["int8"], "--batch-size", "16", "--json", "-q"
    )
    assert result.exit_code in (0, 1), result.stderr
    report = json.loads(result.stdout)
    seconds = report["seconds"]
    assert set(seconds) == {"open", "scan", "decode", "preprocess", "reference", "candidate", "total"}
    assert all(value > 0 for value in seconds.values())
    busy = sum(value for key, value in seconds.items() if key != "total")
    assert busy <= seconds["total"] * 1.01  # one thread: the parts are inside the whole
    whole = run_cli("validate", photos_test, "-r", models["keras"], "-c", models["int8"], "--json", "-q")
    same = json.loads(whole.stdout)  # the batch size changes how images are grouped, not the figures
    for key in ("num_images", "reference_accuracy", "candidate_accuracy", "agreement", "reference_confusion"):
        assert same[key] == report[key]
