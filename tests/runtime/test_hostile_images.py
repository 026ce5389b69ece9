"""Hostile images and folders (issue 13): each kind has one stated policy, tested here at the library level.

- FIFOs, sockets, devices: never opened; skipped with the kind in the reason (an error with ``strict``).
- 16-bit grayscale: each value's high byte (``value >> 8``); mode ``I`` read as 16-bit; mode ``F`` refused.
- CMYK: converted to RGB; EXIF orientation: applied; hidden files: ignored without being opened.
- Decompression bombs: over twice Pillow's ``MAX_IMAGE_PIXELS`` refused with the limit in pixels in the reason;
  over the limit itself decoded with a one-line warning.
- Pillow's and NumPy's warnings while decoding: one ``EdgecnnWarning`` each, naming the file, escaped.
- Symbolic links leaving the data folder: skipped with their target unless ``follow_links``; loops end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.errors import DatasetError, EdgecnnWarning
from edgecnn.runtime.data import collect_images, load_images, scan_folder, scan_images
from edgecnn.runtime.preprocess import ImageReadError, Preprocessing, load_image, to_array

GRAY = Preprocessing(height=4, width=4, channels=1)
RGB = Preprocessing(height=4, width=4, channels=3)
FIFO_GUARD_S = 30.0


def pixels(array: np.ndarray) -> np.ndarray:
    """Model inputs back to 0..255 values (mean 0, std 1), rounded."""
    return np.rint(array * 255.0).astype(np.int64)


@pytest.fixture
def make_fifo() -> Iterator[object]:
    """Makes FIFOs that cannot hang the test: after ``FIFO_GUARD_S`` a writer opens and closes each one, so a
    reader blocked on it (the regression) gets end-of-file and the test fails instead of hanging."""
    made: list[Path] = []
    done = threading.Event()

    def unblock() -> None:
        if done.wait(FIFO_GUARD_S):
            return
        for path in made:
            with contextlib.suppress(OSError):  # no reader: nothing is blocked on it
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    guard = threading.Thread(target=unblock, daemon=True)
    guard.start()

    def make(path: Path) -> Path:
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    done.set()
    guard.join()


# --- FIFOs, sockets and other files that are not regular ---------------------------------------------------------


def test_load_image_refuses_a_fifo_without_blocking(tmp_path: Path, make_fifo) -> None:
    """Opening a FIFO for reading blocks until a writer comes; load_image never waits for one."""
    fifo = make_fifo(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match=r"not a regular file \(a FIFO"):
        load_image(fifo, RGB)


def test_load_image_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageReadError, match=r"not a regular file \(a folder\)"):
        load_image(tmp_path / "d.png", RGB)


def test_fifo_in_a_class_folder_is_skipped_and_counted(small_folder: Path, make_fifo) -> None:
    fifo = make_fifo(small_folder / "zero" / "x.png")
    folder = scan_folder(small_folder)
    assert len(folder.samples) == 12
    assert [s.path for s in folder.skipped] == [fifo]
    assert "not a regular file (a FIFO" in folder.skipped[0].reason
    loaded = load_images(folder.samples, RGB, skipped=folder.skipped)
    assert len(loaded) == 12 and [s.path for s in loaded.skipped] == [fifo]
    with pytest.raises(DatasetError, match=r"x\.png: not a regular file"):
        load_images(folder.samples, RGB, strict=True, skipped=folder.skipped)


def test_fifo_named_explicitly_or_in_a_folder_is_skipped(small_folder: Path, make_fifo) -> None:
    """collect_images (run, bench --images) never hands a FIFO to the decoder."""
    fifo = make_fifo(small_folder / "one" / "x.png")
    images, skipped = collect_images([small_folder / "zero" / "0000.jpg", fifo, small_folder / "one"])
    assert fifo not in images and len(images) == 5
    assert [s.path for s in skipped] == [fifo, fifo]
    assert all("a FIFO" in s.reason for s in skipped)


def test_a_fifo_alone_is_an_error_that_says_why(tmp_path: Path, make_fifo) -> None:
    fifo = make_fifo(tmp_path / "x.png")
    with pytest.raises(DatasetError, match=r"no image files found in .*x\.png: not a regular file \(a FIFO"):
        collect_images([fifo])


def test_socket_in_a_folder_is_skipped(small_folder: Path) -> None:
    path = small_folder / "zero" / "s.png"
    if len(str(path)) >= 100:  # AF_UNIX paths are limited to about 108 bytes
        pytest.skip("temporary folder path too long for a Unix socket")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        folder = scan_images(small_folder)
    finally:
        server.close()
    assert [(s.path, s.reason) for s in folder.skipped] == [(path, "not a regular file (a socket): not read")]


def test_hidden_fifo_is_ignored_without_opening(small_folder: Path, make_fifo) -> None:
    """Hidden files are neither samples nor skipped, whatever they are."""
    make_fifo(small_folder / "one" / ".x.png")
    folder = scan_folder(small_folder)
    assert len(folder.samples) == 12 and folder.skipped == []


# --- 16-bit, 32-bit and float pixels -----------------------------------------------------------------------------


def test_16_bit_grayscale_png_is_scaled_to_8_bits(tmp_path: Path) -> None:
    """The high byte of each value, not convert("L")'s clipping (which made every value above 255 white)."""
    values = np.array([[0, 255, 256, 4095], [32768, 40000, 65280, 65535]] * 2, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as image:
        assert image.mode.startswith("I;16")  # the case under test
    out = pixels(load_image(tmp_path / "g16.png", GRAY))[..., 0]
    np.testing.assert_array_equal(out, values >> 8)
    rgb = pixels(load_image(tmp_path / "g16.png", RGB))
    np.testing.assert_array_equal(rgb, np.repeat((values >> 8)[..., None], 3, axis=-1))


def test_16_bit_pgm_decoded_as_mode_i_is_scaled_too(tmp_path: Path) -> None:
    """Pillow decodes 16-bit PGM as mode I (32-bit integers): read as 16-bit."""
    values = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369  # 0 .. 65535
    (tmp_path / "p.pgm").write_bytes(b"P5 4 4 65535\n" + values.astype(">u2").tobytes())
    with Image.open(tmp_path / "p.pgm") as image:
        assert image.mode == "I"
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "p.pgm", GRAY))[..., 0], values >> 8)


def test_32_bit_integers_beyond_16_bits_are_refused() -> None:
    image = Image.fromarray(np.full((4, 4), 70000, dtype=np.int32))
    assert image.mode == "I"
    with pytest.raises(ImageReadError, match="do not fit 16 bits"):
        to_array(image, GRAY)


def test_float_image_is_refused_with_a_reason(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=r"float pixels \(mode F\) have no agreed"):
        load_image(tmp_path / "f.tif", GRAY)


# --- colour modes and orientation --------------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "red.jpg", quality=95)
    with Image.open(tmp_path / "red.jpg") as image:
        assert image.mode == "CMYK"
    out = pixels(load_image(tmp_path / "red.jpg", RGB))
    assert np.abs(out - np.array([255, 0, 0])).max() <= 8


def test_exif_orientation_is_applied_on_load(tmp_path: Path) -> None:
    """Orientation 6 (rotate 90° clockwise to view): a 4x2 image stored sideways is read as 2 wide, 4 high."""
    stored = np.zeros((2, 4), dtype=np.uint8)
    stored[0, 0] = 255  # top-left as stored: top-right once upright
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "side.png", exif=exif)
    out = pixels(load_image(tmp_path / "side.png", Preprocessing(height=4, width=2, channels=1)))[..., 0]
    expected = np.zeros((4, 2), dtype=np.int64)
    expected[0, 1] = 255
    np.testing.assert_array_equal(out, expected)


# --- decompression bombs and decoder warnings --------------------------------------------------------------------


def test_decompression_bomb_is_refused_naming_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("L", (15, 15)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageReadError) as caught:
        load_image(tmp_path / "bomb.png", GRAY)
    assert str(caught.value).startswith("225 pixels is over the decompression-bomb limit of 200 pixels")


def test_large_image_under_the_bomb_limit_warns_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("L", (12, 12)).save(tmp_path / "big.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_image(tmp_path / "big.png", GRAY)
    assert [w.category for w in caught] == [EdgecnnWarning]
    message = str(caught[0].message)
    assert message.startswith(f"{tmp_path / 'big.png'}: 12x12 = 144 pixels is over Pillow's decompression-bomb")
    assert "limit of 100 pixels" in message and "\n" not in message


def exif_with_oversized_tag() -> bytes:
    """EXIF whose one tag claims 1,000 bytes past the end: Pillow warns "Tag data larger than file"."""
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x010E, 2, 1000, 26) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + tiff


def test_corrupt_exif_warning_becomes_one_edgecnn_warning(tmp_path: Path) -> None:
    path = tmp_path / "bad\nexif.jpg"
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path, exif=exif_with_oversized_tag())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_image(path, RGB)
    assert out.shape == (4, 4, 3)
    assert [w.category for w in caught] == [EdgecnnWarning]  # no raw UserWarning from Pillow
    message = str(caught[0].message)
    assert "\n" not in message and "bad\\nexif.jpg: " in message
    assert "Tag data larger than file" in message and "(UserWarning)" in message


# --- symbolic links -----------------------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path, photos_test: Path) -> Path:
    """A folder beside the data folder holding one photo."""
    folder = tmp_path / "outside"
    folder.mkdir()
    shutil.copyfile(photos_test / "two" / "0000.jpg", folder / "secret.jpg")
    return folder


def test_file_link_leaving_the_data_folder_is_not_followed(small_folder: Path, outside: Path) -> None:
    link = small_folder / "zero" / "escape.jpg"
    link.symlink_to(outside / "secret.jpg")
    folder = scan_folder(small_folder)
    assert link not in [s.path for s in folder.samples] and len(folder.samples) == 12
    assert [(s.path, s.reason) for s in folder.skipped] == [
        (link, f"symbolic link to {outside / 'secret.jpg'}, outside the data folder: not followed")
    ]
    followed = scan_folder(small_folder, follow_links=True)
    assert link in [s.path for s in followed.samples] and followed.skipped == []


def test_folder_link_leaving_the_data_folder_is_not_followed(small_folder: Path, outside: Path) -> None:
    link = small_folder / "one" / "more"
    link.symlink_to(outside, target_is_directory=True)
    images, skipped = collect_images([small_folder])
    assert len(images) == 12 and [s.path for s in skipped] == [link]
    assert "outside the data folder" in skipped[0].reason
    images, skipped = collect_images([small_folder], follow_links=True)
    assert link / "secret.jpg" in images and skipped == []


def test_class_folder_link_leaving_the_data_folder_is_not_followed(small_folder: Path, outside: Path) -> None:
    (small_folder / "two").symlink_to(outside, target_is_directory=True)
    folder = scan_folder(small_folder)
    assert folder.classes == ["one", "three", "zero"]
    assert [s.path.name for s in folder.skipped] == ["two"]
    followed = scan_folder(small_folder, follow_links=True)
    assert followed.classes == ["one", "three", "two", "zero"] and len(followed.samples) == 13


def test_links_inside_the_data_folder_are_followed(small_folder: Path) -> None:
    (small_folder / "zero" / "alias.jpg").symlink_to(small_folder / "one" / "0000.jpg")
    (small_folder / "zero" / "ones").symlink_to(Path("..") / "one", target_is_directory=True)
    folder = scan_folder(small_folder)
    assert folder.skipped == []
    zero = [s.path.relative_to(small_folder).as_posix() for s in folder.samples if s.label == 2]
    assert "zero/alias.jpg" in zero and "zero/ones/0000.jpg" in zero and len(zero) == 9


def test_link_loops_end_and_are_counted(small_folder: Path) -> None:
    """A link back to a folder being scanned, and a link to itself: skipped, and the scan ends."""
    (small_folder / "zero" / "again").symlink_to(small_folder / "zero", target_is_directory=True)
    (small_folder / "zero" / "self.jpg").symlink_to("self.jpg")
    (small_folder / "zero" / "gone.jpg").symlink_to(small_folder / "nowhere.jpg")
    folder = scan_folder(small_folder, follow_links=True)
    assert len(folder.samples) == 12
    reasons = {s.path.name: s.reason for s in folder.skipped}
    assert reasons["again"].startswith("symbolic link loop")
    assert reasons["self.jpg"].startswith("broken symbolic link")
    assert reasons["gone.jpg"].startswith("broken symbolic link")
