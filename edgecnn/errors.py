"""The errors edgecnn raises, each with the exit code the command line gives it.

Exit codes (the README lists them too):

- 0 success;
- 1 a verdict failed: a gate, a check, a budget (a result, not an error: commands return it);
- 2 usage or bad input: a wrong option value, a missing or malformed file, an image folder that cannot be used
  (:class:`UsageError`, :class:`DatasetError`, :class:`ModelFormatError`);
- 3 the environment: a target, device, runtime or optional extra is unavailable (:class:`TargetUnavailableError`,
  :class:`MissingDependencyError`);
- 130 interrupted (Ctrl-C);
- 70 an internal error: a bug, reported in one line (the traceback with ``--debug`` or ``EDGECNN_DEBUG=1``).

Every :class:`EdgecnnError` is something the user can fix, and its message says how.
"""

EXIT_OK = 0
EXIT_VERDICT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class EdgecnnError(Exception):
    """Base class: a problem with the user's input or environment, with the fix in the message."""

    exit_code = EXIT_BAD_INPUT


class UsageError(EdgecnnError):
    """An option value that means nothing, options that do not go together, or an output that cannot be written."""


class DatasetError(EdgecnnError):
    """An image folder is missing, empty, or holds an unreadable image in strict mode."""


class ModelFormatError(EdgecnnError):
    """A model file or its sidecar is missing, corrupt or inconsistent."""


class ModelLoadError(ModelFormatError):
    """The interpreter refused a model (an unresolved custom op, a corrupt graph); ``reason`` is its first line."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownTargetError(UsageError):
    """A target name that is not registered; the message lists the known ones and the closest match."""


class EnvironmentProblem(EdgecnnError):
    """Something this machine lacks or cannot reach; the input itself may be fine."""

    exit_code = EXIT_ENVIRONMENT


class TargetUnavailableError(EnvironmentProblem):
    """A target that cannot be reached or used from here (no runtime, host unreachable, no device...), with the fix."""


class MissingDependencyError(EnvironmentProblem):
    """An optional package is needed; the message names the pip extra that brings it."""

    def __init__(self, package: str, *, extra: str | None = None, purpose: str = "") -> None:
        fix = f'pip install "edgecnn[{extra}]"' if extra else f"pip install {package}"
        what = f" (needed to {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}: install it with {fix}")


ERROR_KINDS: dict[str, type[EdgecnnError]] = {
    cls.__name__: cls
    for cls in (UsageError, DatasetError, ModelFormatError, UnknownTargetError, TargetUnavailableError)
}
"""The errors a remote device may send back by name (``edgecnn agent``), so they keep their kind here."""


def error_kind(error: EdgecnnError) -> str:
    """The name under which an error travels to another machine: its own class, or the nearest of
    :data:`ERROR_KINDS` it derives from (an environment problem travels as :class:`TargetUnavailableError`)."""
    for cls in type(error).__mro__:
        if cls.__name__ in ERROR_KINDS:
            return cls.__name__
    return TargetUnavailableError.__name__ if isinstance(error, EnvironmentProblem) else UsageError.__name__


def remote_error(kind: str, message: str, *, reason: str | None = None) -> EdgecnnError:
    """The error a device reported, as the same kind here (an unknown kind is a :class:`TargetUnavailableError`).

    ``reason``: the interpreter's own words for a model it refused; the error is then a :class:`ModelLoadError`.
    """
    cls = ERROR_KINDS.get(kind, TargetUnavailableError)
    if reason is not None and issubclass(ModelLoadError, cls):
        return ModelLoadError(message, reason=reason)
    return cls(message)


class EdgecnnWarning(UserWarning):
    """Something the user should know that does not stop the work (a model running on the CPU instead of the
    accelerator it was meant for...). The CLI prints it as one ``edgecnn: warning:`` line on stderr."""
