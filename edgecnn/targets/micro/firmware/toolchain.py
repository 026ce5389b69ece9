"""What building and running firmware needs from this machine: the compilers, make, qemu-system-arm, and TensorFlow
Lite Micro's source trees.

Nothing here installs anything. A missing tool is an environment error (exit 3) that names the Debian packages;
TFLM's trees come from ``--tflm-dir`` or ``$EDGECNN_TFLM_DIR`` (``tools/fetch_tflm.sh`` fetches them at TFLM's pins
on a machine with network access).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import TargetUnavailableError, UsageError

ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
"""Debian's packages for the Cortex-M compiler, newlib (with semihosting) and its C++ library."""

QEMU_PACKAGE = "qemu-system-arm"

TFLM_TREES = ("tflite-micro", "flatbuffers", "gemmlowp", "ruy", "cmsis-nn")
"""The folders a TFLM source folder holds side by side, each at TFLM's pin."""

TFLM_ENV = "EDGECNN_TFLM_DIR"

_TFLM_FIX = (
    f"give --tflm-dir DIR or set {TFLM_ENV}: a folder with {', '.join(f'{t}/' for t in TFLM_TREES)} at TFLM's "
    "pins (tools/fetch_tflm.sh DIR fetches them; targets/micro/README.md)"
)


@dataclass(frozen=True)
class Toolchain:
    """The compilers that build firmware for one board.

    Attributes:
        compiler: the C++ compiler (``arm-none-eabi-g++``, or ``g++`` for the host).
        version: its ``--version`` line, which the firmware cache is keyed by.
        make: GNU make.
        label: the compiler as reports name it (``arm-none-eabi-g++ 12.2.1``).
    """

    compiler: str
    version: str
    make: str
    label: str


def find_toolchain(board: str) -> Toolchain:
    """The compiler and make for ``board`` (``host`` or a Cortex-M board).

    Raises:
        TargetUnavailableError: a tool is missing (the message names the packages to install).
    """
    host = board == "host"
    compiler = shutil.which("g++" if host else "arm-none-eabi-g++")
    make = shutil.which("make")
    if compiler is None or make is None or (not host and shutil.which("arm-none-eabi-gcc") is None):
        packages = "g++ make" if host else f"{ARM_PACKAGES} make"
        what = "a C++ compiler and make" if host else "the Arm GNU toolchain (arm-none-eabi-gcc) and make"
        raise TargetUnavailableError(
            f"building firmware for {board} needs {what}: install them (Debian: apt-get install {packages})"
        )
    version = _first_line([compiler, "--version"])
    if not host and not _has_newlib(compiler):
        raise TargetUnavailableError(
            f"{compiler} has no newlib (rdimon.specs missing): install it (Debian: apt-get install {ARM_PACKAGES})"
        )
    return Toolchain(compiler=compiler, version=version, make=make, label=_label(compiler))


def find_qemu() -> str:
    """``qemu-system-arm``'s path.

    Raises:
        TargetUnavailableError: it is not installed.
    """
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise TargetUnavailableError(
            f"running firmware on an emulated board needs qemu-system-arm: install it (Debian: apt-get install "
            f"{QEMU_PACKAGE})"
        )
    return qemu


def qemu_version(qemu: str) -> str:
    """qemu's ``--version`` line."""
    return _first_line([qemu, "--version"])


def tflm_dir(option: str | os.PathLike[str] | None) -> Path:
    """The TFLM source folder: ``option`` (``--tflm-dir``), else ``$EDGECNN_TFLM_DIR``.

    Raises:
        TargetUnavailableError: neither is given.
        UsageError: the folder given lacks one of the trees.
    """
    given = option if option is not None else os.environ.get(TFLM_ENV) or None
    if given is None:
        raise TargetUnavailableError(f"building firmware needs TensorFlow Lite Micro's sources: {_TFLM_FIX}")
    folder = Path(given).expanduser()
    source = "--tflm-dir" if option is not None else TFLM_ENV
    missing = [tree for tree in TFLM_TREES if not (folder / tree).is_dir()]
    interpreter = folder / "tflite-micro/tensorflow/lite/micro/micro_interpreter.h"
    if not interpreter.is_file() and "tflite-micro" not in missing:
        missing.insert(0, "tflite-micro")
    if missing:
        raise UsageError(f"{source} {folder} has no {', '.join(f'{t}/' for t in missing)}: {_TFLM_FIX}")
    return folder.resolve()


def tree_identity(folder: Path) -> str:
    """A digest of every file's path, size and modification time under ``folder``'s TFLM trees.

    Cheap (no file is read) and changes when any source changes, so cached firmware is rebuilt for other trees.
    """
    digest = hashlib.sha256()
    for tree in TFLM_TREES:
        for root, dirs, files in os.walk(folder / tree):
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                stat = path.stat()
                digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise TargetUnavailableError(f"{command[0]} does not run ({exc}): reinstall it") from None
    return done.stdout.splitlines()[0].strip() if done.stdout else command[0]


def _has_newlib(compiler: str) -> bool:
    try:
        done = subprocess.run(
            [compiler, "-print-file-name=rdimon.specs"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return os.path.isabs(done.stdout.strip())


def _label(compiler: str) -> str:
    """``arm-none-eabi-g++ 12.2.1``: the compiler's name and ``-dumpfullversion``."""
    try:
        done = subprocess.run([compiler, "-dumpfullversion"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise TargetUnavailableError(f"{compiler} does not run ({exc}): reinstall it") from None
    return f"{Path(compiler).name} {done.stdout.strip()}"
