"""Mutated models through the command line: no crash, hang or traceback; exit codes 0, 1 or 2 only.

Native runtimes may be reached (LiteRT in-process, TFLM in its probe process), so every case runs in a process of
its own kind: ``tools/fuzz_models.py`` runs cases in worker processes and records a worker killed by a signal as a
crash of the case it had started. The longer run (10,000 cases) is the same tool with ``--cases 10000``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgecnn.model import flatbuffer
from edgecnn.runtime.bundle import read_tflite_info, write_tflite

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "fuzz_models.py"


def _cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own: a segfault shows as a negative exit status, not a dead test run."""
    command = [sys.executable, "-m", "edgecnn", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def test_150_mutated_models_never_crash_the_cli(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    command = [sys.executable, str(TOOL), str(models["int8"]), str(models["float"]), "--cases", "150"]
    done = subprocess.run(
        [*command, "--seed", "13", "--json", str(out), "--per-worker", "75"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.is_file(), done.stderr
    summary = json.loads(out.read_text())
    assert summary["cases"] == 150
    assert (summary["crashes"], summary["hangs"], summary["tracebacks"]) == (0, 0, 0), summary["failures"][:3]
    assert set(summary["exit_codes"]) <= {"0", "1", "2"}, summary["failures"][:3]
    assert set(summary["per_command"]) == {"inspect", "check-host", "check-coral", "check-micro", "run", "export-micro"}
    assert done.returncode == 0


def test_a_resigned_model_with_a_buffer_index_out_of_range_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    """The adversarial run's case: TFLM segfaulted (139) on it in check and export; now exit 2, one line."""
    content = bytearray(models["int8"].read_bytes())
    file = flatbuffer._File(bytes(content), "m")
    graph = file.table(file.follow(0, "root"), "model").tables(2, "subgraphs")[0]
    pos = graph.tables(0, "tensors")[1]._field(2, 4, "buffer")  # tensor 1's buffer index
    content[pos : pos + 4] = (50_000).to_bytes(4, "little")
    model = tmp_path / "flipped.tflite"
    write_tflite(model, bytes(content), read_tflite_info(models["int8"]))  # the sidecar re-signed for these bytes
    for args in (
        ("check", model, "--target", "micro"),
        ("check", model, "--target", "coral"),
        ("export", "micro", model, "--out", tmp_path / "out"),
        ("run", model, model),
    ):
        done = _cli(*args)
        assert done.returncode == 2, (args, done.returncode, done.stderr)
        assert "buffer 50000" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_huge_file_of_zeros_is_refused_without_reading_it(tmp_path: Path) -> None:
    model = tmp_path / "zeros.tflite"
    with model.open("wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB on paper, nothing on disk
    for target in ("host", "coral", "micro"):
        done = _cli("check", model, "--target", target, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "no TFL3 identifier" in done.stderr
