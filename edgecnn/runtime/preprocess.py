"""The one definition of how an image file becomes a model input.

Training, calibration, validation and every runner call :func:`load_image` with the :class:`Preprocessing`
recorded in the model's metadata, so no stage can drift from another.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgecnn.errors import EdgecnnWarning

# Pillow's resampling filters by the names recorded in metadata.
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
}
_MODES = {1: "L", 3: "RGB"}
LAYOUTS = ("NHWC", "NCHW")


class ImageReadError(Exception):
    """An image file could not be decoded. Callers decide whether to skip it or fail."""


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model inputs: resize to ``height`` x ``width``, convert to ``channels``, scale.

    The value fed to the model is ``(pixel / 255 - mean) / std`` per channel, as float32, channels in RGB order
    (BGR with ``bgr``) and laid out as the model's input is: ``NHWC`` (TensorFlow) or ``NCHW`` (PyTorch exports).

    Attributes:
        height: model input height in pixels.
        width: model input width in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        resize: Pillow resampling filter: nearest, bilinear, bicubic or area.
        mean: per-channel mean subtracted after scaling to [0, 1] (one value or one per channel).
        std: per-channel divisor applied after the mean.
        bgr: feed the colour channels in BGR order (OpenCV- and Caffe-trained models).
        layout: ``NHWC`` (channels last) or ``NCHW`` (channels first, as PyTorch exports).
    """

    height: int
    width: int
    channels: int = 3
    resize: str = "bilinear"
    mean: tuple[float, ...] = field(default=(0.0,))
    std: tuple[float, ...] = field(default=(1.0,))
    bgr: bool = False
    layout: str = "NHWC"

    def __post_init__(self) -> None:
        # Store floats, so equal specs give equal fingerprints whether built from (0,) or (0.0,).
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.channels not in _MODES:
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if self.resize not in _RESAMPLE:
            raise ValueError(f"resize must be one of {', '.join(_RESAMPLE)}, not {self.resize!r}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, not {self.height}x{self.width}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels):
                raise ValueError(f"{name} needs 1 or {self.channels} values, not {len(values)}")
        if any(s == 0 for s in self.std):
            raise ValueError("std must not be zero")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be NHWC or NCHW, not {self.layout!r}")
        if self.bgr and self.channels != 3:
            raise ValueError("BGR channel order needs 3 channels")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of one preprocessed image as the model takes it: (height, width, channels), or
        (channels, height, width) for an NCHW model."""
        if self.layout == "NCHW":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in model metadata."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        # Written only when set, so the metadata (and fingerprints) of RGB NHWC models stay as they always were.
        if not self.bgr:
            del data["bgr"]
        if self.layout == "NHWC":
            del data["layout"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            channels=int(data["channels"]),
            resize=str(data["resize"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            bgr=bool(data.get("bgr", False)),
            layout=str(data.get("layout", "NHWC")),
        )

    def fingerprint(self) -> str:
        """Short hash of the definition: equal fingerprints mean identical preprocessing."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_array(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Preprocess a decoded Pillow image into a float32 array of shape ``spec.shape``.

    EXIF orientation is applied first, so a photo taken sideways is seen upright. Pixels are then brought to
    8 bits (see :func:`eight_bit`), and palette, grayscale, RGBA, CMYK and other modes are converted with Pillow's
    ``convert`` (alpha is dropped, as Keras's ``load_img`` does; CMYK uses Pillow's formula, without a colour
    profile).

    Raises:
        ImageReadError: the pixels have no agreed 8-bit meaning (float, or integers beyond 16 bits).
    """
    image = ImageOps.exif_transpose(image)
    image = eight_bit(image).convert(_MODES[spec.channels])
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), resample=_RESAMPLE[spec.resize])
    pixels = np.asarray(image, dtype=np.float32).reshape(spec.height, spec.width, spec.channels)
    return scale_pixels(pixels, spec)


# Pillow's single-channel 16-bit modes; 16-bit RGB(A) files already decode to 8 bits (the high byte of each value).
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8-bit pixels where Pillow keeps more: the one rule for deep images.

    - 16-bit grayscale (``I;16*``): each value's high byte (``value >> 8``), as Pillow itself does for 16-bit
      RGB, so 65535 is 255 and black stays 0. ``convert("L")`` would clip everything above 255 to white.
    - 32-bit integer (``I``): Pillow's mode for 16-bit PGM files and some TIFFs, so read as 16-bit; values
      outside 0..65535 have no agreed meaning and are refused.
    - 32-bit float (``F``): refused; float images have no agreed range (0..1? 0..255? calibrated units?), and a
      guess would feed the model wrong values without a word.

    Raises:
        ImageReadError: a float image, or integers outside 0..65535.
    """
    if image.mode == "F":
        raise ImageReadError(
            "32-bit float pixels (mode F) have no agreed 0..255 range: save the image with 8 or 16 bits per channel"
        )
    if image.mode not in _SIXTEEN_BIT and image.mode != "I":
        return image
    values = np.asarray(image)
    if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 0xFFFF):
        raise ImageReadError(
            f"32-bit integer pixels (mode I) from {values.min()} to {values.max()} do not fit 16 bits: "
            "save the image with 8 or 16 bits per channel"
        )
    return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8))


def scale_pixels(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """RGB pixel values 0..255 (any leading dimensions, then height, width, channels) as model inputs:
    ``(pixel / 255 - mean) / std``, then in BGR order and channels first when the model wants them so.

    float32 throughout, in this order, so every caller (image files, a benchmark's random pixels) gets the same
    values for the same pixels. ``mean`` and ``std`` are in the model's channel order (as the model was trained).
    """
    array = np.asarray(pixels, dtype=np.float32)
    if spec.bgr:
        array = array[..., ::-1]
    array = array / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    array = (array - mean) / std
    if spec.layout == "NCHW":
        array = np.moveaxis(array, -1, -3)
    return np.ascontiguousarray(array, dtype=np.float32)


def load_image(
    path: str | os.PathLike[str], spec: Preprocessing, *, seconds: dict[str, float] | None = None
) -> np.ndarray:
    """Read an image file and preprocess it (see :func:`to_array`).

    Only a regular file is opened for reading: a FIFO named ``x.png`` would block forever, and a device could
    stream without end. Warnings raised while decoding (Pillow's decompression-bomb warning, corrupt EXIF data,
    NumPy's) come back as one :class:`~edgecnn.errors.EdgecnnWarning` each, naming the file.

    Args:
        path: the image file.
        spec: the model's preprocessing.
        seconds: when given, the time spent reading and decoding the file is added to its ``"decode"`` entry and
            the time spent preprocessing the pixels to ``"preprocess"`` (where validation's time goes).

    Raises:
        ImageReadError: the file is not a regular file, not an image Pillow can decode, truncated or corrupt, has
            more pixels than Pillow's decompression-bomb limit, or pixels with no 8-bit meaning.
    """
    size: tuple[int, int] | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            start = time.perf_counter()
            with _open_regular(path) as file, Image.open(file) as image:
                size = image.size
                image.load()  # decode now: a truncated file fails here, not later
                decoded = time.perf_counter()
                array = to_array(image, spec)
            if seconds is not None:
                seconds["decode"] = seconds.get("decode", 0.0) + decoded - start
                seconds["preprocess"] = seconds.get("preprocess", 0.0) + time.perf_counter() - decoded
        except Image.DecompressionBombError as exc:
            raise ImageReadError(_bomb_reason(str(exc))) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImageReadError(reason) from exc
    # Re-issued outside the recording block, or they would be recorded again instead of reaching the user.
    for message in _decoding_warnings(caught, size):
        warnings.warn(f"{printable(os.fspath(path))}: {message}", EdgecnnWarning, stacklevel=2)
    return array


def printable(text: str) -> str:
    """``text`` with control characters (newline, escape...) and undecodable bytes escaped, for one-line messages."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, from its ``st_mode``: for messages."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open ``path`` for binary reading only if it is a regular file.

    Opened without blocking, then checked on the open descriptor, so a FIFO cannot hang the open and a file
    swapped after a check cannot slip through. Reads from a regular file ignore ``O_NONBLOCK``.

    Raises:
        ImageReadError: ``path`` is a FIFO, socket, device or folder.
        OSError: it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageReadError(f"not a regular file ({file_kind(mode)})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _bomb_reason(pillow_message: str) -> str:
    """Pillow's decompression-bomb refusal as a reason that names the limit, in pixels."""
    found = re.search(r"\((\d+) pixels\)", pillow_message)
    pixels = f"{int(found.group(1)):,} pixels" if found else "the image"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return (
        f"{pixels} is over the decompression-bomb limit of {limit:,} pixels "
        "(twice Pillow's Image.MAX_IMAGE_PIXELS): not decoded"
    )


def _decoding_warnings(caught: list[warnings.WarningMessage], size: tuple[int, int] | None) -> list[str]:
    """One line per distinct warning recorded while decoding, Pillow's bomb warning rephrased with its limit."""
    lines: list[str] = []
    for record in caught:
        if issubclass(record.category, Image.DecompressionBombWarning) and size is not None:
            limit = Image.MAX_IMAGE_PIXELS or 0
            text = (
                f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels is over Pillow's decompression-bomb warning "
                f"limit of {limit:,} pixels; decoded anyway (over {2 * limit:,} pixels an image is skipped)"
            )
        else:
            first = str(record.message).strip().splitlines()
            text = f"{first[0] if first else record.category.__name__} ({record.category.__name__})"
        text = printable(text)
        if text not in lines:
            lines.append(text)
    return lines


def fitting_images(images: Any, spec: Preprocessing, *, model: str) -> np.ndarray:
    """``images`` as float32 ``(N, H, W, C)``, checked against the preprocessing ``model`` was trained with: the one
    input-shape check every runner and benchmark makes.

    Raises:
        UsageError: the images do not have the model's input shape.
    """
    from edgecnn.errors import UsageError

    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[1:] != spec.shape:
        shape = array.shape[1:] if array.ndim == 4 else array.shape
        raise UsageError(f"images of shape {shape} do not fit {model}, which takes {spec.shape}")
    return array
