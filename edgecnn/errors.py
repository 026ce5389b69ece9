"""The errors edgecnn raises for a user's mistake or a missing piece.

Every error here is something the user can fix; the CLI turns it into one line on stderr and exit code 2.
Anything else escaping the library is a bug and keeps its traceback.
"""


class EdgecnnError(Exception):
    """Base class: a problem with the user's input or environment, with the fix in the message."""


class MissingDependencyError(EdgecnnError):
    """An optional package is needed; the message names the pip extra that brings it."""

    def __init__(self, package: str, *, extra: str | None = None, purpose: str = "") -> None:
        fix = f'pip install "edgecnn[{extra}]"' if extra else f"pip install {package}"
        what = f" (needed to {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}: install it with {fix}")


class ModelFormatError(EdgecnnError):
    """A model file or its sidecar is missing, corrupt or inconsistent."""


class ModelLoadError(ModelFormatError):
    """The interpreter refused a model (an unresolved custom op, a corrupt graph); ``reason`` is its first line."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DatasetError(EdgecnnError):
    """An image folder is missing, empty, or holds an unreadable image in strict mode."""


class UsageError(EdgecnnError):
    """Options that do not go together, or an output path that cannot be written."""


class UnknownTargetError(UsageError):
    """A target name that is not registered; the message lists the known ones and the closest match."""


class TargetUnavailableError(EdgecnnError):
    """A target that cannot be reached or used from here (no runtime, host unreachable...), with the fix."""


class EdgecnnWarning(UserWarning):
    """Something the user should know that does not stop the work (a model running on the CPU instead of the
    accelerator it was meant for...). The CLI prints it as one ``edgecnn: warning:`` line on stderr."""
