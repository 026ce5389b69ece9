"""Issue 19: temporaries live in one folder edgecnn owns, and what a killed run left is removed by the next.

``kill -9`` during ``convert`` left TensorFlow's autograph files and a temporary folder in ``$TMPDIR``. Every run of
the command now points ``tempfile`` and ``TMPDIR`` at ``$TMPDIR/edgecnn-<uid>/<pid>-<random>``, removes it at the
end, and first removes the folders of processes that are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgecnn.runtime.files import clean_stale_temporaries, owned_temporaries, temporaries_root, temporary_folder


@pytest.fixture
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private stand-in for the system's temporary folder."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                             capture_output=True, text=True)  # fmt: skip
    return int(process.stdout)


def test_the_root_is_per_user_under_the_system_temporary_folder(system_tmp: Path) -> None:
    assert temporaries_root() == system_tmp / f"edgecnn-{os.getuid()}"


def test_stale_folders_are_removed_and_live_ones_kept(system_tmp: Path) -> None:
    root = temporaries_root()
    root.mkdir(mode=0o700)
    stale = root / f"{dead_pid()}-abc"
    (stale / "deep").mkdir(parents=True)
    (stale / "deep" / "__autograph_generated_file1.py").write_text("x = 1\n")
    alive = root / f"{os.getpid()}-def"
    alive.mkdir()
    other = root / "not-a-pid"
    other.mkdir()
    assert clean_stale_temporaries() == [stale]
    assert not stale.exists() and alive.exists() and other.exists()


def test_a_root_owned_by_someone_else_or_a_link_is_not_used(system_tmp: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{dead_pid()}-x").mkdir()
    temporaries_root().symlink_to(elsewhere)
    assert clean_stale_temporaries() == []  # nothing removed through a link someone planted
    with owned_temporaries() as folder:
        assert folder is None and tempfile.gettempdir() == str(system_tmp)
    assert len(list(elsewhere.iterdir())) == 1


def test_owned_temporaries_catch_tempfile_and_subprocesses_and_are_removed(system_tmp: Path) -> None:
    with owned_temporaries() as folder:
        assert folder is not None and folder.parent == temporaries_root()
        assert folder.name.startswith(f"{os.getpid()}-")
        assert tempfile.gettempdir() == str(folder) and os.environ["TMPDIR"] == str(folder)
        made = Path(tempfile.mkdtemp())
        child = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
                               check=True, capture_output=True, text=True)  # fmt: skip
        assert child.stdout.strip() == str(folder)
        with owned_temporaries() as inner:  # nested: the same folder
            assert inner == folder
        with temporary_folder("stages-") as scratch:
            assert scratch.parent == folder and scratch.name.startswith("stages-")
        assert not scratch.exists() and made.parent == folder
    assert not folder.exists()
    assert tempfile.gettempdir() == str(system_tmp) and os.environ["TMPDIR"] == str(system_tmp)


def test_temporary_folder_outside_a_run_is_named_by_the_process(system_tmp: Path) -> None:
    with temporary_folder("work-") as folder:
        assert folder.parent == temporaries_root() and folder.name.startswith(f"{os.getpid()}-work-")
    assert not folder.exists()


@pytest.mark.slow  # starts TensorFlow in a subprocess
def test_a_killed_convert_leaves_nothing_outside_its_folder_and_the_next_run_removes_it(
    tmp_path: Path, models: dict[str, Path], photos_train: Path
) -> None:
    system = tmp_path / "tmp"
    system.mkdir()
    env = {**os.environ, "TMPDIR": str(system)}
    command = [sys.executable, "-m", "edgecnn", "convert", str(models["keras"]), "--out",
               str(tmp_path / "out" / "m.tflite"), "--calibration", str(photos_train), "-q"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = system / f"edgecnn-{os.getuid()}"
    mine = root  # until its folder appears
    deadline = time.monotonic() + 120
    try:
        # Kill it once TensorFlow has written something (an autograph file, a SavedModel folder) into its folder.
        while time.monotonic() < deadline and process.poll() is None:
            folders = list(root.glob(f"{process.pid}-*")) if root.exists() else []
            if folders and any(folders[0].iterdir()):
                mine = folders[0]
                break
            time.sleep(0.05)
        assert process.poll() is None, "convert ended before it wrote a temporary file: nothing to kill"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert mine != root and any(mine.iterdir())  # killed with its temporaries in place...
    assert [p.name for p in system.iterdir()] == [root.name]  # ...and nothing of it outside its folder
    assert not (tmp_path / "out" / "m.tflite").exists()
    subprocess.run([sys.executable, "-m", "edgecnn", "targets", "--json"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert not mine.exists() and list(root.iterdir()) == []  # the next run removed it, and its own
