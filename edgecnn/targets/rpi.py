"""The Raspberry Pi: on the Pi, the local runtime with Pi defaults; elsewhere, the Pi over SSH (``--host``).

On the Pi itself the model runs in ai-edge-litert or tflite-runtime (whichever is installed; no TensorFlow)
with 4 threads, one per Cortex-A core of a Pi 4 or 5. From a development machine, ``--host user@address``
starts ``edgecnn agent`` on the Pi over the system's OpenSSH client, sends it the bundle and preprocessed
images, and gets scores and timings back: inference and timing happen on the Pi, with the Pi's runtime.
"""

from __future__ import annotations

import os
import shutil
from contextlib import closing
from pathlib import Path

import numpy as np

from edgecnn.bench import BenchResult, board_name
from edgecnn.bundle import ModelInfo, read_tflite_info, sidecar_path
from edgecnn.data import ProgressFn
from edgecnn.errors import MissingDependencyError
from edgecnn.interpreter import TFLiteRunner
from edgecnn.preprocess import fitting_images
from edgecnn.targets.base import Availability, Finding, Target
from edgecnn.targets.host import check_threads, installed_runtimes, runtime_findings
from edgecnn.targets.ssh import AgentSession, SshHost
from edgecnn.targets.wire import array_bytes, bytes_array

PI_THREADS = 4
"""Pi 4 and Pi 5 have four Cortex-A cores."""

PI_RUNTIMES = ("ai-edge-litert", "tflite-runtime")
"""The interpreters a Pi runs (TensorFlow itself is not installed there)."""

INSTALL_HINT = "pip install edgecnn on the Pi (targets/rpi/README.md has both runtime flavours)"


def pi_runtime() -> str:
    """The Pi runtime installed here: ``$EDGECNN_RUNTIME`` if it names one, else ai-edge-litert, else tflite-runtime.

    Raises:
        MissingDependencyError: neither is installed.
    """
    wanted = os.environ.get("EDGECNN_RUNTIME")
    order = (wanted,) if wanted in PI_RUNTIMES else PI_RUNTIMES
    for name in order:
        if installed_runtimes((name,)):
            return name
    raise MissingDependencyError(
        order[0], purpose="run models as a Raspberry Pi does (or tflite-runtime 2.14; see targets/rpi/README.md)"
    )


def _on_a_pi() -> str | None:
    board = board_name()
    return board if board and "Raspberry Pi" in board else None


class RpiTarget(Target):
    """A Raspberry Pi (64-bit Raspberry Pi OS): this machine if it is one, or ``remote`` over SSH.

    Args:
        threads: interpreter threads (default 4).
        remote: the Pi to reach over SSH; None runs here with the Pi's defaults.
    """

    name = "rpi"
    summary = "Raspberry Pi: local runtime with Pi defaults, or a Pi over SSH (--host user@address)"

    def __init__(self, *, threads: int | None = None, remote: SshHost | None = None) -> None:
        self.threads = check_threads(threads) or PI_THREADS
        self.remote = remote

    @classmethod
    def availability(cls) -> Availability:
        local = installed_runtimes(PI_RUNTIMES)
        board = _on_a_pi()
        if board:
            if local:
                return Availability(True, f"{board} with {local[0]}, {PI_THREADS} threads")
            return Availability(False, f"{board} without ai-edge-litert or tflite-runtime", INSTALL_HINT)
        ssh = shutil.which("ssh")
        parts = []
        if ssh:
            parts.append("a Pi over SSH with --host user@address (OpenSSH client found)")
        if local:
            parts.append(f"here with Pi defaults ({local[0]}, {PI_THREADS} threads)")
        if parts:
            return Availability(True, "runs " + "; or ".join(parts))
        return Availability(
            False,
            "no OpenSSH client to reach a Pi, and no ai-edge-litert or tflite-runtime to run locally",
            "apt install openssh-client (or pip install ai-edge-litert)",
        )

    @property
    def where(self) -> str:
        return f"rpi {self.remote.destination}" if self.remote else "rpi"

    def check(self, model: Path) -> list[Finding]:
        if self.remote is not None:
            with closing(_start(self.remote, model, self.threads, load=False)) as session:
                reply, _ = session.request({"op": "check", "threads": self.threads})
            return [Finding(f["severity"], f["code"], f["message"]) for f in reply["findings"]]
        runtime = pi_runtime() if installed_runtimes(PI_RUNTIMES) else None
        findings = runtime_findings(model, runtime=runtime, threads=self.threads)
        quantization = read_tflite_info(model).quantization
        if quantization in ("none", "float16"):
            findings.append(
                Finding(
                    "warning",
                    "float-model",
                    f"{'float32' if quantization == 'none' else 'float16'} weights computed in float: a full-integer "
                    "int8 model is about 4x smaller than float32; measure both on the Pi with edgecnn bench "
                    "--target rpi --host ...",
                )
            )
        return findings

    def local_runtime(self) -> str:
        return pi_runtime()

    def open(self, model: Path) -> TFLiteRunner | RemoteRunner:
        if self.remote is not None:
            return RemoteRunner(self.remote, model, threads=self.threads)
        return TFLiteRunner(model, num_threads=self.threads, runtime=pi_runtime())

    def bench(
        self,
        model: Path,
        *,
        images: np.ndarray | None,
        runs: int,
        warmup: int,
        batch: int,
        on_progress: ProgressFn | None = None,
    ) -> BenchResult:
        if self.remote is None:
            return super().bench(model, images=images, runs=runs, warmup=warmup, batch=batch, on_progress=on_progress)
        with closing(_start(self.remote, model, self.threads)) as session:
            parts = [] if images is None else [array_bytes(np.asarray(images, dtype=np.float32))]
            reply, _ = session.request({"op": "bench", "runs": runs, "warmup": warmup, "batch": batch}, parts)
        result = BenchResult.from_dict(reply["result"])
        # The device timed it; name the model as the user knows it, and where it ran.
        return BenchResult(**{**result.__dict__, "target": self.where, "model": str(model)})


def _bundle_parts(model: Path) -> list[bytes]:
    read_tflite_info(model)  # refuse a bundle whose sidecar does not match before sending anything
    return [model.read_bytes(), sidecar_path(model).read_bytes()]


def _start(remote: SshHost, model: Path, threads: int, *, load: bool = True) -> AgentSession:
    """An agent session that has been sent the bundle (and has loaded it, unless ``load`` is False)."""
    session = AgentSession(remote)
    try:
        session.request({"op": "load", "threads": threads, "open": load}, _bundle_parts(model))
    except BaseException:
        session.close()
        raise
    return session


class RemoteRunner:
    """A runner whose model runs on a Pi: images go over SSH as float32 arrays, scores come back.

    The images are preprocessed here, with the model's own preprocessing, and quantized on the Pi by the
    same :mod:`edgecnn.quant` code the local runner uses.
    """

    def __init__(self, remote: SshHost, model: Path, *, threads: int) -> None:
        self.path = model
        self.info: ModelInfo = read_tflite_info(model)
        self._session = _start(remote, model, threads)
        self.runtime = f"{self._session.hello.get('runtime', '?')} on {remote.destination}"

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` computed on the Pi."""
        images = fitting_images(images, self.info.preprocessing, model=self.path.name)
        _, parts = self._session.request({"op": "predict"}, [array_bytes(images)])
        return bytes_array(parts[0])

    def close(self) -> None:
        """End the session; the agent removes everything it was sent."""
        self._session.close()
