"""Sessions with an edgecnn agent (:mod:`edgecnn.targets.agent`): a Raspberry Pi over SSH
(:class:`edgecnn.targets.rpi.ssh.AgentSession`), or a child process on this machine (:class:`ChildSession`).

A child process runs what could still crash on a model that passed edgecnn's verifier: TensorFlow Lite Micro
(which checks almost no offset or index) and the Edge TPU delegate (native code edgecnn cannot verify). The child
loads the verified bytes it is sent, never the file again; a segfault there, or a child that stops answering,
becomes one clear error here (exit 2, the model is malformed) instead of a dead pipeline, and the parent never
loads that native code at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import edgecnn
from edgecnn.errors import (
    EdgecnnError,
    EdgecnnWarning,
    ModelFormatError,
    TargetUnavailableError,
    remote_error,
)
from edgecnn.model.flatbuffer import FIX
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bench import BenchPlan, BenchResult
from edgecnn.runtime.bundle import ModelInfo, read_tflite_info, sidecar_info, sidecar_path
from edgecnn.runtime.preprocess import fitting_images
from edgecnn.runtime.progress import ProgressFn
from edgecnn.targets.wire import PROTOCOL, WireError, array_bytes, bytes_array, read_message, write_message

if TYPE_CHECKING:
    from edgecnn.targets.base import Target

CHILD_TIMEOUT_S = 120.0
"""How long a child may go without sending a message (a reply, or progress during a benchmark) before it is taken
as hung and killed: loading a model and running a chunk of images take well under a second for edgecnn's models."""

PREDICT_CHUNK = 256
"""Images per predict request: each request is answered quickly, so a hang is told from slow work."""

PACKAGE_ROOT = str(Path(edgecnn.__file__).resolve().parents[1])
"""Where this edgecnn lives: put on a child's ``PYTHONPATH`` so it imports this very edgecnn, wherever the caller's
working directory is."""


def child_environment() -> dict[str, str]:
    """This process's environment, with :data:`PACKAGE_ROOT` first on ``PYTHONPATH``."""
    path = os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def crash_error(what: str, name: str, returncode: int, hint: str = "") -> ModelFormatError:
    """The error for native code that died on a model: ``what`` crashed on ``name`` with signal ``-returncode``."""
    try:
        signame = f", {signal.Signals(-returncode).name}"
    except ValueError:
        signame = ""
    return ModelFormatError(
        f"{what} crashed on {name} (signal {-returncode}{signame}): the model is malformed{hint}; {FIX}"
    )


class Session:
    """An agent process reached over its stdin and stdout: send requests, get replies.

    Subclasses say how the process is started and why it ended (:meth:`diagnose`).

    Args:
        argv: the command that starts the agent.
        prefix: put before the agent's error messages (``on pi@raspberrypi: ``).
        env: the agent's environment (None: this process's).
        timeout: seconds the agent may go without a message before it is killed as hung (None: no limit).
    """

    def __init__(
        self, argv: Sequence[str], *, prefix: str = "", env: dict[str, str] | None = None, timeout: float | None = None
    ) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.hung = False
        # The agent's own messages, read only to explain a failure (a file, so a chatty agent never blocks on a pipe).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        self.hello: dict[str, Any] = self._receive()[0]
        if self.hello.get("agent") != "edgecnn" or self.hello.get("protocol") != PROTOCOL:
            self.close()
            raise self.refused(self.hello)

    def refused(self, hello: dict[str, Any]) -> EdgecnnError:
        """The error for an agent that is not edgecnn's, or speaks another protocol version."""
        return TargetUnavailableError(f"the agent speaks another protocol than edgecnn {edgecnn.__version__}")

    def unexpected(self, exc: WireError) -> EdgecnnError:
        """The error for output that is not a message (the session is already closed)."""
        return TargetUnavailableError(f"unexpected output from the agent ({exc}): report it as a bug")

    def diagnose(self, returncode: int | None, stderr: str) -> EdgecnnError:
        """The error for an agent that ended before it answered: its exit status and what it wrote to stderr."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        return TargetUnavailableError(f"the agent stopped (exit {returncode}: {lines[-1] if lines else 'no message'})")

    def _kill_hung(self) -> None:
        process = self._process
        if process is not None:
            self.hung = True
            with contextlib.suppress(OSError):
                process.kill()

    def _receive(self) -> tuple[dict[str, Any], list[bytes]]:
        assert self._process is not None and self._process.stdout is not None
        watchdog = threading.Timer(self.timeout, self._kill_hung) if self.timeout is not None else None
        if watchdog is not None:
            watchdog.daemon = True
            watchdog.start()
        try:
            message = read_message(self._process.stdout)
        except WireError as exc:
            self._process.kill()
            self.close()
            raise self.unexpected(exc) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if message is None:
            raise self._failure()
        return message

    def _failure(self) -> EdgecnnError:
        """Why the session ended: wait for the agent to exit and read what it said."""
        assert self._process is not None
        try:
            returncode = self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            returncode = self._process.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        self.close()
        return self.diagnose(returncode, stderr)

    def request(
        self,
        header: dict[str, Any],
        parts: Sequence[bytes] = (),
        *,
        on_progress: ProgressFn | None = None,
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send one request and return the reply; progress messages before it go to ``on_progress``.

        Raises:
            TargetUnavailableError: the agent cannot be reached any more.
            EdgecnnError: the agent refused the request (its message and kind), or ended on it (:meth:`diagnose`).
        """
        if self._process is None or self._process.stdin is None:
            raise TargetUnavailableError(f"the session {self.prefix.removesuffix(': ')} is closed")
        try:
            write_message(self._process.stdin, header, parts)
        except (BrokenPipeError, ConnectionError):
            raise self._failure() from None
        done = 0
        while True:
            reply, reply_parts = self._receive()
            if "progress" not in reply:
                break
            if on_progress is not None:
                on_progress(int(reply["progress"]) - done)
            done = int(reply["progress"])
        for message in reply.get("warnings", []):
            warnings.warn(f"{self.prefix}{message}", EdgecnnWarning, stacklevel=2)
        if "error" in reply:
            # The error keeps its kind (a bad model is bad input there too, exit 2; a missing runtime is the
            # environment, exit 3); an agent too old to send one is taken as the environment.
            reason = None if reply.get("reason") is None else str(reply["reason"])
            raise remote_error(str(reply.get("kind", "")), f"{self.prefix}{reply['error']}", reason=reason)
        return reply, reply_parts

    def close(self) -> None:
        """End the session (the agent then deletes what it was sent) and wait for it to exit."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):  # the pipe is already broken: the agent is gone
                    process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()


class ChildSession(Session):
    """The agent as a child process of this one (``python -m edgecnn.targets.agent``), for a model named ``name``
    that ``what`` (``TensorFlow Lite Micro``, ``the Edge TPU delegate``) runs there; ``hint`` is added to the
    crash message (other causes of a crash than the model)."""

    def __init__(self, what: str, name: str, *, hint: str = "", timeout: float = CHILD_TIMEOUT_S) -> None:
        self.what, self.name, self.hint = what, name, hint
        super().__init__([sys.executable, "-m", "edgecnn.targets.agent"], env=child_environment(), timeout=timeout)

    def diagnose(self, returncode: int | None, stderr: str) -> EdgecnnError:
        if self.hung:
            return ModelFormatError(
                f"{self.what} stopped answering on {self.name} (nothing for {self.timeout:.0f} s; killed): the model "
                f"is malformed{self.hint}; {FIX}"
            )
        if returncode is not None and returncode < 0:
            return crash_error(self.what, self.name, returncode, self.hint)
        return super().diagnose(returncode, stderr)


def bundle_parts(model: Path) -> list[bytes]:
    """The model's bytes, and its sidecar's when it has one (a model from elsewhere travels alone).

    A bundle whose sidecar does not match, or a malformed model, is refused here, before anything is sent; the
    bytes sent are those that were verified.
    """
    info = sidecar_info(model)
    content = verify_model(model)
    return [content] if info is None else [content, sidecar_path(model).read_bytes()]


def send_bundle(
    session: Session,
    model: Path,
    *,
    target: str,
    threads: int | None,
    options: dict[str, Any] | None = None,
    load: bool = True,
) -> dict[str, Any]:
    """Send the bundle to ``session``'s agent, for ``target`` with ``options``, and have it load the model unless
    ``load`` is False; the agent's reply (``runtime``: what loaded it). Closes the session if that fails."""
    header: dict[str, Any] = {"op": "load", "target": target, "threads": threads, "open": load, "name": model.name}
    if options:
        header["options"] = options
    try:
        return session.request(header, bundle_parts(model))[0]
    except BaseException:
        session.close()
        raise


def child_session(target: Target, model: Path, *, load: bool = True) -> tuple[Session, dict[str, Any]]:
    """A child process that runs ``target``'s models in its own process, sent ``model`` (and loaded, if ``load``),
    and its reply to the load."""
    assert target.isolated_by is not None
    session = ChildSession(target.isolated_by, model.name, hint=target.crash_hint)
    loaded = send_bundle(
        session, model, target=target.name, threads=target.threads, options=target.child_options(), load=load
    )
    return session, loaded


class AgentRunner:
    """A runner whose model runs in an agent (a Pi over SSH, a child process): preprocessed images go as float32
    arrays, scores come back.

    The images are preprocessed here, with the model's own preprocessing, and quantized by the agent with the same
    :mod:`edgecnn.runtime.quant` code the in-process runners use.
    """

    def __init__(self, session: Session, model: Path, *, runtime: str, info: ModelInfo | None = None) -> None:
        self.path = model
        self.info: ModelInfo = info if info is not None else read_tflite_info(model)
        self._session = session
        self.runtime = runtime

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Scores ``(N, classes)`` computed by the agent."""
        images = fitting_images(images, self.info.preprocessing, model=self.path.name)
        scores = []
        for start in range(0, len(images), PREDICT_CHUNK):
            _, parts = self._session.request({"op": "predict"}, [array_bytes(images[start : start + PREDICT_CHUNK])])
            scores.append(bytes_array(parts[0]))
        return np.concatenate(scores) if scores else np.zeros((0, len(self.info.labels)), dtype=np.float32)

    def close(self) -> None:
        """End the session; the agent removes everything it was sent."""
        self._session.close()


def child_runner(target: Target, model: Path) -> AgentRunner:
    """``target``'s runner for ``model``, in a child process (:func:`child_session`)."""
    info = read_tflite_info(model)  # the bundle's own errors first, before a process is started
    session, loaded = child_session(target, model)
    return AgentRunner(session, model, runtime=str(loaded.get("runtime", "")), info=info)


def bench_in(session: Session, plan: BenchPlan, *, on_progress: ProgressFn | None = None) -> BenchResult:
    """Benchmark the model ``session``'s agent was sent, there (its own interpreter and clock)."""
    parts = [] if plan.images is None else [array_bytes(np.asarray(plan.images, dtype=np.float32))]
    header = {"op": "bench", "runs": plan.runs, "warmup": plan.warmup, "batch": plan.batch}
    reply, _ = session.request(header, parts, on_progress=on_progress)
    return BenchResult.from_dict(reply["result"])


def child_bench(target: Target, model: Path, plan: BenchPlan, *, on_progress: ProgressFn | None = None) -> BenchResult:
    """:meth:`Target.bench` for a target that runs models in a child process: timed there, on the child's clock."""
    session, _ = child_session(target, model, load=False)
    try:
        result = bench_in(session, plan, on_progress=on_progress)
    finally:
        session.close()
    return replace(result, model=str(model))
