"""Write a copy of an edgecnn ``.keras`` model whose int8 conversion fails on purpose (an outlier channel).

One channel of a batch-norm layer is scaled up FACTOR times and the next convolution's weights for that channel
scaled down as much. The float model computes the same function (ReLU is positively homogeneous: relu(k x) =
k relu(x) for k > 0), but that channel alone now sets the int8 range of the layer's output, so every other
channel rounds to a few steps: the classic outlier-range failure that ``edgecnn diagnose`` names and
``edgecnn convert --max-drop`` recovers. Used by tests/build/test_quality.py and BENCHMARKS.md.

Usage (with pip install -e ".[train]"):
    python tools/outlier_model.py edgecnn-demo/model.keras /tmp/outlier.keras --factor 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def add_outlier_channel(model: Any, *, norm: str = "block1_bn1", consumer: str = "block1_conv2",
                        factor: float = 1000.0) -> int:  # fmt: skip
    """Scale one channel of ``norm`` by ``factor`` and ``consumer``'s weights for it by ``1 / factor``, in place.

    Returns:
        The channel: the one with the largest ``beta + gamma``, so it is active after the ReLU.
    """
    norm_layer, conv = model.get_layer(norm), model.get_layer(consumer)
    gamma, beta, mean, var = (w.copy() for w in norm_layer.get_weights())
    kernel, *rest = (w.copy() for w in conv.get_weights())
    channel = int(np.argmax(beta + gamma))
    gamma[channel] *= factor
    beta[channel] *= factor
    kernel[:, :, channel, :] /= factor
    norm_layer.set_weights([gamma, beta, mean, var])
    conv.set_weights([kernel, *rest])
    return channel


def write_outlier_model(source: Path, out: Path, *, factor: float = 1000.0) -> int:
    """Load ``source`` (written by edgecnn train), add the outlier channel, save to ``out`` with its metadata."""
    from edgecnn.build.keras_model import load_keras_model
    from edgecnn.runtime.bundle import embed_keras_info

    model, info = load_keras_model(source)
    channel = add_outlier_channel(model, factor=factor)
    model.save(out)
    embed_keras_info(out, info)
    return channel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a .keras model written by edgecnn train")
    parser.add_argument("out", type=Path, help="the .keras to write")
    parser.add_argument("--factor", type=float, default=1000.0, help="how far the channel is scaled")
    args = parser.parse_args()
    channel = write_outlier_model(args.source, args.out, factor=args.factor)
    print(f"wrote {args.out}: channel {channel} of block1_bn1 scaled {args.factor:g}x")


if __name__ == "__main__":
    main()
