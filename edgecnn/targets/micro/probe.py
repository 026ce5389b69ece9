"""The child process that loads a model in TensorFlow Lite Micro for :func:`edgecnn.targets.micro.arena.probe_arena`.

``python -m edgecnn.targets.micro.probe MODEL NAME`` verifies the model, measures its arena, loads it with the
firmware's arena and runs it once on zeros, then prints one JSON line on stdout:

- ``{"used_bytes": N}``: TFLM loaded and ran it;
- ``{"refused": REASON}``: TFLM refused it (an operation it lacks, float16 weights...), with TFLM's own words;
- ``{"error": KIND, "message": MESSAGE}``: edgecnn refused it first (an :class:`~edgecnn.errors.EdgecnnError`).

A crash (a signal) or a hang has no line: the parent tells them from the exit status, and this process dying is
the point of running here.
"""

from __future__ import annotations

import json
import sys

from edgecnn.errors import EdgecnnError, ModelLoadError


def probe(model: str, name: str) -> dict[str, object]:
    """Measure ``model`` (a ``.tflite`` path) in this process; the JSON-ready result."""
    from edgecnn.model.verify import verify_model
    from edgecnn.targets.micro.arena import measure_here

    try:
        return {"used_bytes": measure_here(verify_model(model), name).used_bytes}
    except ModelLoadError as exc:
        return {"refused": exc.reason}
    except EdgecnnError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


def main(argv: list[str]) -> int:
    """Entry point: ``MODEL NAME``; prints the result line and returns 0."""
    model, name = argv
    print(json.dumps(probe(model, name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
