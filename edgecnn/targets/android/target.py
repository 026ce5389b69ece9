"""An Android phone over adb: the bundle runs in TFLite's own ``benchmark_model`` tool, on the phone.

Nothing is installed on the phone. Each command makes a folder ``/data/local/tmp/edgecnn/<session>/``, pushes the
model and the ``benchmark_model`` binary the user supplies (``--benchmark-binary``, the Android arm64 build; see
targets/android/README.md) into it, and removes it when done, also after a failure.

- ``bench``: one benchmark_model run with ``--num_runs``/``--warmup_runs``, ``--num_threads`` and the delegate;
  its own log gives the latency (min, mean, std, and the median where the version prints it) and init time.
- ``run``/``validate``: every image is preprocessed here, quantized with the sidecar's input scale and zero point
  (:mod:`edgecnn.runtime.quant`, as every runner does), written as the raw bytes of the input tensor, and fed to one
  benchmark_model run with ``--input_layer_value_files``; ``--output_filepath`` writes the output tensor's raw
  bytes, which are pulled back and dequantized here. Images go in chunks: one push, one ``adb shell`` running a
  loop over the chunk, one pull. A binary without ``--output_filepath`` (before TensorFlow 2.10) measures latency
  only, and ``run``/``validate`` say so.

``check`` needs no phone: it reports the bundle's graph findings (the same as the host's), the delegate, and the
binary (its ELF architecture); the phone is reached only by commands that run the model.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError, TargetUnavailableError, UsageError
from edgecnn.model.graph import read_graph
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bench import BenchPlan, BenchResult, bench_inputs, no_preprocessing_message
from edgecnn.runtime.bundle import ModelInfo, read_tflite_info, sidecar_info
from edgecnn.runtime.preprocess import fitting_images
from edgecnn.runtime.progress import ProgressFn
from edgecnn.runtime.quant import QuantParams, dequantize, quantize
from edgecnn.runtime.runtimes import check_threads
from edgecnn.targets.android import README
from edgecnn.targets.android.adb import Adb, choose_device, find_adb, parse_getprop, tail
from edgecnn.targets.android.benchmark_model import (
    DELEGATE_FLAGS,
    OUTPUT_DUMP_FLAG,
    benchmark_args,
    benchmark_error,
    no_output_dump_message,
    parse_help,
    parse_log,
)
from edgecnn.targets.base import Finding, Target
from edgecnn.targets.cpu import runtime_findings
from edgecnn.targets.facts import model_facts

DELEGATES: tuple[str, ...] = tuple(DELEGATE_FLAGS)
"""``--delegate`` choices: ``cpu`` (builtin kernels), ``xnnpack`` (the default), ``gpu``, ``nnapi``."""

DEFAULT_DELEGATE = "xnnpack"
DEVICE_DIR = "/data/local/tmp/edgecnn"
"""Where sessions live on the phone: /data/local/tmp is the folder adb's shell user may write and execute in."""

CHUNK = 32
"""Images per push/shell/pull round trip."""

BENCH_TIMEOUT_S = 900.0
_MODEL, _BINARY = "model.tflite", "benchmark_model"
_ABI_ARCH = {"arm64-v8a": "aarch64", "armeabi-v7a": "arm", "armeabi": "arm", "x86_64": "x86_64", "x86": "x86"}
_ELF_MACHINES = {0xB7: "aarch64", 0x28: "arm", 0x3E: "x86_64", 0x03: "x86"}
_DELEGATE_NOTES = {
    "cpu": "TFLite's builtin CPU kernels, XNNPACK turned off (--use_xnnpack=false)",
    "xnnpack": "XNNPACK CPU kernels (--use_xnnpack=true), TFLite's default CPU path",
    "gpu": "the GPU delegate (--use_gpu=true)",
    "nnapi": "NNAPI (--use_nnapi=true): the phone's vendor driver decides where each operation runs",
}


_OWN_RANDOM = "random (benchmark_model's own)"


def _own_random_tensors(model: Path) -> list[dict[str, Any]]:
    """The inputs of a model benchmark_model fills with its own random values, as a benchmark report lists them."""
    return [
        {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "source": "benchmark_model's own random values"}
        for t in read_graph(model).inputs
    ]


def elf_machine(path: Path) -> str | None:
    """The CPU architecture an ELF executable is built for (``aarch64``, ``arm``...); None if it is not ELF."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return _ELF_MACHINES.get(machine, f"machine {machine:#x}")


def _device_arches(props: dict[str, str]) -> set[str]:
    abis = props.get("ro.product.cpu.abilist") or props.get("ro.product.cpu.abi", "")
    return {_ABI_ARCH[a] for a in abis.split(",") if a in _ABI_ARCH}


def machine_from_props(props: dict[str, str], *, serial: str, cpus: int | None) -> dict[str, Any]:
    """Where a benchmark ran, from the phone's system properties (model, ABI, Android release, SoC)."""
    maker = props.get("ro.product.manufacturer", "").strip()
    model = props.get("ro.product.model", "").strip()
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware", "")
    name = f"{maker} {model}".strip() if model and not model.lower().startswith(maker.lower()) else model
    release, sdk = props.get("ro.build.version.release", ""), props.get("ro.build.version.sdk", "")
    machine: dict[str, Any] = {
        "arch": props.get("ro.product.cpu.abi", "?"),
        "system": f"Android {release}".strip() + (f" (SDK {sdk})" if sdk else ""),
        "cpus": cpus,
        "serial": serial,
    }
    board = ", ".join(part for part in (name or serial, soc.strip()) if part)
    machine["board"] = board
    return machine


def count_cpus(text: str) -> int | None:
    """The CPU count from ``/sys/devices/system/cpu/present`` (``0-7`` → 8, ``0-3,6`` → 5)."""
    total = 0
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        if not first.strip().isdigit() or (last and not last.strip().isdigit()):
            return None
        total += (int(last) if last else int(first)) - int(first) + 1
    return total or None


def _raw_input(image: np.ndarray, params: QuantParams) -> bytes:
    """One preprocessed image as the input tensor's raw little-endian bytes (batch of 1)."""
    values = quantize(np.asarray(image, dtype=np.float32)[None], params)
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()


def _scores(data: bytes, params: QuantParams, classes: int, where: str) -> np.ndarray:
    """Dequantized scores from an output dump (raw little-endian bytes of the output tensor)."""
    dtype = np.dtype(params.dtype).newbyteorder("<")
    if len(data) != classes * dtype.itemsize:
        raise TargetUnavailableError(
            f"the output dump {where} has {len(data)} bytes, not {classes} {params.dtype} scores: the model on the "
            "phone is not this bundle's, or it has several outputs"
        )
    return dequantize(np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("=")), params)


class AndroidTarget(Target):
    """An Android phone reached over adb, running the bundle in TFLite's ``benchmark_model``.

    Args:
        threads: ``--num_threads`` for benchmark_model (None: the tool's default).
        serial: the phone (``adb devices``); needed when several are connected.
        adb: the adb executable (default: ``adb`` on PATH).
        benchmark_binary: TFLite's benchmark_model built for Android (arm64); see targets/android/README.md.
        delegate: one of :data:`DELEGATES` (default ``xnnpack``).

    Raises:
        UsageError: an unknown delegate, or an ``--adb``/``--benchmark-binary`` path that is not
            a file.
    """

    name = "android"

    def __init__(
        self,
        *,
        threads: int | None = None,
        serial: str | None = None,
        adb: str | None = None,
        benchmark_binary: str | None = None,
        delegate: str | None = None,
    ) -> None:
        self.threads = check_threads(threads)
        self.serial = serial
        self.adb = find_adb(adb) if adb is not None else None  # checks the path now; PATH is searched when needed
        self.delegate = delegate or DEFAULT_DELEGATE
        if self.delegate not in DELEGATES:
            raise UsageError(f"unknown --delegate {self.delegate!r}: choose one of {', '.join(DELEGATES)}")
        self.benchmark_binary = None if benchmark_binary is None else Path(benchmark_binary).expanduser()
        if self.benchmark_binary is not None and not self.benchmark_binary.is_file():
            raise UsageError(
                f"--benchmark-binary {benchmark_binary} does not exist: give the path of TFLite's benchmark_model "
                f"for Android (see {README})"
            )
        self._resolved: str | None = serial

    @property
    def where(self) -> str:
        return f"android {self._resolved}" if self._resolved else "android"

    # -- check: no phone needed ----------------------------------------------------------------------------------

    def check(self, model: Path) -> list[Finding]:
        findings = runtime_findings(model, runtime=None, threads=self.threads)
        findings.append(Finding("info", "delegate", f"{self.delegate}: {_DELEGATE_NOTES[self.delegate]}"))
        quantization = model_facts(model).quantization
        if self.delegate == "gpu" and quantization in ("int8", "dynamic"):
            findings.append(
                Finding(
                    "warning",
                    "gpu-float",
                    "the GPU delegate computes quantized models in floating point (fp16 by default), so scores "
                    "differ from the int8 reference kernels: measure the difference with edgecnn validate --target "
                    "android --delegate gpu",
                )
            )
        if self.delegate == "nnapi":
            findings.append(
                Finding(
                    "warning",
                    "nnapi",
                    "NNAPI is deprecated since Android 15 and its results depend on the vendor driver: validate on "
                    "each phone model (edgecnn validate --target android --delegate nnapi)",
                )
            )
        findings.append(self._binary_finding())
        return findings

    def _binary_finding(self) -> Finding:
        if self.benchmark_binary is None:
            return Finding(
                "warning",
                "benchmark-binary",
                f"no --benchmark-binary: run, validate and bench on Android need TFLite's benchmark_model for "
                f"Android arm64 (see {README})",
            )
        arch = elf_machine(self.benchmark_binary)
        if arch is None:
            return Finding("info", "benchmark-binary", f"{self.benchmark_binary} (not an ELF executable: a script?)")
        with open(self.benchmark_binary, "rb") as f:
            android = b"/system/bin/linker" in f.read(4096)
        if not android:
            return Finding(
                "warning",
                "benchmark-binary",
                f"{self.benchmark_binary} ({arch}) is not linked against Android's /system/bin/linker: it is probably "
                f"a Linux build, which does not run on Android; use android_aarch64_benchmark_model ({README})",
            )
        return Finding("info", "benchmark-binary", f"{self.benchmark_binary} (Android, {arch})")

    # -- reaching the phone --------------------------------------------------------------------------------------

    def _binary(self) -> Path:
        if self.benchmark_binary is None:
            raise TargetUnavailableError(
                f"--target android needs --benchmark-binary PATH, TFLite's benchmark_model built for Android arm64 "
                f"(where to get it: {README})"
            )
        return self.benchmark_binary

    def _connect(self) -> Adb:
        adb = Adb(self.adb or find_adb())
        device = choose_device(adb.devices(), self.serial)
        self._resolved = device.serial
        return adb.on(device.serial)

    def _session(self, model: Path, *, require_sidecar: bool = True) -> DeviceSession:
        binary = self._binary()
        # Refuse a bundle whose sidecar does not match (or a model without one, where it is needed) before
        # touching the phone.
        if require_sidecar:
            read_tflite_info(model)
        verify_model(model)  # a malformed model fails here, in one line, before it is pushed
        return DeviceSession(self._connect(), model=model, binary=binary)

    def open(self, model: Path) -> AndroidRunner:
        return AndroidRunner(self._session(model), model, delegate=self.delegate, threads=self.threads)

    def bench(self, model: Path, plan: BenchPlan, *, on_progress: ProgressFn | None = None) -> BenchResult:
        if plan.batch != 1:
            raise UsageError(
                f"--target android times one image per run (benchmark_model): use --batch 1, not {plan.batch}"
            )
        # benchmark_model needs no sidecar: a model without one runs on its own random inputs.
        info = sidecar_info(model)
        session = self._session(model, require_sidecar=False)
        try:
            result = session.bench(info, plan, delegate=self.delegate, threads=self.threads, model=model)
        except BaseException:
            session.close(quiet=True)  # the failure is the news, not a cleanup that fails after it
            raise
        session.close()
        if on_progress is not None:
            on_progress(plan.runs)
        return replace(result, target=self.where, model=str(model))


class DeviceSession:
    """A folder on the phone holding the bundle's model and benchmark_model for one command; :meth:`close` removes it.

    Args:
        adb: the client, bound to the phone.
        model: the ``.tflite`` model.
        binary: benchmark_model for Android.

    Raises:
        TargetUnavailableError: the transfer fails, or the binary does not run on the phone.
    """

    def __init__(self, adb: Adb, *, model: Path, binary: Path) -> None:
        self.adb = adb
        self.serial = adb.serial or "?"
        self.folder = f"{DEVICE_DIR}/{os.getpid()}-{secrets.token_hex(4)}"
        self._local = Path(tempfile.mkdtemp(prefix="edgecnn-android-"))
        self._rounds = 0
        self.props: dict[str, str] = {}
        self.flags: frozenset[str] = frozenset()
        try:
            self._upload(model, binary)
        except BaseException:
            self.close(quiet=True)
            raise

    def _upload(self, model: Path, binary: Path) -> None:
        # Fixed names on the phone, so no user file name ever needs quoting inside a device command line.
        staged = self._local / "bundle"
        staged.mkdir()
        shutil.copyfile(model, staged / _MODEL)
        shutil.copyfile(binary, staged / _BINARY)
        self.adb.shell(["mkdir", "-p", self.folder])
        self.adb.push([staged / _MODEL, staged / _BINARY], f"{self.folder}/", timeout=300)
        listing = self.adb.shell_script(
            f"cd {shlex.quote(self.folder)} && chmod 755 {_BINARY} && getprop && "
            f"echo __cpus=$(cat /sys/devices/system/cpu/present 2>/dev/null)"
        ).stdout
        self.props = parse_getprop(listing)
        cpus = re.search(r"^__cpus=(.*)$", listing, flags=re.MULTILINE)
        self.cpus = count_cpus(cpus.group(1)) if cpus else None
        self._check_arch(binary)
        # --help prints the flags and exits with 1 on purpose, so its exit code says nothing.
        helped = self.adb.shell_script(f"cd {shlex.quote(self.folder)} && ./{_BINARY} --help 2>&1", check=False)
        self.flags = parse_help(helped.stdout + helped.stderr)
        if "graph" not in self.flags:
            raise TargetUnavailableError(
                f"{binary} does not run on {self.serial} as benchmark_model "
                f"({tail(helped.stdout + helped.stderr, 200) or 'no output'}): use TFLite's benchmark_model for "
                f"Android arm64 ({README})"
            )

    def _check_arch(self, binary: Path) -> None:
        arch, arches = elf_machine(binary), _device_arches(self.props)
        if arch is not None and arches and arch not in arches:
            abis = self.props.get("ro.product.cpu.abilist") or self.props.get("ro.product.cpu.abi")
            raise TargetUnavailableError(
                f"{binary} is built for {arch} but {self.serial} runs {abis}: use the matching Android build of "
                f"benchmark_model (android_aarch64_benchmark_model for arm64-v8a; see {README})"
            )

    @property
    def has_output_dump(self) -> bool:
        """True when this benchmark_model can write its outputs (``--output_filepath``)."""
        return OUTPUT_DUMP_FLAG in self.flags

    def _push_inputs(self, raw: list[bytes]) -> str:
        """Push one folder of input files (``0000.bin``...); returns its name inside the session folder."""
        self._rounds += 1
        name = f"in_{self._rounds}"
        folder = self._local / name
        folder.mkdir()
        for i, data in enumerate(raw):
            (folder / f"{i:04d}.bin").write_bytes(data)
        self.adb.push([folder], f"{self.folder}/", timeout=60 + len(raw))
        return name

    def predict(self, images: np.ndarray, info: ModelInfo, *, delegate: str, threads: int | None) -> np.ndarray:
        """Scores of up to :data:`CHUNK` images: one push, one shell loop of benchmark_model runs, one pull."""
        if not self.has_output_dump:
            raise TargetUnavailableError(no_output_dump_message())
        inputs = self._push_inputs([_raw_input(image, info.input) for image in images])
        outputs = inputs.replace("in_", "out_")
        shape = [1, *info.input_shape[1:]]
        args = benchmark_args(
            graph=_MODEL,
            flags=self.flags,
            delegate=delegate,
            threads=threads,
            runs=1,
            warmup=0,
            input_shape=shape,
            input_file=f"{inputs}/@IMAGE@.bin",
            output_file=f"{outputs}/@IMAGE@.bin",
        )
        # shlex leaves the @IMAGE@ tokens unquoted (only safe characters), so the loop variable can take their place.
        command = shlex.join([f"./{_BINARY}", *args]).replace("@IMAGE@", "$i")
        names = " ".join(f"{i:04d}" for i in range(len(images)))
        script = (
            f"cd {shlex.quote(self.folder)} && mkdir -p {outputs} && rc=0 && for i in {names}; do "
            f"{command} > {outputs}/$i.log 2>&1 || "
            f"{{ rc=$?; echo __edgecnn_failed=$i; cat {outputs}/$i.log; break; }}; "
            f'done; test "$rc" = 0'
        )
        done = self.adb.shell_script(script, timeout=60 + 20 * len(images), check=False)
        if done.returncode != 0:
            raise TargetUnavailableError(self._failure(done.stdout + done.stderr, delegate, len(images)))
        self.adb.pull(f"{self.folder}/{outputs}", self._local, timeout=60 + len(images))
        rows = []
        for i in range(len(images)):
            dump = self._local / outputs / f"{i:04d}.bin"
            if not dump.is_file():
                raise TargetUnavailableError(
                    f"benchmark_model on {self.serial} wrote no output dump for image {i + 1} ({outputs}/{i:04d}.bin) "
                    f"although its --help lists --{OUTPUT_DUMP_FLAG}: check the phone's free space"
                )
            rows.append(_scores(dump.read_bytes(), info.output, len(info.labels), f"{outputs}/{i:04d}.bin"))
        return np.concatenate(rows).reshape(len(images), -1)

    def _failure(self, output: str, delegate: str, count: int) -> str:
        failed = re.search(r"__edgecnn_failed=(\d+)", output)
        log = output[failed.end() :] if failed else output
        which = f"image {int(failed.group(1)) + 1} of {count}" if failed else f"{count} images"
        reason = benchmark_error(log) or tail(log, 300) or "no output"
        return f"benchmark_model failed on {self.serial} ({delegate}) for {which}: {reason}"

    def bench(
        self, info: ModelInfo | None, plan: BenchPlan, *, delegate: str, threads: int | None, model: Path
    ) -> BenchResult:
        """Time the model in one benchmark_model run (the first of the plan's images, or random pixels
        preprocessed). A model without a sidecar (``info`` None) runs on benchmark_model's own random values in
        every input, which the result lists.

        Raises:
            UsageError: images for a model without a sidecar (no preprocessing to feed them through).
        """
        input_file, tensors = None, []
        inputs = _OWN_RANDOM
        if info is None:
            if plan.images is not None:
                raise UsageError(no_preprocessing_message(model))
            tensors = _own_random_tensors(model)
        elif "input_layer_value_files" in self.flags:
            pool, inputs = bench_inputs(info.preprocessing, plan.images, count=1)
            inputs = "images:1" if plan.images is not None else inputs  # benchmark_model feeds one input file
            input_file = f"{self._push_inputs([_raw_input(pool[0], info.input)])}/0000.bin"
        args = benchmark_args(
            graph=_MODEL,
            flags=self.flags,
            delegate=delegate,
            threads=threads,
            runs=plan.runs,
            warmup=plan.warmup,
            input_shape=None if info is None else [1, *info.input_shape[1:]],
            input_file=input_file,
        )
        command = shlex.join([f"./{_BINARY}", *args])
        done = self.adb.shell_script(
            f"cd {shlex.quote(self.folder)} && {command} 2>&1", timeout=BENCH_TIMEOUT_S, check=False
        )
        text = done.stdout + done.stderr
        log = parse_log(text)
        if done.returncode != 0 or not log.complete or log.inference is None:
            reason = benchmark_error(text) or tail(text, 300) or "no output"
            raise TargetUnavailableError(
                f"benchmark_model failed on {self.serial} ({delegate}, exit code {done.returncode}): {reason}"
            )
        stats = log.inference
        latency: dict[str, float | None] = {
            "min": stats.min / 1000.0,
            "p50": None if stats.median is None else stats.median / 1000.0,
            "p90": None,  # benchmark_model reports p5/median/p95 at most
            "max": stats.max / 1000.0,
            "mean": stats.avg / 1000.0,
            "std": stats.std / 1000.0,
        }
        return BenchResult(
            target=f"android {self.serial}",
            model=_MODEL,
            runtime=f"benchmark_model ({delegate})",
            threads=threads,
            batch=1,
            runs=stats.count,
            warmup=plan.warmup,
            inputs=inputs,
            init_ms=(log.init_us or 0.0) / 1000.0,
            latency_ms=latency,
            throughput=1e6 / stats.avg if stats.avg > 0 else 0.0,
            machine=machine_from_props(self.props, serial=self.serial, cpus=self.cpus),
            input_tensors=tensors,
        )

    def close(self, *, quiet: bool = False) -> None:
        """Remove the session folder from the phone (and ``edgecnn/`` if no other session uses it), and the local copy.

        Args:
            quiet: ignore a failure to reach the phone (when another error is already on its way to the user).
        """
        shutil.rmtree(self._local, ignore_errors=True)
        try:
            self.adb.shell_script(
                f"rm -rf {shlex.quote(self.folder)}; rmdir {shlex.quote(DEVICE_DIR)} 2>/dev/null; true", timeout=60
            )
        except EdgecnnError:
            if not quiet:
                raise


class AndroidRunner:
    """A runner whose model runs in benchmark_model on an Android phone: float images in, dequantized scores out.

    Args:
        session: the phone folder with the model and the binary.
        model: the ``.tflite`` bundle (its sidecar gives the input and output quantization).
        delegate / threads: how benchmark_model runs it.
    """

    def __init__(self, session: DeviceSession, model: Path, *, delegate: str, threads: int | None) -> None:
        self.path = model
        self.info: ModelInfo = read_tflite_info(model)
        self.runtime = f"benchmark_model ({delegate}) on {session.serial}"
        self._session: DeviceSession | None = session
        self._delegate = delegate
        self._threads = threads
        self._failed = False

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` computed on the phone.

        Raises:
            UsageError: the images do not have the model's input shape.
            TargetUnavailableError: the binary has no output dump, or a run on the phone failed.
        """
        if self._session is None:
            raise UsageError("this Android runner is closed")
        images = fitting_images(images, self.info.preprocessing, model=self.path.name)
        try:
            chunks = [
                self._session.predict(images[i : i + CHUNK], self.info, delegate=self._delegate, threads=self._threads)
                for i in range(0, len(images), CHUNK)
            ]
        except BaseException:
            self._failed = True  # close() then cleans up quietly instead of hiding this error behind its own
            raise
        if not chunks:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        return np.concatenate(chunks)

    def close(self) -> None:
        """Remove everything this runner put on the phone."""
        if self._session is not None:
            session, self._session = self._session, None
            session.close(quiet=self._failed)
