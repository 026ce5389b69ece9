"""The one definition of how an image file becomes a model input.

Training, calibration, validation and every runner call :func:`load_image` with the :class:`Preprocessing`
recorded in the model's metadata, so no stage can drift from another.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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

    EXIF orientation is applied first, so a photo taken sideways is seen upright. Palette, grayscale, RGBA
    and other modes are converted with Pillow's ``convert`` (alpha is dropped, as Keras's ``load_img`` does).
    """
    image = ImageOps.exif_transpose(image)
    image = image.convert(_MODES[spec.channels])
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), resample=_RESAMPLE[spec.resize])
    pixels = np.asarray(image, dtype=np.float32).reshape(spec.height, spec.width, spec.channels)
    return scale_pixels(pixels, spec)


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


def load_image(path: str | os.PathLike[str], spec: Preprocessing) -> np.ndarray:
    """Read an image file and preprocess it (see :func:`to_array`).

    Raises:
        ImageReadError: the file is not an image Pillow can decode, or is truncated or corrupt.
    """
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            return to_array(image, spec)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(reason) from exc


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
