"""The comparison for ``edgecnn validate``'s speed: a plain loop over the images, one at a time, nothing else.

    python tools/bench/plain_loop.py TEST_DIR MODEL.keras MODEL_int8.tflite [--per-class N] [--compiled]

What someone would write without edgecnn: for each image (classes and files sorted by name, the first ``N`` of
each class, as ``validate --limit-per-class`` picks them), Pillow opens and decodes it, converts it to RGB and
resizes it to the model's input, the pixels are scaled as the int8 model's sidecar says (``(p / 255 - mean) /
std``), then the Keras model is called on a batch of 1 (``model(x, training=False)``, eager; ``--compiled``:
through a ``tf.function`` traced once) and the int8 ``.tflite`` quantizes the same values and ``invoke``s on a batch
of 1. Only numpy, Pillow, Keras/TensorFlow and ai-edge-litert are imported; not edgecnn.

Prints one JSON object: both accuracies, the images, and the busy seconds of each step (``decode``:
open, decode, convert and resize; ``preprocess``: scaling and quantizing; ``reference``, ``candidate``: the two
models), plus ``setup`` (imports and model loading) and ``total`` (the whole script, from its first line).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (after the clock starts: imports are part of what a plain loop costs)
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def images_of(folder: Path, per_class: int | None) -> list[tuple[Path, str]]:
    """(file, class) for the first ``per_class`` image files of each class folder, sorted by name."""
    found = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        found += [(path, class_dir.name) for path in files[:per_class]]
    return found


def quantize(values: Any, scale: float, zero_point: int, np: Any) -> Any:
    """Real values to int8 as TFLite's QUANTIZE does: round half away from zero, saturate."""
    scaled = values.astype(np.float32) / np.float32(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    return np.clip(rounded + zero_point, -128, 127).astype(np.int8)


def main() -> None:
    """Run the loop and print its JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_dir", type=Path)
    parser.add_argument("keras_model", type=Path)
    parser.add_argument("int8_model", type=Path)
    parser.add_argument("--per-class", type=int, help="first N images of each class (default: all)")
    parser.add_argument("--compiled", action="store_true", help="call Keras through a tf.function traced once")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    sidecar = json.loads(args.int8_model.with_suffix(".json").read_text())
    spec = sidecar["preprocessing"]
    labels = sidecar["labels"]
    size = (int(spec["width"]), int(spec["height"]))
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    resample = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "area": Image.BOX}
    model = keras.saving.load_model(args.keras_model, compile=False)

    def call(x: Any) -> Any:
        return model(x, training=False)

    if args.compiled:
        signature = [tf.TensorSpec((1, size[1], size[0], 3), tf.float32)]
        call = tf.function(call, input_signature=signature)
    interpreter = Interpreter(model_path=str(args.int8_model))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = source["quantization"]
    samples = images_of(args.test_dir, args.per_class)
    setup = time.perf_counter() - STARTED

    busy = {"decode": 0.0, "preprocess": 0.0, "reference": 0.0, "candidate": 0.0}
    right = {"reference": 0, "candidate": 0}
    agree = 0
    for path, label in samples:
        t0 = time.perf_counter()
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != size:
                image = image.resize(size, resample=resample[spec["resize"]])
            pixels = np.asarray(image, dtype=np.float32)
        t1 = time.perf_counter()
        x = ((pixels / np.float32(255.0) - mean) / std)[None]
        q = quantize(x, scale, zero_point, np)
        t2 = time.perf_counter()
        reference = int(np.argmax(np.asarray(call(x))))
        t3 = time.perf_counter()
        interpreter.set_tensor(source["index"], q)
        interpreter.invoke()
        candidate = int(np.argmax(interpreter.get_tensor(target["index"])))
        t4 = time.perf_counter()
        busy["decode"] += t1 - t0
        busy["preprocess"] += t2 - t1
        busy["reference"] += t3 - t2
        busy["candidate"] += t4 - t3
        truth = labels.index(label)
        right["reference"] += reference == truth
        right["candidate"] += candidate == truth
        agree += reference == candidate
    count = max(len(samples), 1)
    record = {
        "images": len(samples),
        "compiled": args.compiled,
        "reference_accuracy": right["reference"] / count,
        "candidate_accuracy": right["candidate"] / count,
        "agreement": agree / count,
        "seconds": {"setup": setup, **busy, "total": time.perf_counter() - STARTED},
        "loop_seconds": sum(busy.values()),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
