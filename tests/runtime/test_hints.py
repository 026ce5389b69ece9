"""Options for models from elsewhere: labels files, pixel ranges, mean/std, BGR and NCHW preprocessing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.errors import UsageError
from edgecnn.model.inspect import guess_layout
from edgecnn.runtime.hints import image_preprocessing, make_hints, read_labels
from edgecnn.runtime.preprocess import Preprocessing, load_image, scale_pixels


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_labels_file_one_per_line_with_bom_crlf_and_trailing_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.txt", "\ufeffcat\r\n dog \r\nbird\n\n\n".encode())
    assert read_labels(path) == ["cat", "dog", "bird"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"cat\n\ndog\n", "blank line 2"),
        (b"cat\ndog\ncat\n", "lines 1 and 3"),
        (b"caf\xe9\n", "not UTF-8"),
    ],
)
def test_bad_labels_files_are_one_clear_error(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = write(tmp_path / "labels.txt", content)
    with pytest.raises(UsageError, match=fragment):
        read_labels(path)


def test_missing_labels_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_labels(tmp_path / "nope.txt")
    with pytest.raises(UsageError, match="not a regular file"):
        read_labels(tmp_path)
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        read_labels(fifo)


@pytest.mark.parametrize(
    ("low", "high", "pixel_0", "pixel_255"),
    [(0, 1, 0.0, 1.0), (-1, 1, -1.0, 1.0), (0, 255, 0.0, 255.0)],
)
def test_input_range_maps_pixels_linearly(low: float, high: float, pixel_0: float, pixel_255: float) -> None:
    hints = make_hints(input_range=(low, high))
    spec = Preprocessing(height=1, width=2, channels=1, mean=hints.mean, std=hints.std)
    values = scale_pixels(np.array([[[0], [255]]]), spec)
    np.testing.assert_allclose(values.reshape(-1), [pixel_0, pixel_255], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"input_range": (1, 0)}, "greater than LOW"),
        ({"input_range": (0, 1), "mean": (0.5,), "std": (0.5,)}, "not both"),
        ({"mean": (0.5,)}, "go together"),
        ({"mean": (127.5,), "std": (127.5,)}, "0..1 pixel scale"),
        ({"mean": (0.5,), "std": (0.0,)}, "positive"),
        ({"layout": "HWC"}, "NHWC or NCHW"),
    ],
)
def test_bad_normalization_options(options: dict, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        make_hints(**options)


def test_layout_is_recognised_from_the_input_shape() -> None:
    assert guess_layout([1, 3, 224, 224]) == "NCHW"
    assert guess_layout([1, 1, 28, 28]) == "NCHW"
    assert guess_layout([1, 224, 224, 3]) == "NHWC"
    assert guess_layout([1, 28, 28, 1]) == "NHWC"
    assert guess_layout([1, 3, 3, 3]) == "NHWC"  # reads both ways: TensorFlow's layout unless --layout says
    assert guess_layout([1, 1000]) is None


def test_image_preprocessing_reads_size_and_channels_in_either_layout() -> None:
    nchw = image_preprocessing([1, 3, 24, 32], mean=(0.5,), std=(0.5,))
    assert (nchw.height, nchw.width, nchw.channels, nchw.layout) == (24, 32, 3, "NCHW")
    assert nchw.shape == (3, 24, 32)
    nhwc = image_preprocessing([1, 24, 32, 1], mean=(0.0,), std=(1.0,))
    assert (nhwc.height, nhwc.width, nhwc.channels, nhwc.layout) == (24, 32, 1, "NHWC")
    forced = image_preprocessing([1, 3, 3, 3], mean=(0.0,), std=(1.0,), layout="NCHW")
    assert forced.layout == "NCHW"


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [([1, 1000], "not one image"), ([1, 32, 32, 4], "4-channel"), ([1, 5, 32, 32], "32-channel.*--layout NCHW")],
)
def test_inputs_that_are_not_images_are_refused(shape: list[int], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        image_preprocessing(shape, mean=(0.0,), std=(1.0,))


def test_bgr_and_nchw_arrange_the_pixels_of_a_real_image(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 100, 250
    rgb[0, 0] = (255, 0, 0)
    path = tmp_path / "image.png"
    Image.fromarray(rgb).save(path)
    plain = load_image(path, Preprocessing(height=4, width=6, channels=3))
    bgr = load_image(path, Preprocessing(height=4, width=6, channels=3, bgr=True))
    nchw = load_image(path, Preprocessing(height=4, width=6, channels=3, layout="NCHW"))
    both = load_image(path, Preprocessing(height=4, width=6, channels=3, bgr=True, layout="NCHW"))
    assert plain.shape == bgr.shape == (4, 6, 3) and nchw.shape == both.shape == (3, 4, 6)
    np.testing.assert_array_equal(bgr, plain[..., ::-1])
    np.testing.assert_array_equal(nchw, np.moveaxis(plain, -1, 0))
    np.testing.assert_array_equal(both, np.moveaxis(plain[..., ::-1], -1, 0))
    assert plain[0, 0, 0] == 1.0 and bgr[0, 0, 2] == 1.0 and nchw[0, 0, 0] == 1.0


def test_per_channel_mean_applies_in_the_models_channel_order() -> None:
    spec = Preprocessing(height=1, width=1, channels=3, mean=(0.1, 0.2, 0.3), std=(1.0,), bgr=True, layout="NCHW")
    values = scale_pixels(np.array([[[0, 0, 0]]]), spec)
    np.testing.assert_allclose(values.reshape(-1), [-0.1, -0.2, -0.3], rtol=1e-6)


def test_default_preprocessing_keeps_its_old_metadata_and_fingerprint() -> None:
    spec = Preprocessing(height=32, width=32, channels=3)
    assert "bgr" not in spec.to_dict() and "layout" not in spec.to_dict()
    odd = Preprocessing(height=32, width=32, channels=3, bgr=True, layout="NCHW")
    assert Preprocessing.from_dict(odd.to_dict()) == odd
    assert odd.fingerprint() != spec.fingerprint()
