"""``--follow-links`` (issue 13): a class folder that is a symbolic link leading outside the data folder is skipped
and counted by default, and read only when the flag asks for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import copy_subset, run_cli


@pytest.fixture
def linked_folder(small_folder: Path, photos_test: Path, tmp_path: Path) -> Path:
    """``small_folder`` (12 images) plus a class folder ``two`` that links to 4 images outside it."""
    outside = copy_subset(photos_test, tmp_path / "outside", per_class=4, classes=["two"]) / "two"
    (small_folder / "two").symlink_to(outside, target_is_directory=True)
    return small_folder


def test_run_skips_a_link_leaving_the_folder_unless_asked(models: dict[str, Path], linked_folder: Path) -> None:
    result = run_cli("run", models["int8"], linked_folder, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["num_images"] == 12 and document["num_skipped"] == 1
    assert document["skipped"][0]["path"] == str(linked_folder / "two")
    assert "outside the data folder: not followed" in document["skipped"][0]["reason"]

    result = run_cli("run", models["int8"], linked_folder, "--json", "--follow-links")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["num_images"] == 16 and document["num_skipped"] == 0


def test_validate_reads_a_linked_class_folder_only_with_the_flag(models: dict[str, Path], linked_folder: Path) -> None:
    args = ("validate", "-r", models["float"], "-c", models["int8"], linked_folder, "--max-drop", 100, "--json")
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["num_images"] == 12 and len(document["skipped"]) == 1

    result = run_cli(*args, "--follow-links")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["num_images"] == 16 and document["skipped"] == []


@pytest.mark.parametrize("command", ["train", "convert", "validate", "run", "bench", "diagnose", "finetune"])
def test_every_command_that_reads_image_folders_has_the_flag(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.exit_code == 0 and "--follow-links" in result.stdout
