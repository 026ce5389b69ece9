"""Which TFLite interpreter package runs a model: ai-edge-litert (LiteRT), else tflite-runtime.

Finding out what is installed imports nothing (``edgecnn targets`` stays fast); :func:`runtime_module` imports the
chosen package on first use. TensorFlow's own ``tf.lite`` is not a runtime here: the runtime side never imports
TensorFlow, and ai-edge-litert (a core dependency) runs the same kernels.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from edgecnn.errors import MissingDependencyError, UsageError

RUNTIMES = ("ai-edge-litert", "tflite-runtime")
"""Interpreter packages in the order they are tried."""

RUNTIME_ENV = "EDGECNN_RUNTIME"
"""Names the runtime to use when several are installed."""

_MODULES = {"ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}

MAX_THREADS = 256
"""The most interpreter threads edgecnn asks for: far beyond any board's cores, and far below the counts that
crash the interpreters' thread pools (``--threads 100000`` segfaulted)."""


def check_threads(threads: int | None) -> int | None:
    """A ``--threads`` value, checked: None (the runtime's default) or 1 to :data:`MAX_THREADS`.

    Raises:
        UsageError: a count outside that range.
    """
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be between 1 and {MAX_THREADS}, not {threads}")
    return threads


KERNELS = {"default": "XNNPACK", "reference": "TFLite's reference kernels"}
"""The kernel sets of the TFLite interpreters (``--kernels`` of host and rpi): name → what it is. ``default`` is what
the runtimes run by default (XNNPACK, with TFLite's optimized kernels for what XNNPACK does not take);
``reference`` is TFLite's reference kernels (``OpResolverType.BUILTIN_REF``), the code TensorFlow Lite Micro runs."""


def check_kernels(kernels: str | None, *, target: str | None = None, choices: Mapping[str, str] = KERNELS) -> str:
    """A ``--kernels`` value, checked: the name of one of ``choices`` (None: the first, the default).

    Args:
        kernels: the name given, or None.
        target: the target the value was given for, named in the error.
        choices: the kernel sets that ``target`` runs, name → what it is.

    Raises:
        UsageError: a name not among ``choices``; the one line names them.
    """
    if kernels is None:
        return next(iter(choices))
    if kernels not in choices:
        plain = kernels.isprintable() and kernels.split() == [kernels]  # a word: shown as given, else quoted
        shown = kernels if plain else repr(kernels)
        where = f"--target {target}" if target else "the TFLite interpreters"
        names = [f"{name} ({what})" for name, what in choices.items()]
        give = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise UsageError(f"--kernels {shown} is not a kernel set of {where}: give {give}")
    return kernels


def runtime_label(runtime: str, kernels: str) -> str:
    """How reports name an interpreter package running a kernel set: ``ai-edge-litert`` for the default kernels,
    ``ai-edge-litert (reference kernels)`` for TFLite's reference kernels."""
    return runtime if kernels == "default" else f"{runtime} ({kernels} kernels)"


def installed_runtimes(candidates: tuple[str, ...] = RUNTIMES) -> list[str]:
    """The interpreter packages among ``candidates`` that are installed, with versions (nothing is imported)."""
    found = []
    for name in candidates:
        if importlib.util.find_spec(_MODULES[name]) is not None:
            try:
                found.append(f"{name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                found.append(name)  # importable, but installed without package metadata
    return found


def runtime_module(runtime: str | None = None) -> tuple[str, Any]:
    """Import an interpreter package: ``runtime`` if named (or ``$EDGECNN_RUNTIME``), else the first available.

    Returns:
        The runtime's name and its ``interpreter`` module (``Interpreter``, ``OpResolverType``, ``load_delegate``).

    Raises:
        MissingDependencyError: the named runtime, or every runtime, is missing.
        UsageError: an unknown runtime name.
    """
    wanted = runtime or os.environ.get(RUNTIME_ENV) or None
    if wanted is not None and wanted not in _MODULES:
        raise UsageError(f"unknown runtime {wanted!r}: choose one of {', '.join(RUNTIMES)}")
    for name in (wanted,) if wanted else RUNTIMES:
        try:
            return name, importlib.import_module(f"{_MODULES[name]}.interpreter")
        except ImportError:
            continue
    if wanted:
        raise MissingDependencyError(wanted, purpose="run .tflite models")
    raise MissingDependencyError("ai-edge-litert", purpose="run .tflite models (or tflite-runtime)")
