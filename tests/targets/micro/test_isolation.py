"""TensorFlow Lite Micro never runs in edgecnn's process: a model that passes the verifier and still crashes TFLM
(an optional-input marker, -1, where MEAN needs its axis tensor: TFLM dereferences a null tensor) is one exit-2
line from every command that runs it, and the process that asked lives on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_subset, run_cli

from edgecnn.errors import ModelFormatError
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bundle import read_tflite_info, write_tflite
from edgecnn.targets.session import ChildSession

if importlib.util.find_spec("tflite_micro") is None:
    pytest.skip("tflite-micro is not installed (the micro extra)", allow_module_level=True)

CRASH = "TensorFlow Lite Micro crashed on mean_without_axis.tflite (signal 11, SIGSEGV): the model is malformed"


def _without_input(content: bytes, op_name: str, position: int) -> bytes:
    """``content`` with input ``position`` of its first ``op_name`` operation replaced by -1 (no tensor)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    code = getattr(schema.BuiltinOperator, op_name)
    graph = model.subgraphs[0]
    op = next(o for o in graph.operators if model.operatorCodes[o.opcodeIndex].builtinCode == code)
    op.inputs = [(-1 if i == position else int(t)) for i, t in enumerate(op.inputs)]
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    """The session's int8 bundle with MEAN's axis input gone, and a sidecar re-signed to those bytes."""
    content = _without_input(models["int8"].read_bytes(), "MEAN", 1)
    verify_model(content)  # well-formed: the verifier cannot refuse it, only TFLM's crash shows it is wrong
    path = tmp_path_factory.mktemp("crash") / "mean_without_axis.tflite"
    write_tflite(path, content, read_tflite_info(models["int8"]))
    return path


def test_every_command_that_runs_tflm_survives_its_crash(crashing: Path, photos_test: Path, tmp_path: Path) -> None:
    data = copy_subset(photos_test, tmp_path / "data", per_class=1)
    photo = next(p for p in sorted(data.rglob("*")) if p.is_file())
    for command in (
        ["run", "--target", "micro", crashing, photo],
        ["bench", "--target", "micro", crashing, "--runs", "2"],
        ["validate", data, "-r", crashing, "-c", crashing, "--target", "micro", "-q"],
        ["check", "--target", "micro", crashing],
        ["export", "micro", crashing, "--out", tmp_path / "firmware"],
    ):
        result = run_cli(*command)
        assert result.exit_code == 2, (command, result.stderr)
        assert CRASH in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "firmware").exists()


def test_the_micro_runner_runs_tflm_in_a_child(models: dict[str, Path], photos_test: Path) -> None:
    """run, validate and bench never load TFLM in edgecnn's process: its scores come from the child."""
    photo = next(p for p in sorted((photos_test / "three").iterdir()))
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from edgecnn.runtime.bench import BenchPlan\n"
        "from edgecnn.runtime.bundle import read_tflite_info\n"
        "from edgecnn.runtime.preprocess import load_image\n"
        "from edgecnn.targets import make_target\n"
        "model = Path(sys.argv[1])\n"
        "image = load_image(sys.argv[2], read_tflite_info(model).preprocessing)[None]\n"
        "target = make_target('micro')\n"
        "runner = target.open(model)\n"
        "scores = runner.predict(image)\n"
        "runner.close()\n"
        "bench = target.bench(model, BenchPlan(None, 2, 0, 1))\n"
        "print(json.dumps({'runtime': runner.runtime, 'scores': scores.tolist(), 'bench': bench.runtime,\n"
        "                  'loaded': 'tflite_micro' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(models["int8"]), str(photo)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] is False  # the child imported TFLM; this process never did
    assert result["runtime"].startswith("tflite-micro ") and result["bench"].startswith("tflite-micro ")
    assert len(result["scores"][0]) == len(read_tflite_info(models["int8"]).labels)
    assert abs(sum(result["scores"][0]) - 1.0) < 0.02  # a softmax, dequantized


def test_a_child_that_stops_answering_is_killed() -> None:
    """The watchdog: a child that sends nothing within its time limit (here, not even its greeting) is killed, and
    the error says so."""
    with pytest.raises(ModelFormatError, match=r"TensorFlow Lite Micro stopped answering on m\.tflite \(nothing for"):
        ChildSession("TensorFlow Lite Micro", "m.tflite", timeout=0.001)
