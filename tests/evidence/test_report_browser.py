"""The validate report rendered by a real headless Chromium: a full page, the verdict colour, the charts drawn.

Debian: ``apt-get install chromium-headless-shell`` (``tools/setup_test_env.sh`` does it as root) or
``chromium``. Without one the test skips, and under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import copy_subset
from PIL import Image

from edgecnn.evidence.report import CANDIDATE_COLOR, FAIL_COLOR, PASS_COLOR, REFERENCE_COLOR, write_report
from edgecnn.workflows.validate import validate_models

WIDTH, HEIGHT = 1280, 2400
# The headless shell is headless already; the full browser needs --headless. --no-sandbox: tests run as root.
BROWSERS = (
    ("chromium-headless-shell", ()),
    ("chromium", ("--headless=new",)),
    ("chromium-browser", ("--headless=new",)),
    ("google-chrome", ("--headless=new",)),
)


def browser() -> list[str]:
    """The command line start of the first Chromium found, or skip (fail under CI)."""
    for name, flags in BROWSERS:
        path = shutil.which(name)
        if path:
            return [path, *flags]
    message = "no headless Chromium: apt-get install chromium-headless-shell (or run tools/setup_test_env.sh as root)"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        pytest.fail(f"{message}; CI is set, so a missing browser fails instead of skipping", pytrace=False)
    pytest.skip(message)


def screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    """Render ``page`` at WIDTH x HEIGHT into ``out`` and return its RGB pixels."""
    command = [
        *browser(),
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    with Image.open(out) as image:
        assert image.size == (WIDTH, HEIGHT)
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def near(pixels: np.ndarray, color: tuple[int, int, int], *, tolerance: int = 12) -> np.ndarray:
    return np.abs(pixels - np.array(color)).max(axis=-1) <= tolerance


def tints(pixels: np.ndarray, color: tuple[int, int, int]) -> int:
    """Pixels that are a lighter shade of ``color`` (as the heatmap cells are), not the colour itself."""
    white = np.array([255.0, 255.0, 255.0])
    direction = np.array(color, dtype=np.float64) - white
    share = (pixels - white) @ direction / (direction @ direction)
    off_line = np.linalg.norm(pixels - (white + share[..., None] * direction), axis=-1)
    return int(((share > 0.15) & (share < 0.9) & (off_line < 8)).sum())


@pytest.fixture(scope="module")
def report(models: dict[str, Path], photos_test: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = copy_subset(photos_test, tmp_path_factory.mktemp("browser_data"), per_class=8)
    return validate_models(models["float"], models["int8"], data, max_drop=100.0).to_dict()


@pytest.mark.parametrize("passed", [True, False], ids=["passed", "failed"])
def test_report_renders_in_headless_chromium(report: dict[str, Any], passed: bool, tmp_path: Path) -> None:
    report = {**report, "passed": passed, "gates": [{**g, "passed": passed} for g in report["gates"]]}
    page = write_report(report, tmp_path / "report")
    pixels = screenshot(page, tmp_path / "screenshot.png", tmp_path / "profile")

    assert pixels.std() > 30, "a real page, not a blank one"
    assert (pixels.min(axis=-1) < 80).mean() > 0.005, "text was drawn"
    banner = pixels[:120]
    verdict, other = (PASS_COLOR, FAIL_COLOR) if passed else (FAIL_COLOR, PASS_COLOR)
    assert near(banner, verdict).mean() > 0.5, "the verdict banner has the verdict's colour"
    assert near(banner, other).mean() < 0.01, "and not the other verdict's"
    # The heatmaps are data: PNGs; their shades prove the browser decoded and laid them out.
    assert tints(pixels, REFERENCE_COLOR) > 5000 and tints(pixels, CANDIDATE_COLOR) > 5000
    # Side by side: the reference matrix on the left half, the candidate on the right.
    left, right = pixels[:, : WIDTH // 2], pixels[:, WIDTH // 2 :]
    assert tints(left, REFERENCE_COLOR) > 10 * max(tints(left, CANDIDATE_COLOR), 1)
    assert tints(right, CANDIDATE_COLOR) > 10 * max(tints(right, REFERENCE_COLOR), 1)
