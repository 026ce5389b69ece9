"""Kernel parity: one int8 model on seven interpreters and kernel sets, the same images, output step by output step.

The model is ``edgecnn demo``'s int8 digits CNN (8x8x1): ``--demo-dir`` names an earlier ``edgecnn demo --out DIR``,
else the section runs ``edgecnn demo --out WORK/demo --quiet`` (about 25 s; a ``--work`` folder that already holds
one is reused). The images are the first ``--parity-images-per-class`` test images of each digit (by file name; 40 by
default, which is every test digit of the demo's split (the int8 softmax saturates on most digits, so a handful
shows little), 1 with ``--quick``), preprocessed once with the sidecar's preprocessing and quantized once with its input
parameters, so every configuration gets the same int8 input tensors:

1. x86, ai-edge-litert, default kernels (its XNNPACK delegate): ``TFLiteRunner(kernels="default")``;
2. x86, ai-edge-litert, TFLite's reference kernels: ``TFLiteRunner(kernels="reference")``;
3. and 4. the emulated Raspberry Pi 4 (Debian 12 arm64 Python under ``qemu-aarch64-static`` with a Cortex-A72, from
   ``tools/test_envs.py``, built by ``bash tools/setup_test_env.sh``) with ai-edge-litert and with tflite-runtime,
   default kernels and the Pi's 4 threads: one emulated process per flavour runs ``TFLiteRunner`` on all images;
5. TFLM's Python interpreter (tflite-micro) on the host: ``MicroRunner``, raw int8 in and out;
6. and 7. edgecnn's firmware harness for the Cortex-M4F board ``mps2-an386`` under ``qemu-system-arm``, built with
   TFLM's reference kernels and with CMSIS-NN (``build_firmware``, ``run_harness``; TFLM's sources from
   ``--tflm-dir``, ``$EDGECNN_TFLM_DIR`` or ``../shared/third_party/tflm``): raw int8 in and out.

The TFLite interpreters hand back dequantized scores; they are quantized back with the output's scale and zero point,
and the round trip is checked to give exactly those scores again, so every comparison is between raw int8 outputs.
For each pair: how many images have the same top-1 class (``argmax``, first index on a tie) and the largest
difference of any output, in output steps (``|q1 - q2|``). A configuration whose environment is missing (no emulated
Pi, no Arm toolchain, no TFLM sources...) is a row that says why, not a failed section.

In ``results.json``: ``parity.model`` (path, sha256, where it came from), ``parity.images`` (each image's path in the
demo folder and label), ``parity.configurations`` (key, label, ``available``; what ran it, or ``why`` not; top-1
correct, each image's top-1 and raw int8 outputs, space-separated), ``parity.pairs`` (``a``, ``b``, ``top1_agree``,
``images``, ``max_step_diff``, ``images_differing``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from common import HERE, REPO, Context, edgecnn_command, log, machine_line, quick_banner, run_child, section_meta

from edgecnn.errors import EnvironmentProblem, UsageError
from edgecnn.runtime.bundle import ModelInfo, read_tflite_info
from edgecnn.runtime.data import load_images, scan_folder
from edgecnn.runtime.quant import QuantParams, dequantize, quantize

BOARD = "mps2-an386"
PI_THREADS = 4
DEFAULT_TFLM = REPO.parent / "shared" / "third_party" / "tflm"
REPRODUCE = "python tools/bench/run.py --only parity"


@dataclass(frozen=True)
class Configuration:
    """One way of running the model.

    Attributes:
        key: its name in ``results.json``.
        label: its name in the table.
        run: computes the raw int8 outputs ``(images, classes)`` of the images; returns them and what ran them.
    """

    key: str
    label: str
    run: Callable[[Inputs], tuple[np.ndarray, str]]


@dataclass(frozen=True)
class Inputs:
    """What every configuration gets: the model, the same images (float, preprocessed, and int8), the options."""

    model: Path
    info: ModelInfo
    images: np.ndarray
    quantized: np.ndarray
    work: Path
    tflm: Path | None


class NotAvailable(Exception):
    """A configuration cannot run here (its environment is missing); the message says why and how to get it."""


def raw_outputs(scores: np.ndarray, params: QuantParams) -> np.ndarray:
    """Dequantized scores back to the output tensor's integers, checked to be exactly the integers they came from.

    Raises:
        RuntimeError: the scores are not ``dequantize`` of integers with these parameters.
    """
    raw = quantize(scores, params)
    if not np.array_equal(dequantize(raw, params), scores):
        raise RuntimeError("the scores do not quantize back to the output's integers: not dequantized int8 outputs")
    return raw


def version_of(package: str) -> str:
    """An installed package's version ("?" when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


# ----------------------------------------------------------------------------------------------- x86 TFLite


def run_tflite(kernels: str) -> Callable[[Inputs], tuple[np.ndarray, str]]:
    """x86 ai-edge-litert with a kernel set, in this process."""

    def run(inputs: Inputs) -> tuple[np.ndarray, str]:
        from edgecnn.runtime.interpreter import TFLiteRunner

        runner = TFLiteRunner(inputs.model, kernels=kernels, runtime="ai-edge-litert")
        try:
            if not np.array_equal(quantize(inputs.images, runner.input_params), inputs.quantized):
                raise RuntimeError("the interpreter's input quantization differs from the sidecar's")
            assert runner.output_params is not None
            raw = raw_outputs(runner.predict(inputs.images), runner.output_params)
        finally:
            runner.close()
        what = "default kernels (XNNPACK)" if kernels == "default" else "reference kernels"
        return raw, f"ai-edge-litert {version_of('ai-edge-litert')}, {what}, {platform.machine()}, default threads"

    return run


# ----------------------------------------------------------------------------------------------- emulated Pi

PI_SCRIPT = """\
import json, platform, sys
from importlib import metadata
import numpy as np
from edgecnn.runtime.interpreter import TFLiteRunner

model, images, runtime, threads, out = sys.argv[1:]
runner = TFLiteRunner(model, runtime=runtime, kernels="default", num_threads=int(threads))
np.save(out, runner.predict(np.load(images)))
print(json.dumps({"runtime": runner.runtime, "version": metadata.version(runtime), "numpy": np.__version__,
                  "machine": platform.machine()}))
"""


def test_envs() -> ModuleType:
    """``tools/test_envs.py`` (not a package), imported by its path."""
    spec = importlib.util.spec_from_file_location("edgecnn_tools_test_envs", HERE.parent / "test_envs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pi_command(flavour: str) -> tuple[list[str], str]:
    """The command that runs the emulated Pi's Python with ``flavour``'s wheels, and how current its environment is.

    Raises:
        NotAvailable: qemu-aarch64-static, the arm64 root or the flavour's wheels are missing.
    """
    envs = test_envs()
    found = envs.paths()
    fix = "build it with bash tools/setup_test_env.sh"
    if not found["qemu"]:
        raise NotAvailable(f"{envs.QEMU} is not installed (apt-get install qemu-user-static)")
    site = "arm64_site_" + flavour.replace("-", "_")
    notes = []
    for name in ("arm64_root", site):
        if envs.is_ready(name):
            continue
        if not Path(found[name]).is_dir():
            raise NotAvailable(f"the test environment {name} ({found[name]}) is missing: {fix}")
        notes.append(f"{name} built from an older recipe")
    return envs.arm64_python(flavour), "; ".join(notes)


def run_pi(flavour: str) -> Callable[[Inputs], tuple[np.ndarray, str]]:
    """The emulated Pi 4 with one runtime flavour: one emulated process for all images."""

    def run(inputs: Inputs) -> tuple[np.ndarray, str]:
        command, note = pi_command(flavour)
        runtime = test_envs().RUNTIME_OF_FLAVOUR[flavour]
        folder = inputs.work / f"pi-{flavour}"
        folder.mkdir(parents=True, exist_ok=True)
        script, images, out = folder / "score.py", folder / "images.npy", folder / "scores.npy"
        script.write_text(PI_SCRIPT)
        np.save(images, inputs.images)
        out.unlink(missing_ok=True)
        done = run_child([*command, script, inputs.model, images, runtime, str(PI_THREADS), out])
        said = json.loads(done.stdout.strip().splitlines()[-1])
        if said["machine"] != "aarch64":
            raise RuntimeError(f"the emulated Pi's Python says it runs on {said['machine']}, not aarch64")
        raw = raw_outputs(np.load(out), inputs.info.output)
        what = (
            f"{said['runtime']} {said['version']} (numpy {said['numpy']}), aarch64 under qemu-aarch64-static "
            f"(Cortex-A72), {PI_THREADS} threads; {done.seconds:.0f} s emulated"
        )
        return raw, what + (f"; {note}" if note else "")

    return run


# ----------------------------------------------------------------------------------------------- TFLM


def run_tflm(inputs: Inputs) -> tuple[np.ndarray, str]:
    """TFLM's Python interpreter on the host CPU (its reference kernels), raw int8 in and out, one image a run."""
    try:
        from edgecnn.targets.micro.target import MicroRunner, tflm_runtime

        runner = MicroRunner(inputs.model)
    except EnvironmentProblem as error:
        raise NotAvailable(str(error)) from None
    try:
        raw = []
        for example in inputs.quantized:
            runner.set_tensors([example[None]])
            runner.invoke()
            raw.append(np.asarray(runner.output(), dtype=np.int8).reshape(-1))
        label = tflm_runtime()
    finally:
        runner.close()
    return np.stack(raw), f"{label} (Python interpreter, reference kernels), {platform.machine()}"


def tflm_folder(context: Context) -> Path | None:
    """TFLM's sources: ``--tflm-dir``, else ``$EDGECNN_TFLM_DIR``, else ``../shared/third_party/tflm`` if there."""
    given = getattr(context.options, "tflm_dir", None) or os.environ.get("EDGECNN_TFLM_DIR")
    if given:
        return Path(given).expanduser()
    return DEFAULT_TFLM if DEFAULT_TFLM.is_dir() else None


def run_firmware(kernels: str) -> Callable[[Inputs], tuple[np.ndarray, str]]:
    """edgecnn's firmware harness for the Cortex-M4F board under qemu-system-arm, built with ``kernels``."""

    def run(inputs: Inputs) -> tuple[np.ndarray, str]:
        from edgecnn.targets.micro.firmware.build import build_firmware
        from edgecnn.targets.micro.firmware.qemu import run_harness
        from edgecnn.targets.micro.firmware.toolchain import find_qemu, qemu_version

        if inputs.tflm is None:
            raise NotAvailable(
                f"no TFLM sources: give --tflm-dir or set EDGECNN_TFLM_DIR (tools/fetch_tflm.sh fetches them; "
                f"looked for {DEFAULT_TFLM})"
            )
        try:
            firmware = build_firmware(inputs.model, board=BOARD, kernels=kernels, tflm=inputs.tflm)
            qemu = qemu_version(find_qemu())
            examples = [example.tobytes() for example in inputs.quantized]
            done = run_harness(firmware.elf, examples, board=BOARD, model_name=inputs.model.name)
        except (EnvironmentProblem, UsageError) as error:
            raise NotAvailable(str(error)) from None
        raw = np.stack([np.frombuffer(output, dtype=np.int8) for output in done.outputs])
        built = f"built in {firmware.seconds:.0f} s" if not firmware.cached else "cached build"
        return raw, f"TFLM {kernels} kernels, {firmware.compiler} ({built}), {qemu}"

    return run


PI4 = "arm64 Pi 4 (emulated)"
M4F = "Cortex-M4F firmware (qemu mps2-an386)"
CONFIGURATIONS = (
    Configuration("x86_xnnpack", "x86, ai-edge-litert, default kernels (XNNPACK)", run_tflite("default")),
    Configuration("x86_reference", "x86, ai-edge-litert, reference kernels", run_tflite("reference")),
    Configuration("pi4_litert", f"{PI4}, ai-edge-litert, default kernels (XNNPACK)", run_pi("litert")),
    Configuration("pi4_tflite_runtime", f"{PI4}, tflite-runtime, default kernels", run_pi("tflite-runtime")),
    Configuration("tflm_host", "TFLM on the host (Python interpreter)", run_tflm),
    Configuration("m4f_reference", f"{M4F}, reference kernels", run_firmware("reference")),
    Configuration("m4f_cmsis_nn", f"{M4F}, CMSIS-NN", run_firmware("cmsis-nn")),
)


# ----------------------------------------------------------------------------------------------- the section


def demo_model(context: Context) -> tuple[Path, str]:
    """The demo's folder (``--demo-dir``, a reusable one in the work folder, or a fresh ``edgecnn demo``) and how.

    Raises:
        RuntimeError: ``edgecnn demo`` failed, or the folder holds no int8 model.
    """
    given = getattr(context.options, "demo_dir", None)
    if given is not None:
        folder, how = Path(given), "given with --demo-dir"
    else:
        folder = context.work / "demo"
        if (folder / "model_int8.tflite").is_file() and (folder / "model_int8.json").is_file():
            how = f"reused from {folder}"
        else:
            log(f"parity: edgecnn demo --out {folder} (about 25 s)")
            done = run_child([*edgecnn_command(), "demo", "--out", folder, "--quiet"], ok_codes=(0, 1))
            how = f"edgecnn demo --out {folder}, {done.seconds:.0f} s" + (
                "" if done.returncode == 0 else " (exit 1: the int8 model failed the demo's validation gate)"
            )
    if not (folder / "model_int8.tflite").is_file() or not (folder / "digits" / "test").is_dir():
        raise RuntimeError(f"{folder} holds no model_int8.tflite and digits/test: give an edgecnn demo --out folder")
    return folder, how


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, int]:
    """Top-1 agreement, largest output-step difference and images with any difference between two raw outputs."""
    steps = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {
        "top1_agree": int(np.sum(a.argmax(axis=1) == b.argmax(axis=1))),
        "images": len(a),
        "max_step_diff": int(steps.max()),
        "images_differing": int(np.sum(steps.max(axis=1) > 0)),
    }


def measure(context: Context) -> dict[str, Any]:
    """The parity section (see the module docstring)."""
    started, load_start = time.perf_counter(), os.getloadavg()
    demo, demo_note = demo_model(context)
    model = demo / "model_int8.tflite"
    info = read_tflite_info(model)
    if info.input.dtype != "int8" or info.output.dtype != "int8":
        raise RuntimeError(f"{model} is not a full-int8 model (input {info.input.dtype}, output {info.output.dtype})")
    per_class = getattr(context.options, "parity_images_per_class", None) or (1 if context.quick else 40)
    folder = scan_folder(demo / "digits" / "test", limit_per_class=per_class, labels=info.labels)
    loaded = load_images(folder.samples, info.preprocessing, strict=True)
    inputs = Inputs(
        model=model,
        info=info,
        images=loaded.images,
        quantized=quantize(loaded.images, info.input),
        work=context.work / "parity",
        tflm=tflm_folder(context),
    )
    inputs.work.mkdir(parents=True, exist_ok=True)
    log(f"parity: {model} on {len(loaded)} images ({per_class} per class), {len(CONFIGURATIONS)} configurations")
    configurations: list[dict[str, Any]] = []
    outputs: dict[str, np.ndarray] = {}
    for configuration in CONFIGURATIONS:
        begun = time.perf_counter()
        entry: dict[str, Any] = {"key": configuration.key, "label": configuration.label}
        try:
            raw, what = configuration.run(inputs)
        except NotAvailable as error:
            entry.update(available=False, why=f"not available: {error}")
        except Exception as error:  # noqa: BLE001  (one broken configuration must not lose the others)
            traceback.print_exc(file=sys.stderr)
            entry.update(available=False, why=f"failed: {str(error).strip().splitlines()[0]}")
        else:
            if raw.shape != (len(loaded), len(info.labels)):
                raise RuntimeError(f"{configuration.label} gave outputs of shape {raw.shape}")
            outputs[configuration.key] = raw
            top1 = raw.argmax(axis=1)
            entry.update(
                available=True,
                ran=what,
                correct=int(np.sum(top1 == loaded.labels)),
                top1=top1.tolist(),
                outputs=[" ".join(str(v) for v in row) for row in raw.tolist()],
            )
        entry["seconds"] = round(time.perf_counter() - begun, 1)
        log(f"parity: {configuration.label}: {entry.get('ran') or entry['why']} ({entry['seconds']} s)")
        configurations.append(entry)
    if not outputs:
        raise RuntimeError("no configuration could run the model")
    keys = [c.key for c in CONFIGURATIONS]
    pairs = [
        {"a": a, "b": b, **compare(outputs[a], outputs[b])}
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
        if a in outputs and b in outputs
    ]
    result: dict[str, Any] = {
        "model": {
            "path": str(model),
            "source": demo_note,
            "bytes": model.stat().st_size,
            "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            "input_shape": list(info.input_shape),
            "output": info.output.to_dict(),
        },
        "images_per_class": per_class,
        "images": [
            {"path": str(path.relative_to(demo)), "label": int(label)}
            for path, label in zip(loaded.paths, loaded.labels)
        ],
        "configurations": configurations,
        "pairs": pairs,
        "command": REPRODUCE + ("" if getattr(context.options, "demo_dir", None) is None else " --demo-dir DEMO"),
    }
    result["meta"] = section_meta(context, started, load_start)
    return result


def render(result: dict[str, Any]) -> str:
    """The Markdown block of BENCHMARKS.md for this section."""
    meta, model = result["meta"], result["model"]
    configurations = result["configurations"]
    count = len(result["images"])
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    pairs.update({(p["b"], p["a"]): p for p in result["pairs"]})
    per_class, classes = result["images_per_class"], len({image["label"] for image in result["images"]})
    spread = f"the first {per_class} of each class by file name"
    if count < per_class * classes:
        spread += ", or all of a class that has fewer"
    header = ["configuration", *(str(n) for n in range(1, len(configurations) + 1)), "top-1 correct"]
    lines = [
        quick_banner(meta),
        f"The demo's int8 digits CNN (`model_int8.tflite`, {model['bytes']:,} bytes, input "
        f"{'x'.join(str(v) for v in model['input_shape'][1:])} int8) on {count} test digits "
        f"({spread}), the same int8 inputs for every "
        "configuration. Each cell: images whose top-1 class agrees between the row and the column, and the largest "
        f"difference of any output between them in int8 output steps (one step is {model['output']['scale']:.6g}).",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for row_number, row in enumerate(configurations, start=1):
        cells = [f"{row_number}. {row['label']}"]
        for column in configurations:
            if column is row:
                cells.append("-")
            elif not (row["available"] and column["available"]):
                cells.append("n/a")
            else:
                pair = pairs[(row["key"], column["key"])]
                cells.append(f"{pair['top1_agree']}/{pair['images']}, {pair['max_step_diff']}")
        cells.append(f"{row['correct']}/{count}" if row["available"] else f"{row['why'].split(':')[0]} (see below)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "What ran each configuration (or why it could not run):", ""]
    for number, entry in enumerate(configurations, start=1):
        lines.append(f"{number}. {entry['ran'] if entry['available'] else entry['why']}")
    lines += [
        "",
        f"- Measured {meta['date']} on {machine_line(meta)}; model sha256 {model['sha256'][:16]}..., "
        f"{model['source']}.",
        f"- Command: `{meta['command']}` (reproduce with `{result['command']}`).",
    ]
    return "\n".join(lines)
