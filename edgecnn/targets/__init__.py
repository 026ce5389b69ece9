"""Targets by name: where a model runs. Imported lazily, so listing them loads no interpreter.

Adding a target is adding a module with a :class:`~edgecnn.targets.base.Target` subclass and a line in
:data:`TARGETS` (or an ``edgecnn.targets`` entry point in another package).
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from edgecnn.errors import UnknownTargetError, UsageError

TARGETS: dict[str, str] = {
    "host": "edgecnn.targets.host:HostTarget",
    "rpi": "edgecnn.targets.rpi:RpiTarget",
    "coral": "edgecnn.targets.coral:CoralTarget",
    "android": "edgecnn.targets.android:AndroidTarget",
    "micro": "edgecnn.targets.micro:MicroTarget",
}
"""Built-in targets: name → ``module:Class``."""


def _registry() -> dict[str, str]:
    registry = dict(TARGETS)
    for entry in metadata.entry_points(group="edgecnn.targets"):
        registry.setdefault(entry.name, entry.value)
    return registry


def target_names() -> list[str]:
    """Every registered target name, built-in ones first."""
    return list(_registry())


def target_class(name: str) -> Any:
    """The class registered as ``name``.

    Raises:
        UnknownTargetError: no such target; the message names the closest match and all known ones.
    """
    registry = _registry()
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownTargetError(f"unknown target {name!r}: {hint}known targets: {', '.join(registry)}")
    module_name, _, class_name = registry[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_target(name: str, **options: Any) -> Any:
    """An instance of the target ``name`` with its keyword options (``threads``, ``remote``...)."""
    return target_class(name)(**options)


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
        return {
            "name": self.name,
            "summary": self.summary,
            "usable": self.usable,
            "detail": self.detail,
            "fix": self.fix,
        }


def list_targets() -> list[TargetStatus]:
    """Every target, whether it is usable on this machine, and if not, why and how to fix it."""
    statuses = []
    for name in target_names():
        cls = target_class(name)
        available = cls.availability()
        statuses.append(TargetStatus(name, cls.summary, available.usable, available.detail, available.fix))
    return statuses


def make_target(
    name: str = "host",
    *,
    threads: int | None = None,
    host: str | None = None,
    ssh_options: Sequence[str] = (),
    remote_edgecnn: str | None = None,
    **target_options: Any,
) -> Any:
    """The target the command-line options describe.

    Args:
        name: a registered target name.
        threads: interpreter threads (None: the target's default).
        host: ``user@address[:port]`` of a device to reach over SSH (targets that run remotely).
        ssh_options: extra OpenSSH ``-o KEY=VALUE`` options.
        remote_edgecnn: the command that starts edgecnn on the device (default ``edgecnn``).
        target_options: options only some targets take (``device`` for coral; ``serial``, ``adb``,
            ``benchmark_binary``, ``delegate`` for android); None means not given. A target lists the ones it
            takes in its ``options`` class attribute.

    Raises:
        UnknownTargetError: no such target.
        UsageError: options that do not go together, or an option the target does not take.
    """
    cls = target_class(name)
    given = {key: value for key, value in target_options.items() if value is not None}
    for key in given:
        if key not in getattr(cls, "options", ()):
            owners = [n for n in target_names() if key in getattr(target_class(n), "options", ())]
            where = f" applies to --target {' or '.join(owners)}" if owners else " is not an option of any target"
            raise UsageError(f"--{key.replace('_', '-')}{where}, not --target {name}")
    if host is None:
        if ssh_options or remote_edgecnn:
            raise UsageError("--ssh-option and --remote-edgecnn need --host user@address")
        return cls(threads=threads, **given)
    from edgecnn.targets.ssh import SshHost

    remote = SshHost.parse(host, options=ssh_options, edgecnn=remote_edgecnn or "edgecnn")
    return cls(threads=threads, remote=remote, **given)


def check_model(model: str | os.PathLike[str], target: Any) -> Any:
    """Run ``target``'s checks on a ``.tflite`` bundle and collect them in a :class:`CheckReport`.

    Raises:
        ModelFormatError: the model is missing, not a TFLite model, or has no valid sidecar.
    """
    from edgecnn.bundle import check_model_file
    from edgecnn.targets.base import CheckReport

    path = check_model_file(model, suffixes=(".tflite",))
    findings, details = target.inspect(path)
    return CheckReport(target.where, path, findings, details)
