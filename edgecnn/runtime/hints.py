"""What a model from elsewhere cannot say about itself, given as options: labels, pixel range, channel order, layout.

A model edgecnn trained carries its labels and preprocessing (sidecar or ``.keras`` archive); a model trained
elsewhere may carry them as TFLite Metadata, or not at all. :class:`InputHints` holds what the user supplies with
``--labels``, ``--input-range``, ``--mean``/``--std``, ``--bgr`` and ``--layout``, and this module turns it, with the
model's input shape, into the one :class:`~edgecnn.runtime.preprocess.Preprocessing` every stage then uses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import UsageError
from edgecnn.model.inspect import guess_layout
from edgecnn.runtime.preprocess import LAYOUTS, Preprocessing

MAX_LABELS_BYTES = 16 * 1024 * 1024
"""A labels file larger than this is not a labels file (ImageNet's 21k classes take under 1 MB)."""

NORMALIZATION_OPTIONS = "--input-range LOW,HIGH (e.g. 0,1 or -1,1 or 0,255) or --mean/--std"
LABELS_OPTION = "--labels FILE (one class name per line, in output order)"


@dataclass(frozen=True)
class InputHints:
    """Labels and preprocessing given as options, each None when not given.

    Attributes:
        labels: class names in output order (read from ``--labels``).
        labels_source: the file they came from, for messages.
        mean: per-channel mean on the 0..1 pixel scale (``(pixel / 255 - mean) / std``).
        std: per-channel divisor on the same scale.
        normalization_source: the option(s) that gave mean and std, for messages.
        bgr: colour channels in BGR order.
        layout: ``NHWC`` or ``NCHW``; None to recognise it from the input shape.
    """

    labels: tuple[str, ...] | None = None
    labels_source: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalization_source: str = ""
    bgr: bool = False
    layout: str | None = None

    @property
    def empty(self) -> bool:
        """No option was given."""
        return self.labels is None and self.mean is None and not self.bgr and self.layout is None


def make_hints(
    *,
    labels: str | os.PathLike[str] | None = None,
    input_range: Sequence[float] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    bgr: bool = False,
    layout: str | None = None,
) -> InputHints:
    """Check and combine the options a user gave.

    ``input_range`` (LOW, HIGH) maps pixel values 0..255 linearly onto LOW..HIGH; it is the same as
    ``mean = -LOW / (HIGH - LOW)`` and ``std = 1 / (HIGH - LOW)`` on the 0..1 scale.

    Raises:
        UsageError: both ``input_range`` and ``mean``/``std``, one of ``mean``/``std`` alone, bad values, or an
            unreadable labels file.
    """
    if input_range is not None and (mean is not None or std is not None):
        raise UsageError("give either --input-range or --mean/--std, not both")
    if (mean is None) != (std is None):
        raise UsageError("--mean and --std go together: give both (one value, or one per channel)")
    source = ""
    if input_range is not None:
        low, high = (float(v) for v in input_range)
        if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
            raise UsageError(f"--input-range {low:g},{high:g}: HIGH must be greater than LOW, e.g. 0,1 or -1,1")
        # value = LOW + (pixel / 255) * (HIGH - LOW) = (pixel / 255 - mean) / std
        mean, std = (-low / (high - low),), (1.0 / (high - low),)
        source = f"--input-range {low:g},{high:g}"
    elif mean is not None and std is not None:
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        _check_normalization(mean, std)
        source = "--mean/--std"
    if layout is not None and layout.upper() not in LAYOUTS:
        raise UsageError(f"--layout {layout}: choose NHWC or NCHW")
    return InputHints(
        labels=tuple(read_labels(labels)) if labels is not None else None,
        labels_source=str(labels) if labels is not None else "",
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        normalization_source=source,
        bgr=bgr,
        layout=layout.upper() if layout is not None else None,
    )


def _check_normalization(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    if not mean or not std or len(mean) > 4 or len(std) > 4:
        raise UsageError("--mean and --std take one value, or one per channel (comma-separated)")
    if any(not math.isfinite(v) for v in (*mean, *std)) or any(v <= 0 for v in std):
        raise UsageError("--std values must be positive and --mean values finite")
    # edgecnn's convention is the 0..1 scale (torchvision's); 0..255-scale values (TFLite Metadata's, e.g. 127.5)
    # are a common slip, and would silently feed the model garbage.
    if any(abs(v) > 2 for v in mean) or any(v > 2 for v in std):
        raise UsageError(
            "--mean/--std are on the 0..1 pixel scale ((pixel / 255 - mean) / std, e.g. --mean 0.485,0.456,0.406 "
            "--std 0.229,0.224,0.225): divide 0..255-scale values by 255, or use --input-range"
        )


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read a labels file: one class name per line, in output order (the common ``labels.txt``).

    Surrounding whitespace is stripped and blank lines at the end are ignored; a blank line between labels,
    a duplicate, or a file that is not UTF-8 text is an error, because each would shift or merge classes.

    Raises:
        UsageError: missing, unreadable, too large, not UTF-8, empty, or with blank or duplicate labels.
    """
    file = Path(path)
    if not file.exists():
        raise UsageError(f"--labels {file}: no such file (give a text file with one class name per line)")
    if not file.is_file():  # a folder, or a FIFO or device that would block or never end
        raise UsageError(f"--labels {file} is not a regular file: give a text file with one class name per line")
    try:
        size = file.stat().st_size
        if size > MAX_LABELS_BYTES:
            raise UsageError(f"--labels {file} is {size} bytes: not a labels file (one class name per line)")
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--labels {file} is not UTF-8 text: save it as UTF-8, one class name per line") from None
    except OSError as exc:
        raise UsageError(f"--labels {file}: cannot read it ({exc.strerror or exc})") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise UsageError(f"--labels {file} is empty: give one class name per line, in output order")
    if "" in lines:
        raise UsageError(f"--labels {file} has a blank line {lines.index('') + 1}: every line must name a class")
    seen: dict[str, int] = {}
    for number, label in enumerate(lines, 1):
        if label in seen:
            raise UsageError(f"--labels {file}: {label!r} is on lines {seen[label]} and {number}: labels must differ")
        seen[label] = number
    return lines


def image_preprocessing(
    input_shape: Sequence[int],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    bgr: bool = False,
    layout: str | None = None,
    model: str = "the model",
) -> Preprocessing:
    """The preprocessing of a model whose input has ``input_shape`` (batch first) and the given normalization.

    Raises:
        UsageError: the input is not one image of 1 or 3 channels in the chosen layout, or the normalization does
            not fit the channels.
    """
    dims = [int(d) for d in input_shape]
    if len(dims) != 4:
        raise UsageError(
            f"{model} takes an input of shape {dims}, not one image [batch, height, width, channels]: "
            "edgecnn classifies images"
        )
    # [N, C, H, W] with 1 or 3 channels first is a PyTorch export; a shape that reads both ways is TensorFlow's NHWC.
    chosen = layout or guess_layout(dims) or "NHWC"
    height, width, channels = (dims[2], dims[3], dims[1]) if chosen == "NCHW" else (dims[1], dims[2], dims[3])
    if channels not in (1, 3):
        hint = "" if layout else " (if the model is channels-first, add --layout NCHW)"
        raise UsageError(f"{model} takes {channels}-channel images ({chosen} {dims}): edgecnn feeds 1 or 3{hint}")
    if bgr and channels != 3:
        raise UsageError(f"--bgr needs a 3-channel input; {model} takes {channels} channel(s)")
    try:
        return Preprocessing(
            height=height, width=width, channels=channels, mean=tuple(mean), std=tuple(std), bgr=bgr, layout=chosen
        )
    except ValueError as exc:
        raise UsageError(f"preprocessing for {model}: {exc}") from None
