"""``Target.prepare``: the bundle a device gets is the model and its sidecar, checked, written atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgecnn.bundle import read_tflite_info, sidecar_path
from edgecnn.errors import ModelFormatError
from edgecnn.targets import make_target


@pytest.mark.parametrize("name", ["host", "rpi"])
def test_prepare_copies_a_checked_bundle(name: str, cifar_models: dict[str, Path], tmp_path: Path) -> None:
    deployed = make_target(name).prepare(cifar_models["int8"], tmp_path / "out")
    assert deployed == tmp_path / "out" / "int8.tflite"
    assert deployed.read_bytes() == cifar_models["int8"].read_bytes()
    assert read_tflite_info(deployed) == read_tflite_info(cifar_models["int8"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["int8.json", "int8.tflite"]


def test_prepare_refuses_a_sidecar_of_other_bytes(cifar_models: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    shutil.copyfile(cifar_models["float"], model)
    shutil.copyfile(sidecar_path(cifar_models["int8"]), sidecar_path(model))
    with pytest.raises(ModelFormatError):
        make_target("host").prepare(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
