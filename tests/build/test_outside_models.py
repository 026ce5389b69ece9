"""Models from elsewhere on the build side: loading them safely, SavedModel batch fixing, ai-edge-quantizer on a float
``.tflite`` (a model without a signature, already-quantized models, determinism), the TFLite Metadata every
conversion embeds, and the refusals. The models are tiny and untrained, built here as an outside user would."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import PHOTO_CLASSES

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.runtime.hints import make_hints

MARKER = "code_ran.txt"


def _touch_marker(x: Any) -> Any:
    """A layer function with a side effect: if loading a model ever runs it, the marker file appears."""
    Path(MARKER).write_text("ran")
    return x


def _plain(name: str = "plain", *, softmax: bool = True, classes: int = 10) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(32, 32, 3), name="pixels")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten(name="flat")(h)
    outputs = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="scores")(h)
    return keras.Model(inputs, outputs, name=name)


def _float_tflite(model: Any) -> bytes:
    """TensorFlow's own converter with a batch-1 input, no edgecnn code."""
    import keras
    import tensorflow as tf

    fixed = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="pixels")
    return bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(fixed, model(fixed))).convert())


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One untrained classifier saved every way a user brings it, plus labels.txt."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("zoo")
    model = _plain()
    model.save(root / "m.keras")
    model.save(root / "m.h5")
    tf.saved_model.save(model, str(root / "saved"))  # a dynamic batch, and variables converters must freeze
    (root / "m.tflite").write_bytes(_float_tflite(model))
    _plain("logits", softmax=False).save(root / "logits.keras")
    (root / "labels.txt").write_text("\n".join(PHOTO_CLASSES) + "\n")
    return {"root": root, **{p.name: p for p in root.iterdir()}}


def _hints(zoo: dict[str, Path]) -> Any:
    return make_hints(labels=zoo["labels.txt"], input_range=(0.0, 1.0))


def _convert(source: Path, out: Path, **options: Any) -> Any:
    from edgecnn.build.convert import convert

    return convert(source, out, **options)


# --- loading safely ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_lambda_layer_is_refused_before_any_code_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    import keras

    from edgecnn.build.keras_model import load_outside_keras

    monkeypatch.chdir(tmp_path)
    inputs = keras.Input(shape=(8, 8, 3), name="pixels")
    h = keras.layers.Lambda(_touch_marker, name="sneaky")(inputs)
    outputs = keras.layers.Dense(2, name="scores")(keras.layers.Flatten(name="flat")(h))
    keras.Model(inputs, outputs).save(tmp_path / f"lambda{suffix}")
    Path(MARKER).unlink()  # building the model ran it; loading must not
    with pytest.raises(ModelFormatError, match="Lambda layer 'sneaky'"):
        load_outside_keras(tmp_path / f"lambda{suffix}")
    assert not Path(MARKER).exists()


@pytest.mark.parametrize("name", ["junk.keras", "junk.h5", "weights.h5"])
def test_an_unloadable_file_is_one_clear_line(tmp_path: Path, name: str) -> None:
    from edgecnn.build.keras_model import load_outside_keras

    path = tmp_path / name
    if name == "weights.h5":
        _plain().save_weights(tmp_path / "w.weights.h5")
        (tmp_path / "w.weights.h5").rename(path)  # weights only: no model configuration
    else:
        path.write_bytes(b"PK\x03\x04 not really a model" * 10)
    with pytest.raises(ModelFormatError) as raised:
        load_outside_keras(path)
    assert "\n" not in str(raised.value) and name in str(raised.value)


def test_a_folder_that_is_not_a_savedmodel_is_refused(tmp_path: Path) -> None:
    from edgecnn.build.outside import open_source

    with pytest.raises(ModelFormatError, match="not a SavedModel"):
        open_source(tmp_path)


def test_keras_runner_runs_outside_models_with_the_given_description(zoo: dict[str, Path]) -> None:
    import keras

    from edgecnn.build.keras_model import KerasRunner
    from edgecnn.runtime.describe import classifier_info
    from edgecnn.runtime.quant import QuantParams

    info = classifier_info([1, 32, 32, 3], QuantParams("float32"), QuantParams("float32"), classes=10,
                           hints=_hints(zoo), model="m")  # fmt: skip
    images = np.random.default_rng(0).uniform(0, 1, (5, 32, 32, 3)).astype(np.float32)
    want = keras.models.load_model(zoo["m.keras"]).predict(images, verbose=0)
    for name in ("m.keras", "m.h5", "saved"):
        runner = KerasRunner(zoo[name], info=info)
        np.testing.assert_allclose(runner.predict(images), want, rtol=1e-5, atol=1e-6)
        runner.close()


# --- SavedModel -------------------------------------------------------------------------------------------------


def test_a_savedmodel_with_a_dynamic_batch_converts_with_batch_1_and_its_weights(
    zoo: dict[str, Path], tmp_path: Path
) -> None:
    import keras
    from ai_edge_litert.interpreter import Interpreter

    result = _convert(zoo["saved"], tmp_path / "sm.tflite", quantize="none", hints=_hints(zoo))
    assert result.info.input_shape == [1, 32, 32, 3]
    assert not {"SHAPE", "STRIDED_SLICE", "PACK", "VAR_HANDLE", "READ_VARIABLE"} & set(result.ops)
    image = np.random.default_rng(1).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    interpreter = Interpreter(model_path=str(result.path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    # The weights were frozen in (a converter without the loaded object writes a model that outputs NaN).
    want = keras.models.load_model(zoo["m.keras"]).predict(image, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert result.info.extra["source"]["format"] == "savedmodel" and len(result.info.extra["source"]["sha256"]) == 64


def test_a_savedmodel_for_a_fixed_batch_of_four_is_refused(tmp_path: Path, zoo: dict[str, Path]) -> None:
    import tensorflow as tf

    model = _plain()

    class Fixed(tf.Module):
        def __init__(self) -> None:
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([4, 32, 32, 3], tf.float32)])
        def serve(self, x: Any) -> Any:
            return {"scores": self.model(x)}

    module = Fixed()
    tf.saved_model.save(module, str(tmp_path / "four"), signatures={"serving_default": module.serve})
    with pytest.raises(UsageError, match="batches of exactly 4"):
        _convert(tmp_path / "four", tmp_path / "four.tflite", quantize="none", hints=_hints(zoo))


# --- a float .tflite through ai-edge-quantizer -----------------------------------------------------------------


def _strip_signatures(flatbuffer: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    root.signatureDefs = []
    builder = flatbuffers.Builder(0)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_tflite_without_a_signature_is_quantized(zoo: dict[str, Path], tmp_path: Path, small_folder: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    bare = tmp_path / "nosig.tflite"
    bare.write_bytes(_strip_signatures(zoo["m.tflite"].read_bytes()))
    assert Interpreter(model_path=str(bare)).get_signature_list() == {}
    result = _convert(bare, tmp_path / "q.tflite", calibration=small_folder, calibration_size=12, hints=_hints(zoo))
    assert (result.info.input.dtype, result.info.output.dtype) == ("int8", "int8")
    assert result.info.quantization == "int8"


@pytest.mark.parametrize(
    ("quantize", "io", "dtype"),
    [
        ("int8", "uint8", "uint8"),
        ("int8", "float32", "float32"),
        ("dynamic", None, "float32"),
        ("float16", None, "float32"),
    ],
)
def test_every_mode_applies_to_a_tflite(
    zoo: dict[str, Path], tmp_path: Path, small_folder: Path, quantize: str, io: str | None, dtype: str
) -> None:
    from edgecnn.targets.facts import graph_quantization

    result = _convert(zoo["m.tflite"], tmp_path / "q.tflite", quantize=quantize, io=io,
                      calibration=small_folder if quantize == "int8" else None, calibration_size=12,
                      hints=_hints(zoo))  # fmt: skip
    assert result.info.input.dtype == dtype and result.info.quantization == quantize
    from edgecnn.model.flatbuffer import read_flatbuffer

    assert graph_quantization(read_flatbuffer(result.path.read_bytes())) == quantize
    assert result.size_bytes < result.float_size_bytes


def test_an_already_quantized_tflite_is_rebundled_not_quantized_again(
    zoo: dict[str, Path], tmp_path: Path, small_folder: Path
) -> None:
    first = _convert(zoo["m.tflite"], tmp_path / "a" / "q.tflite", calibration=small_folder, calibration_size=12,
                     hints=_hints(zoo))  # fmt: skip
    with pytest.raises(UsageError, match=r"already quantized.*--quantize none"):
        _convert(first.path, tmp_path / "b.tflite", calibration=small_folder)
    again = _convert(first.path, tmp_path / "c" / "q.tflite", quantize="none")  # described by its sidecar
    assert again.info.quantization == "int8" and again.info.labels == PHOTO_CLASSES
    # The metadata's name was the source's stem ("m") and is now that of its metadata: the same bytes.
    assert again.path.read_bytes() == first.path.read_bytes()


def test_ai_edge_quantizer_output_is_byte_identical_across_processes(
    zoo: dict[str, Path], tmp_path: Path, small_folder: Path
) -> None:
    from edgecnn.build.quantize_tflite import quantize_tflite

    images = np.random.default_rng(2).uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    here = quantize_tflite(zoo["m.tflite"].read_bytes(), quantize="int8", io_type="int8", images=images, model="m")
    again = quantize_tflite(zoo["m.tflite"].read_bytes(), quantize="int8", io_type="int8", images=images, model="m")
    script = (
        "import sys, numpy as np; from edgecnn.build.quantize_tflite import quantize_tflite; "
        "out = quantize_tflite(open(sys.argv[1], 'rb').read(), quantize='int8', io_type='int8', "
        "images=np.load(sys.argv[2]), model='m'); sys.stdout.buffer.write(out)"
    )
    there = subprocess.run([sys.executable, "-c", script, str(zoo["m.tflite"]), str(tmp_path / "images.npy")],
                           check=True, capture_output=True).stdout  # fmt: skip
    assert hashlib.sha256(here).hexdigest() == hashlib.sha256(again).hexdigest() == hashlib.sha256(there).hexdigest()


def test_the_quantizers_console_chatter_stays_off_stdout(
    zoo: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    from edgecnn.build.quantize_tflite import quantize_tflite

    images = np.zeros((2, 32, 32, 3), np.float32)
    quantize_tflite(zoo["m.tflite"].read_bytes(), quantize="int8", io_type="int8", images=images, model="m")
    out, err = capfd.readouterr()
    assert out == "" and "Quantized model size" not in err and "Calibration" not in err


# --- what every conversion writes ------------------------------------------------------------------------------


def test_the_written_model_carries_tflite_metadata(zoo: dict[str, Path], tmp_path: Path) -> None:
    from edgecnn.build.convert import DEFAULT_DESCRIPTION, ModelCard
    from edgecnn.model.metadata import read_metadata

    plain = _convert(zoo["m.keras"], tmp_path / "digits.tflite", quantize="none", hints=_hints(zoo))
    meta = read_metadata(plain.path.read_bytes())
    assert (meta.name, meta.description, meta.version, meta.author) == ("m", DEFAULT_DESCRIPTION, "1", "")
    assert meta.labels == tuple(PHOTO_CLASSES) and meta.score == "probability"
    assert meta.mean == (0.0,) and meta.std == (255.0,)  # --input-range 0,1 on the metadata's 0..255 scale
    assert plain.info.model_sha256 == hashlib.sha256(plain.path.read_bytes()).hexdigest()
    card = ModelCard(name="n", description="d", version="7", author="a", license="MIT")
    logits = _convert(zoo["logits.keras"], tmp_path / "l.tflite", quantize="none", hints=_hints(zoo), card=card)
    meta = read_metadata(logits.path.read_bytes())
    assert (meta.name, meta.description, meta.version, meta.author, meta.license) == ("n", "d", "7", "a", "MIT")
    assert meta.score == "logit"


def test_score_kind_looks_through_quantize_ops(zoo: dict[str, Path], tmp_path: Path, small_folder: Path) -> None:
    from edgecnn.build.convert import score_kind

    result = _convert(zoo["m.tflite"], tmp_path / "u.tflite", io="uint8", calibration=small_folder,
                      calibration_size=12, hints=_hints(zoo))  # fmt: skip
    assert "QUANTIZE" in result.ops and score_kind(result.path.read_bytes()) == "probability"


def test_options_for_an_edgecnn_model_must_agree_with_it(
    models: dict[str, Path], zoo: dict[str, Path], tmp_path: Path
) -> None:
    """An edgecnn model carries its labels and preprocessing: options that say the same are fine, others refused."""
    agreeing = _convert(models["keras"], tmp_path / "x.tflite", quantize="none", hints=_hints(zoo))
    assert agreeing.info.labels == PHOTO_CLASSES
    wrong = tmp_path / "labels.txt"
    wrong.write_text("\n".join(reversed(PHOTO_CLASSES)) + "\n")
    with pytest.raises(UsageError, match="drop --labels"):
        _convert(models["keras"], tmp_path / "y.tflite", quantize="none", hints=make_hints(labels=wrong))
    with pytest.raises(UsageError, match="another input normalization"):
        _convert(models["keras"], tmp_path / "z.tflite", quantize="none", hints=make_hints(input_range=(-1, 1)))


def test_an_output_shaped_10x4_is_not_a_classifier(zoo: dict[str, Path], tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(32, 32, 3), name="pixels")
    h = keras.layers.Dense(40, name="boxes")(keras.layers.Flatten(name="flat")(inputs))
    keras.Model(inputs, keras.layers.Reshape((10, 4), name="per_box")(h), name="boxes").save(tmp_path / "boxes.keras")
    with pytest.raises(UsageError, match=r"output has shape \[1, 10, 4\]"):
        _convert(tmp_path / "boxes.keras", tmp_path / "b.tflite", quantize="none", hints=_hints(zoo))


def test_max_drop_on_a_tflite_is_refused(zoo: dict[str, Path], tmp_path: Path, small_folder: Path) -> None:
    from edgecnn.build.for_target import convert_for_target

    with pytest.raises(UsageError, match="--max-drop"):
        convert_for_target(zoo["m.tflite"], tmp_path / "g.tflite", max_drop=1.0, data=small_folder,
                           calibration=small_folder, hints=_hints(zoo))  # fmt: skip


def test_int8_io_warns_except_for_int8_targets(zoo: dict[str, Path], tmp_path: Path, small_folder: Path) -> None:
    from edgecnn.build.for_target import TargetConversion

    result = _convert(zoo["m.tflite"], tmp_path / "w.tflite", calibration=small_folder, calibration_size=12,
                      hints=_hints(zoo))  # fmt: skip
    assert any("--io uint8" in line for line in TargetConversion(result, None).messages())
    assert not any("--io uint8" in line for line in TargetConversion(result, None, "micro").messages())


def test_a_tflite_with_weights_over_256_kib_is_written_self_contained(
    zoo: dict[str, Path], tmp_path: Path, small_folder: Path
) -> None:
    """ai-edge-quantizer puts such weights after the flatbuffer; the written model holds them inside, and runs."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.model.metadata import read_metadata

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(32, 32, 3), name="pixels")
    h = keras.layers.Dense(96, activation="relu", name="wide")(keras.layers.Flatten(name="flat")(inputs))  # 295k
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="scores")(h), name="wide")
    (tmp_path / "wide.tflite").write_bytes(_float_tflite(model))
    result = _convert(tmp_path / "wide.tflite", tmp_path / "q.tflite", calibration=small_folder, calibration_size=12,
                      hints=_hints(zoo))  # fmt: skip
    assert 295_000 < result.size_bytes < 400_000
    assert read_metadata(result.path.read_bytes()).labels == tuple(PHOTO_CLASSES)
    interpreter = Interpreter(model_path=str(result.path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.zeros((1, 32, 32, 3), np.int8))
    interpreter.invoke()


def test_a_tflite_with_tflite_metadata_needs_no_options(
    zoo: dict[str, Path], tmp_path: Path, small_folder: Path
) -> None:
    """Labels and normalization come from the model's own TFLite Metadata (a bare copy: no sidecar)."""
    import shutil

    from edgecnn.build.convert import ModelCard

    card = ModelCard(name="digits", author="someone")
    described = _convert(zoo["m.tflite"], tmp_path / "a" / "f.tflite", quantize="none", hints=_hints(zoo), card=card)
    bare = tmp_path / "bare.tflite"
    shutil.copyfile(described.path, bare)
    result = _convert(bare, tmp_path / "q.tflite", calibration=small_folder, calibration_size=12)
    assert result.info.labels == PHOTO_CLASSES and result.info.preprocessing.std == (1.0,)
    assert result.info.extra["source"]["described_by"] == ["tflite-metadata"]
    from edgecnn.model.metadata import read_metadata

    meta = read_metadata(result.path.read_bytes())
    assert (meta.name, meta.author) == ("digits", "someone")  # the source's card is kept
