"""Classify images with MediaPipe Tasks' ImageClassifier: run by the MediaPipe test venv's python, no edgecnn inside.

Usage: python mediapipe_classify.py MODEL IMAGE... ; prints one JSON document: the top category of each image.
The pixels are decoded with Pillow, as edgecnn decodes them, so the comparison is about the model and its
metadata, not two JPEG decoders.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from mediapipe import Image, ImageFormat
from mediapipe.tasks.python.core.base_options import BaseOptions
from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions
from PIL import Image as Pillow


def main(model: str, images: list[str]) -> None:
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=1)
    top = []
    with ImageClassifier.create_from_options(options) as classifier:
        for path in images:
            with Pillow.open(path) as opened:
                pixels = np.ascontiguousarray(np.asarray(opened.convert("RGB"), dtype=np.uint8))
            result = classifier.classify(Image(image_format=ImageFormat.SRGB, data=pixels))
            best = result.classifications[0].categories[0]
            top.append({"path": path, "label": best.category_name, "index": best.index, "score": best.score})
    print(json.dumps({"top": top}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
