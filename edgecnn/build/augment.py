"""Training-time augmentation in numpy: random horizontal flips and shifts, seeded per epoch and batch.

Done on the batches rather than as Keras layers in the model, so the exported graph holds nothing but the
classifier. Each batch's random draws come from ``(seed, epoch, batch)``, so a seeded run is repeatable
whatever the threading.
"""

from __future__ import annotations

import numpy as np

from edgecnn.build.choices import AUGMENTATIONS
from edgecnn.errors import UsageError


def augment_batch(images: np.ndarray, rng: np.random.Generator, *, flip: bool, shift: int) -> np.ndarray:
    """Randomly flip (left-right, half of the images) and shift (up to ``shift`` pixels each way) a batch.

    Shifting pads by reflection and crops back to the original size, so no black borders appear.

    Args:
        images: float array ``(N, H, W, C)``.
        rng: the random generator for this batch.
        flip: mirror half of the images left to right.
        shift: largest shift in pixels (0 for none).
    """
    out = np.array(images, copy=True)
    count, height, width = out.shape[:3]
    if flip:
        mirrored = rng.random(count) < 0.5
        out[mirrored] = out[mirrored, :, ::-1]
    if shift > 0:
        padded = np.pad(out, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
        # Every (H, W) window of each padded image, then one window per image at its random offset.
        windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))
        dy, dx = rng.integers(0, 2 * shift + 1, size=(2, count))
        out = np.ascontiguousarray(windows[np.arange(count), dy, dx].transpose(0, 2, 3, 1))
    return out


def parse_augment(name: str, image_size: int) -> tuple[bool, int]:
    """``flip-shift`` → (flip, shift in pixels): shifts are an eighth of the image, at least one pixel."""
    if name not in AUGMENTATIONS:
        raise UsageError(f"unknown --augment {name!r}: choose one of {', '.join(AUGMENTATIONS)}")
    return "flip" in name, max(1, image_size // 8) if "shift" in name else 0
