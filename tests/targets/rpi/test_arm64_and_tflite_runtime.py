"""edgecnn's runtime code on a Raspberry Pi (aarch64 Python under qemu) and with tflite-runtime on x86.

Each other environment runs the same small script over the same test photos: edgecnn's own
``load_images`` and ``TFLiteRunner`` with the reference kernels. Its int8 scores must be bit-identical to
ai-edge-litert's reference kernels run here on x86; float scores agree to float rounding. The environments are
built by ``bash tools/setup_test_env.sh`` (see tools/test_envs.py); without them these tests skip (fail under CI).

Each environment's process runs once per module; the two emulated ones (several seconds each) start together, when the
first test that needs one runs, so that ``pytest -m "not slow"`` (which leaves out the emulated Pi) starts none.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import envs
import numpy as np
import pytest

from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.data import Sample, load_images, scan_folder
from edgecnn.runtime.interpreter import TFLiteRunner

PER_CLASS = 3
"""A fixed class-balanced subset: the first 3 test images (by name) of each of the 10 classes."""

RUNS = (
    # (name, model key, reference kernels)
    ("int8", "int8", True),
    ("int8_float_io", "int8_float_io", True),
    ("float", "float", True),
    ("int8_default", "int8", False),  # the optimized kernels (XNNPACK): may differ by a few output steps
)
EXACT = ("int8", "int8_float_io")

SCRIPT = """\
import json, os, platform, sys
from importlib import metadata
from pathlib import Path

import numpy as np

from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.data import Sample, load_images
from edgecnn.runtime.interpreter import TFLiteRunner

job = json.loads(Path(sys.argv[1]).read_text())
out = Path(job["out"])
samples = [Sample(Path(p), -1) for p in job["images"]]
model_file = Path("/proc/device-tree/model")
board = model_file.read_bytes().rstrip(b"\\0").decode() if model_file.exists() else ""
report = {"machine": platform.machine(), "cpus": os.cpu_count(), "board": board, "numpy": np.__version__}
report["runtimes"] = {}
images = None
for name, model, reference_kernels in job["runs"]:
    if images is None:
        images = load_images(samples, read_tflite_info(model).preprocessing, strict=True).images
        np.save(out / "images.npy", images)
    runner = TFLiteRunner(model, reference_kernels=reference_kernels, runtime=job["runtime"])
    np.save(out / (name + ".npy"), runner.predict(images))
    report["runtimes"][name] = runner.runtime
    runner.close()
report["runtime_version"] = metadata.version(job["runtime"])
(out / "report.json").write_text(json.dumps(report))
"""

ENVIRONMENTS = {
    # key: (what runs it, runtime)
    "arm64-litert": ("arm64", "ai-edge-litert"),
    "arm64-tflite-runtime": ("arm64", "tflite-runtime"),
    "x86-tflite-runtime": ("x86_venv_tflite_runtime", "tflite-runtime"),
}


@dataclass
class Job:
    """One script run in another environment: started on demand, waited for by the test that needs it."""

    command: list[str]
    out: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[str] | None = None
    problem: str = ""

    def start(self) -> None:
        """Start the script, unless it runs already or its environment is missing."""
        if self.process is None and not self.problem:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
            )

    def results(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The script's report and arrays; skips (fails under CI) when the environment is missing."""
        if self.problem:
            envs.missing(self.problem)
        self.start()
        assert self.process is not None
        try:
            _, stderr = self.process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"{' '.join(self.command)} took more than 300 s", pytrace=False)
        if self.process.returncode != 0:
            pytest.fail(f"{' '.join(self.command)} exited {self.process.returncode}:\n{stderr[-4000:]}", pytrace=False)
        report = json.loads((self.out / "report.json").read_text())
        arrays = {p.stem: np.load(p) for p in self.out.glob("*.npy")}
        return report, arrays


def _command(where: str, runtime: str) -> list[str]:
    """The python command of an environment; raises ``LookupError`` naming what is missing."""
    status = envs.test_envs.status()
    if where == "arm64":
        flavour = "litert" if runtime == "ai-edge-litert" else runtime
        needed = ["qemu", "arm64_root", f"arm64_site_{flavour.replace('-', '_')}"]
    else:
        needed = [where]
    missing = [name for name in needed if not status[name]]
    if missing:
        raise LookupError(f"test environment {', '.join(missing)} is missing or out of date")
    if where == "arm64":
        return envs.test_envs.arm64_python(flavour)
    return [str(envs.test_envs.venv_python(envs.test_envs.paths()[where]))]


@pytest.fixture(scope="module")
def subset(photos_test: Path) -> list[Path]:
    """30 test photos, 3 per class."""
    return [s.path for s in scan_folder(photos_test, limit_per_class=PER_CLASS).samples]


@pytest.fixture(scope="module")
def jobs(
    models: dict[str, Path], subset: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Job]]:
    """The script's run in every environment, each prepared by the first test that needs it (see ``Job.start``)."""
    folder = tmp_path_factory.mktemp("targets")
    script = folder / "score.py"
    script.write_text(SCRIPT)
    prepared: dict[str, Job] = {}
    for key, (where, runtime) in ENVIRONMENTS.items():
        out = folder / key
        out.mkdir()
        runs = [(name, str(models[model]), reference) for name, model, reference in RUNS]
        job_file = out / "job.json"
        job_file.write_text(
            json.dumps({"out": str(out), "images": [str(p) for p in subset], "runs": runs, "runtime": runtime})
        )
        try:
            command = [*_command(where, runtime), str(script), str(job_file)]
        except LookupError as exc:
            prepared[key] = Job([], out, problem=str(exc))
            continue
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGECNN_RUNTIME")}
        if where != "arm64":
            env["PYTHONNOUSERSITE"] = "1"
        prepared[key] = Job(command, out, env)
    yield prepared
    for job in prepared.values():
        if job.process is not None and job.process.poll() is None:
            job.process.kill()
            job.process.wait()


@pytest.fixture(scope="module")
def reference(models: dict[str, Path], subset: list[Path]) -> dict[str, np.ndarray]:
    """The same runs here on x86 with ai-edge-litert; ``images`` holds the preprocessed images; ``tflm <run>`` the
    int8 runs in TensorFlow Lite Micro's interpreter (its reference kernels)."""
    from edgecnn.targets.micro.target import MicroTarget

    spec = read_tflite_info(models["int8"]).preprocessing
    images = load_images([Sample(p, -1) for p in subset], spec, strict=True).images
    scores = {"images": images}
    for name, model, reference_kernels in RUNS:
        runner = TFLiteRunner(models[model], reference_kernels=reference_kernels, runtime="ai-edge-litert")
        scores[name] = runner.predict(images)
        runner.close()
    for name in EXACT:
        micro = MicroTarget().open(models[dict((r[0], r[1]) for r in RUNS)[name]])
        scores[f"tflm {name}"] = micro.predict(images)
        micro.close()
    return scores


def runtimes(runtime: str) -> dict[str, str]:
    """What each run's runner reports as its runtime: the reference-kernel runs say so."""
    return {name: f"{runtime} (reference kernels)" if reference else runtime for name, _, reference in RUNS}


def within_one_step(a: np.ndarray, b: np.ndarray) -> bool:
    """Softmax int8 scores that differ by at most one output step (1/256) anywhere, on at most a tenth of the images:
    how far ai-edge-litert 2.3's reference kernels stray from TFLM's (a rounding tie in FULLY_CONNECTED)."""
    steps = np.abs(a.astype(np.float64) - b.astype(np.float64)) * 256.0
    return bool(np.max(steps) <= 1.0 + 1e-6 and np.mean(np.any(steps > 1e-6, axis=1)) <= 0.1)


def lsb(a: np.ndarray, b: np.ndarray, model: Path) -> int:
    """The largest difference between two dequantized int8 score arrays, in output quantization steps."""
    scale = read_tflite_info(model).output.scale
    return int(np.rint(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) / scale))


def assert_same_scores(
    theirs: dict[str, np.ndarray], ours: dict[str, np.ndarray], where: str, *, against: str = ""
) -> None:
    """Same images, bit-identical int8 reference-kernel scores, float scores equal up to rounding.

    ``against`` picks which of our int8 runs must be matched exactly: ``""`` ai-edge-litert's reference kernels (for
    ai-edge-litert elsewhere), ``"tflm "`` TensorFlow Lite Micro's (for tflite-runtime 2.14, whose reference kernels
    are TFLM's to the bit; ai-edge-litert 2.3's reference FULLY_CONNECTED rounds some ties one step the other way).
    """
    assert np.array_equal(theirs["images"], ours["images"]), f"{where}: preprocessing differs from x86's"
    for name in EXACT:
        expected = ours[against + name]
        differ = int(np.sum(np.any(theirs[name] != expected, axis=1)))
        assert np.array_equal(theirs[name], expected), f"{where}: {name} reference scores differ on {differ} images"
    np.testing.assert_allclose(theirs["float"], ours["float"], rtol=1e-5, atol=1e-6, err_msg=f"{where}: float")


@pytest.mark.slow  # emulated aarch64 processes
@pytest.mark.parametrize("flavour", ["litert", "tflite-runtime"])
def test_raspberry_pi_scores_equal_x86(
    flavour: str, jobs: dict[str, Job], reference: dict[str, np.ndarray], models: dict[str, Path]
) -> None:
    """On an emulated Raspberry Pi 4 (Cortex-A72), edgecnn with either runtime computes x86's int8 scores exactly."""
    for key in ("arm64-litert", "arm64-tflite-runtime"):
        jobs[key].start()  # both emulated runs at once: the second flavour's is ready when its test comes
    runtime = "ai-edge-litert" if flavour == "litert" else flavour
    report, scores = jobs[f"arm64-{flavour}"].results()
    assert report["machine"] == "aarch64"
    # The emulated program sees the Raspberry Pi 4 described inside the root, not the x86 host.
    assert (report["cpus"], report["board"]) == (4, "Raspberry Pi 4 Model B Rev 1.1")
    assert report["runtimes"] == runtimes(runtime)
    assert report["numpy"].startswith("2." if flavour == "litert" else "1.")
    assert_same_scores(scores, reference, f"arm64 {flavour}", against="" if flavour == "litert" else "tflm ")

    # The optimized kernels (XNNPACK on the Pi): reported, not required to be exact.
    steps = lsb(scores["int8_default"], reference["int8"], models["int8"])
    agreement = float(np.mean(scores["int8_default"].argmax(1) == reference["int8"].argmax(1)))
    exact = "bit-identical" if np.array_equal(scores["float"], reference["float"]) else "within 1e-5"
    print(
        f"\narm64 {flavour} ({report['runtime_version']}, numpy {report['numpy']}): int8 reference kernels "
        f"bit-identical to x86; default kernels vs x86 reference: max {steps} LSB, top-1 agreement "
        f"{agreement:.0%}; float reference kernels {exact}"
    )
    # Loose bounds, far from the wrong answers XNNPACK gives when qemu's default CPU claims SVE2/SME
    # (QEMU_CPU unset: over 200 steps off, under 30% top-1 agreement).
    assert steps <= 8 and agreement >= 0.9


def test_tflite_runtime_on_x86_scores_equal_tflm(jobs: dict[str, Job], reference: dict[str, np.ndarray]) -> None:
    """tflite-runtime 2.14 (numpy 1) runs edgecnn's runner with TensorFlow Lite Micro's int8 scores, to the bit, and
    within one output step of ai-edge-litert's reference kernels."""
    report, scores = jobs["x86-tflite-runtime"].results()
    assert report["runtimes"] == runtimes("tflite-runtime")
    assert report["runtime_version"] == "2.14.0" and report["numpy"].startswith("1.")
    assert_same_scores(scores, reference, "x86 tflite-runtime", against="tflm ")
    for name in EXACT:
        assert within_one_step(scores[name], reference[name])


def _cli_run(venv: Path, model: Path, images: list[Path], runtime: str) -> dict[str, Any]:
    """``edgecnn run --json`` in a venv, with ``$EDGECNN_RUNTIME``; its parsed JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(EDGECNN_RUNTIME=runtime, PYTHONNOUSERSITE="1")
    command = [str(venv / "bin" / "edgecnn"), "run", "--json", "--quiet", str(model), *map(str, images)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_top_scores(prediction: dict[str, Any], row: np.ndarray, labels: list[str]) -> None:
    """The scores ``edgecnn run`` printed for one image are exactly the scores in ``row``."""
    assert [t["score"] for t in prediction["top"]] == [float(row[labels.index(t["label"])]) for t in prediction["top"]]


def _top1(result: dict[str, Any]) -> list[str]:
    return [p["top"][0]["label"] for p in result["predictions"]]


def test_cli_runs_with_tflite_runtime(
    jobs: dict[str, Job], reference: dict[str, np.ndarray], models: dict[str, Path], subset: list[Path]
) -> None:
    """``edgecnn run`` in a tflite-runtime-only venv: exit 0, says tflite-runtime, same answers as ai-edge-litert."""
    venv = envs.venv("x86_venv_tflite_runtime")
    _, scores = jobs["x86-tflite-runtime"].results()
    images = subset[::3]
    result = _cli_run(venv, models["int8"], images, "tflite-runtime")
    assert result["runtime"] == "tflite-runtime"
    assert [Path(p["path"]) for p in result["predictions"]] == images
    labels = read_tflite_info(models["int8"]).labels
    picked = [subset.index(p) for p in images]
    # The CLI's scores are the library's: the same runtime and kernels in the same venv.
    for prediction, row in zip(result["predictions"], scores["int8_default"][picked]):
        assert_top_scores(prediction, row, labels)
    # ai-edge-litert's optimized kernels may differ by an output step, so only a near-tie may change the top-1.
    litert = reference["int8_default"][picked]
    step = read_tflite_info(models["int8"]).output.scale
    for label, row in zip(_top1(result), litert):
        assert row[labels.index(label)] >= row.max() - 2 * step, f"top-1 {label} is not ai-edge-litert's"


def test_runtime_only_venv_runs_without_tensorflow(
    reference: dict[str, np.ndarray], models: dict[str, Path], subset: list[Path]
) -> None:
    """edgecnn's core dependencies alone (what a device gets) run ``edgecnn run``; TensorFlow is not there."""
    venv = envs.venv("x86_venv_runtime")
    python = str(venv / "bin" / "python")
    check = "import importlib.util, edgecnn.cli.main; print(importlib.util.find_spec('tensorflow') is None)"
    assert envs.run([python, "-s", "-c", check]).strip() == "True"
    images = subset[::3]
    result = _cli_run(venv, models["int8"], images, "ai-edge-litert")
    assert result["runtime"] == "ai-edge-litert"
    labels = read_tflite_info(models["int8"]).labels
    expected = reference["int8_default"][[subset.index(p) for p in images]]
    assert _top1(result) == [labels[i] for i in np.argmax(expected, axis=1)]
    for prediction, row in zip(result["predictions"], expected):
        assert_top_scores(prediction, row, labels)


def test_runtime_only_install_serves_every_device_command(models: dict[str, Path], subset: list[Path]) -> None:
    """targets, check (rpi, and coral's pre-flight), bench and validate (with a .tflite reference) in the runtime-only
    venv, TensorFlow absent."""
    venv = envs.venv("x86_venv_runtime")
    folder = subset[0].parents[1]  # the labelled test folder; a limit keeps it to the subset's 3 per class
    model, reference = str(models["int8"]), str(models["float"])
    commands = {
        "targets": ["targets", "--json"],
        "check": ["check", "--target", "rpi", model, "--json"],
        "coral": ["check", "--target", "coral", model, "--json"],  # the Edge TPU pre-flight needs no TensorFlow
        "bench": ["bench", model, "--runs", "3", "--json"],
        "validate": ["validate", str(folder), "--limit-per-class", str(PER_CLASS), "-r", reference, "-c", model,
                     "--max-drop", "100", "--json"],
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGECNN_RUNTIME")}
    results = {}
    for name, args in commands.items():
        done = subprocess.run(
            [str(venv / "bin" / "edgecnn"), *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"
        results[name] = json.loads(done.stdout)
    listed = {t["name"]: t for t in results["targets"]["targets"]}
    assert listed["host"]["usable"] and listed["rpi"]["usable"]
    assert all(t["usable"] or t["fix"] for t in listed.values())  # e.g. coral without libedgetpu: how to get it
    assert results["check"]["passed"] and results["bench"]["runtime"] == "ai-edge-litert"
    assert results["coral"]["passed"] and results["coral"]["details"]["preflight"]["ops_share"] == 1.0
    assert results["validate"]["num_images"] == len(subset) and results["validate"]["passed"]
