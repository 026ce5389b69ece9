"""--bgr and NCHW inputs, proven on a model whose answer is the channel it sees brightest: plain Keras, no edgecnn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, tflite_from_keras
from PIL import Image

CLASSES = ("first", "second", "third")


def channel_model(*, nchw: bool) -> bytes:
    """Scores = softmax(10 x mean of each channel): class i wins when channel i is the brightest."""
    import keras

    inputs = keras.Input(shape=(3, 8, 8) if nchw else (8, 8, 3), name="pixels")
    h = keras.layers.Permute((2, 3, 1), name="to_nhwc")(inputs) if nchw else inputs
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    dense = keras.layers.Dense(3, activation="softmax", name="scores")
    outputs = dense(h)
    dense.set_weights([np.eye(3, dtype=np.float32) * 10.0, np.zeros(3, dtype=np.float32)])
    return tflite_from_keras(keras.Model(inputs, outputs, name="channels"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("channels")
    (root / "nhwc.tflite").write_bytes(channel_model(nchw=False))
    (root / "nchw.tflite").write_bytes(channel_model(nchw=True))
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(root / "red.png")
    return {"root": root}


def top(result: object) -> str:
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return json.loads(result.stdout)["predictions"][0]["top"][0]["label"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_rgb_and_bgr_feed_the_channels_in_that_order(setup: dict[str, Path], layout: str) -> None:
    root = setup["root"]
    common = [root / f"{layout}.tflite", root / "red.png", "--labels", root / "labels.txt", "--input-range", "0,1"]
    assert top(run_cli("run", *common, "--json")) == "first"  # red is channel 0 in RGB
    assert top(run_cli("run", *common, "--bgr", "--json")) == "third"  # and channel 2 in BGR


def test_a_converted_bgr_model_keeps_its_channel_order(setup: dict[str, Path], tmp_path: Path) -> None:
    """The bundle's sidecar records BGR; its TFLite Metadata says neither RGB nor grayscale."""
    from edgecnn.model.metadata import read_metadata

    root = setup["root"]
    out = tmp_path / "bgr.tflite"
    converted = run_cli(
        "convert", root / "nhwc.tflite", "--out", out, "--quantize", "none",
        "--labels", root / "labels.txt", "--input-range", "0,1", "--bgr",
    )  # fmt: skip
    assert converted.exit_code == 0, converted.output
    assert "BGR NHWC input" in converted.stderr
    assert json.loads(out.with_suffix(".json").read_text())["preprocessing"]["bgr"] is True
    assert read_metadata(out.read_bytes()).color_space is None
    assert top(run_cli("run", out, root / "red.png", "--json")) == "third"


def test_the_micro_export_of_a_bgr_nchw_model_says_so(
    setup: dict[str, Path], tmp_path: Path, small_folder: Path
) -> None:
    """Firmware feeds what the settings header describes: the channels-first layout, the BGR order, the true size."""
    root = setup["root"]
    out = tmp_path / "m.tflite"
    converted = run_cli(
        "convert", root / "nchw.tflite", "--out", out, "--calibration", small_folder, "--calibration-size", "12",
        "--labels", root / "labels.txt", "--input-range", "0,1", "--bgr",
    )  # fmt: skip
    assert converted.exit_code == 0, converted.output
    exported = run_cli("export", "micro", out, "--out", tmp_path / "fw", "--name", "m")
    assert exported.exit_code == 0, exported.output
    settings = (tmp_path / "fw" / "m_model_settings.h").read_text()
    for line in (
        "constexpr int kmInputHeight = 8;",
        "constexpr int kmInputWidth = 8;",
        "constexpr int kmInputChannels = 3;",
        "constexpr bool kmInputChannelsFirst = true;",
        "constexpr bool kmImageBgr = true;",
        "// Input dimensions, NCHW",
    ):
        assert line in settings, line
    assert "as BGR (3 channels), channels first" in settings
