"""Unit tests for edgecnn.runtime.preprocess: how one image file becomes a model input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.runtime.preprocess import ImageReadError, Preprocessing, load_image, to_array


def real_image(photos_test: Path, cls: str = "three", index: int = 0) -> Path:
    """Path of one test photo (a colour JPEG)."""
    return photos_test / cls / f"{index:04d}.jpg"


def pil_rgb(path: Path) -> np.ndarray:
    """The RGB pixels Pillow decodes from ``path`` (uint8, HxWx3)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --- output shape, dtype and range ------------------------------------------------------------------------


def test_rgb_output_shape_dtype_range(photos_test: Path) -> None:
    """A default RGB spec gives float32 (32, 32, 3) values in [0, 1]."""
    out = load_image(real_image(photos_test), Preprocessing(32, 32, 3))
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() > out.min()  # a photo is not flat


def test_grayscale_output_shape_dtype_range(photos_test: Path) -> None:
    """A grayscale spec gives float32 (32, 32, 1) values in [0, 1]."""
    spec = Preprocessing(32, 32, 1)
    out = load_image(real_image(photos_test, "zero", 3), spec)
    assert spec.shape == (32, 32, 1)
    assert out.shape == (32, 32, 1)
    assert out.dtype == np.float32
    assert 0.0 <= out.min() <= out.max() <= 1.0


# --- scaling ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean", "std"),
    [
        ((0.0,), (1.0,)),
        ((0.5,), (0.25,)),
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ],
)
def test_scaling_matches_independent_numpy(photos_test: Path, mean: tuple, std: tuple) -> None:
    """Values are (pixel / 255 - mean) / std per channel, computed independently from Pillow's pixels."""
    path = real_image(photos_test, "two", 7)
    expected = (pil_rgb(path).astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    out = load_image(path, Preprocessing(32, 32, 3, mean=mean, std=std))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_per_channel_mean_is_applied_to_the_right_channel(photos_test: Path) -> None:
    """A mean that differs per channel shifts each channel by its own value (order R, G, B)."""
    path = real_image(photos_test, "six", 2)
    base = load_image(path, Preprocessing(32, 32, 3))
    shifted = load_image(path, Preprocessing(32, 32, 3, mean=(0.1, 0.2, 0.3)))
    np.testing.assert_allclose(base - shifted, np.broadcast_to([0.1, 0.2, 0.3], base.shape), atol=1e-6)


# --- channel conversion -----------------------------------------------------------------------------------


def test_grayscale_file_becomes_three_equal_channels(tmp_path: Path, photos_test: Path) -> None:
    """An 'L' image fed to a 3-channel spec repeats the gray value in R, G and B."""
    with Image.open(real_image(photos_test, "seven", 1)) as im:
        gray = im.convert("L")
    path = tmp_path / "gray.png"
    gray.save(path)
    out = load_image(path, Preprocessing(32, 32, 3))
    expected = np.asarray(gray, dtype=np.float64) / 255.0
    assert out.shape == (32, 32, 3)
    for channel in range(3):
        np.testing.assert_allclose(out[..., channel], expected, atol=1e-6)


def test_rgb_file_becomes_one_luma_channel(photos_test: Path) -> None:
    """An RGB image fed to a 1-channel spec gives ITU-R 601 luma, as Pillow's convert('L') computes it."""
    path = real_image(photos_test, "nine", 4)
    out = load_image(path, Preprocessing(32, 32, 1))
    with Image.open(path) as im:
        pillow_l = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    np.testing.assert_allclose(out[..., 0], pillow_l, atol=1e-6)
    rgb = pil_rgb(path).astype(np.float64)
    luma = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) / 255.0
    np.testing.assert_allclose(out[..., 0], luma, atol=1.01 / 255.0)  # Pillow rounds in fixed point


def test_rgba_image_drops_alpha(tmp_path: Path, photos_test: Path) -> None:
    """An RGBA PNG loads as Pillow's convert('RGB'): the colour pixels, alpha dropped (not composited)."""
    rgb = pil_rgb(real_image(photos_test, "four", 5))
    alpha = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    out = load_image(path, Preprocessing(32, 32, 3))
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        expected = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-6)


def test_palette_image_equals_pillow_convert(tmp_path: Path, photos_test: Path) -> None:
    """A palette ('P') PNG loads as Pillow's convert('RGB') of it."""
    with Image.open(real_image(photos_test, "five", 6)) as im:
        pal = im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    path = tmp_path / "palette.png"
    pal.save(path)
    out = load_image(path, Preprocessing(32, 32, 3))
    with Image.open(path) as im:
        assert im.mode == "P"
        expected = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-6)


# --- resizing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resize", "pil_filter"), [("bilinear", Image.Resampling.BILINEAR), ("nearest", Image.Resampling.NEAREST)]
)
def test_resize_uses_recorded_filter(photos_test: Path, resize: str, pil_filter: Image.Resampling) -> None:
    """Resizing to another size uses the recorded Pillow filter, to (width, height) order."""
    path = real_image(photos_test, "eight", 9)
    spec = Preprocessing(height=24, width=40, channels=3, resize=resize)
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB").resize((40, 24), resample=pil_filter), dtype=np.float64) / 255.0
    out = load_image(path, spec)
    assert out.shape == (24, 40, 3)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_resize_filters_differ(photos_test: Path) -> None:
    """Different recorded filters give different pixels when upscaling (so the filter really matters)."""
    path = real_image(photos_test, "eight", 9)
    a = load_image(path, Preprocessing(48, 48, 3, resize="nearest"))
    b = load_image(path, Preprocessing(48, 48, 3, resize="bicubic"))
    assert not np.allclose(a, b)


# --- EXIF orientation -------------------------------------------------------------------------------------


def _exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def test_exif_orientation_jpeg_is_applied(tmp_path: Path, photos_test: Path) -> None:
    """A 32x16 JPEG tagged orientation 6 loads upright as 16 wide x 32 high, rotated 90 degrees clockwise."""
    with Image.open(real_image(photos_test, "one", 8)) as im:
        wide = im.convert("RGB").crop((0, 0, 32, 16))  # width 32, height 16
    path = tmp_path / "sideways.jpg"
    wide.save(path, quality=100, exif=_exif_orientation(6))
    with Image.open(path) as im:
        assert im.getexif().get(0x0112) == 6
        im.load()
        # Orientation 6: the stored image must be turned 90 degrees clockwise (Pillow's ROTATE_270).
        ref = np.asarray(im.convert("RGB").transpose(Image.Transpose.ROTATE_270), dtype=np.float64) / 255.0
    assert ref.shape == (32, 16, 3)
    out = load_image(path, Preprocessing(height=32, width=16, channels=3))
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_exif_orientation_png_is_applied(tmp_path: Path, photos_test: Path) -> None:
    """The same holds for a lossless PNG with an eXIf orientation, compared with the original pixels."""
    with Image.open(real_image(photos_test, "zero", 2)) as im:
        wide = im.convert("RGB").crop((0, 8, 32, 24))
    path = tmp_path / "sideways.png"
    wide.save(path, exif=_exif_orientation(6))
    expected = np.rot90(np.asarray(wide), k=-1).astype(np.float64) / 255.0  # 90 degrees clockwise
    out = load_image(path, Preprocessing(height=32, width=16, channels=3))
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_to_array_applies_orientation_to_opened_image(tmp_path: Path, photos_test: Path) -> None:
    """to_array on an already opened image also honours the orientation tag (orientation 3: upside down)."""
    with Image.open(real_image(photos_test, "three", 11)) as im:
        rgb = im.convert("RGB")
    path = tmp_path / "flipped.png"
    rgb.save(path, exif=_exif_orientation(3))
    with Image.open(path) as im:
        out = to_array(im, Preprocessing(32, 32, 3))
    np.testing.assert_allclose(out, np.asarray(rgb)[::-1, ::-1] / 255.0, atol=1e-6)


# --- file formats and unreadable files --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpg", "png", "bmp", "gif", "webp"])
def test_each_format_loads(tmp_path: Path, photos_test: Path, fmt: str) -> None:
    """JPEG, PNG, BMP, GIF and WebP files derived from a test photo load as Pillow decodes them."""
    with Image.open(real_image(photos_test, "six", 12)) as im:
        rgb = im.convert("RGB")
    path = tmp_path / f"image.{fmt}"
    rgb.save(path, **({"lossless": True} if fmt == "webp" else {}))
    out = load_image(path, Preprocessing(32, 32, 3))
    expected = pil_rgb(path).astype(np.float64) / 255.0
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    if fmt in ("png", "bmp", "webp"):  # lossless: the original pixels come back
        np.testing.assert_allclose(out, np.asarray(rgb) / 255.0, atol=1e-6)


def test_truncated_jpeg_raises(tmp_path: Path, photos_test: Path) -> None:
    """A JPEG cut in half raises ImageReadError (decoding happens inside load_image)."""
    data = real_image(photos_test, "two", 0).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        load_image(path, Preprocessing(32, 32, 3))


def test_text_file_raises(tmp_path: Path) -> None:
    """A text file raises ImageReadError, not Pillow's own exception."""
    path = tmp_path / "notes.txt"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageReadError) as info:
        load_image(path, Preprocessing(32, 32, 3))
    assert str(info.value)  # a reason for the report


def test_text_file_with_image_suffix_raises(tmp_path: Path) -> None:
    """The suffix does not matter: text named .jpg is still unreadable."""
    path = tmp_path / "fake.jpg"
    path.write_text("not a jpeg")
    with pytest.raises(ImageReadError):
        load_image(path, Preprocessing(32, 32, 3))


# --- metadata round trip and fingerprint ------------------------------------------------------------------


def test_to_dict_from_dict_round_trip() -> None:
    """from_dict(to_dict()) gives an equal spec with JSON-ready lists."""
    spec = Preprocessing(64, 48, 3, resize="area", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    data = spec.to_dict()
    assert data == {
        "height": 64,
        "width": 48,
        "channels": 3,
        "resize": "area",
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.3, 0.4],
    }
    back = Preprocessing.from_dict(data)
    assert back == spec
    assert back.fingerprint() == spec.fingerprint()


def test_fingerprint_equal_for_equal_specs() -> None:
    """Two separately built identical specs share a fingerprint (16 hex digits)."""
    a = Preprocessing(32, 32, 1, mean=(0.5,), std=(0.5,))
    b = Preprocessing(32, 32, 1, mean=(0.5,), std=(0.5,))
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 16
    int(a.fingerprint(), 16)


@pytest.mark.parametrize(
    "other",
    [
        Preprocessing(32, 31, 3),
        Preprocessing(31, 32, 3),
        Preprocessing(32, 32, 1),
        Preprocessing(32, 32, 3, resize="nearest"),
        Preprocessing(32, 32, 3, mean=(0.5,)),
        Preprocessing(32, 32, 3, std=(2.0,)),
    ],
)
def test_fingerprint_differs_for_any_change(other: Preprocessing) -> None:
    """Changing any field changes the fingerprint."""
    assert other.fingerprint() != Preprocessing(32, 32, 3).fingerprint()


# --- invalid specs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 2},
        {"channels": 4},
        {"resize": "foo"},
        {"std": (0.0,)},
        {"std": (1.0, 0.0, 1.0)},
        {"mean": (0.1, 0.2)},
        {"std": (1.0, 1.0)},
        {"height": 0},
        {"width": -1},
    ],
)
def test_invalid_spec_raises_value_error(kwargs: dict) -> None:
    """Bad channels, filter names, zero std, wrong mean/std lengths and empty sizes are rejected."""
    args = {"height": 32, "width": 32, **kwargs}
    with pytest.raises(ValueError):
        Preprocessing(**args)


def test_grayscale_spec_rejects_three_means() -> None:
    """A 1-channel spec accepts only one mean value."""
    with pytest.raises(ValueError):
        Preprocessing(32, 32, 1, mean=(0.1, 0.2, 0.3))
