"""``--kernels default|reference`` on the host and rpi targets: TFLite's reference kernels in the interpreter, for
``run``, ``validate``, ``bench`` and ``check``, named wherever the runtime is reported.

The model is a tiny int8 CNN trained here on the digit photos: two convolutions, a max pool, a convolution as the
classifier head, softmax. Its int8 outputs with the reference kernels are TensorFlow Lite Micro's to the bit, on every
test photo. The head is a convolution, not a Dense layer, on purpose: ai-edge-litert 2.3's reference
FULLY_CONNECTED rounds some exact ties one output step the other way from TFLM's (tflite-runtime 2.14's does not;
``tests/targets/micro/test_micro.py`` bounds that difference on the session's model).

The rpi target's kernel set travels to the Pi's agent in the load request: here the agent is a child process on
this machine, standing in for ``edgecnn agent`` over SSH; tests/targets/rpi/test_pi_cli_emulated.py runs the same
on an emulated Pi.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import copy_subset, run_cli

from edgecnn.errors import TargetUnavailableError, UsageError
from edgecnn.model.graph import read_graph
from edgecnn.runtime.bench import BenchPlan
from edgecnn.runtime.bundle import ModelInfo, read_tflite_info, write_tflite
from edgecnn.runtime.data import Sample, load_images, scan_folder
from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.runtime.quant import QuantParams, dequantize, quantize
from edgecnn.runtime.runtimes import check_kernels, runtime_module
from edgecnn.targets import make_target

BAD = (
    "--kernels cmsis-nn is not a kernel set of --target {target}: give default (XNNPACK) or reference (TFLite's "
    "reference kernels)"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, photos_train: Path) -> Path:
    """The tiny int8 CNN (int8 I/O, batch 1) as a bundle: labels are the photos' classes, pixels scaled to [0, 1]."""
    import keras
    import tensorflow as tf

    spec = Preprocessing(32, 32, 3)
    folder = scan_folder(photos_train, limit_per_class=60)
    train = load_images(folder.samples, spec)
    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(len(folder.classes), 8, name="head")(x)  # 8x8 -> 1x1: a Dense layer as a convolution
    x = keras.layers.Reshape((len(folder.classes),), name="logits")(x)
    model = keras.Model(image, keras.layers.Softmax(name="scores")(x), name="tiny")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(train.images, train.labels, epochs=6, batch_size=16, verbose=0)  # about 90% right
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([train.images[i : i + 1]] for i in range(0, len(train.images), 4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    content = converter.convert()
    path = tmp_path_factory.mktemp("tiny") / "tiny_int8.tflite"
    path.write_bytes(content)
    graph = read_graph(path)
    inp, out = graph.inputs[0], graph.outputs[0]
    info = ModelInfo(
        labels=list(folder.classes),
        preprocessing=spec,
        input_shape=list(inp.shape),
        input=QuantParams(inp.dtype, inp.scale, inp.zero_point),
        output=QuantParams(out.dtype, out.scale, out.zero_point),
        quantization="int8",
    )
    write_tflite(path, content, info)
    assert set(graph.ops) == {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "SOFTMAX"}
    return path


@pytest.fixture(scope="module")
def test_set(photos_test: Path, tiny: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every test photo (359), preprocessed for the tiny model, and its class index in the model's labels."""
    info = read_tflite_info(tiny)
    loaded = load_images(scan_folder(photos_test, labels=info.labels).samples, info.preprocessing)
    return loaded.images, loaded.labels


def _int8(scores: np.ndarray, params: QuantParams) -> np.ndarray:
    """The int8 output tensor that dequantized to ``scores`` (exactly: checked by dequantizing it again)."""
    raw = np.rint(scores.astype(np.float64) / params.scale + params.zero_point).astype(np.int8)
    assert np.array_equal(dequantize(raw, params), scores)
    return raw


def _tflm(model: Path, images: np.ndarray) -> np.ndarray:
    """The int8 output tensor of TensorFlow Lite Micro's Python interpreter for each image, quantized as edgecnn
    quantizes its input."""
    tflite_micro = pytest.importorskip("tflite_micro")
    info = read_tflite_info(model)
    micro = tflite_micro.runtime.Interpreter.from_bytes(model.read_bytes(), arena_size=64 * 1024)
    outputs = []
    for image in quantize(images, info.input):
        micro.set_input(image[None], 0)
        micro.invoke()
        outputs.append(np.asarray(micro.get_output(0)).reshape(-1))
    return np.stack(outputs)


def test_host_reference_kernels_are_tflms_to_the_bit(tiny: Path, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    """The host's ``--kernels reference`` int8 outputs equal TensorFlow Lite Micro's Python interpreter's, on every
    test photo; the default kernels (XNNPACK) run the same model too, and are named apart."""
    images, labels = test_set
    info = read_tflite_info(tiny)
    theirs = _tflm(tiny, images)
    reference = make_target("host", kernels="reference").open(tiny)
    default = make_target("host").open(tiny)
    try:
        assert reference.kernels == "reference" and reference.runtime == f"{runtime_module()[0]} (reference kernels)"
        assert default.kernels == "default" and default.runtime == runtime_module()[0]
        ours = _int8(reference.predict(images), info.output)
        optimized = _int8(default.predict(images), info.output)
    finally:
        reference.close()
        default.close()
    assert theirs.dtype == np.int8 and theirs.shape == ours.shape == (len(images), len(info.labels))
    differ = int(np.sum(np.any(ours != theirs, axis=1)))
    assert differ == 0, f"the reference kernels differ from TFLM on {differ} of {len(ours)} photos"
    # A model that says something: most photos right, outputs spread over the int8 range.
    assert np.mean(ours.argmax(1) == labels) > 0.5 and len(np.unique(ours)) > 50
    # XNNPACK computes the same model its own way: the same answers, scores within a few output steps.
    assert np.mean(optimized.argmax(1) == ours.argmax(1)) > 0.95
    assert np.max(np.abs(optimized.astype(np.int32) - ours.astype(np.int32))) <= 8


def _json(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _scores(run: dict[str, Any], labels: list[str]) -> np.ndarray:
    """Every class's score of every image from ``run --top-k <all> --json``."""
    return np.array(
        [[{t["label"]: t["score"] for t in p["top"]}[label] for label in labels] for p in run["predictions"]]
    )


def test_every_command_runs_and_reports_the_kernels(tiny: Path, photos_test: Path, tmp_path: Path) -> None:
    """run, validate, bench and check with ``--kernels reference`` (and without it, or with ``default``: the default
    kernels) say which kernels ran wherever they name the runtime; run's scores are the reference kernels' own."""
    name = runtime_module()[0]
    info = read_tflite_info(tiny)
    data = copy_subset(photos_test, tmp_path / "data", per_class=2)
    photos = sorted((data / "three").iterdir())
    runner = TFLiteRunner(tiny, reference_kernels=True)
    expected = runner.predict(load_images([Sample(p, -1) for p in photos], info.preprocessing).images)
    runner.close()
    for kernels, runtime in ((None, name), ("default", name), ("reference", f"{name} (reference kernels)")):
        option = [] if kernels is None else ["--kernels", kernels]
        ran = _json(run_cli("run", tiny, *photos, "--top-k", "10", "--json", *option))
        assert ran["runtime"] == runtime and ran["target"] == "host"
        if kernels == "reference":
            assert np.array_equal(_scores(ran, info.labels), expected)
        bench = _json(run_cli("bench", tiny, "--runs", "2", "--warmup", "0", "--json", *option))
        assert bench["runtime"] == runtime and bench["target"] == "host"
        checked = _json(run_cli("check", tiny, "--json", *option))
        loaded = next(f["message"] for f in checked["findings"] if f["code"] == "runtime")
        assert checked["passed"] and loaded.startswith(f"loads in {runtime} with ")
        validated = _json(run_cli("validate", data, "-r", tiny, "-c", tiny, "--max-drop", "100", "--json", *option))
        assert validated["candidate_runtime"] == runtime and validated["candidate_target"] == "host"
    text = run_cli("bench", tiny, "--runs", "2", "--warmup", "0", "--kernels", "reference")
    assert text.exit_code == 0 and f"{name} (reference kernels)" in text.stdout, text.output


@pytest.mark.parametrize("target", ["host", "rpi"])
def test_an_unknown_kernel_set_is_one_line_exit_2(target: str, tiny: Path, photos_test: Path) -> None:
    photo = next((photos_test / "one").iterdir())
    commands = {
        "run": ["run", tiny, photo],
        "validate": ["validate", photos_test, "-r", tiny, "-c", tiny],
        "bench": ["bench", tiny, "--runs", "1"],
        "check": ["check", tiny],
    }
    for command, args in commands.items():
        result = run_cli(*args, "--target", target, "--kernels", "cmsis-nn")
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr == f"edgecnn: error: {BAD.format(target=target)}\n", command
    with pytest.raises(UsageError, match=f"^--kernels 'x y' is not a kernel set of --target {target}: give default"):
        make_target(target, kernels="x y")


def test_a_keras_model_is_not_run_with_other_kernels(photos_test: Path, tmp_path: Path) -> None:
    """``--kernels`` chooses a .tflite interpreter's kernels: a Keras model given with it is refused (before it is
    read), not run in Keras as if the option were not there."""
    photo = next((photos_test / "one").iterdir())
    keras_model = tmp_path / "model.keras"
    keras_model.write_bytes(b"")
    result = run_cli("run", keras_model, photo, "--kernels", "reference")
    assert result.exit_code == 2 and "is a Keras model" in result.stderr and "--kernels" in result.stderr


def test_host_code_leaves_micros_kernels_to_micro(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--kernels`` of micro (reference, cmsis-nn) reaches the micro target as given: neither the option check nor
    the host's kernel sets refuse it. ``check_kernels`` takes another target's sets."""
    import edgecnn.targets as targets

    given: dict[str, Any] = {}

    class Recorder:
        def __init__(self, **options: Any) -> None:
            given.update(options)

    monkeypatch.setattr(targets, "target_class", lambda name: Recorder)
    make_target("micro", kernels="cmsis-nn")
    assert given == {"threads": None, "kernels": "cmsis-nn"}
    micro = {"reference": "TFLite Micro's reference kernels", "cmsis-nn": "Arm's CMSIS-NN"}
    assert check_kernels("cmsis-nn", target="micro", choices=micro) == "cmsis-nn"
    assert check_kernels(None, target="micro", choices=micro) == "reference"
    with pytest.raises(UsageError, match=r"of --target micro: give reference \(TFLite Micro's"):
        check_kernels("default", target="micro", choices=micro)


# --- rpi: the kernel set travels to the Pi's agent ---------------------------------------------------------------


def _local_agent(*, old: bool = False) -> Any:
    """What stands in for ``AgentSession``: the agent as a child process of this one (``old``: its hello without
    the kernel sets, as an agent from before ``--kernels`` says hello)."""
    from edgecnn.targets.session import Session, child_environment

    def start(host: Any) -> Session:
        session = Session(
            [sys.executable, "-m", "edgecnn.targets.agent"], prefix=f"on {host.destination}: ", env=child_environment()
        )
        if old:
            del session.hello["kernels"]
        return session

    return start


def test_rpi_sends_the_kernels_to_its_agent(
    tiny: Path, test_set: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--target rpi --host ... --kernels reference``: the agent loads the model with the reference kernels (the
    host's scores to the bit), its bench and check use them, and the reports say so."""
    import edgecnn.targets.rpi.target as rpi

    images = test_set[0][:40]
    monkeypatch.setattr(rpi, "AgentSession", _local_agent())
    target = make_target("rpi", host="pi@raspberrypi", kernels="reference")
    runner = target.open(tiny)
    try:
        scores = runner.predict(images)
    finally:
        runner.close()
    host = TFLiteRunner(tiny, kernels="reference")
    expected = host.predict(images)
    host.close()
    assert runner.runtime == f"{runtime_module()[0]} (reference kernels) on pi@raspberrypi"
    assert np.array_equal(scores, expected)
    timed = target.bench(tiny, BenchPlan(None, 2, 0, 1))
    assert timed.runtime == f"{runtime_module()[0]} (reference kernels)" and timed.target == "rpi pi@raspberrypi"
    loaded = next(f.message for f in target.check(tiny) if f.code == "runtime")
    assert loaded.startswith(f"loads in {runtime_module()[0]} (reference kernels) with 4 threads")

    # An agent from before --kernels: refused for the reference kernels, as before for the default ones.
    monkeypatch.setattr(rpi, "AgentSession", _local_agent(old=True))
    with pytest.raises(TargetUnavailableError, match="cannot run --kernels reference: it is older than the option"):
        target.open(tiny)
    default = make_target("rpi", host="pi@raspberrypi").open(tiny)
    try:
        assert default.runtime == f"{runtime_module()[0]} on pi@raspberrypi"
        default.predict(images[:2])
    finally:
        default.close()
