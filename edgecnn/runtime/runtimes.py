"""Which TFLite interpreter package runs a model: ai-edge-litert (LiteRT), else tflite-runtime.

Finding out what is installed imports nothing (``edgecnn targets`` stays fast); :func:`runtime_module` imports the
chosen package on first use. TensorFlow's own ``tf.lite`` is not a runtime here: the runtime side never imports
TensorFlow, and ai-edge-litert (a core dependency) runs the same kernels.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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
