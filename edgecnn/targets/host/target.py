"""The host: this machine's CPU through the runtime layer (XNNPACK kernels, threads, batching)."""

from __future__ import annotations

from pathlib import Path

from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.runtime.runtimes import check_kernels, check_threads
from edgecnn.targets.base import Finding, Target
from edgecnn.targets.cpu import runtime_findings


class HostTarget(Target):
    """This machine's CPU.

    Args:
        threads: interpreter threads (None: the runtime's default).
        kernels: ``default`` (XNNPACK) or ``reference`` (TFLite's reference kernels, what TensorFlow Lite Micro
            computes); None is ``default`` (:data:`~edgecnn.runtime.runtimes.KERNELS`).

    Raises:
        UsageError: a thread count out of range, or an unknown kernel set.
    """

    name = "host"

    def __init__(self, *, threads: int | None = None, kernels: str | None = None) -> None:
        self.threads = check_threads(threads)
        self.kernels = check_kernels(kernels, target=self.name)

    def check(self, model: Path) -> list[Finding]:
        return runtime_findings(model, runtime=None, threads=self.threads, kernels=self.kernels)

    def open(self, model: Path) -> TFLiteRunner:
        return TFLiteRunner(model, num_threads=self.threads, kernels=self.kernels)

    def open_timed(self, model: Path) -> TFLiteRunner:
        return TFLiteRunner(model, num_threads=self.threads, kernels=self.kernels, require_sidecar=False)
