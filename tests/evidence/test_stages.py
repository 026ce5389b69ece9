"""``edgecnn validate --stages`` on real images: Keras float → TFLite float → int8 → int8 reference kernels."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_cli


def test_stages_show_where_the_error_enters(cifar_models: dict[str, Path], small_folder: Path) -> None:
    result = run_cli(
        "validate", small_folder, "-r", cifar_models["keras"], "-c", cifar_models["int8"],
        "--max-drop", "100", "--stages", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    stages = json.loads(result.stdout)["stages"]
    names = [s["name"] for s in stages["stages"]]
    assert names == ["keras float", "tflite float", "tflite int8", "tflite int8 (reference kernels)"]
    conversion, quantization, kernels = stages["comparisons"]
    # Conversion alone changes the scores by float rounding only; quantization moves them measurably.
    assert conversion["agreement"] == 1.0 and conversion["mae"] < 1e-5 and conversion["cosine"] > 0.999999
    assert quantization["mae"] > 10 * conversion["mae"] and quantization["cosine"] < conversion["cosine"]
    # The reference kernels differ from XNNPACK by a few output steps at most.
    assert kernels["agreement"] >= 0.9 and kernels["cosine"] > 0.99
    report = json.loads(result.stdout)
    assert stages["stages"][0]["accuracy"] == report["reference_accuracy"]
    assert stages["stages"][2]["accuracy"] == report["candidate_accuracy"]
    text = run_cli(
        "validate", small_folder, "-r", cifar_models["float"], "-c", cifar_models["int8"], "--max-drop", "100",
        "--stages",
    )  # fmt: skip
    assert text.exit_code == 0 and "tflite float → tflite int8" in text.stdout and "keras float" not in text.stdout
