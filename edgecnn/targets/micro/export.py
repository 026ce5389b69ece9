"""``edgecnn export micro``: a model bundle as C++ sources for a TensorFlow Lite Micro firmware.

Four files under ``DIR``, all named after ``NAME``:

* ``NAME_model_data.h`` / ``.cc``: the flatbuffer as a 16-byte-aligned byte array, and its length;
* ``NAME_op_resolver.h``: a ``MicroMutableOpResolver`` sized for, and registering, exactly the model's operations;
* ``NAME_model_settings.h``: input/output shapes, types and quantization, labels, the preprocessing constants and
  the tensor arena size. It includes no TFLite Micro header, so it compiles on its own (host tools, tests).

The output is deterministic: the same model and options give byte-identical files (no dates, no paths).

Writing: everything is checked, measured and rendered in memory first, so a refused model or a failed arena
measurement writes nothing (not even ``DIR``). Then each file is written atomically (temporary file + rename).
``DIR`` is usually a folder inside the user's firmware tree holding other sources, so the files are replaced one
by one rather than by swapping the folder: an interrupted export can leave files of two exports side by side,
never a half-written file.

A ``board`` profile adds a budget (model bytes against flash, arena against RAM). A model that does not fit is
still written (the files show what it needs; the user may trim the model or pick a larger board) and the budget
says ``fits: False``; the CLI exits 1 on it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.flatbuffer import FlatModel, read_flatbuffer
from edgecnn.runtime.bundle import ModelInfo, bundle_files, read_tflite_info
from edgecnn.runtime.files import check_folder, refuse_inputs, sha256_bytes, write_bytes_atomic
from edgecnn.runtime.quant import QuantParams
from edgecnn.targets.micro.arena import ArenaMeasurement, measure_arena
from edgecnn.targets.micro.boards import DeviceProfile, get_profile
from edgecnn.targets.micro.ops import float16_tensors, hybrid_ops, missing_ops, resolver_methods

BYTES_PER_LINE = 12
"""Bytes per line of the model array (12 ``0x..,`` entries stay under 80 columns)."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# C++ element types of the I/O tensor types TFLite Micro runs (edgecnn convert writes int8, uint8 or float32).
_C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "float32": "float"}

_COLOR = {1: "grayscale (1 channel)", 3: "RGB (3 channels)"}

_INT8_FIX = "convert it with edgecnn convert --quantize int8 (full-integer), which TensorFlow Lite Micro runs"


@dataclass(frozen=True)
class MicroExport:
    """What ``export_micro`` wrote.

    Attributes:
        out: the folder the files are in.
        name: the prefix of the files and C symbols.
        files: the files written, in writing order.
        model_bytes: size of the model (the flash the array takes).
        arena: the tensor arena measured in the TFLite Micro interpreter, with its margin.
        ops: the distinct TFLite operations the model uses, sorted.
        resolver_methods: the ``MicroMutableOpResolver`` methods registering them, in the same order.
        budget: the board budget check (None without ``board``); ``budget["fits"]`` is False when the model or
            its arena does not fit the board.
    """

    out: Path
    name: str
    files: list[Path]
    model_bytes: int
    arena: ArenaMeasurement
    ops: list[str]
    resolver_methods: list[str]
    budget: dict[str, Any] | None

    @property
    def passed(self) -> bool:
        """False when a board was given and the model or its arena does not fit it."""
        return self.budget is None or bool(self.budget["fits"])

    def messages(self) -> list[str]:
        """The failed budget, for stderr."""
        if self.passed or self.budget is None:
            return []
        return [f"budget failed: the model does not fit {self.budget['board']} ({self.budget['title']})"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "out": str(self.out),
            "name": self.name,
            "files": [str(p) for p in self.files],
            "model_bytes": self.model_bytes,
            "arena": self.arena.to_dict(),
            "ops": list(self.ops),
            "resolver_methods": list(self.resolver_methods),
            "budget": dict(self.budget) if self.budget is not None else None,
        }


def export_micro(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    board: str | None = None,
) -> MicroExport:
    """Write a ``.tflite`` bundle as C++ sources for TensorFlow Lite Micro.

    Args:
        model: a ``.tflite`` model with its edgecnn sidecar (``.json``).
        out: the folder for the files; created if missing (its parent must exist). Files of the same names are
            replaced, other files are left alone.
        name: prefix of the files and C symbols (a C identifier); defaults to the model file's stem made into one.
        board: a board profile (``edgecnn.targets.micro.boards``) to check the model and arena against.

    Returns:
        The files written, the arena, the operations and the budget (if ``board``).

    Raises:
        UsageError: ``name`` is not a C identifier, ``out`` cannot be created or is an input, or ``board`` is unknown.
        ModelFormatError: the bundle is missing or invalid, or TensorFlow Lite Micro cannot run the model
            (operations it lacks, float16 or dynamic-range weights, a dynamic shape).
    """
    model_path = Path(model)
    # The options first: a typo fails at once, before the model is read and measured.
    symbol = _symbol_name(name, model_path)
    folder = _check_out(out, model_path)
    profile = get_profile(board) if board is not None else None
    info = read_tflite_info(model_path)

    content = model_path.read_bytes()
    # read_tflite_info hashed the file; hash what was read too, so the array is the bytes the sidecar describes.
    if sha256_bytes(content) != info.model_sha256:
        raise ModelFormatError(f"{model_path} changed while it was being read: run the export again")
    flat = read_flatbuffer(content)
    ops = sorted({op.name for op in flat.operators})
    _check_runs_on_micro(model_path, info, flat, ops)
    arena = measure_arena(content)
    methods = resolver_methods(ops)
    budget = _budget(profile, len(content), arena) if profile is not None else None

    header = _provenance(model_path.name, info.model_sha256, symbol)
    sources = {
        f"{symbol}_model_data.h": render_model_data_header(symbol, header),
        f"{symbol}_model_data.cc": render_model_data_source(symbol, content, header),
        f"{symbol}_op_resolver.h": render_op_resolver(symbol, ops, methods, header),
        f"{symbol}_model_settings.h": render_settings(symbol, info, list(flat.outputs[0].shape), arena, budget, header),
    }
    files = []
    for filename, text in sources.items():
        path = folder / filename
        write_bytes_atomic(path, text.encode("ascii"))
        files.append(path)
    return MicroExport(
        out=folder,
        name=symbol,
        files=files,
        model_bytes=len(content),
        arena=arena,
        ops=ops,
        resolver_methods=methods,
        budget=budget,
    )


def default_name(model_path: str | os.PathLike[str]) -> str:
    """The default ``name``: the model file's stem made into a C identifier (``model_int8.tflite``: ``model_int8``)."""
    return _identifier(Path(model_path).stem)


def _identifier(text: str) -> str:
    """``text`` as a C identifier: other characters become ``_``, a leading digit gets an ``m`` before it."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", text) or "model"
    return f"m{ident}" if ident[0].isdigit() else ident


def _symbol_name(name: str | None, model_path: Path) -> str:
    if name is None:
        return default_name(model_path)
    if not _IDENTIFIER.match(name):
        raise UsageError(
            f"--name {name!r} is not a C identifier: use letters, digits and _ only, not starting with a digit "
            f"(such as {_identifier(name)})"
        )
    return name


def _check_out(out: str | os.PathLike[str], model_path: Path) -> Path:
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file: give a folder for the C++ files")
    refuse_inputs([folder], bundle_files(model_path))
    return check_folder(folder, what="--out folder")


def _check_runs_on_micro(model_path: Path, info: ModelInfo, flat: FlatModel, ops: list[str]) -> None:
    """Refuse models TensorFlow Lite Micro cannot run, with the fix, before anything is measured or written."""
    lacking = missing_ops(ops)
    if lacking:
        raise ModelFormatError(
            f"{model_path.name} uses operations TensorFlow Lite Micro lacks ({', '.join(lacking)}): "
            "replace those layers with ones it runs (edgecnn check --target micro) and convert the model again"
        )
    if info.quantization == "float16" or float16_tensors(flat):
        raise ModelFormatError(
            f"{model_path.name} has float16 weights, which TensorFlow Lite Micro cannot run: {_INT8_FIX}"
        )
    if info.quantization == "dynamic" or hybrid_ops(flat):
        raise ModelFormatError(
            f"{model_path.name} is a dynamic-range (hybrid) model, which TensorFlow Lite Micro cannot run: {_INT8_FIX}"
        )
    if any(t.dynamic for t in (*flat.inputs, *flat.outputs)):
        raise ModelFormatError(
            f"{model_path.name} has a dynamic input or output shape, which TensorFlow Lite Micro cannot run: "
            "convert it again with edgecnn convert (it writes a batch-1 model)"
        )
    _check_io(model_path, info, flat)


def _check_io(model_path: Path, info: ModelInfo, flat: FlatModel) -> None:
    """The settings header describes one NHWC image input and one score vector; check the model has those."""
    fix = "re-run edgecnn convert to regenerate the bundle"
    if len(flat.inputs) != 1 or len(flat.outputs) != 1:
        raise ModelFormatError(
            f"{model_path.name} has {len(flat.inputs)} inputs and {len(flat.outputs)} outputs; "
            f"edgecnn exports one image input and one score output: {fix}"
        )
    shape = list(flat.inputs[0].shape)
    if len(shape) != 4 or shape != list(info.input_shape):
        raise ModelFormatError(
            f"{model_path.name} takes input shape {shape}, its sidecar says {info.input_shape} "
            f"(edgecnn exports NHWC image inputs): {fix}"
        )
    for role, params in (("input", info.input), ("output", info.output)):
        if params.dtype not in _C_TYPES:
            raise ModelFormatError(
                f"{model_path.name} has a {params.dtype} {role}, which edgecnn cannot export for TensorFlow Lite "
                f"Micro (it exports {', '.join(_C_TYPES)}): convert it with --io int8"
            )
    classes = int(np.prod(flat.outputs[0].shape))
    if classes != len(info.labels):
        raise ModelFormatError(
            f"{model_path.name} outputs {classes} scores but its sidecar has {len(info.labels)} labels: {fix}"
        )


def _budget(profile: DeviceProfile, model_bytes: int, arena: ArenaMeasurement) -> dict[str, Any]:
    """Model bytes against the board's flash, the arena against its RAM (code, stack and buffers come on top)."""
    flash_fits = model_bytes <= profile.flash_bytes
    ram_fits = arena.arena_bytes <= profile.ram_bytes
    return {
        "board": profile.name,
        "title": profile.title,
        "model_bytes": model_bytes,
        "flash_bytes": profile.flash_bytes,
        "flash_fits": flash_fits,
        "arena_bytes": arena.arena_bytes,
        "ram_bytes": profile.ram_bytes,
        "ram_fits": ram_fits,
        "fits": flash_fits and ram_fits,
    }


# --- rendering -------------------------------------------------------------------------------------------------


def _comment_text(text: str) -> str:
    """Text safe inside a ``//`` comment: printable ASCII only (no newline, no trailing backslash splice)."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    return safe[:-1] + "?" if safe.endswith("\\") else safe


def _provenance(model_file: str, sha256: str, name: str) -> str:
    """The header comment every generated file starts with."""
    return (
        f"// Generated by edgecnn {__version__} from {_comment_text(model_file)} (sha256 {sha256}).\n"
        "// Do not edit by hand: regenerate it with\n"
        f"//   edgecnn export micro {_comment_text(model_file)} --out DIR --name {name}\n"
    )


def c_string(text: str) -> str:
    """A C/C++ string literal for ``text``, as UTF-8 bytes.

    Printable ASCII stays as it is, except ``"``, ``\\`` and ``?`` (``??x`` would be a trigraph in C++11 and
    C); everything else (control characters, non-ASCII bytes) becomes a three-digit octal escape, which, unlike
    ``\\x``, cannot swallow the characters after it.
    """
    parts = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\?':
            parts.append("\\" + char)
        elif 0x20 <= byte <= 0x7E:
            parts.append(char)
        else:
            parts.append(f"\\{byte:03o}")
    return '"' + "".join(parts) + '"'


def c_float(value: float) -> str:
    """A ``float`` literal that reads back as the same float32 (shortest round-trip form)."""
    single = np.float32(value)
    if not np.isfinite(single):
        raise ModelFormatError(f"the model's metadata holds a non-finite number ({value}): re-run edgecnn convert")
    text = str(single)
    if "." not in text and "e" not in text:
        text += ".0"
    return f"{text}f"


def _guard(name: str, what: str) -> str:
    return f"EDGECNN_{name}_{what}_H_"


def render_model_data_header(name: str, provenance: str) -> str:
    """``NAME_model_data.h``: the declarations of the array and its length."""
    guard = _guard(name, "MODEL_DATA")
    return (
        f"{provenance}\n"
        f"#ifndef {guard}\n"
        f"#define {guard}\n"
        "\n"
        "// The .tflite flatbuffer, for tflite::GetModel(). Defined 16-byte aligned in the .cc, as TensorFlow Lite\n"
        "// Micro reads the flatbuffer's tables in place and needs their natural alignment.\n"
        f"extern const unsigned char {name}_model_data[];\n"
        f"extern const unsigned int {name}_model_data_len;\n"
        "\n"
        f"#endif  // {guard}\n"
    )


def render_model_data_source(name: str, content: bytes, provenance: str) -> str:
    """``NAME_model_data.cc``: the model bytes, 12 per line, and their count."""
    rows = [
        "    " + ", ".join(f"0x{b:02x}" for b in content[i : i + BYTES_PER_LINE]) + ","
        for i in range(0, len(content), BYTES_PER_LINE)
    ]
    body = "\n".join(rows)
    return (
        f"{provenance}\n"
        f'#include "{name}_model_data.h"\n'
        "\n"
        "// Including the header first gives these const definitions external linkage.\n"
        f"alignas(16) const unsigned char {name}_model_data[] = {{\n"
        f"{body}\n"
        "};\n"
        f"const unsigned int {name}_model_data_len = {len(content)};\n"
    )


def render_op_resolver(name: str, ops: list[str], methods: list[str], provenance: str) -> str:
    """``NAME_op_resolver.h``: a resolver type of exactly the model's operation count and its registration."""
    guard = _guard(name, "OP_RESOLVER")
    calls = "".join(f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;\n" for m in methods)
    return (
        f"{provenance}\n"
        f"#ifndef {guard}\n"
        f"#define {guard}\n"
        "\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
        "\n"
        f"// The {len(ops)} operations the model uses: {', '.join(ops)}.\n"
        "// Registering only these keeps the other kernels out of the firmware.\n"
        f"using {name}_OpResolver = tflite::MicroMutableOpResolver<{len(methods)}>;\n"
        "\n"
        "// Registers the model's operations; kTfLiteError if one cannot be added.\n"
        f"inline TfLiteStatus {name}_RegisterOps({name}_OpResolver& resolver) {{\n"
        f"{calls}"
        "  return kTfLiteOk;\n"
        "}\n"
        "\n"
        f"#endif  // {guard}\n"
    )


def _per_channel(values: tuple[float, ...], channels: int) -> str:
    """One value per channel (a single recorded value applies to every channel)."""
    full = values if len(values) == channels else values * channels
    return ", ".join(c_float(v) for v in full)


def _tensor_block(name: str, role: str, params: QuantParams, shape: list[int]) -> list[str]:
    """The element type, element count and quantization of the model's input or output."""
    title = role.capitalize()
    prefix = f"k{name}{title}"
    elements = int(np.prod(shape))
    if params.quantized:
        note = f"{params.dtype}, real = scale * (q - zero_point)"
    else:
        note = f"{params.dtype}, not quantized (scale and zero point are 0: use the values as they are)"
    return [
        f"// {title} tensor: shape {list(shape)}, {note}.",
        f"using {name}_{title}Type = {_C_TYPES[params.dtype]};",
        f"constexpr bool {prefix}Quantized = {'true' if params.quantized else 'false'};",
        f"constexpr int {prefix}Elements = {elements};",
        f"constexpr float {prefix}Scale = {c_float(params.scale)};",
        f"constexpr int32_t {prefix}ZeroPoint = {params.zero_point};",
    ]


def render_settings(
    name: str,
    info: ModelInfo,
    output_shape: list[int],
    arena: ArenaMeasurement,
    budget: dict[str, Any] | None,
    provenance: str,
) -> str:
    """``NAME_model_settings.h``: everything a firmware needs to feed the model and read its scores."""
    guard = _guard(name, "MODEL_SETTINGS")
    pre = info.preprocessing
    batch, height, width, channels = info.input_shape
    k = f"k{name}"
    if info.input.quantized:
        quantize_step = (
            f"//   3. q = round(value / {k}InputScale) + {k}InputZeroPoint, rounding half away from zero\n"
            f"//      (std::round) and clamping to the range of {name}_InputType (edgecnn.runtime.quant.quantize).\n"
        )
    else:
        quantize_step = "//   3. the input is float32: store value as it is.\n"
    labels = "".join(f"    {c_string(label)},\n" for label in info.labels)
    lines = [
        provenance,
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstdint>",
        "",
        f"// Input dimensions, NHWC: {k}InputElements = batch * height * width * channels.",
        f"constexpr int {k}InputBatch = {batch};",
        f"constexpr int {k}InputHeight = {height};",
        f"constexpr int {k}InputWidth = {width};",
        f"constexpr int {k}InputChannels = {channels};",
        "",
        *_tensor_block(name, "input", info.input, info.input_shape),
        "",
        *_tensor_block(name, "output", info.output, output_shape),
        "",
        "// Class names in output order (UTF-8).",
        f"constexpr int {k}NumClasses = {len(info.labels)};",
        f"constexpr const char* const {name}_labels[{k}NumClasses] = {{",
        labels.rstrip("\n"),
        "};",
        "",
        "// Preprocessing, exactly as edgecnn trained and validated the model (edgecnn.runtime.preprocess):",
        f"//   1. resize the image to {k}ImageWidth x {k}ImageHeight with the {_comment_text(pre.resize)} filter,",
        f"//      as {_COLOR[pre.channels]}, rows first, channels last (NHWC);",
        f"//   2. value = (pixel / 255.0f - {k}Mean[c]) / {k}Std[c], in float, for channel c;",
        quantize_step.rstrip("\n"),
        f"constexpr int {k}ImageHeight = {pre.height};",
        f"constexpr int {k}ImageWidth = {pre.width};",
        f"constexpr int {k}ImageChannels = {pre.channels};",
        f"constexpr float {k}Mean[{k}ImageChannels] = {{{_per_channel(pre.mean, pre.channels)}}};",
        f"constexpr float {k}Std[{k}ImageChannels] = {{{_per_channel(pre.std, pre.channels)}}};",
        f"constexpr const char* const {k}ResizeFilter = {c_string(pre.resize)};",
        "",
        f"// Tensor arena: {arena.used_bytes:,} bytes measured in the TensorFlow Lite Micro interpreter after",
        f"// AllocateTensors(), plus a {arena.margin_bytes:,}-byte margin (targets/micro/README.md says why).",
        "// Give it 16-byte alignment: alignas(16) uint8_t tensor_arena[...].",
        f"constexpr int {k}TensorArenaSize = {arena.arena_bytes};",
        *_budget_comment(budget),
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


def _budget_comment(budget: dict[str, Any] | None) -> list[str]:
    if budget is None:
        return []
    verdict = "fits" if budget["fits"] else "DOES NOT FIT"
    return [
        "",
        f"// Budget for {_comment_text(budget['board'])}, {_comment_text(budget['title'])}: {verdict}.",
        f"//   flash: model {budget['model_bytes']:,} of {budget['flash_bytes']:,} bytes"
        f" ({'fits' if budget['flash_fits'] else 'too large'});",
        f"//   RAM: tensor arena {budget['arena_bytes']:,} of {budget['ram_bytes']:,} bytes"
        f" ({'fits' if budget['ram_fits'] else 'too large'}).",
        "//   The firmware's code, stack and other buffers need room on top of these.",
    ]
