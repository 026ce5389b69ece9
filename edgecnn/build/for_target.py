"""``edgecnn convert [--target NAME]``: convert the way a target needs, then let the target build from it.

The target says which quantization and I/O types it runs (the Edge TPU: full int8 with int8 or uint8 I/O);
the conversion is refused before any work when the options ask for something else. After converting (with
the ``--max-drop`` recovery when asked, limited to what the target runs), the target's
:meth:`~edgecnn.targets.base.Target.build` checks the model and makes what it needs (Coral: the pre-flight
and ``edgetpu_compiler``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from edgecnn.build.convert import ConversionResult, convert
from edgecnn.build.recover import INT8_ONLY_TARGETS, RecoveryResult, convert_with_gate
from edgecnn.errors import UsageError
from edgecnn.runtime.progress import Progress
from edgecnn.targets import make_target
from edgecnn.targets.base import TargetBuild


@dataclass
class TargetConversion:
    """The conversion (or gated recovery) and what the target built from it (None without a target, or when
    the gate failed)."""

    conversion: ConversionResult | RecoveryResult
    build: TargetBuild | None
    target: str | None = None

    @property
    def passed(self) -> bool:
        """The gate (if any) passed and the target's build (if any) has no error."""
        gate = self.conversion.passed if isinstance(self.conversion, RecoveryResult) else True
        return gate and (self.build is None or self.build.passed)

    def messages(self) -> list[str]:
        """For stderr: a failed gate (and where the best attempt went), int8 I/O that app libraries cannot load
        (not said for a target that runs only int8: Coral, microcontrollers), then the target's errors and
        warnings."""
        lines = []
        conversion = self.conversion
        if isinstance(conversion, RecoveryResult) and not conversion.passed:
            chosen = conversion.chosen
            lines.append(
                f"gate failed: max-drop: no attempt kept the drop within {conversion.max_drop:.2f} pp; the best "
                f"({chosen.name}, drop {chosen.drop_pp:.2f} pp) is {conversion.conversion.path}"
            )
        written = conversion.conversion if isinstance(conversion, RecoveryResult) else conversion
        if self.target not in INT8_ONLY_TARGETS:
            lines += written.messages()
        if self.build is not None:
            lines += [
                f"{f.severity}: {f.message}"
                for f in self.build.findings
                if f.severity in ("error", "warning") and f.code != "op"
            ]
        return lines

    @property
    def skipped(self) -> list[Any]:
        """Image files left out while calibrating or validating."""
        return list(self.conversion.skipped)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the conversion's keys, plus ``target`` when converting for one."""
        data = self.conversion.to_dict()
        if self.build is not None:
            data["target"] = self.build.to_dict()
        return data


def _check_target_options(target: str, quantize: str, io_type: str) -> Any:
    """The target, after checking it runs what the options ask for."""
    chosen = make_target(target)
    if chosen.quantize_modes is not None and quantize not in chosen.quantize_modes:
        modes = " or ".join(chosen.quantize_modes)
        raise UsageError(f"--target {target} runs only --quantize {modes} models, not {quantize}")
    if chosen.io_types is not None and io_type not in chosen.io_types:
        raise UsageError(f"--target {target} needs --io {' or '.join(chosen.io_types)}, not {io_type}")
    return chosen


def convert_for_target(
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    target: str | None = None,
    quantize: str = "int8",
    io: str | None = None,
    max_drop: float | None = None,
    data: str | os.PathLike[str] | None = None,
    limit_per_class: int | None = None,
    min_reference_accuracy: float | None = None,
    on_progress: Progress | None = None,
    **options: Any,
) -> TargetConversion:
    """Convert a model (for ``target``, when given) and build what the target needs from it.

    Args:
        model_path: a ``.keras`` from ``edgecnn train``, or a model from elsewhere (``.keras``, ``.h5``, SavedModel
            folder, float ``.tflite``) described by the ``hints`` option or its TFLite Metadata.
        out: the ``.tflite`` to write.
        target: a registered target name (None: just convert).
        quantize / io: as for :func:`edgecnn.build.convert.convert`; checked against what the target runs.
        max_drop / data / limit_per_class / min_reference_accuracy: the accuracy gate and its recovery
            (:func:`edgecnn.build.recover.convert_with_gate`); ``max_drop`` and ``data`` both or neither.
        on_progress: progress of loading images.
        options: ``calibration``, ``calibration_size``, ``seed``, ``strict``, ``hints``, ``card``,
            ``follow_links``, ``trust``.

    Raises:
        UsageError: options the target cannot run, or options that do not go together.
        UnknownTargetError: no such target.
    """
    io_type = io or ("int8" if quantize == "int8" else "float32")
    chosen = _check_target_options(target, quantize, io_type) if target is not None else None
    conversion: ConversionResult | RecoveryResult
    if max_drop is None and data is None:
        if limit_per_class is not None:
            raise UsageError("--limit-per-class applies to --data: use it with --max-drop and --data")
        if min_reference_accuracy is not None:
            raise UsageError("--min-reference-accuracy applies to --data: use it with --max-drop and --data")
        conversion = convert(model_path, out, quantize=quantize, io=io, on_progress=on_progress, **options)
        model = conversion.path
    else:
        if max_drop is None or data is None:
            raise UsageError("--max-drop and --data go together: the gate is measured on the images in --data")
        if quantize != "int8":
            raise UsageError("--max-drop gates int8 conversions: use it with --quantize int8")
        if options.get("calibration") is None:
            raise UsageError("--quantize int8 needs calibration images: add --calibration DATA")
        conversion = convert_with_gate(
            model_path,
            out,
            max_drop=max_drop,
            data=data,
            io=io_type,
            limit_per_class=limit_per_class,
            min_reference_accuracy=min_reference_accuracy,
            target=target,
            on_progress=on_progress,
            **options,
        )
        if not conversion.passed:
            return TargetConversion(conversion, None, target)
        model = conversion.conversion.path
    return TargetConversion(conversion, chosen.build(model) if chosen is not None else None, target)
