"""Hostile images and folders through the command line (issue 13): no hang, no fake lines, no raw warnings.

FIFO cases run the CLI in a subprocess with a timeout, so a regression (a read that blocks forever) fails
instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli
from PIL import Image

TIMEOUT_S = 60


def edgecnn(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``edgecnn ARGS`` in a fresh process that may not outlive ``TIMEOUT_S``."""
    return subprocess.run(
        [sys.executable, "-m", "edgecnn", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT_S,
    )


@pytest.fixture
def fifo_folder(small_folder: Path) -> Path:
    """``small_folder`` with a FIFO named ``x.png`` in the ``zero`` class."""
    os.mkfifo(small_folder / "zero" / "x.png")
    return small_folder


def skipped_reasons(document: dict) -> dict[str, str]:
    return {Path(s["path"]).name: s["reason"] for s in document["skipped"]}


# --- FIFOs ------------------------------------------------------------------------------------------------------


def test_run_skips_a_fifo_in_a_folder(models: dict[str, Path], fifo_folder: Path) -> None:
    result = edgecnn("run", models["int8"], fifo_folder, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["predictions"]) == 12 and document["num_skipped"] == 1
    assert skipped_reasons(document)["x.png"] == "not a regular file (a FIFO (named pipe)): not read"
    assert "edgecnn: warning: skipped 1 " in result.stderr


def test_validate_skips_a_fifo_and_strict_refuses_it(models: dict[str, Path], fifo_folder: Path) -> None:
    args = ("validate", "-r", models["float"], "-c", models["int8"], fifo_folder, "--max-drop", 100, "--json")
    result = edgecnn(*args)
    assert result.returncode in (0, 1), result.stderr  # the verdict is not the point; finishing is
    document = json.loads(result.stdout)
    assert document["num_skipped"] == 1 and "a FIFO" in skipped_reasons(document)["x.png"]
    strict = edgecnn(*args, "--strict")
    assert strict.returncode == 2, strict.stderr
    assert "x.png: not a regular file (a FIFO" in strict.stderr and "Traceback" not in strict.stderr


def test_bench_images_skips_a_fifo(models: dict[str, Path], fifo_folder: Path) -> None:
    result = edgecnn("bench", models["int8"], "--images", fifo_folder, "--runs", 2, "--warmup", 0, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["num_skipped"] == 1


def test_run_on_a_fifo_alone_is_one_line_error(models: dict[str, Path], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.png")
    result = edgecnn("run", models["int8"], tmp_path / "x.png")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a regular file (a FIFO" in lines[0]


# --- names with control characters ------------------------------------------------------------------------------


def test_newline_in_a_file_name_cannot_fake_a_result_line(models: dict[str, Path], small_folder: Path) -> None:
    """Text output escapes the name (one line per image); JSON keeps the real one."""
    evil = small_folder / "zero" / "a.jpg: zero 1.000\nfake.jpg"
    shutil.copyfile(small_folder / "zero" / "0000.jpg", evil)
    (small_folder / "zero" / "notes\n.txt").write_text("not an image")
    text = run_cli("run", models["int8"], small_folder, "--top-k", 1)
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    predictions = [line for line in lines if line.startswith(str(small_folder))]
    assert len(predictions) == 13  # 12 photos and the evil one, each on one line
    assert any(line.startswith(f"{small_folder}/zero/a.jpg: zero 1.000\\nfake.jpg: ") for line in predictions)
    assert f"  {small_folder}/zero/notes\\n.txt: not an image file (.txt)" in lines
    document = json.loads(run_cli("run", models["int8"], small_folder, "--json").stdout)
    assert str(evil) in [p["path"] for p in document["predictions"]]
    assert str(small_folder / "zero" / "notes\n.txt") in [s["path"] for s in document["skipped"]]


def test_validation_text_escapes_skipped_names(models: dict[str, Path], small_folder: Path) -> None:
    (small_folder / "one" / "x\x1b[2J.txt").write_text("clears the screen when printed raw")
    result = run_cli("validate", "-r", models["float"], "-c", models["int8"], small_folder, "--max-drop", 100)
    assert result.exit_code in (0, 1), result.stderr
    assert "\x1b" not in result.stdout
    assert f"  {small_folder}/one/x\\x1b[2J.txt: not an image file (.txt)" in result.stdout.splitlines()


# --- decoder warnings, bombs, links -----------------------------------------------------------------------------


def test_decoder_warnings_are_edgecnn_warning_lines(models: dict[str, Path], small_folder: Path) -> None:
    """Pillow's "Tag data larger than file" UserWarning comes out as one edgecnn line, not Python's two."""
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x010E, 2, 1000, 26) + struct.pack("<I", 0)
    path = small_folder / "zero" / "exif.jpg"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path, exif=b"Exif\x00\x00" + tiff)
    result = run_cli("run", models["int8"], small_folder, "--json")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert f"edgecnn: warning: {path}: Tag data larger than file. Skipping tag 270 (UserWarning)" in lines
    assert all(line.startswith("edgecnn: ") for line in lines), lines
    assert len(json.loads(result.stdout)["predictions"]) == 13


def test_decompression_bomb_is_skipped_naming_the_limit(
    models: dict[str, Path], small_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (50, 50)).save(small_folder / "zero" / "bomb.png")  # 2,500 pixels: over twice 1,000
    result = run_cli("run", models["int8"], small_folder, "--json")
    assert result.exit_code == 0, result.stderr
    reason = skipped_reasons(json.loads(result.stdout))["bomb.png"]
    assert "2,500 pixels is over the decompression-bomb limit of 2,000 pixels" in reason


def test_link_leaving_the_folder_is_skipped_with_its_target(
    models: dict[str, Path], small_folder: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.jpg"
    shutil.copyfile(small_folder / "one" / "0000.jpg", secret)
    (small_folder / "one" / "escape.jpg").symlink_to(secret)
    result = run_cli("run", models["int8"], small_folder, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["predictions"]) == 12
    reason = skipped_reasons(document)["escape.jpg"]
    assert reason == f"symbolic link to {secret}, outside the data folder: not followed"
