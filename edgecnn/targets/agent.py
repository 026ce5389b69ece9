"""The process that runs a model for edgecnn elsewhere: ``edgecnn agent`` on a Raspberry Pi over SSH, or a child
process on this machine for targets whose native code must not share edgecnn's process.

It reads requests on stdin and answers on stdout (see :mod:`edgecnn.targets.wire`), running the bundle it was sent
with a target's own in-process runner (:meth:`~edgecnn.targets.base.Target.in_process`). The ``load`` request
names the target and its options (a Pi's agent gets ``rpi``, the default, from clients that do not say); the hello
lists the CPU kernel sets it knows (``kernels``, rpi's ``--kernels``), so a client never asks an older agent for one
it lacks. Everything it receives lives in one temporary folder that is removed when the session ends: end of input,
a broken connection (SIGHUP), SIGTERM or an error; a child killed by a signal leaves it to the next run's clean-up of
stale temporaries.

Besides its reply, a request may be answered by progress messages first (``{"progress": N}``, N timed runs
done), and a reply carries the warnings the work raised (``"warnings": [...]``), so the caller shows both.

``python -m edgecnn.targets.agent`` is the child form: it ignores SIGINT (Ctrl-C reaches the whole process group;
the parent ends the child by closing its input) and exits with its parent.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

from edgecnn import __version__
from edgecnn.errors import EdgecnnError, EdgecnnWarning, ModelLoadError, UsageError, error_kind
from edgecnn.runtime.bench import BenchPlan
from edgecnn.runtime.bundle import sidecar_path
from edgecnn.runtime.files import temporary_folder
from edgecnn.runtime.machine import machine_summary
from edgecnn.runtime.runtimes import KERNELS
from edgecnn.targets.wire import PROTOCOL, array_bytes, bytes_array, read_message, write_message

MODEL_NAME = "model.tflite"
"""The model's file name in the agent's folder when the request does not give one (or gives an unusable one)."""

Send = Callable[[dict[str, Any]], None]


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class _Agent:
    """The state of one session: the folder with the bundle, the target, and the runner once loaded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.model = folder / MODEL_NAME  # renamed by each load to the caller's file name, so messages name it
        self.target_name = "rpi"
        self.options: dict[str, Any] = {}
        self.threads: int | None = None
        self.runner: Any = None

    def target(self) -> Any:
        from edgecnn.targets import make_target

        return make_target(self.target_name, threads=self.threads, **self.options).in_process()

    def handle(self, header: dict[str, Any], parts: list[bytes], send: Send) -> tuple[dict[str, Any], list[bytes]]:
        op = header.get("op")
        if op == "load":
            return self._load(header, parts)
        if not self.model.exists():
            raise UsageError("no model was sent")
        if op == "check":
            return {"findings": [f.to_dict() for f in self.target().check(self.model)]}, []
        if op == "predict":
            if self.runner is None:
                self.runner = self.target().open(self.model)
            return {}, [array_bytes(self.runner.predict(bytes_array(parts[0])))]
        if op == "bench":
            self.close()  # the benchmark loads its own interpreter and times it
            images = bytes_array(parts[0]) if parts else None
            plan = BenchPlan(images, int(header["runs"]), int(header["warmup"]), int(header["batch"]))
            done = [0]

            def progress(n: int) -> None:
                done[0] += n
                send({"progress": done[0]})

            result = self.target().bench(self.model, plan, on_progress=progress)
            return {"result": result.to_dict()}, []
        raise UsageError(f"unknown request {op!r}: update edgecnn on both machines to the same version")

    def _load(self, header: dict[str, Any], parts: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        if len(parts) not in (1, 2):
            raise UsageError("load needs the model, and its sidecar if it has one")
        options = header.get("options", {})
        if not isinstance(options, dict):
            raise UsageError("load's options must be an object")
        self.close()
        for old in self.folder.iterdir():
            old.unlink()
        self.model = self.folder / _model_name(header.get("name"))
        self.model.write_bytes(parts[0])
        # A model from elsewhere comes without a sidecar: check and bench take it as it is.
        if len(parts) == 2:
            sidecar_path(self.model).write_bytes(parts[1])
        self.target_name = str(header.get("target", "rpi"))
        self.options = options
        self.threads = header.get("threads")
        if header.get("open", True):
            self.runner = self.target().open(self.model)
            return {"loaded": True, "runtime": self.runner.runtime}, []
        return {"loaded": False}, []

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None


def _model_name(name: object) -> str:
    """The caller's file name for the model when it is a plain ``NAME.tflite`` (no folder, nothing hidden)."""
    plain = isinstance(name, str) and name == Path(name).name and name.isprintable() and len(name) <= 255
    if plain and name.endswith(".tflite") and not name.startswith("."):
        return name
    return MODEL_NAME


def _runtime_name() -> str:
    from edgecnn.targets.rpi import pi_runtime

    try:
        return pi_runtime()
    except EdgecnnError:
        return "none"


def error_reply(exc: EdgecnnError) -> dict[str, Any]:
    """The reply that reports ``exc``: its message and kind (and the interpreter's own reason for a refused model)."""
    reply: dict[str, Any] = {"error": str(exc), "kind": error_kind(exc)}
    if isinstance(exc, ModelLoadError):
        reply["reason"] = exc.reason
    return reply


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the input ends. Errors the user can fix are sent back, not raised."""
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)
    with temporary_folder("agent-") as folder:
        agent = _Agent(folder)
        try:
            write_message(
                replies,
                {
                    "agent": "edgecnn",
                    "protocol": PROTOCOL,
                    "version": __version__,
                    "runtime": _runtime_name(),
                    "kernels": list(KERNELS),
                    "machine": machine_summary(),
                },
            )
            while (message := read_message(requests)) is not None:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", EdgecnnWarning)
                    try:
                        reply, parts = agent.handle(*message, lambda header: write_message(replies, header))
                    except EdgecnnError as exc:
                        reply, parts = error_reply(exc), []
                said = [str(w.message) for w in caught if issubclass(w.category, EdgecnnWarning)]
                if said:
                    reply = {**reply, "warnings": list(dict.fromkeys(said))}
                write_message(replies, reply, parts)
        finally:
            agent.close()


def serve_stdio() -> None:
    """Serve on this process's stdin and stdout (``edgecnn agent``, started over SSH, or the child form).

    The protocol owns stdout: file descriptor 1 is moved aside for the replies and pointed at stderr, so a native
    library that prints to it cannot corrupt a message.
    """
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve_stdio()
