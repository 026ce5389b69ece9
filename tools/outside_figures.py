"""Float vs int8 accuracy of models edgecnn did not train, converted and validated through the edgecnn CLI.

An outside user's model: a plain-Keras CNN trained by this script's own code (Pillow + numpy + Keras, no edgecnn),
inputs scaled to [-1, 1]. It is saved four ways and each goes through ``edgecnn convert`` (``--labels`` and
``--input-range -1,1``) and ``edgecnn validate`` (the Keras model, or the float ``.tflite``, as reference) on the
held-out test images:

- ``.keras`` (Keras 3), ``.h5`` (legacy) and a SavedModel folder: TensorFlow's converter, full-integer int8;
- a float ``.tflite`` from TensorFlow's own converter: ai-edge-quantizer, int8;
- the same network taking NCHW input (a PyTorch-style export), as ``.keras``.

Data: CIFAR-10 (``../shared/datasets/cifar10``, JPEG folders) when present, else the scikit-learn digits written as
32x32 photos. A fixed class-balanced subset keeps it to minutes on a laptop CPU.

    python tools/outside_figures.py --train-per-class 500 --test-per-class 100 --epochs 15 --json /tmp/outside.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers import copy_subset, outside_classifier, outside_inputs, read_folder, tflite_from_keras, write_photos  # noqa: E402


def edgecnn(*args: str | Path) -> dict:
    """Run the edgecnn CLI in a subprocess (as a pipeline would) and return its JSON document."""
    done = subprocess.run(
        [sys.executable, "-m", "edgecnn", *map(str, args), "--json", "--quiet"], capture_output=True, text=True
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"edgecnn {' '.join(map(str, args))} exited {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgecnn-outside-"))
    try:
        cifar = REPO.parent / "shared" / "datasets" / "cifar10"
        if (cifar / "train").is_dir():
            source, name = cifar, "CIFAR-10"
        else:
            source, name = work / "digits", "digits (scikit-learn) as photos"
            write_photos(source)
        train = copy_subset(source / "train", work / "train", per_class=args.train_per_class)
        test = copy_subset(source / "test", work / "test", per_class=args.test_per_class)
        x, y, classes = read_folder(train)
        labels = work / "labels.txt"
        labels.write_text("\n".join(classes) + "\n")
        common = ["--labels", labels, "--input-range", "-1,1", "--calibration", train, "--calibration-size", "300"]

        rows = []
        for nchw in (False, True):
            model = outside_classifier(x, y, len(classes), nchw=nchw, epochs=args.epochs)
            tx, ty, _ = read_folder(test)
            own = float(np.mean(np.argmax(model.predict(outside_inputs(tx, nchw=nchw), verbose=0), axis=1) == ty))
            tag = "nchw" if nchw else "nhwc"
            sources = {f"keras ({tag})": work / f"{tag}.keras"}
            model.save(sources[f"keras ({tag})"])
            if not nchw:
                model.save(work / "model.h5")
                model.export(work / "saved_model", verbose=False)
                (work / "float.tflite").write_bytes(tflite_from_keras(model))
                sources.update(
                    {"h5": work / "model.h5", "savedmodel": work / "saved_model", "float tflite": work / "float.tflite"}
                )
            for kind, path in sources.items():
                out = work / f"{kind.replace(' ', '_').replace('(', '').replace(')', '')}_int8.tflite"
                converted = edgecnn("convert", path, "--out", out, *common)
                report = edgecnn("validate", "-r", path, "-c", out, test, "--max-drop", "100")
                rows.append(
                    {
                        "source": kind,
                        "quantizer": "ai-edge-quantizer" if kind == "float tflite" else "TFLiteConverter",
                        "own_keras_accuracy": own,
                        "float_accuracy": report["reference_accuracy"],
                        "int8_accuracy": report["candidate_accuracy"],
                        "drop_pp": report["accuracy_drop_pp"],
                        "agreement": report["agreement"],
                        "size_bytes": converted["size_bytes"],
                        "images": report["num_images"],
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
        result = {"dataset": name, "train_images": len(x), "epochs": args.epochs, "rows": rows}
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
