"""The values the build side's options take: imports nothing, so the command line can offer them without
loading numpy or TensorFlow."""

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
"""``--quantize``: float32, float16 weights, dynamic-range (int8 weights, float compute), full-integer int8."""

IO_TYPES = ("int8", "uint8", "float32")
"""``--io``: the input and output tensor type of an int8 model."""

AUGMENTATIONS = ("none", "shift", "flip", "flip-shift")
"""``--augment``: random shifts and/or left-right flips while training."""

PRESETS = {
    "default": "the classic CNN (conv-conv-pool blocks), Adam at a constant rate: a quick start on any folder",
    "cifar10": "MLPerf Tiny's ResNet-8 (78k weights) for 32x32 photos: SGD Nesterov with a one-cycle schedule, "
    "label smoothing, weight decay, flips and 4-pixel shifts",
}
"""``--preset``: name → what it picks (the recipes live in :mod:`edgecnn.build.presets`)."""

STRATEGIES = ("none", "mirrored", "multi-worker")
"""``--strategy``: one device (Keras's ``fit``), every local GPU (or logical CPU device), or a ``TF_CONFIG``
cluster of machines (:mod:`edgecnn.build.distribute`)."""
