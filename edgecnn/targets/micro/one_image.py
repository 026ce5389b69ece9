"""What the micro target's two runners share (TFLM's interpreter here, the firmware on an emulated board): a
microcontroller runs one image at a time, fed and read through the bundle's sidecar."""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import UsageError
from edgecnn.runtime.bundle import ModelInfo, read_tflite_info


class OneImageRunner:
    """The part of a micro runner that keeps no interpreter: its model, its sidecar and the batch it takes.

    Attributes:
        path: the ``.tflite`` model.
        info: its sidecar's metadata (None for a model without one, fed tensor by tensor).
    """

    path: Path
    info: ModelInfo | None

    def _sidecar(self) -> ModelInfo:
        """The sidecar's metadata, which images need (the missing-sidecar error for a model without one)."""
        return self.info if self.info is not None else read_tflite_info(self.path)

    def resize(self, batch: int) -> None:
        """A microcontroller runs one image at a time.

        Raises:
            UsageError: a batch other than 1.
        """
        if batch != 1:
            raise UsageError(f"TensorFlow Lite Micro runs one image at a time: use --batch 1, not {batch}")
