"""The target interface: check a model for a device, build what it needs, open a runner on it, benchmark it there."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from edgecnn.runtime.bench import BenchPlan, BenchResult, Timed, time_model
from edgecnn.runtime.progress import ProgressFn
from edgecnn.runtime.runners import Runner

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One result of :meth:`Target.check`: an ``error`` stops the model running there, a ``warning`` costs."""

    severity: Severity
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"severity": self.severity, "code": self.code, "message": self.message}


@dataclass
class CheckReport:
    """The findings of one target on one model, and the target's structured details (its JSON ``details``)."""

    target: str
    model: Path
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no finding is an error: the model can run there."""
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (keys documented in the README)."""
        return {
            "target": self.target,
            "model": str(self.model),
            "passed": self.passed,
            "errors": sum(f.severity == "error" for f in self.findings),
            "warnings": sum(f.severity == "warning" for f in self.findings),
            "findings": [f.to_dict() for f in self.findings],
            "details": dict(self.details),
        }


@dataclass
class TargetBuild(CheckReport):
    """What ``edgecnn convert --target NAME`` made for a target after converting: the target's check of what it
    will run, and what it wrote.

    Attributes:
        model: the model to deploy there (a compiled one, when the target compiles).
        files: every file written for the target besides the converted bundle.
    """

    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the check's keys and ``files``."""
        return {**super().to_dict(), "files": [str(f) for f in self.files]}


class Target(ABC):
    """A place a model runs. Subclasses are registered by name in :mod:`edgecnn.targets`.

    Constructors take keyword-only options (threads, a remote host...); every method raises
    :class:`~edgecnn.errors.EdgecnnError` subclasses for problems the user can fix.
    """

    name: ClassVar[str]

    isolated_by: ClassVar[str | None] = None
    """The native code that runs this target's models, when it could still crash on a model that passed edgecnn's
    verifier (``TensorFlow Lite Micro``, ``the Edge TPU delegate``): :meth:`open` and :meth:`bench` then run the
    model in a child process (:mod:`edgecnn.targets.session`), never in this one. None: in this process."""

    crash_hint: ClassVar[str] = ""
    """Added to the message when the child crashes: what else than the model can make that native code crash."""

    isolated: bool = False
    """True while this target runs models in a child process: targets with :attr:`isolated_by` set it in their
    constructor; :meth:`in_process` gives the copy the child itself uses."""

    def in_process(self) -> Target:
        """This target running models in this process: what the child process (or a Pi's agent) uses."""
        here = copy.copy(self)
        here.isolated = False
        return here

    def child_options(self) -> dict[str, Any]:
        """The options (by :func:`~edgecnn.targets.make_target` name) the child needs to make this target again."""
        return {}

    @property
    def where(self) -> str:
        """The target as reports name it: ``host``, ``rpi``, ``rpi pi@raspberrypi``."""
        return self.name

    @abstractmethod
    def check(self, model: Path) -> list[Finding]:
        """Compatibility and budget findings for a ``.tflite`` model; no side effects.

        A model without a sidecar (from another converter) is checked from its graph: findings that would need
        its labels or preprocessing say they are unknown, and nothing refuses it for lacking a sidecar.
        """

    def inspect(self, model: Path) -> tuple[list[Finding], dict[str, Any]]:
        """:meth:`check`'s findings and the structured details behind them (``edgecnn check --json``)."""
        return self.check(model), {}

    quantize_modes: ClassVar[tuple[str, ...] | None] = None
    """The ``--quantize`` modes the target runs (None: any)."""

    io_types: ClassVar[tuple[str, ...] | None] = None
    """The ``--io`` types of int8 models the target runs (None: any)."""

    def build(self, model: Path) -> TargetBuild:
        """After ``convert --target``: make what the target needs from the converted bundle, and check it.

        The default only checks it.
        """
        findings, details = self.inspect(model)
        return TargetBuild(self.name, model, findings, details)

    @abstractmethod
    def open(self, model: Path) -> Runner:
        """A runner for the bundle on this target: preprocessed float images in, dequantized scores out."""

    def open_timed(self, model: Path) -> Timed:
        """What :meth:`bench` times: a runner like :meth:`open`'s that, on targets running the model in this
        process, also takes a model without a sidecar (fed random values in every input tensor).

        The default is :meth:`open`.
        """
        return self.open(model)  # type: ignore[return-value]

    threads: int | None = None

    bench_note: ClassVar[str | None] = None
    """A caveat every benchmark here carries (TFLM's host timings are not a microcontroller's)."""

    def bench(self, model: Path, plan: BenchPlan, *, on_progress: ProgressFn | None = None) -> BenchResult:
        """Latency and throughput of the bundle on this target (see :mod:`edgecnn.runtime.bench`).

        The default times the runner :meth:`open_timed` gives, in this process (in a child process for an
        :attr:`isolated` target, on its clock), with the one benchmark protocol
        (:func:`~edgecnn.runtime.bench.time_model`); targets that run on another device override it.
        """
        if self.isolated:
            from edgecnn.targets.session import child_bench

            return replace(child_bench(self, model, plan, on_progress=on_progress), target=self.where)
        return time_model(
            lambda: self.open_timed(model),
            plan,
            target=self.where,
            model=str(model),
            threads=self.threads,
            note=self.bench_note,
            on_progress=on_progress,
        )
