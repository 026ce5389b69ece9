"""The host: this machine's CPU through the runtime layer (XNNPACK kernels, threads, batching)."""

from __future__ import annotations

from pathlib import Path

from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.runtime.runtimes import check_threads
from edgecnn.targets.base import Finding, Target
from edgecnn.targets.cpu import runtime_findings


class HostTarget(Target):
    """This machine's CPU.

    Args:
        threads: interpreter threads (None: the runtime's default).
    """

    name = "host"

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = check_threads(threads)

    def check(self, model: Path) -> list[Finding]:
        return runtime_findings(model, runtime=None, threads=self.threads)

    def open(self, model: Path) -> TFLiteRunner:
        return TFLiteRunner(model, num_threads=self.threads)

    def open_timed(self, model: Path) -> TFLiteRunner:
        return TFLiteRunner(model, num_threads=self.threads, require_sidecar=False)
