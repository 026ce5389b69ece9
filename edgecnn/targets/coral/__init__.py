"""The Coral Edge TPU target: the pre-flight and its op table (:mod:`.preflight`, :mod:`.ops`), the edgetpu_compiler
wrapper and its report parser (:mod:`.compiler`, :mod:`.compiler_report`), and the libedgetpu delegate runner
(:mod:`.target`)."""

from __future__ import annotations

import ctypes
import os
import platform

from edgecnn.errors import TargetUnavailableError
from edgecnn.targets import Availability

SUMMARY = "a Coral Edge TPU on this machine (libedgetpu delegate; models from edgetpu_compiler)"
OPTIONS = ("device", "min_tpu_share")
TARGET = "edgecnn.targets.coral.target:CoralTarget"

LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
"""The Edge TPU runtime's file name on each system, as Coral installs it."""

LIBRARY_ENV = "EDGECNN_EDGETPU_LIBRARY"
"""Set to the library's path when it is not where the system's loader looks."""

RUNTIME_INSTALL = (
    "install the Edge TPU runtime (Debian/Ubuntu: add Coral's apt repository and apt-get install libedgetpu1-std; "
    f"see targets/coral/README.md), or set {LIBRARY_ENV} to the library's path"
)


def edgetpu_library() -> str:
    """The Edge TPU runtime library to load: ``$EDGECNN_EDGETPU_LIBRARY``, else this system's name for it."""
    return os.environ.get(LIBRARY_ENV) or LIBRARIES.get(platform.system(), LIBRARIES["Linux"])


def open_library(library: str) -> None:
    """Load the library once by itself: a missing file is then one clean error, with the loader's reason.

    Raises:
        TargetUnavailableError: the library cannot be loaded.
    """
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        reason = str(exc).split(": ", 1)[-1] if str(exc) else "cannot be loaded"
        raise TargetUnavailableError(
            f"the Edge TPU runtime {library} is not installed ({reason}): {RUNTIME_INSTALL}"
        ) from None


def availability() -> Availability:
    """Usable when the Edge TPU runtime library loads (a device is looked for when a model is opened)."""
    library = edgetpu_library()
    try:
        open_library(library)
    except TargetUnavailableError:
        return Availability(False, f"the Edge TPU runtime {library} is not installed", RUNTIME_INSTALL)
    return Availability(True, f"runtime: {library} (a device is looked for when a model is opened)")
