"""The host target: this machine's CPU through the runtime layer (XNNPACK kernels, threads, batching)."""

from __future__ import annotations

from edgecnn.runtime.runtimes import installed_runtimes
from edgecnn.targets import Availability

SUMMARY = "this machine's CPU (XNNPACK, threads, batching)"
OPTIONS = ("kernels",)
TARGET = "edgecnn.targets.host.target:HostTarget"


def availability() -> Availability:
    """Usable when a TFLite interpreter is installed (nothing is imported to find out)."""
    found = installed_runtimes()
    if found:
        return Availability(True, f"interpreter: {found[0]}")
    return Availability(False, "no TFLite interpreter is installed", "pip install ai-edge-litert (or tflite-runtime)")
