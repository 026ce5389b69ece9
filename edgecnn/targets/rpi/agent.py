"""``edgecnn agent``: the device side of ``--target rpi --host``, started over SSH by :mod:`edgecnn.targets.rpi.ssh`.

It reads requests on stdin and answers on stdout (see :mod:`edgecnn.targets.rpi.wire`), running the bundle it was
sent with the Pi's local runtime and defaults. Everything it receives lives in one temporary folder that is
removed when the session ends: end of input, a broken connection (SIGHUP), SIGTERM or an error.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

from edgecnn import __version__
from edgecnn.errors import EdgecnnError, UsageError, error_kind
from edgecnn.runtime.bench import BenchPlan
from edgecnn.runtime.machine import machine_summary
from edgecnn.targets.rpi.wire import PROTOCOL, array_bytes, bytes_array, read_message, write_message

MODEL_NAME = "model.tflite"
SIDECAR_NAME = "model.json"


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class _Agent:
    """The state of one session: the folder with the bundle, and the runner once loaded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.model = folder / MODEL_NAME
        self.threads: int | None = None
        self.runner: Any = None

    def target(self) -> Any:
        from edgecnn.targets.rpi.target import RpiTarget

        return RpiTarget(threads=self.threads)

    def handle(self, header: dict[str, Any], parts: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        op = header.get("op")
        if op == "load":
            if len(parts) not in (1, 2):
                raise UsageError("load needs the model, and its sidecar if it has one")
            self.close()
            self.model.write_bytes(parts[0])
            # A model from elsewhere comes without a sidecar: check and bench take it as it is.
            sidecar = self.folder / SIDECAR_NAME
            if len(parts) == 2:
                sidecar.write_bytes(parts[1])
            else:
                sidecar.unlink(missing_ok=True)
            self.threads = header.get("threads")
            if header.get("open", True):
                self.runner = self.target().open(self.model)
                return {"loaded": True, "runtime": self.runner.runtime}, []
            return {"loaded": False}, []
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
            result = self.target().bench(self.model, plan)
            return {"result": result.to_dict()}, []
        raise UsageError(f"unknown request {op!r}: update edgecnn on both machines to the same version")

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None


def _runtime_name() -> str:
    from edgecnn.targets.rpi import pi_runtime

    try:
        return pi_runtime()
    except EdgecnnError:
        return "none"


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the input ends. Errors the user can fix are sent back, not raised."""
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)
    with tempfile.TemporaryDirectory(prefix="edgecnn-agent-") as folder:
        agent = _Agent(Path(folder))
        try:
            write_message(
                replies,
                {
                    "agent": "edgecnn",
                    "protocol": PROTOCOL,
                    "version": __version__,
                    "runtime": _runtime_name(),
                    "machine": machine_summary(),
                },
            )
            while (message := read_message(requests)) is not None:
                try:
                    reply, parts = agent.handle(*message)
                except EdgecnnError as exc:
                    reply, parts = {"error": str(exc), "kind": error_kind(exc)}, []
                write_message(replies, reply, parts)
        finally:
            agent.close()


def serve_stdio() -> None:
    """Serve on this process's stdin and stdout (``edgecnn agent``, started over SSH).

    The protocol owns stdout: file descriptor 1 is moved aside for the replies and pointed at stderr, so a native
    library that prints to it cannot corrupt a message.
    """
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)
