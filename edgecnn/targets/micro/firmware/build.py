"""Build firmware for a model once, and keep it: ``edgecnn run/validate/bench/check --target micro --board B``.

A firmware is the project :mod:`.project` writes (the export under the name ``model``, with ``--firmware``), built
by its Makefile. Two caches under ``$EDGECNN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/edgecnn``, ``~/.cache/edgecnn``),
in ``firmware/``:

* ``lib/KEY``: TFLM's compiled objects for one core, kernel set, compiler and TFLM tree; shared by every model;
  make compiles into it only what a model needs and is missing. A lock file serialises builds into one.
* ``fw/KEY``: one linked firmware, keyed by the model's and sidecar's bytes, the board, the kernels, the program
  and the library's key. Built in a temporary folder beside it and renamed into place: a firmware is complete or
  absent.

Deleting the cache folder is always safe.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import TargetUnavailableError, UsageError
from edgecnn.runtime.bundle import bundle_files
from edgecnn.targets.micro.boards import get_profile
from edgecnn.targets.micro.firmware import KERNELS, TEMPLATE
from edgecnn.targets.micro.firmware.toolchain import Toolchain, find_toolchain, tflm_dir, tree_identity

PROGRAMS = ("harness", "main")
CACHE_ENV = "EDGECNN_CACHE_DIR"
BUILD_TIMEOUT_S = 1800
"""A first build compiles TFLM (about a minute on two cores); half an hour means something is wrong."""


@dataclass(frozen=True)
class Firmware:
    """A linked firmware.

    Attributes:
        elf: the firmware image (``harness.elf``; ``harness`` for a host build).
        board: the board it was built for.
        kernels: ``reference`` or ``cmsis-nn``.
        compiler: the compiler that built it (``arm-none-eabi-g++ 12.2.1``).
        key: the cache key.
        cached: True when it came from the cache, False when this call built it.
        seconds: how long the build took (0 from the cache).
    """

    elf: Path
    board: str
    kernels: str
    compiler: str
    key: str
    cached: bool
    seconds: float


def cache_root() -> Path:
    """``$EDGECNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgecnn``, else ``~/.cache/edgecnn``."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgecnn"


def check_kernels(kernels: str, board: str) -> str:
    """``kernels`` if firmware for ``board`` can be built with it.

    Raises:
        UsageError: an unknown kernel set, or CMSIS-NN for the host.
    """
    if kernels not in KERNELS:
        raise UsageError(f"--kernels {kernels} is not a kernel set of --target micro: give {' or '.join(KERNELS)}")
    if kernels == "cmsis-nn" and board == "host":
        raise UsageError("--kernels cmsis-nn needs a Cortex-M board: give --board mps2-an386 or mps2-an500")
    return kernels


def build_firmware(
    model: str | os.PathLike[str],
    *,
    board: str,
    kernels: str = "reference",
    tflm: str | os.PathLike[str] | None = None,
    program: str = "harness",
) -> Firmware:
    """The firmware for ``model`` on ``board``, from the cache or built now.

    Args:
        model: a ``.tflite`` model (with its sidecar, or without one for the harness).
        board: ``host`` or a board profile with a Cortex-M core (:mod:`edgecnn.targets.micro.boards`).
        kernels: ``reference`` or ``cmsis-nn``.
        tflm: TFLM's source folder (``--tflm-dir``; None: ``$EDGECNN_TFLM_DIR``).
        program: ``harness`` (edgecnn's, for run/validate/bench) or ``main`` (the example firmware).

    Raises:
        UsageError: an unknown board, kernels or program, or a bad ``tflm`` folder.
        ModelFormatError: the model cannot be exported for TFLM (:func:`~edgecnn.targets.micro.export.export_micro`).
        TargetUnavailableError: the toolchain or TFLM's sources are missing, or the build failed.
    """
    if program not in PROGRAMS:
        raise UsageError(f"unknown firmware program {program!r}: give {' or '.join(PROGRAMS)}")
    cpu = "host" if board == "host" else get_profile(board).cpu
    if cpu is None:
        raise UsageError(f"edgecnn builds no firmware for {board} (not an Arm Cortex-M core)")
    check_kernels(kernels, board)
    toolchain = find_toolchain(board)
    trees = tflm_dir(tflm)
    lib_key = _digest(cpu, kernels, toolchain.version, tree_identity(trees), _template_digest())
    model_path = Path(model)
    parts = [_file_digest(p) for p in bundle_files(model_path) if p.exists()]
    key = _digest(lib_key, board, program, *parts)
    root = cache_root() / "firmware"
    final = root / "fw" / key
    elf = final / _elf_name(program, board)
    if elf.is_file():
        return Firmware(elf, board, kernels, toolchain.label, key, cached=True, seconds=0.0)
    start = time.perf_counter()
    _announce(f"building {program} firmware for {board} with {kernels} kernels (TFLM is compiled once per core)")
    lib_dir = root / "lib" / lib_key
    work = root / "fw" / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        _export(model_path, work / "project")
        with _locked(root / "lib" / f"{lib_key}.lock"):
            _make(toolchain, work / "project", trees, board, kernels, program, lib_dir)
        built = work / "project" / "build" / f"{board}-{kernels}" / elf.name
        (work / "out").mkdir()
        os.replace(built, work / "out" / elf.name)
        (work / "out" / "build.json").write_text(
            json.dumps({"board": board, "kernels": kernels, "program": program, "compiler": toolchain.version})
        )
        try:
            os.replace(work / "out", final)
        except OSError:  # another process built it first: keep theirs
            if not elf.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Firmware(elf, board, kernels, toolchain.label, key, cached=False, seconds=time.perf_counter() - start)


def _export(model: Path, project: Path) -> None:
    from edgecnn.targets.micro.firmware.project import export_project

    project.parent.mkdir(parents=True, exist_ok=True)
    export_project(model, project, name="model")


def _make(
    toolchain: Toolchain, project: Path, trees: Path, board: str, kernels: str, program: str, lib_dir: Path
) -> None:
    command = [
        toolchain.make,
        "-C",
        str(project),
        f"-j{os.cpu_count() or 1}",
        f"TFLM_DIR={trees}",
        f"BOARD={board}",
        f"KERNELS={kernels}",
        f"PROGRAM={program}",
        f"LIB_DIR={lib_dir}",
    ]
    log = project / "build.log"
    with log.open("wb") as out:
        try:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise TargetUnavailableError(f"building firmware for {board} took over {BUILD_TIMEOUT_S} s") from None
    if done.returncode != 0:
        kept = cache_root() / "firmware" / "last-failed-build.log"
        shutil.copyfile(log, kept)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise TargetUnavailableError(
            f"building firmware for {board} with {kernels} kernels failed ({tail[0][:300]}): the whole log is {kept}"
        )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (another edgecnn building into the same library waits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _elf_name(program: str, board: str) -> str:
    return program if board == "host" else f"{program}.elf"


def _announce(message: str) -> None:
    """A line on stderr when it is a terminal: a first build takes a minute."""
    if sys.stderr.isatty():
        print(f"edgecnn: {message}", file=sys.stderr, flush=True)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _template_digest() -> str:
    """The template's own files: a change to the Makefile or harness rebuilds everything."""
    files = sorted(p for p in TEMPLATE.rglob("*") if p.is_file() and p.suffix in {".mk", ".cc", ".c", ".h", ".ld"})
    return _digest(*(f"{p.relative_to(TEMPLATE)}:{_file_digest(p)}" for p in files))
