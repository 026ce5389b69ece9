"""Issue 14: training refuses options no machine could use, and a diverged run writes nothing.

``--learning-rate nan`` wrote a NaN model and exited 0; ``--image-size 100000`` tried multi-gigabyte allocations.
Now the image size is bounded (8..1024), the learning rate must be finite and above 0 (checked by the library, not
only by the command line's number type), and a loss that turns NaN or infinite stops training with exit 1 and no
model written.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import run_cli

from edgecnn.build.train import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, TrainingDivergedError, train
from edgecnn.errors import UsageError


@pytest.mark.parametrize("size", [0, MIN_IMAGE_SIZE - 1, MAX_IMAGE_SIZE + 1, 100_000])
def test_image_size_outside_the_bounds_is_refused_before_any_work(tmp_path: Path, small_folder: Path, size: int):
    out = tmp_path / "m.keras"
    with pytest.raises(UsageError, match=f"--image-size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}"):
        train(small_folder, out, image_size=size, epochs=1)
    assert not out.exists()
    result = run_cli("train", small_folder, "--out", out, "--image-size", size)
    assert result.exit_code == 2 and "--image-size must be between" in result.stderr and not out.exists()


@pytest.mark.parametrize("rate", [0.0, -1e-3, math.nan, math.inf, -math.inf])
def test_learning_rate_must_be_finite_and_positive_in_the_library(tmp_path: Path, small_folder: Path, rate: float):
    out = tmp_path / "m.keras"
    with pytest.raises(UsageError, match="--learning-rate must be a finite number above 0"):
        train(small_folder, out, learning_rate=rate, epochs=1)
    assert not out.exists()


@pytest.mark.parametrize("rate", ["nan", "inf", "0", "-1"])
def test_learning_rate_is_refused_by_the_command(tmp_path: Path, small_folder: Path, rate: str) -> None:
    out = tmp_path / "m.keras"
    result = run_cli("train", small_folder, "--out", out, "--learning-rate", rate, "--epochs", 1)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and not out.exists()


def test_a_diverging_run_stops_exits_1_and_writes_nothing(tmp_path: Path, small_folder: Path) -> None:
    """A finite but absurd learning rate blows the weights up within a step or two."""
    out = tmp_path / "out" / "m.keras"
    losses: list[float] = []
    with pytest.raises(TrainingDivergedError, match=r"training diverged .*no model written; lower --learning-rate"):
        train(small_folder, out, image_size=8, epochs=20, filters=4, learning_rate=1e30,
              on_epoch=lambda epoch, total, metrics: losses.append(metrics["loss"]))  # fmt: skip
    # Stopped at the first NaN step, long before the 20 epochs; no epoch with a NaN loss was reported.
    assert not out.exists() and len(losses) < 20 and all(math.isfinite(loss) for loss in losses)
    assert not out.parent.exists() or not list(out.parent.iterdir())  # no temporary file left beside it either
    result = run_cli("train", small_folder, "--out", out, "--image-size", 8, "--epochs", 5, "--filters", 4,
                     "--learning-rate", "1e30", "-q")  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("edgecnn: error: training diverged") and result.stderr.count("\n") == 1
    assert not out.exists()
