"""Fuzz edgecnn's command line with mutated ``.tflite`` models: no crash, hang or traceback, exit codes 0, 1 or 2.

Each case mutates one of the given models (bit flips, byte overwrites, truncation, a splice of two models, a huge
count written into a vector's length field), gives it a re-signed sidecar half the time (so the bytes pass the
sidecar's sha256 and reach the parsers and runtimes) and runs one command on it: ``inspect``, ``check --target
host|coral|micro``, ``run`` or ``export micro``.

Cases run in worker processes, many per worker and in-process (``cli.main``), to spare the start-up; a worker that
dies of a signal is a crash of the case it had started (the supervisor records it and carries on in a new worker),
one that stops answering is a hang. Cases are seeded one by one, so a case's number and the seed replay it::

    python tools/fuzz_models.py MODEL.tflite OTHER.tflite --cases 10000 --seed 0 --json fuzz.json

Prints the figures (cases per command, exit-code histogram, crashes, hangs, tracebacks, wall time); exits 1 when
any case crashed, hung, printed a traceback or exited with a code other than 0, 1 or 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

COMMANDS = ("inspect", "check-host", "check-coral", "check-micro", "run", "export-micro")
MUTATIONS = ("bitflip", "bytes", "truncate", "splice", "huge-length")
ALLOWED_EXITS = {0, 1, 2}
CASES_PER_WORKER = 250
SECONDS_PER_CASE = 30  # a worker's time limit is this times its cases, plus a start-up allowance


def _length_fields(content: bytes) -> list[int]:
    """Positions of every vector's length field in a valid model, found by walking it as the verifier does."""
    from edgecnn.model import flatbuffer, verify

    found: list[int] = []

    class Table(flatbuffer._Table):
        def vector(self, slot: int, element_size: int, name: str) -> tuple[int, int]:
            start, count = super().vector(slot, element_size, name)
            if start:
                found.append(start - 4)
            return start, count

    class File(flatbuffer._File):
        def table(self, pos: int, what: str) -> flatbuffer._Table:
            return Table(self, pos, what)

    verify._verify(File(content, "model", strict=True))
    return sorted(set(found))


def mutate(rng: random.Random, bases: list[bytes], lengths: list[list[int]]) -> tuple[str, bytes]:
    """One mutation of one of ``bases``: its kind and the bytes."""
    kind = rng.choice(MUTATIONS)
    which = rng.randrange(len(bases))
    data = bytearray(bases[which])
    if kind == "bitflip":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice((0, 0xFF, rng.randrange(256)))
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    elif kind == "splice":
        other = bases[rng.randrange(len(bases))]
        cut = rng.randrange(min(len(data), len(other)))
        data = data[:cut] + other[cut:]
    else:
        pos = rng.choice(lengths[which])
        value = rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 0x40000000, rng.randrange(1 << 32)))
        data[pos : pos + 4] = value.to_bytes(4, "little")
    return kind, bytes(data)


def _arguments(command: str, model: Path, work: Path) -> list[str]:
    if command == "inspect":
        return ["inspect", str(model)]
    if command.startswith("check-"):
        return ["check", str(model), "--target", command.removeprefix("check-")]
    if command == "run":
        return ["run", str(model), str(work / "image.png")]
    return ["export", "micro", str(model), "--out", str(work / "export")]


def _write_case(work: Path, content: bytes, sidecar: dict[str, Any] | None) -> Path:
    """The mutated model, with its sidecar re-signed for its bytes (or none)."""
    from edgecnn.runtime.bundle import ModelInfo, sidecar_path, write_tflite

    model = work / "case.tflite"
    sidecar_path(model).unlink(missing_ok=True)
    if sidecar is None:
        model.write_bytes(content)
    else:
        write_tflite(model, content, ModelInfo.from_dict(sidecar, source=model))
    return model


def _case(
    index: int, seed: int, bases: list[bytes], lengths: list[list[int]], sidecars: list[Any]
) -> tuple[dict[str, Any], bytes, Any]:
    rng = random.Random(f"{seed}:{index}")
    kind, content = mutate(rng, bases, lengths)
    command = rng.choice(COMMANDS)
    signed = [s for s in sidecars if s is not None]
    sidecar = rng.choice(signed) if signed and rng.random() < 0.5 else None
    return {"case": index, "mutation": kind, "command": command, "sidecar": sidecar is not None}, content, sidecar


def _invoke(args: list[str]) -> tuple[int, str]:
    """Run the CLI in this process; its exit code and what it wrote on stderr."""
    from edgecnn.cli.main import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(args, prog_name="edgecnn", standalone_mode=False)
    return int(code), err.getvalue()


def worker(models: list[Path], start: int, stop: int, seed: int) -> None:
    """Run cases ``start..stop`` in this process, one JSON line each on stdout (a ``started`` line first)."""
    import numpy as np
    from PIL import Image

    from edgecnn.runtime.bundle import sidecar_path

    os.environ["EDGECNN_DEBUG"] = "1"  # an internal error prints its traceback: counted as one
    bases = [m.read_bytes() for m in models]
    lengths = [_length_fields(b) for b in bases]
    sidecars = [json.loads(sidecar_path(m).read_text()) if sidecar_path(m).is_file() else None for m in models]
    with tempfile.TemporaryDirectory(prefix="edgecnn-fuzz-") as folder:
        work = Path(folder)
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(work / "image.png")
        for index in range(start, stop):
            record, content, sidecar = _case(index, seed, bases, lengths, sidecars)
            print(json.dumps({"started": index}), flush=True)
            model = _write_case(work, content, sidecar)
            began = time.perf_counter()
            code, err = _invoke(_arguments(record["command"], model, work))
            shutil.rmtree(work / "export", ignore_errors=True)
            record.update(exit=code, traceback="Traceback" in err, seconds=round(time.perf_counter() - began, 3))
            if record["traceback"] or code not in ALLOWED_EXITS:
                record["stderr"] = err[-2000:]
            print(json.dumps(record), flush=True)


def fuzz(models: list[Path], cases: int, seed: int, *, per_worker: int = CASES_PER_WORKER) -> dict[str, Any]:
    """Run ``cases`` cases in worker processes; the summary and every case's record."""
    began = time.perf_counter()
    records: list[dict[str, Any]] = []
    start = 0
    while start < cases:
        stop = min(cases, start + per_worker)
        records += _run_worker(models, start, stop, seed)
        start = records[-1]["case"] + 1 if records else stop
    return _summary(records, seed, time.perf_counter() - began)


def _run_worker(models: list[Path], start: int, stop: int, seed: int) -> list[dict[str, Any]]:
    """The records of one worker's cases; a case it started and never finished is a crash or a hang, and ends it."""
    command = [sys.executable, __file__, *map(str, models), "--worker", f"{start}:{stop}", "--seed", str(seed)]
    hang = False
    try:
        # check=False: a worker killed by a signal is a finding (a crash), recorded below, not an error.
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60 + SECONDS_PER_CASE * (stop - start), check=False
        )
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr, code, hang = "", None, True
    records, started = [], None
    for line in stdout.splitlines():
        item = json.loads(line)
        if "started" in item:
            started = item["started"]
        else:
            records.append(item)
            started = None
    if started is not None:
        records.append({"case": started, "crash": not hang, "hang": hang, "signal": code, "stderr": stderr[-2000:]})
    elif not records or records[-1]["case"] != stop - 1:
        raise RuntimeError(f"fuzz worker for cases {start}..{stop} failed (exit {code}): {stderr[-2000:]}")
    return records


def _summary(records: list[dict[str, Any]], seed: int, seconds: float) -> dict[str, Any]:
    finished = [r for r in records if "exit" in r]
    bad = [
        r
        for r in records
        if r.get("crash") or r.get("hang") or r.get("traceback") or r.get("exit", 0) not in ALLOWED_EXITS
    ]
    return {
        "cases": len(records),
        "seed": seed,
        "seconds": round(seconds, 1),
        "per_command": dict(sorted(Counter(r["command"] for r in finished).items())),
        "per_mutation": dict(sorted(Counter(r["mutation"] for r in finished).items())),
        "exit_codes": {str(k): v for k, v in sorted(Counter(r["exit"] for r in finished).items())},
        "exit_codes_per_command": {
            command: {
                str(k): v for k, v in sorted(Counter(r["exit"] for r in finished if r["command"] == command).items())
            }
            for command in COMMANDS
        },
        "crashes": sum(1 for r in records if r.get("crash")),
        "hangs": sum(1 for r in records if r.get("hang")),
        "tracebacks": sum(1 for r in records if r.get("traceback")),
        "failures": bad,
        "records": records,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help=".tflite models to mutate (with sidecars or without)")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the summary and every case's record here")
    parser.add_argument("--per-worker", type=int, default=CASES_PER_WORKER, help="cases per worker process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # START:STOP, run by the supervisor
    args = parser.parse_args(argv)
    if args.worker:
        start, stop = map(int, args.worker.split(":"))
        worker(args.models, start, stop, args.seed)
        return 0
    summary = fuzz(args.models, args.cases, args.seed, per_worker=args.per_worker)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    shown = {k: v for k, v in summary.items() if k not in ("records", "failures")}
    print(json.dumps(shown, indent=1))
    for failure in summary["failures"][:10]:
        print(json.dumps(failure), file=sys.stderr)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
