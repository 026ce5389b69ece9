"""Targets by name: where a model runs. One folder per target; adding one is adding a folder and a line here.

Each target's package (``edgecnn/targets/<name>/__init__.py``) says in a few standard-library lines what the
target is (``SUMMARY``), which options it takes (``OPTIONS``), whether it is usable on this machine
(``availability()``) and where its :class:`~edgecnn.targets.base.Target` class lives (``TARGET``). So listing the
targets imports neither numpy nor an interpreter; the class is imported when a command uses the target.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from edgecnn.errors import UnknownTargetError, UsageError

if TYPE_CHECKING:
    from edgecnn.targets.base import CheckReport, Target

TARGETS: dict[str, str] = {
    "host": "edgecnn.targets.host",
    "rpi": "edgecnn.targets.rpi",
    "coral": "edgecnn.targets.coral",
    "android": "edgecnn.targets.android",
    "micro": "edgecnn.targets.micro",
}
"""Target name → its package."""

_FLAGS = {"ssh_options": "ssh-option"}
"""Command-line flags whose name is not the option's Python name with dashes."""


@dataclass(frozen=True)
class Availability:
    """Whether a target can be used from this machine; if not, why and how to fix it."""

    usable: bool
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class TargetStatus:
    """One line of ``edgecnn targets``."""

    name: str
    summary: str
    usable: bool
    detail: str
    fix: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "summary": self.summary, "usable": self.usable, "detail": self.detail,
                "fix": self.fix}  # fmt: skip


@dataclass(frozen=True)
class TargetList:
    """What ``edgecnn targets`` shows: every target's status."""

    statuses: list[TargetStatus]

    def __iter__(self) -> Iterator[TargetStatus]:
        return iter(self.statuses)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"targets": [...]}``."""
        return {"targets": [s.to_dict() for s in self.statuses]}


def target_package(name: str) -> ModuleType:
    """The package of the target ``name`` (its summary, options and availability; cheap to import).

    Raises:
        UnknownTargetError: no such target; the message names the closest match and all known ones.
    """
    if name not in TARGETS:
        close = difflib.get_close_matches(name, TARGETS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownTargetError(f"unknown target {name!r}: {hint}known targets: {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[name])


def target_class(name: str) -> type[Target]:
    """The :class:`~edgecnn.targets.base.Target` class of the target ``name``.

    Raises:
        UnknownTargetError: no such target.
    """
    module_name, _, class_name = target_package(name).TARGET.partition(":")
    return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]


def list_targets() -> TargetList:
    """Every target, whether it is usable on this machine, and if not, why and how to fix it."""
    statuses = []
    for name in TARGETS:
        package = target_package(name)
        available = package.availability()
        statuses.append(TargetStatus(name, package.SUMMARY, available.usable, available.detail, available.fix))
    return TargetList(statuses)


def make_target(name: str = "host", *, threads: int | None = None, **options: Any) -> Target:
    """The target the command-line options describe.

    Args:
        name: a registered target name.
        threads: interpreter threads (None: the target's default).
        options: options only some targets take, by their Python names (``host``, ``ssh_options`` and
            ``remote_edgecnn`` for rpi; ``device`` and ``min_tpu_share`` for coral; ``board``, ``ram``, ``flash``
            for micro; ``serial``, ``adb``, ``benchmark_binary``, ``delegate`` for android). None or an empty
            value means not given; each target lists the ones it takes in its package's ``OPTIONS``.

    Raises:
        UnknownTargetError: no such target.
        UsageError: an option the target does not take (naming the target that does), or a bad option value.
    """
    package = target_package(name)
    given = {key: value for key, value in options.items() if value is not None and value != ()}
    for key in given:
        renamed = getattr(package, "RENAMED", {}).get(key)
        if renamed is not None:
            raise UsageError(f"--{key} is --{renamed} for --target {name}: --{renamed} {given[key]}")
        if key not in package.OPTIONS:
            owners = [n for n in TARGETS if key in target_package(n).OPTIONS]
            where = f" applies to --target {' or '.join(owners)}" if owners else " is not an option of any target"
            raise UsageError(f"--{_FLAGS.get(key, key.replace('_', '-'))}{where}, not --target {name}")
    return target_class(name)(threads=threads, **given)


def check_model(model: str | os.PathLike[str], target: Target) -> CheckReport:
    """Run ``target``'s checks on a ``.tflite`` bundle and collect them in a :class:`CheckReport`.

    Raises:
        ModelFormatError: the model is missing, not a TFLite model, or has no valid sidecar.
    """
    from edgecnn.runtime.bundle import check_model_file
    from edgecnn.targets.base import CheckReport

    path = check_model_file(model, suffixes=(".tflite",))
    findings, details = target.inspect(path)
    return CheckReport(target.where, path, findings, details)
