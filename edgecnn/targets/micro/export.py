"""``edgecnn export micro``: a model bundle as C++ sources for a TensorFlow Lite Micro firmware.

Four files under ``DIR``, all named after ``NAME``:

* ``NAME_model_data.h`` / ``.cc``: the flatbuffer as a 16-byte-aligned byte array, and its length;
* ``NAME_op_resolver.h``: a ``MicroMutableOpResolver`` sized for, and registering, exactly the model's operations;
* ``NAME_model_settings.h``: input/output shapes, types and quantization, labels, the preprocessing constants and
  the tensor arena size. It includes no TFLite Micro header, so it compiles on its own (host tools, tests).

A model without a sidecar (from another converter) exports too. Its labels and preprocessing are unknown, so the
settings header leaves them out (a comment at its top says so, and the result's ``notes``) and describes instead
every input and output tensor as the graph gives it, by index: ``NAME_Input0Type``, ``kNAMEInput0Name``,
``kNAMEInput0Rank``, ``kNAMEInput0Shape[]``, ``kNAMEInput0Elements``, ``kNAMEInput0Quantized``,
``kNAMEInput0Scale``, ``kNAMEInput0ZeroPoint`` (and ``Output0``... likewise), with ``kNAMENumInputs`` and
``kNAMENumOutputs``. A model with one input and one output also gets the names a bundle's header uses for them
(``NAME_InputType``, ``kNAMEInputElements``...), so firmware code written for a bundle's I/O compiles unchanged.

The model is read by edgecnn's own flatbuffer reader and measured in TFLM's interpreter, never in LiteRT's, so a
model that TFLM runs and LiteRT's stricter checks refuse still exports.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.errors import ModelFormatError, UsageError
from edgecnn.model.flatbuffer import FlatModel, TensorRecord, read_flatbuffer
from edgecnn.model.verify import verify_model
from edgecnn.runtime.bundle import ModelInfo, bundle_files, sidecar_info
from edgecnn.runtime.files import check_folder, refuse_inputs, sha256_bytes, write_bytes_atomic
from edgecnn.runtime.quant import QuantParams
from edgecnn.targets.facts import ModelFacts, facts_of, float16_tensors, hybrid_ops, no_sidecar_note
from edgecnn.targets.micro.arena import ArenaMeasurement, measure_arena
from edgecnn.targets.micro.boards import DeviceProfile, get_profile
from edgecnn.targets.micro.ops import missing_ops, resolver_methods

BYTES_PER_LINE = 12
"""Bytes per line of the model array (12 ``0x..,`` entries stay under 80 columns)."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# C++ element types of the I/O tensor types TFLite Micro runs (edgecnn convert writes int8, uint8 or float32; models
# from elsewhere may take or give the others).
_C_TYPES = {
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "float32": "float",
    "int32": "int32_t",
    "int64": "int64_t",
    "bool": "bool",
}

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
        notes: what the export left out and why (a model without a sidecar: its labels and preprocessing).
    """

    out: Path
    name: str
    files: list[Path]
    model_bytes: int
    arena: ArenaMeasurement
    ops: list[str]
    resolver_methods: list[str]
    budget: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """False when a board was given and the model or its arena does not fit it."""
        return self.budget is None or bool(self.budget["fits"])

    def messages(self) -> list[str]:
        """The notes and the failed budget, for stderr."""
        lines = [f"note: {note}" for note in self.notes]
        if self.passed or self.budget is None:
            return lines
        return [*lines, f"budget failed: the model does not fit {self.budget['board']} ({self.budget['title']})"]

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
            "notes": list(self.notes),
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
        model: a ``.tflite`` model, with its edgecnn sidecar (``.json``) or without one (a model from another
            converter: the settings header then describes its tensors, without labels and preprocessing).
        out: the folder for the files; created if missing (its parent must exist). Files of the same names are
            replaced, other files are left alone.
        name: prefix of the files and C symbols (a C identifier); defaults to the model file's stem made into one.
        board: a board profile (``edgecnn.targets.micro.boards``) to check the model and arena against.

    Returns:
        The files written, the arena, the operations and the budget (if ``board``).

    Raises:
        UsageError: ``name`` is not a C identifier, ``out`` cannot be created or is an input, or ``board`` is unknown.
        ModelFormatError: the model is missing or not a TFLite model, its sidecar is invalid, or TensorFlow Lite Micro
            cannot run the model (operations it lacks, float16 or dynamic-range weights, a dynamic shape).
    """
    model_path = Path(model)
    # The options first: a typo fails at once, before the model is read and measured.
    symbol = _symbol_name(name, model_path)
    folder = _check_out(out, model_path)
    profile = get_profile(board) if board is not None else None
    info = sidecar_info(model_path)

    content = verify_model(model_path)  # identifier and size first, then every offset: before TFLM sees it
    sha256 = sha256_bytes(content)
    # sidecar_info hashed the file; hash what was read too, so the array is the bytes the sidecar describes.
    if info is not None and sha256 != info.model_sha256:
        raise ModelFormatError(f"{model_path} changed while it was being read: run the export again")
    facts = facts_of(read_flatbuffer(content), info)
    ops = sorted({op.name for op in facts.flat.operators})
    _check_runs_on_micro(model_path, facts, ops)
    arena = measure_arena(content, name=Path(model_path).name)
    methods = resolver_methods(ops)
    budget = _budget(profile, len(content), arena) if profile is not None else None

    header = _provenance(model_path.name, sha256, symbol)
    if info is not None:
        settings = render_settings(symbol, info, list(facts.flat.outputs[0].shape), arena, budget, header)
    else:
        settings = render_tensor_settings(symbol, model_path.name, facts, arena, budget, header)
    sources = {
        f"{symbol}_model_data.h": render_model_data_header(symbol, header),
        f"{symbol}_model_data.cc": render_model_data_source(symbol, content, header),
        f"{symbol}_op_resolver.h": render_op_resolver(symbol, ops, methods, header),
        f"{symbol}_model_settings.h": settings,
        "edgecnn_model.h": render_model_header(symbol, header, image=info is not None),
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
        notes=_notes(model_path, facts),
    )


def _notes(model_path: Path, facts: ModelFacts) -> list[str]:
    """What an export of a model without a sidecar leaves out, and the dynamic shapes it writes as TFLM runs them."""
    notes = [no_sidecar_note(model_path)] if facts.info is None else []
    for role, tensors in (("input", facts.flat.inputs), ("output", facts.flat.outputs)):
        notes += [
            f"{role} {_comment_text(t.name)} has the dynamic shape {list(t.signature)}: TensorFlow Lite Micro runs it "
            f"as {list(t.shape)}, the shape the settings header gives"
            for t in tensors
            if t.dynamic
        ]
    return notes


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


def _check_runs_on_micro(model_path: Path, facts: ModelFacts, ops: list[str]) -> None:
    """Refuse models TensorFlow Lite Micro cannot run, with the fix, before anything is measured or written."""
    flat = facts.flat
    lacking = missing_ops(ops)
    if lacking:
        raise ModelFormatError(
            f"{model_path.name} uses operations TensorFlow Lite Micro lacks ({', '.join(lacking)}): "
            "replace those layers with ones it runs (edgecnn check --target micro) and convert the model again"
        )
    if facts.quantization == "float16" or float16_tensors(flat):
        raise ModelFormatError(
            f"{model_path.name} has float16 weights, which TensorFlow Lite Micro cannot run: {_INT8_FIX}"
        )
    if facts.quantization == "dynamic" or hybrid_ops(flat):
        raise ModelFormatError(
            f"{model_path.name} is a dynamic-range (hybrid) model, which TensorFlow Lite Micro cannot run: {_INT8_FIX}"
        )
    # edgecnn convert writes batch 1; TFLM runs a model from elsewhere (described by a sidecar of options, or by none)
    # with 1 for each dynamic dimension, which the settings header writes (a note says so), and measure_arena
    # refuses it if TFLM cannot.
    if facts.info is not None:
        _check_io(model_path, facts.info, flat)
    else:
        _check_tensor_types(model_path, flat)


def _check_tensor_types(model_path: Path, flat: FlatModel) -> None:
    """A model without a sidecar exports as its tensors are, if each has a C type the settings header can name."""
    for role, tensors in (("input", flat.inputs), ("output", flat.outputs)):
        for tensor in tensors:
            if tensor.dtype not in _C_TYPES:
                raise ModelFormatError(
                    f"{model_path.name} has a {tensor.dtype} {role} ({_comment_text(tensor.name)}), which edgecnn "
                    f"cannot export for TensorFlow Lite Micro (it exports {', '.join(_C_TYPES)})"
                )


def _check_io(model_path: Path, info: ModelInfo, flat: FlatModel) -> None:
    """The settings header describes one image input (NHWC or NCHW) and one score vector; check the model has those."""
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
            f"(edgecnn exports one image input): {fix}"
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


def render_model_header(name: str, provenance: str, *, image: bool) -> str:
    """``edgecnn_model.h``: the exported model under fixed names, for ``main.cc`` and edgecnn's firmware harness.

    Firmware sources written once (the example ``main.cc``, the harness) include this header rather than
    ``NAME_...`` headers, so they build against whatever ``--name`` produced. It names the model exported last
    into the folder. ``image``: the model has a sidecar, so its image preprocessing and labels are known and get
    names too (``EDGECNN_MODEL_HAS_IMAGE``); a model without one gets only what running it needs.
    """
    lines = [
        provenance,
        "#ifndef EDGECNN_MODEL_H_",
        "#define EDGECNN_MODEL_H_",
        "",
        f"// The model {name}, under the names firmware written for any export uses (main.cc, edgecnn's harness).",
        "// Each export into this folder rewrites it to name the model exported last.",
        f'#include "{name}_model_data.h"',
        f'#include "{name}_model_settings.h"',
        f'#include "{name}_op_resolver.h"',
        "",
    ]
    if image:
        lines += ["#define EDGECNN_MODEL_HAS_IMAGE 1", ""]
    lines += [
        "namespace edgecnn_model {",
        "",
        f"inline const unsigned char* const kData = {name}_model_data;",
        f"constexpr int kTensorArenaSize = k{name}TensorArenaSize;",
        f"using OpResolver = {name}_OpResolver;",
        f"inline TfLiteStatus RegisterOps(OpResolver& resolver) {{ return {name}_RegisterOps(resolver); }}",
    ]
    if image:
        lines += [""]
        lines += [f"using {kind}Type = {name}_{kind}Type;" for kind in ("Input", "Output")]
        constants = [
            *("InputChannels", "InputChannelsFirst", "InputElements", "InputQuantized", "InputScale"),
            *("InputZeroPoint", "OutputElements", "OutputQuantized", "OutputScale", "OutputZeroPoint"),
            *("NumClasses", "ImageHeight", "ImageWidth", "ImageChannels", "ImageBgr"),
        ]
        lines += [f"constexpr auto k{c} = k{name}{c};" for c in constants]
        lines += [
            f"constexpr const float* kMean = k{name}Mean;",
            f"constexpr const float* kStd = k{name}Std;",
            f"constexpr const char* const* kLabels = {name}_labels;",
        ]
    lines += ["", "}  // namespace edgecnn_model", "", "#endif  // EDGECNN_MODEL_H_", ""]
    return "\n".join(lines)


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


def _quantization_note(params: QuantParams) -> str:
    if params.quantized:
        return f"{params.dtype}, real = scale * (q - zero_point)"
    return f"{params.dtype}, not quantized (scale and zero point are 0: use the values as they are)"


def _tensor_block(name: str, role: str, params: QuantParams, shape: list[int]) -> list[str]:
    """The element type, element count and quantization of the model's input or output."""
    title = role.capitalize()
    comment = f"// {title} tensor: shape {list(shape)}, {_quantization_note(params)}."
    return [comment, *_tensor_lines(name, title, params, shape)]


def _tensor_lines(name: str, title: str, params: QuantParams, shape: list[int]) -> list[str]:
    """``NAME_<title>Type`` and ``kNAME<title>Quantized/Elements/Scale/ZeroPoint`` of one tensor."""
    prefix = f"k{name}{title}"
    elements = int(np.prod(shape))
    return [
        f"using {name}_{title}Type = {_C_TYPES[params.dtype]};",
        f"constexpr bool {prefix}Quantized = {'true' if params.quantized else 'false'};",
        f"constexpr int {prefix}Elements = {elements};",
        f"constexpr float {prefix}Scale = {c_float(params.scale)};",
        f"constexpr int32_t {prefix}ZeroPoint = {params.zero_point};",
    ]


def _params(tensor: TensorRecord) -> QuantParams:
    """A tensor's dtype and (first, per-tensor) quantization; scale 0 for a tensor that is not quantized."""
    return QuantParams(tensor.dtype, tensor.scale if tensor.quantized else 0.0, tensor.zero_point)


def _indexed_block(name: str, role: str, index: int, tensor: TensorRecord) -> list[str]:
    """One input or output of a model without a sidecar, by index: name, rank, shape, type and quantization."""
    title = f"{role.capitalize()}{index}"
    params = _params(tensor)
    shape = [int(d) for d in tensor.shape]
    prefix = f"k{name}{title}"
    dynamic = f" (signature {list(tensor.signature)}: TFLM runs each dynamic dimension as 1)" if tensor.dynamic else ""
    lines = [
        f"// {role.capitalize()} {index} ({_comment_text(tensor.name)}): shape {shape}{dynamic},",
        f"// {_quantization_note(params)}.",
        f"constexpr const char* const {prefix}Name = {c_string(tensor.name)};",
        f"constexpr int {prefix}Rank = {len(shape)};",
    ]
    if shape:  # a scalar has no dimensions, and C++ has no zero-length arrays
        lines.append(f"constexpr int {prefix}Shape[{prefix}Rank] = {{{', '.join(map(str, shape))}}};")
    return lines + _tensor_lines(name, title, params, shape)


def _aliases(name: str, role: str) -> list[str]:
    """The names a bundle's header gives its only input or output, for the model's only input or output."""
    title, indexed = role.capitalize(), f"{role.capitalize()}0"
    k = f"k{name}"
    return [
        f"using {name}_{title}Type = {name}_{indexed}Type;",
        *(
            f"constexpr {ctype} {k}{title}{field_name} = {k}{indexed}{field_name};"
            for ctype, field_name in (
                ("bool", "Quantized"),
                ("int", "Elements"),
                ("float", "Scale"),
                ("int32_t", "ZeroPoint"),
            )
        ),
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
    k = f"k{name}"
    if pre.layout == "NCHW":  # a PyTorch-style export: each channel's plane of rows, one after the other
        batch, channels, height, width = info.input_shape
        dims = f"// Input dimensions, NCHW: {k}InputElements = batch * channels * height * width."
        order = "channels first (NCHW: all of channel 0's rows, then channel 1's ...)"
    else:
        batch, height, width, channels = info.input_shape
        dims = f"// Input dimensions, NHWC: {k}InputElements = batch * height * width * channels."
        order = "rows first, channels last (NHWC)"
    colour = "BGR (3 channels)" if pre.bgr else _COLOR[pre.channels]
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
        dims,
        f"constexpr int {k}InputBatch = {batch};",
        f"constexpr int {k}InputHeight = {height};",
        f"constexpr int {k}InputWidth = {width};",
        f"constexpr int {k}InputChannels = {channels};",
        f"constexpr bool {k}InputChannelsFirst = {'true' if pre.layout == 'NCHW' else 'false'};",
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
        f"//      as {colour}, {order};",
        f"//   2. value = (pixel / 255.0f - {k}Mean[c]) / {k}Std[c], in float, for channel c;",
        quantize_step.rstrip("\n"),
        f"constexpr int {k}ImageHeight = {pre.height};",
        f"constexpr int {k}ImageWidth = {pre.width};",
        f"constexpr int {k}ImageChannels = {pre.channels};",
        f"constexpr bool {k}ImageBgr = {'true' if pre.bgr else 'false'};",
        f"constexpr float {k}Mean[{k}ImageChannels] = {{{_per_channel(pre.mean, pre.channels)}}};",
        f"constexpr float {k}Std[{k}ImageChannels] = {{{_per_channel(pre.std, pre.channels)}}};",
        f"constexpr const char* const {k}ResizeFilter = {c_string(pre.resize)};",
        "",
        *_arena_lines(name, arena, budget),
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


def _arena_lines(name: str, arena: ArenaMeasurement, budget: dict[str, Any] | None) -> list[str]:
    """The tensor arena's size, how it was measured, and the board budget if any."""
    return [
        f"// Tensor arena: {arena.used_bytes:,} bytes measured in the TensorFlow Lite Micro interpreter after",
        f"// AllocateTensors(), plus a {arena.margin_bytes:,}-byte margin (targets/micro/README.md says why).",
        "// Give it 16-byte alignment: alignas(16) uint8_t tensor_arena[...].",
        f"constexpr int k{name}TensorArenaSize = {arena.arena_bytes};",
        *_budget_comment(budget),
    ]


def render_tensor_settings(
    name: str,
    model_file: str,
    facts: ModelFacts,
    arena: ArenaMeasurement,
    budget: dict[str, Any] | None,
    provenance: str,
) -> str:
    """``NAME_model_settings.h`` for a model without a sidecar: every input and output tensor, and the arena.

    Its labels and preprocessing are unknown, so they are left out (and the header says so); a model with one input
    and one output also gets the names a bundle's header uses for them.
    """
    guard = _guard(name, "MODEL_SETTINGS")
    flat = facts.flat
    k = f"k{name}"
    lines = [
        provenance,
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstdint>",
        "",
        f"// {_comment_text(model_file)} has no edgecnn sidecar: its labels and preprocessing are unknown, so this",
        "// header leaves them out. It describes every input and output tensor as the model's graph gives them;",
        "// fill each input with values of its own type (a quantized one holds q = round(real / scale) + zero_point).",
        f"constexpr int {k}NumInputs = {len(flat.inputs)};",
        f"constexpr int {k}NumOutputs = {len(flat.outputs)};",
    ]
    for role, tensors in (("input", flat.inputs), ("output", flat.outputs)):
        for index, tensor in enumerate(tensors):
            lines += ["", *_indexed_block(name, role, index, tensor)]
    if len(flat.inputs) == 1 and len(flat.outputs) == 1:
        lines += ["", "// The only input and output, under the names a bundle's settings header gives them."]
        lines += [*_aliases(name, "input"), *_aliases(name, "output")]
    lines += ["", *_arena_lines(name, arena, budget), "", f"#endif  // {guard}", ""]
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
