"""The Android target: a phone over adb (:mod:`.adb`), running the bundle in TFLite's own benchmark_model, whose
flags and log it knows (:mod:`.benchmark_model`); the target and its runner are in :mod:`.target`."""

from __future__ import annotations

from edgecnn.errors import TargetUnavailableError
from edgecnn.targets import Availability
from edgecnn.targets.android.adb import find_adb

SUMMARY = "an Android phone over adb, running TFLite's benchmark_model (--serial, --benchmark-binary, --delegate)"
OPTIONS = ("serial", "adb", "benchmark_binary", "delegate")
TARGET = "edgecnn.targets.android.target:AndroidTarget"

README = "targets/android/README.md"


def availability() -> Availability:
    """Usable when adb is on PATH (only looked for: running ``adb devices`` would start adb's server daemon)."""
    try:
        adb = find_adb()
    except TargetUnavailableError:
        return Availability(
            False, "adb was not found on PATH", "apt install adb (Android platform-tools), or pass --adb PATH"
        )
    return Availability(
        True,
        f"adb at {adb}; run, validate and bench need TFLite's benchmark_model for Android (--benchmark-binary, "
        f"see {README})",
    )
