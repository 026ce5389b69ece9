"""Parse what ``edgetpu_compiler`` prints, and the ``<stem>_edgetpu.log`` operation log it writes.

Pure text in, frozen dataclasses out: nothing here runs the compiler or touches a file.

What the compiler prints (compiler versions 2.0 to 16.0, seen in public bug reports):

* a banner ``Edge TPU Compiler version 16.0.384591198`` (also all that ``--version`` prints);
* on success ``Model compiled successfully in 2644 ms.`` and a summary (``Input model:``, ``Input size: 4.22MiB``,
  on-chip/off-chip memory, ``Number of Edge TPU subgraphs``, ``Total number of operations``, ``Operation log``);
* when some operations stay on the CPU, the sentence "Model successfully compiled but not all operations are
  supported by the Edge TPU..." and the two ``Number of operations that will run on Edge TPU/CPU`` lines;
  a fully mapped model prints neither, so those counts are derived from the operator table (or the total);
* with ``-s`` the operator table (``Operator  Count  Status``); without it the table is only in the log.
  Compiler 16 with ``-s`` lists only the unmapped rows of a partly mapped model, then
  "... All other operators were mapped successfully. See <log>." (so the log is the complete table);
* compiler 16 also prints a timeout-timer banner and ``Compilation succeeded!`` / ``Compilation failed!``.

Failures (``Invalid model: x.tflite`` + ``Model not quantized``, ``Internal compiler error. Aborting!``,
``ERROR: Didn't find op for builtin opcode 'EXP' version '2'...``, ``Compilation failed: ...large activation
tensors...``) are *results*, not parse errors: :func:`parse_report` returns ``success=False`` with the error lines,
a ``failure`` kind and, for op-version rejections, the rejected ``(op, version)`` pairs, so the caller can turn
them into findings. :meth:`CompilerReport.raise_for_failure` makes that one :class:`ModelFormatError` line.
:func:`parse_report` itself raises :class:`ModelFormatError` only for text that is not one model's compiler output
(empty, unrecognisable, several models compiled together, or a log that belongs to another model).

Sizes are printed rounded to two decimals (``3.41MiB``), so the byte counts here are approximate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal

from edgecnn.errors import ModelFormatError
from edgecnn.units import parse_size

MAPPED_STATUS = "Mapped to Edge TPU"

# Status strings seen in real tables, by the prefix that identifies them, with a short reason key. Anything else
# keeps its text and gets reason "other" (Google never published the full list).
STATUS_REASONS: tuple[tuple[str, str], ...] = (
    (MAPPED_STATUS, "mapped"),
    # Everything after the first unmapped operation stays on the CPU unless the compiler runs with -a.
    ("More than one subgraph is not supported", "after_unmapped_op"),
    ("Operation is otherwise supported, but not mapped due to some unspecified limitation", "unspecified_limitation"),
    # Typically the float QUANTIZE/DEQUANTIZE at the edges of a float-I/O model.
    ("Operation is working on an unsupported data type", "unsupported_data_type"),
    ("Tensor has unsupported rank", "unsupported_rank"),
    ("Operation version not supported", "unsupported_version"),
    ("Operation not supported", "unsupported_operation"),
)

Failure = Literal["not_quantized", "op_version", "internal_error", "activations_too_large", "invalid_model", "failed"]

_VERSION = re.compile(r"^Edge TPU Compiler version (\S+)\s*$", re.MULTILINE)
_COMPILED = re.compile(r"^Models? compiled successfully in (\d+) ms\.?\s*$")
_TABLE_HEADER = re.compile(r"^Operator\s+Count\s+Status\s*$")
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
_OP_VERSION = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)\s*' version '(\d+)'")

# "Label: value" summary lines -> field name and how to read the value.
_FIELDS: dict[str, tuple[str, str]] = {
    "Input model": ("input_model", "text"),
    "Input size": ("input_size_bytes", "size"),
    "Output model": ("output_model", "text"),
    "Output size": ("output_size_bytes", "size"),
    "On-chip memory used for caching model parameters": ("on_chip_used_bytes", "size"),
    "On-chip memory remaining for caching model parameters": ("on_chip_remaining_bytes", "size"),
    "Off-chip memory used for streaming uncached model parameters": ("off_chip_used_bytes", "size"),
    "Number of Edge TPU subgraphs": ("subgraphs", "int"),
    "Total number of operations": ("total_ops", "int"),
    "Operation log": ("operation_log", "text"),
    "Number of operations that will run on Edge TPU": ("ops_on_tpu", "int"),
    "Number of operations that will run on CPU": ("ops_on_cpu", "int"),
}

# Lines that say nothing a caller needs (progress banners); they never count as error text.
_NOISE = (
    "Started a compilation timeout timer",
    "Compilation child process completed",
    "Compilation succeeded!",
    "Searching for valid delegate",
    "Try to compile segment",
    "See the operation log file",
    "Model successfully compiled but not all operations",
    "... All other operators were mapped successfully",
)


@dataclass(frozen=True)
class OperatorRow:
    """One row of the operator table: an op type, how many of them, and what the compiler did with them."""

    operator: str
    count: int
    status: str

    @property
    def on_tpu(self) -> bool:
        """True when these operations run on the Edge TPU."""
        return self.status == MAPPED_STATUS

    @property
    def reason(self) -> str:
        """A short key for the status (see :data:`STATUS_REASONS`), ``other`` for an unknown one."""
        return next((key for prefix, key in STATUS_REASONS if self.status.startswith(prefix)), "other")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "operator": self.operator,
            "count": self.count,
            "status": self.status,
            "on_tpu": self.on_tpu,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class OperationLog:
    """The ``<stem>_edgetpu.log`` the compiler writes: always the complete operator table."""

    compiler_version: str | None
    input_model: str | None
    output_model: str | None
    operators: tuple[OperatorRow, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "compiler_version": self.compiler_version,
            "input_model": self.input_model,
            "output_model": self.output_model,
            "operators": [row.to_dict() for row in self.operators],
        }


@dataclass(frozen=True)
class CompilerReport:
    """What one ``edgetpu_compiler`` run said about one model.

    Fields the output did not contain are ``None`` (a failed compile prints no summary). ``ops_on_tpu`` and
    ``ops_on_cpu`` come from the compiler's own lines when it prints them, else (fully mapped model) from the
    operator table or the total. ``errors`` holds the compiler's error lines verbatim when ``success`` is False.
    """

    compiler_version: str | None
    success: bool
    compile_time_ms: int | None = None
    input_model: str | None = None
    input_size_bytes: int | None = None
    output_model: str | None = None
    output_size_bytes: int | None = None
    on_chip_used_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_used_bytes: int | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    ops_on_tpu: int | None = None
    ops_on_cpu: int | None = None
    operation_log: str | None = None
    operators: tuple[OperatorRow, ...] = ()
    errors: tuple[str, ...] = ()
    failure: Failure | None = None
    rejected_op_versions: tuple[tuple[str, int], ...] = ()

    @property
    def fully_mapped(self) -> bool:
        """True when the model compiled and every operation runs on the Edge TPU."""
        return self.success and self.ops_on_cpu == 0 and bool(self.ops_on_tpu)

    def failure_message(self) -> str | None:
        """One line saying why the compile failed (None when it succeeded)."""
        if self.success:
            return None
        version = f" {self.compiler_version}" if self.compiler_version else ""
        detail = "; ".join(_strip_error(line) for line in self.errors) or "no error message"
        return f"edgetpu_compiler{version} failed: {detail}"

    def raise_for_failure(self) -> None:
        """Raise :class:`ModelFormatError` with :meth:`failure_message` when the compile failed."""
        message = self.failure_message()
        if message is not None:
            raise ModelFormatError(message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (sizes in bytes)."""
        return {
            "compiler_version": self.compiler_version,
            "success": self.success,
            "fully_mapped": self.fully_mapped,
            "compile_time_ms": self.compile_time_ms,
            "input_model": self.input_model,
            "input_size_bytes": self.input_size_bytes,
            "output_model": self.output_model,
            "output_size_bytes": self.output_size_bytes,
            "on_chip_used_bytes": self.on_chip_used_bytes,
            "on_chip_remaining_bytes": self.on_chip_remaining_bytes,
            "off_chip_used_bytes": self.off_chip_used_bytes,
            "subgraphs": self.subgraphs,
            "total_ops": self.total_ops,
            "ops_on_tpu": self.ops_on_tpu,
            "ops_on_cpu": self.ops_on_cpu,
            "operation_log": self.operation_log,
            "operators": [row.to_dict() for row in self.operators],
            "errors": list(self.errors),
            "failure": self.failure,
            "rejected_op_versions": [{"operator": op, "version": v} for op, v in self.rejected_op_versions],
        }


def compiler_version(text: str) -> str | None:
    """The version in an ``Edge TPU Compiler version X`` banner (stdout, ``--version`` or a log), else None."""
    match = _VERSION.search(text)
    return match.group(1) if match else None


def compiler_size(text: str) -> int:
    """Bytes in a compiler size such as ``3.41MiB``, ``512.00KiB`` or ``0.00B`` (rounded to whole bytes).

    Raises:
        ModelFormatError: the text is not a size the compiler prints.
    """
    try:
        return parse_size(text)
    except ValueError:
        raise ModelFormatError(f"not an edgetpu_compiler size: {text.strip()!r}") from None


def parse_operation_log(text: str) -> OperationLog:
    """Parse a ``<stem>_edgetpu.log`` operation log.

    Raises:
        ModelFormatError: the text has no ``Operator Count Status`` table.
    """
    lines = text.splitlines()
    if not any(_TABLE_HEADER.match(line.strip()) for line in lines):
        raise ModelFormatError("not an edgetpu_compiler operation log: no 'Operator Count Status' table")
    fields = _label_values(lines)
    return OperationLog(
        compiler_version=compiler_version(text),
        input_model=fields.get("Input"),
        output_model=fields.get("Output"),
        operators=_table(lines),
    )


def parse_report(stdout: str, log: str | None = None) -> CompilerReport:
    """Parse what ``edgetpu_compiler [-s] model.tflite`` printed for one model, with its operation log if given.

    Args:
        stdout: the compiler's standard output (stderr may be appended: error lines are recognised anywhere).
        log: the text of the ``<stem>_edgetpu.log`` it wrote, whose complete table replaces the partial or
            missing one on stdout.

    Returns:
        The report; a compile the compiler refused is ``success=False`` with ``errors`` and ``failure``.

    Raises:
        ModelFormatError: the text is not compiler output for exactly one model, or ``log`` is for another model.
    """
    lines = [line.rstrip() for line in stdout.splitlines()]
    version = compiler_version(stdout)
    fields = _label_values(lines)
    models = sum(line.startswith("Input model:") for line in lines)
    if models > 1:
        raise ModelFormatError(f"edgetpu_compiler output describes {models} models: compile one model at a time")
    compiled = next((m for m in map(_COMPILED.match, lines) if m), None)
    errors = _error_lines(lines)
    if version is None and compiled is None and not fields.keys() & _FIELDS.keys() and not errors:
        first = next((line.strip() for line in lines if line.strip()), "")
        raise ModelFormatError(f"not edgetpu_compiler output: {first[:80]!r}" if first else "empty compiler output")

    success = compiled is not None and not any(line.startswith("Compilation failed") for line in lines)
    values = {name: _value(fields[label], kind) for label, (name, kind) in _FIELDS.items() if label in fields}
    operators = _table(lines)
    if log is not None:
        operators = _merge_log(parse_operation_log(log), operators, values.get("input_model"))
    if success and values.get("ops_on_tpu") is None:
        # A fully mapped model prints no per-device counts: whatever the table does not list as unmapped is on
        # the TPU (the total, when printed, also covers a table cut short).
        on_cpu = sum(row.count for row in operators if not row.on_tpu)
        total = values.get("total_ops", sum(row.count for row in operators) if operators else None)
        if isinstance(total, int):
            values["ops_on_tpu"], values["ops_on_cpu"] = total - on_cpu, on_cpu
    rejected = tuple((m.group(1), int(m.group(2))) for m in map(_OP_VERSION.search, errors) if m)
    return CompilerReport(
        compiler_version=version,
        success=success,
        compile_time_ms=int(compiled.group(1)) if compiled else None,
        operators=operators,
        errors=() if success else tuple(errors),
        failure=None if success else _failure(errors),
        rejected_op_versions=() if success else rejected,
        **values,
    )


def _label_values(lines: list[str]) -> dict[str, str]:
    """``Label: value`` pairs (first occurrence wins), leaving error lines out."""
    fields: dict[str, str] = {}
    for line in lines:
        label, sep, value = line.strip().partition(": ")
        if sep and not label.startswith("ERROR") and label not in fields:
            fields[label] = value.strip()
    return fields


def _value(text: str, kind: str) -> int | str:
    if kind == "size":
        return compiler_size(text)
    if kind == "int":
        if not text.isdigit():
            raise ModelFormatError(f"edgetpu_compiler printed a count that is not a number: {text!r}")
        return int(text)
    return text


def _table(lines: list[str]) -> tuple[OperatorRow, ...]:
    """The rows after an ``Operator Count Status`` header, up to the first line that is not a row."""
    rows: list[OperatorRow] = []
    in_table = False
    for raw in lines:
        line = raw.strip()
        if _TABLE_HEADER.match(line):
            in_table = True
            continue
        if not in_table or not line:
            continue
        match = _ROW.match(line)
        if match is None:
            # "... All other operators were mapped successfully." or the next section: the table is over.
            in_table = False
            continue
        rows.append(OperatorRow(match.group(1), int(match.group(2)), match.group(3)))
    return tuple(rows)


def _merge_log(log: OperationLog, stdout_rows: tuple[OperatorRow, ...], input_model: Any) -> tuple[OperatorRow, ...]:
    """The log's complete table, after checking that the log was written for this model (not a stale one)."""
    if (
        isinstance(input_model, str)
        and log.input_model
        and PurePath(log.input_model).name != PurePath(input_model).name
    ):
        raise ModelFormatError(
            f"the operation log is for {log.input_model}, not {input_model}: it is left from another compile"
        )
    return log.operators or stdout_rows


def _error_lines(lines: list[str]) -> list[str]:
    """Lines that report a failure, verbatim: ``ERROR: ...``, ``Invalid model: ...`` and the known messages."""
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(_NOISE) or _VERSION.match(line) or _COMPILED.match(line):
            continue
        if line.startswith(("ERROR", "Invalid model", "Internal compiler error", "Compilation failed")) or line in (
            "Model not quantized",
            "Model could not be parsed",
        ):
            out.append(line)
    return out


def _failure(errors: list[str]) -> Failure:
    """Classify a failed compile by its error lines, most specific first."""
    text = "\n".join(errors)
    if "not quantized" in text:
        return "not_quantized"
    if "Didn't find op for builtin opcode" in text or "builtin_code out of range" in text:
        return "op_version"
    if "Internal compiler error" in text:
        return "internal_error"
    if "large activation tensors" in text:
        return "activations_too_large"
    if "Invalid model" in text or "could not be parsed" in text:
        return "invalid_model"
    return "failed"


def _strip_error(line: str) -> str:
    """An error line without its ``ERROR:`` prefix, for a one-line message."""
    return line.removeprefix("ERROR:").strip()
