"""What every section of the benchmark harness shares: the run's context, child processes, medians, output files."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgecnn.runtime.files import atomic_path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_CIFAR = REPO.parent / "shared" / "datasets" / "cifar10"
DEFAULT_OUT = REPO / "benchmarks" / "results.json"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
VERSIONED = (
    "edgecnn",
    "ai-edge-litert",
    "onnxruntime",
    "tf2onnx",
    "onnx",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "numpy",
    "pillow",
    "threadpoolctl",
    "tflite-micro",
)


def log(message: str) -> None:
    """A progress line on stderr (stdout stays free for what a section prints)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Models:
    """The cifar10 network in the forms the sections use; filled by the cifar10 section (or from options).

    Attributes:
        keras: the trained ``.keras`` model.
        int8: its full-int8 ``.tflite`` (sidecar beside it).
        train_json: what ``edgecnn train --json`` printed (or an equivalent record), when known.
    """

    keras: Path | None = None
    int8: Path | None = None
    train_json: Path | None = None


@dataclass
class Context:
    """One run of the harness: options, scratch folder, models and the edgecnn command line.

    Attributes:
        options: the parsed command line (see ``run.py``).
        work: scratch folder for models and intermediate JSON.
        models: the cifar10 network's files, shared between sections.
        quick: tiny subsets and few repeats, for developing the harness (figures are not benchmarks).
    """

    options: Any
    work: Path
    models: Models = field(default_factory=Models)
    quick: bool = False

    @property
    def cifar(self) -> Path:
        """The CIFAR-10 image folders (``train/``, ``test/``)."""
        return Path(self.options.cifar)

    @property
    def test_limit(self) -> int | None:
        """Test images per class the accuracy and validate sections use (None: the whole test split)."""
        return self.options.test_per_class


def edgecnn_command() -> list[str]:
    """The ``edgecnn`` CLI of this interpreter's environment (``python -m edgecnn``: no PATH lookup)."""
    return [sys.executable, "-m", "edgecnn"]


@dataclass(frozen=True)
class ChildRun:
    """One child process, measured from outside.

    Attributes:
        seconds: wall time from start to exit.
        peak_rss_mb: the child's peak resident set (``ru_maxrss`` from ``wait4``; with the children it waited for),
            in MB (1 MB = 10^6 bytes).
        returncode: its exit status.
        stdout / stderr: what it printed.
    """

    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Its stdout parsed as one JSON document."""
        return json.loads(self.stdout)


# A small launcher between the harness and each measured command. On Linux a child's peak RSS starts from its
# parent's: fork copies the parent's high-water mark and exec keeps it (``exec_mmap`` folds the old memory's peak
# into ``ru_maxrss``). The harness itself grows to gigabytes once it has loaded TensorFlow, so it must not be the
# parent; this launcher, a bare Python of a few MB, is. It also times the command from its spawn to its exit.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    json.dump({"seconds": seconds, "maxrss_kb": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, out)
"""


def run_child(
    command: Sequence[str | os.PathLike[str]],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    ok_codes: tuple[int, ...] = (0,),
) -> ChildRun:
    """Run one command and measure its wall time and peak memory.

    The command runs under a small launcher (see ``_LAUNCHER``) that times it and reads its resource usage with
    ``os.wait4``: that one child's (with the children it waited for), unlike ``getrusage(RUSAGE_CHILDREN)``, whose
    ``ru_maxrss`` is the largest of every child so far. Output goes to temporary files, so a chatty child cannot
    block on a full pipe.

    Raises:
        RuntimeError: the exit status is not in ``ok_codes`` and ``check`` is set (with the last stderr lines).
    """
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as record,
    ):
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, record.name]
        subprocess.run([*launcher, *(str(c) for c in command)], stdout=out, stderr=err, env=env, check=True)
        measured = json.loads(Path(record.name).read_text())
        out.seek(0)
        err.seek(0)
        result = ChildRun(
            measured["seconds"], measured["maxrss_kb"] * 1024 / 1e6, measured["code"], out.read(), err.read()
        )
    if check and result.returncode not in ok_codes:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        shown = " ".join(str(c) for c in command)
        raise RuntimeError(f"{shown} exited {result.returncode}:\n{tail}")
    return result


def median(values: Sequence[float]) -> float:
    """The median of measured values (the harness's one statistic over repeats)."""
    return float(statistics.median(values))


def rotated(items: list[Any], repeat: int, repeats: int) -> list[Any]:
    """``items`` started at a different place on each repeat, so no configuration always runs first or last."""
    shift = (repeat * len(items)) // max(repeats, 1)
    return items[shift:] + items[:shift]


def versions() -> dict[str, str]:
    """Installed versions of Python and the packages measured (missing ones left out)."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_flags() -> list[str]:
    """The SIMD features that decide which kernels run (AVX2, FMA, AVX-512, VNNI), as /proc/cpuinfo lists them."""
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in flags]
    return []


def machine() -> dict[str, Any]:
    """Where the run happened: architecture, CPUs, CPU model and features, Python."""
    return {
        "arch": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
    }


def today() -> str:
    """The UTC date, as BENCHMARKS.md writes it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def section_meta(context: Context, started: float, load_start: tuple[float, float, float]) -> dict[str, Any]:
    """What every section records about how it was measured."""
    return {
        "date": today(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": context.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "machine": machine(),
        "versions": versions(),
    }


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON (indented, for people reading the diff) atomically: see :func:`write_text_atomically`."""
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Replace a text file through edgecnn's ``atomic_path``: a temporary in the same folder, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def marker_pattern(name: str) -> re.Pattern[str]:
    """The block of BENCHMARKS.md the harness owns: ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``."""
    return re.compile(rf"(<!-- bench:{re.escape(name)} -->\n)(.*?)(<!-- /bench:{re.escape(name)} -->)", re.DOTALL)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` holding ``body``; hand-written text around the markers stays.

    Raises:
        KeyError: BENCHMARKS.md has no such block (its markers were removed or renamed).
    """
    pattern = marker_pattern(name)
    if not pattern.search(text):
        raise KeyError(name)
    return pattern.sub(lambda match: match.group(1) + body.rstrip("\n") + "\n" + match.group(3), text, count=1)


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    """A ratio for a table cell ("-" when unknown)."""
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_pct(value: float | None) -> str:
    """An accuracy (a fraction) as a percentage cell."""
    return "-" if value is None else f"{100 * value:.2f}%"


def machine_line(meta: dict[str, Any]) -> str:
    """Where and under what load a section was measured, for the line under its table."""
    m = meta.get("machine", {})
    flags = ", ".join(m.get("cpu_flags", [])) or "no AVX2"
    load = meta.get("load_average", {})
    return (
        f"{m.get('arch')}, {m.get('cpus')} CPUs ({m.get('cpu')}; {flags}), Python {m.get('python')}; "
        f"1-minute load average {load.get('start', [0])[0]:.2f} before, {load.get('end', [0])[0]:.2f} after"
    )


def quick_banner(meta: dict[str, Any]) -> str:
    """A warning line above a table filled by a ``--quick`` run (empty for a real run)."""
    if not meta.get("quick"):
        return ""
    return "**PLACEHOLDER from a `--quick` run (tiny subsets, few repeats): not benchmark figures.**\n"
