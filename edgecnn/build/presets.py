"""Training recipes (``edgecnn train --preset NAME``): the architecture, augmentation, optimizer, learning-rate
schedule and regularisation that suit a kind of data, chosen together.

Every field can still be set on the command line; what is not set comes from the preset. The ``cifar10`` recipe
follows MLPerf Tiny's image-classification reference (ResNet-8: a 16-filter stem and three residual stacks of
16, 32 and 64 filters, about 78k weights, under 100 KB in int8) with a schedule made for a short CPU budget:

- **one-cycle learning rate** (linear warm-up from a tenth of the peak over the first epochs, then cosine decay
  to nearly zero): large steps early and small ones late reach in tens of epochs what a constant rate needs
  hundreds for;
- **SGD with Nesterov momentum and decoupled weight decay**: the optimizer residual networks on CIFAR are
  tuned with; Adam reaches lower accuracy on them;
- **label smoothing 0.1**: the model is not pushed towards saturated scores, which also keeps the int8 output
  scale fine-grained;
- **flips and 4-pixel shifts** (reflection-padded), the standard CIFAR augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from edgecnn.build.choices import PRESETS as SUMMARIES
from edgecnn.errors import UsageError

ARCHITECTURES = ("cnn", "resnet8")
OPTIMIZERS = ("adam", "sgd-nesterov")
SCHEDULES = ("constant", "one-cycle")


@dataclass(frozen=True)
class Preset:
    """One training recipe.

    Attributes:
        name: its ``--preset`` name.
        architecture: ``cnn`` (:func:`~edgecnn.build.keras_model.build_model`) or ``resnet8``
            (:func:`~edgecnn.build.keras_model.build_resnet8`).
        image_size: images are resized to this square size.
        epochs / batch_size: passes over the data, images per step.
        learning_rate: the rate (the peak rate for ``one-cycle``).
        optimizer: ``adam`` or ``sgd-nesterov`` (momentum 0.9).
        schedule: ``constant`` or ``one-cycle`` (warm-up over ``warmup_epochs``, then cosine decay).
        warmup_epochs: epochs of linear warm-up (one-cycle only).
        label_smoothing: share of each target spread over the other classes.
        weight_decay: decoupled weight decay (0: none).
        augment: ``none``, ``shift``, ``flip`` or ``flip-shift``.
        filters: filters of the first block or stack.
    """

    name: str
    architecture: str = "cnn"
    image_size: int = 32
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    augment: str = "none"
    filters: int = 32

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the model's metadata records)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


PRESETS: dict[str, Preset] = {
    "default": Preset("default"),
    "cifar10": Preset(
        "cifar10",
        architecture="resnet8",
        image_size=32,
        epochs=35,  # about 25 minutes on 2 CPU cores (BENCHMARKS.md): what the 30-minute budget holds
        batch_size=128,
        learning_rate=0.1,
        optimizer="sgd-nesterov",
        schedule="one-cycle",
        warmup_epochs=2,
        label_smoothing=0.1,
        weight_decay=5e-4,
        augment="flip-shift",
        filters=16,
    ),
}
assert set(PRESETS) == set(SUMMARIES)


def get_preset(name: str, **overrides: Any) -> Preset:
    """The preset ``name`` with every override that is not None applied.

    Raises:
        UsageError: an unknown preset name.
    """
    if name not in PRESETS:
        raise UsageError(f"unknown --preset {name!r}: choose one of {', '.join(PRESETS)}")
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(PRESETS[name], **given)
