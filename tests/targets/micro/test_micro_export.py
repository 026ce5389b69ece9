"""``edgecnn export micro``: the C++ sources for TensorFlow Lite Micro, checked with gcc and against the model.

The arena is measured in the real TFLM interpreter (the ``tflite-micro`` package, the ``micro`` extra) and the
generated files are compiled with gcc; without either the tests skip, and under ``CI`` they fail instead. The op
resolver header needs TFLM's own headers, which no package ships, so it is checked as text.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from envs import skip_or_fail
from helpers import custom_op_bundle, run_cli

from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.flatbuffer import read_flatbuffer
from edgecnn.runtime.bundle import read_tflite_info, write_tflite
from edgecnn.targets.micro.export import MicroExport, c_string, default_name, export_micro


@pytest.fixture(scope="module", autouse=True)
def _tflite_micro() -> None:
    """The arena is measured in TFLM's interpreter: every export needs the package."""
    if importlib.util.find_spec("tflite_micro") is None:
        skip_or_fail('tflite-micro is not installed: pip install -e ".[micro]"')


@pytest.fixture(scope="module")
def gcc() -> str:
    path = shutil.which("gcc")
    if path is None:
        skip_or_fail("gcc is missing: run tools/setup_test_env.sh (as root) or apt-get install g++")
    return str(path)


def _compile(gcc: str, source: Path, include: Path, *, std: str = "c++17", extra: tuple[str, ...] = ()) -> None:
    """``gcc -fsyntax-only`` as C++ with warnings as errors; the compiler's message on failure."""
    command = [gcc, "-fsyntax-only", "-x", "c++", f"-std={std}", "-Wall", "-Wextra", "-Werror", *extra]
    command += [f"-I{include}", str(source)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model like the demo's: the embedded 8x8 grayscale digits, a short training, full int8."""
    from edgecnn.build.convert import convert
    from edgecnn.build.train import train
    from edgecnn.runtime.data import write_digits

    folder = tmp_path_factory.mktemp("digits_model")
    train_dir, _ = write_digits(folder / "digits", seed=0)
    train(train_dir, folder / "model.keras", image_size=8, channels=1, epochs=2, filters=8, seed=0)
    convert(folder / "model.keras", folder / "model_int8.tflite", quantize="int8", calibration=train_dir)
    return folder / "model_int8.tflite"


@pytest.fixture(
    scope="module",
    params=["photos_int8", pytest.param("digits_int8", marks=pytest.mark.slow)],  # the digits model is trained here
)
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]
) -> tuple[Path, MicroExport]:
    """Each model exported once with ``--name model``."""
    model = models["int8"] if request.param == "photos_int8" else request.getfixturevalue("digits_model")
    out = tmp_path_factory.mktemp("export") / "model"
    return model, export_micro(model, out, name="model")


def _hex_float(value: float) -> str:
    """A C++17 hexadecimal float literal: exact, so a static_assert compares the very float32."""
    return float(np.float32(value)).hex() + "f"


def test_files_and_result(exported: tuple[Path, MicroExport]) -> None:
    model, result = exported
    names = ["model_model_data.h", "model_model_data.cc", "model_op_resolver.h", "model_model_settings.h"]
    names.append("edgecnn_model.h")  # the fixed names main.cc and edgecnn's harness build against
    assert [p.name for p in result.files] == names and all(p.parent == result.out for p in result.files)
    assert result.model_bytes == model.stat().st_size
    assert result.budget is None and result.arena.arena_bytes >= result.arena.used_bytes > 0
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data and data["ops"] == result.ops
    sha = read_tflite_info(model).model_sha256
    for path in result.files:
        head = path.read_text().splitlines()[:3]
        assert f"from {model.name} (sha256 {sha})" in head[0] and "Do not edit by hand" in head[1]


def test_model_data_compiles_and_holds_the_model_bytes(gcc: str, exported: tuple[Path, MicroExport]) -> None:
    model, result = exported
    source = result.out / "model_model_data.cc"
    _compile(gcc, source, result.out)
    text = source.read_text()
    assert "alignas(16) const unsigned char model_model_data[] = {" in text
    body = text.split("model_model_data[] = {", 1)[1].split("};", 1)[0]
    rows = [line for line in body.splitlines() if line.strip()]
    assert all(len(re.findall(r"0x[0-9a-f]{2}", line)) == 12 for line in rows[:-1])
    assert bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body)) == model.read_bytes()
    assert f"const unsigned int model_model_data_len = {model.stat().st_size};" in text
    header = (result.out / "model_model_data.h").read_text()
    assert "extern const unsigned char model_model_data[];" in header
    assert "extern const unsigned int model_model_data_len;" in header


def test_op_resolver_names_exactly_the_models_operations(exported: tuple[Path, MicroExport]) -> None:
    from edgecnn.targets.micro.ops import MICRO_OPS

    model, result = exported
    ops = sorted({op.name for op in read_flatbuffer(model).operators})
    text = (result.out / "model_op_resolver.h").read_text()
    assert '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"' in text
    count = re.search(r"using model_OpResolver = tflite::MicroMutableOpResolver<(\d+)>;", text)
    assert count is not None and int(count.group(1)) == len(ops)
    calls = re.findall(r"resolver\.(\w+)\(\) != kTfLiteOk", text)
    assert calls == [MICRO_OPS[op] for op in ops] == result.resolver_methods
    assert "inline TfLiteStatus model_RegisterOps(model_OpResolver& resolver) {" in text
    assert result.ops == ops


def test_settings_compile_standalone_with_the_models_values(
    gcc: str, exported: tuple[Path, MicroExport], tmp_path: Path
) -> None:
    from edgecnn.targets.micro.arena import measure_arena

    model, result = exported
    info = read_tflite_info(model)
    settings = (result.out / "model_model_settings.h").read_text()
    assert "tensorflow/lite" not in settings  # standalone: no TFLM header
    _, height, width, channels = info.input_shape
    pre = info.preprocessing
    checks = [
        f"kmodelTensorArenaSize == {measure_arena(model).arena_bytes}",
        f"kmodelTensorArenaSize == {result.arena.arena_bytes}",
        f"kmodelInputBatch == 1 && kmodelInputHeight == {height} && kmodelInputWidth == {width}",
        f"kmodelInputChannels == {channels} && kmodelInputElements == {height * width * channels}",
        f"kmodelNumClasses == {len(info.labels)} && kmodelOutputElements == {len(info.labels)}",
        "sizeof(model_labels) / sizeof(model_labels[0]) == kmodelNumClasses",
        f"kmodelInputScale == {_hex_float(info.input.scale)}",
        f"kmodelInputZeroPoint == {info.input.zero_point}",
        f"kmodelOutputScale == {_hex_float(info.output.scale)}",
        f"kmodelOutputZeroPoint == {info.output.zero_point}",
        "kmodelInputQuantized && kmodelOutputQuantized",
        "std::is_same<model_InputType, int8_t>::value && std::is_same<model_OutputType, int8_t>::value",
        f"kmodelImageHeight == {pre.height} && kmodelImageWidth == {pre.width} && kmodelImageChannels == {channels}",
    ]
    mean = pre.mean * channels if len(pre.mean) == 1 else pre.mean
    std = pre.std * channels if len(pre.std) == 1 else pre.std
    checks += [f"kmodelMean[{c}] == {_hex_float(mean[c])}" for c in range(channels)]
    checks += [f"kmodelStd[{c}] == {_hex_float(std[c])}" for c in range(channels)]
    probe = tmp_path / "probe.cc"
    probe.write_text(
        '#include <type_traits>\n#include "model_model_settings.h"\n'
        + "".join(f'static_assert({check}, "{i}");\n' for i, check in enumerate(checks))
    )
    _compile(gcc, probe, result.out)
    assert f'kmodelResizeFilter = "{pre.resize}"' in settings
    assert "value = (pixel / 255.0f - kmodelMean[c]) / kmodelStd[c]" in settings
    assert f"{result.arena.used_bytes:,} bytes measured" in settings


@pytest.fixture(scope="module")
def odd_labels_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    """The session's int8 model with labels that need escaping in C: quotes, backslashes, ??, controls, non-ASCII."""
    labels = ['say "hi"', "back\\slash", "??=trigraph", "tab\there", "café", "猫", "new\nline", "*/ end", " ", "a\\"]
    folder = tmp_path_factory.mktemp("odd")
    info = replace(read_tflite_info(models["int8"]), labels=labels)
    write_tflite(folder / "odd labels.tflite", models["int8"].read_bytes(), info)
    return folder / "odd labels.tflite"


def test_labels_are_escaped_for_c(gcc: str, odd_labels_model: Path, tmp_path: Path) -> None:
    result = export_micro(odd_labels_model, tmp_path / "out", name="odd")
    labels = read_tflite_info(odd_labels_model).labels
    # The expected bytes as integer arrays, so the check does not depend on the escaping it checks.
    arrays = "".join(
        f"constexpr unsigned char expected{i}[] = {{{', '.join(str(b) for b in [*label.encode(), 0])}}};\n"
        for i, label in enumerate(labels)
    )
    checks = "".join(f'static_assert(same(odd_labels[{i}], expected{i}), "label {i}");\n' for i in range(len(labels)))
    probe = tmp_path / "labels.cc"
    probe.write_text(
        '#include "odd_model_settings.h"\n'
        "constexpr bool same(const char* a, const unsigned char* b) {\n"
        "  return static_cast<unsigned char>(*a) == *b && (*b == 0 || same(a + 1, b + 1));\n"
        "}\n" + arrays + checks
    )
    _compile(gcc, probe, result.out)
    # C++11 with trigraphs on (as -std=c++11 and C have them): an unescaped ??= would turn into #.
    _compile(gcc, probe, result.out, std="c++11", extra=("-trigraphs",))
    settings = (result.out / "odd_model_settings.h").read_text()
    assert settings.isascii() and "from odd labels.tflite" in settings


def test_c_string_escapes() -> None:
    assert c_string('a"b') == '"a\\"b"'
    assert c_string("a\\b") == '"a\\\\b"'
    assert c_string("??=") == '"\\?\\?="'
    assert c_string("é1") == '"\\303\\2511"'  # octal escapes stop after three digits, unlike \x
    assert c_string("tab\t") == '"tab\\011"'


def test_default_name_is_a_c_identifier() -> None:
    assert default_name("model_int8.tflite") == "model_int8"
    assert default_name("/x/my-model v2.tflite") == "my_model_v2"
    assert default_name("8bit.tflite") == "m8bit"


def test_same_model_gives_byte_identical_files(models: dict[str, Path], tmp_path: Path) -> None:
    first = export_micro(models["int8"], tmp_path / "a")
    second = export_micro(models["int8"], tmp_path / "b")
    again = export_micro(models["int8"], tmp_path / "a")  # over its own earlier output
    assert first.name == "int8" and [p.name for p in first.files] == [p.name for p in second.files]
    for a, b, c in zip(first.files, second.files, again.files):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in first.files)


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def test_bad_name_missing_model_and_bad_out(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError) as exc:
        export_micro(models["int8"], tmp_path / "out", name="my-model")
    assert "not a C identifier" in _one_line(exc) and "my_model" in str(exc.value)
    with pytest.raises(UsageError):
        export_micro(models["int8"], tmp_path / "out", name="1model")
    with pytest.raises(ModelFormatError) as exc:
        export_micro(tmp_path / "nothing.tflite", tmp_path / "out")
    assert "does not exist" in _one_line(exc)
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError):
        export_micro(models["int8"], tmp_path / "file")
    with pytest.raises(UsageError) as exc:
        export_micro(models["int8"], tmp_path / "file" / "out")
    assert "is a file" in _one_line(exc)
    with pytest.raises(UsageError) as exc:  # never over the model itself
        export_micro(models["int8"], models["int8"])
    assert "is a file" in _one_line(exc)
    with pytest.raises(UsageError) as exc:  # nor over its sidecar
        export_micro(models["int8"], models["int8"].with_suffix(".json"))
    assert "is a file" in _one_line(exc)
    assert not (tmp_path / "out").exists()
    # A missing folder, however deep, is created (as every command does).
    result = export_micro(models["int8"], tmp_path / "no" / "such" / "out", name="m")
    assert all(path.is_file() for path in result.files)


def test_unknown_device_is_a_usage_error(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError) as exc:
        export_micro(models["int8"], tmp_path / "out", board="no-such-board")
    assert "no-such-board" in _one_line(exc)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def float16_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    from edgecnn.build.convert import convert

    out = tmp_path_factory.mktemp("f16") / "f16.tflite"
    convert(models["keras"], out, quantize="float16")
    return out


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    from edgecnn.build.convert import convert

    out = tmp_path_factory.mktemp("dynamic") / "dynamic.tflite"
    convert(models["keras"], out, quantize="dynamic")
    return out


@pytest.mark.slow  # converts the session's model again
def test_float16_model_is_refused(float16_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError) as exc:
        export_micro(float16_model, tmp_path / "out")
    assert "float16" in _one_line(exc) and "--quantize int8" in str(exc.value)
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.slow  # converts the session's model again
def test_float16_tensors_are_refused_whatever_the_sidecar_says(float16_model: Path, tmp_path: Path) -> None:
    info = replace(read_tflite_info(float16_model), quantization="none")
    write_tflite(tmp_path / "relabelled.tflite", float16_model.read_bytes(), info)
    with pytest.raises(ModelFormatError, match="float16"):
        export_micro(tmp_path / "relabelled.tflite", tmp_path / "out")


@pytest.mark.slow  # converts the session's model again
def test_dynamic_range_model_is_refused(dynamic_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError) as exc:
        export_micro(dynamic_model, tmp_path / "out")
    assert "dynamic-range" in _one_line(exc)
    info = replace(read_tflite_info(dynamic_model), quantization="none")  # found from the tensors too
    write_tflite(tmp_path / "relabelled.tflite", dynamic_model.read_bytes(), info)
    with pytest.raises(ModelFormatError, match="dynamic-range"):
        export_micro(tmp_path / "relabelled.tflite", tmp_path / "out")


def test_float_model_exports_with_float_io(gcc: str, models: dict[str, Path], tmp_path: Path) -> None:
    result = export_micro(models["int8_float_io"], tmp_path / "out", name="fio")
    probe = tmp_path / "probe.cc"
    probe.write_text(
        '#include <type_traits>\n#include "fio_model_settings.h"\n'
        'static_assert(std::is_same<fio_InputType, float>::value && !kfioInputQuantized, "float input");\n'
        'static_assert(std::is_same<fio_OutputType, float>::value && !kfioOutputQuantized, "float output");\n'
    )
    _compile(gcc, probe, result.out)
    assert "QUANTIZE" in result.ops and "DEQUANTIZE" in result.ops


def test_cli_writes_the_files_and_prints_json(models: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("export", "micro", models["int8"], "--out", tmp_path / "out", "--name", "m", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["name"] == "m" and len(data["files"]) == 5 and data["budget"] is None
    assert all(Path(f).is_file() for f in data["files"])
    bad = run_cli("export", "micro", models["int8"], "--out", tmp_path / "out", "--name", "a b")
    assert bad.exit_code == 2 and "not a C identifier" in bad.stderr


def test_device_budget_is_recorded(models: dict[str, Path], tmp_path: Path) -> None:
    result = export_micro(models["int8"], tmp_path / "out", name="m", board="nano33ble")
    budget = result.budget
    assert budget is not None and budget["fits"] and budget["flash_fits"] and budget["ram_fits"]
    assert budget["model_bytes"] == result.model_bytes and budget["arena_bytes"] == result.arena.arena_bytes
    assert budget["ram_bytes"] == 256 * 1024 and budget["flash_bytes"] == 1024 * 1024
    settings = (tmp_path / "out" / "m_model_settings.h").read_text()
    assert "// Budget for nano33ble, Arduino Nano 33 BLE Sense" in settings and "): fits." in settings


def test_a_model_that_does_not_fit_is_written_and_fails_the_cli(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecnn.targets.micro import export as micro_export
    from edgecnn.targets.micro.boards import DeviceProfile

    tiny = DeviceProfile(name="tiny", title="a 2 KB board", ram_bytes=2048, flash_bytes=4096, notes="", source="")
    monkeypatch.setattr(micro_export, "get_profile", lambda name: tiny)
    result = export_micro(models["int8"], tmp_path / "out", name="m", board="tiny")
    assert result.budget is not None and not result.budget["fits"]
    assert not result.budget["flash_fits"] and not result.budget["ram_fits"]
    assert all(p.is_file() for p in result.files)
    settings = (tmp_path / "out" / "m_model_settings.h").read_text()
    assert "DOES NOT FIT" in settings and "(too large)" in settings
    cli = run_cli("export", "micro", models["int8"], "--out", tmp_path / "cli", "--board", "tiny")
    assert cli.exit_code == 1 and "does not fit" in cli.stderr and (tmp_path / "cli" / "int8_model_data.cc").is_file()


@pytest.fixture(scope="module")
def custom_op_model(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    """A graph with Erfinv, which has no builtin kernel: converted as a custom op that TFLM lacks."""
    return custom_op_bundle(tmp_path_factory.mktemp("custom") / "custom.tflite", template=models["float"])


@pytest.mark.slow  # converts a graph of its own
def test_operations_tflm_lacks_are_refused(custom_op_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError) as exc:
        export_micro(custom_op_model, tmp_path / "out")
    assert "lacks (Erfinv)" in _one_line(exc)
    assert not (tmp_path / "out").exists()


def test_firmware_project_keeps_an_edited_main_and_a_foreign_makefile(models: dict[str, Path], tmp_path: Path) -> None:
    """--firmware writes the project; exporting a retrained model again keeps the user's main.cc, and a Makefile
    edgecnn did not write stops the export before anything is written."""
    out = tmp_path / "fw"
    first = run_cli("export", "micro", models["int8"], "--out", out, "--firmware", "--json")
    assert first.exit_code == 0, first.output
    written = {Path(f).relative_to(out).as_posix() for f in json.loads(first.stdout)["files"]}
    assert {"Makefile", "main.cc", "edgecnn_model.h", "edgecnn_firmware/firmware.mk"} <= written
    assert "edgecnn_firmware/boards/mps2_startup.c" in written and "edgecnn_firmware/harness.cc" in written
    makefile = (out / "Makefile").read_text()
    assert "MODEL := int8\n" in makefile and "OPS := " in makefile
    assert "include edgecnn_firmware/firmware.mk" in makefile
    (out / "main.cc").write_text("// my camera firmware\n")
    again = run_cli("export", "micro", models["int8"], "--out", out, "--firmware")
    assert again.exit_code == 0, again.output
    assert (out / "main.cc").read_text() == "// my camera firmware\n"
    assert "main.cc exists and was kept" in again.stderr
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "Makefile").write_text("all:\n\techo mine\n")
    refused = run_cli("export", "micro", models["int8"], "--out", theirs, "--firmware")
    assert refused.exit_code == 2 and "exists and edgecnn did not write it" in refused.stderr
    assert sorted(p.name for p in theirs.iterdir()) == ["Makefile"]
