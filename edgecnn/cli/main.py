"""The ``edgecnn`` command: the group, its exit codes, and the one place errors become messages.

Each command (:mod:`edgecnn.cli.commands`) parses its options, calls one library function and renders the result.
Exit codes (:mod:`edgecnn.errors`): 0 success, 1 a verdict failed, 2 usage or bad input, 3 the environment,
130 interrupted, 70 an internal error (a bug: one line, the traceback with ``--debug`` or ``EDGECNN_DEBUG=1``).
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import click

from edgecnn import __version__
from edgecnn.cli.commands import COMMANDS
from edgecnn.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EdgecnnError,
    EdgecnnWarning,
)
from edgecnn.runtime.files import owned_temporaries

DEBUG_ENV = "EDGECNN_DEBUG"
# The system, not the user's input, when a file operation fails this way.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE}


def _debug_from_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class EdgecnnGroup(click.Group):
    """The command group; its :meth:`main` turns every way a command can end into an exit code and at most one
    line on stderr, whether it runs from the console script or from click's test runner."""

    debug = False

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        EdgecnnGroup.debug = _debug_from_env()
        # Every temporary file of the run (TensorFlow's too) in one folder of its own, removed at the end; what a
        # killed run left is removed first.
        with owned_temporaries():
            code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: Sequence[str] | None, prog_name: str | None, complete_var: str | None, **extra: Any) -> int:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", EdgecnnWarning)
                warnings.showwarning = _show_warning
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            return result if isinstance(result, int) else EXIT_OK
        except (click.exceptions.Abort, KeyboardInterrupt):
            # Ctrl-C: no "Aborted!", no traceback; files are written atomically, so nothing half-written remains.
            return EXIT_INTERRUPTED
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            return exc.exit_code
        except click.ClickException as exc:
            where = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) is not None else ""
            _error(f"{exc.format_message()}{where}")
            return exc.exit_code
        except EdgecnnError as exc:
            _error(str(exc))
            return exc.exit_code
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            if exc.errno in _ENVIRONMENT_ERRNOS:
                _error(f"{exc.strerror or exc}{where} (free some space or resources, then try again)")
                return EXIT_ENVIRONMENT
            if exc.filename:
                _error(f"{exc.strerror or exc}{where} (check the path and its permissions)")
                return EXIT_BAD_INPUT
            return _internal(exc)
        except MemoryError:
            _error("out of memory: use smaller images, batches or subsets (--limit-per-class), or a larger machine")
            return EXIT_ENVIRONMENT
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:  # noqa: BLE001 - anything else is a bug, reported in one line
            return _internal(exc)


def _error(message: str) -> None:
    click.echo(f"edgecnn: error: {message}", err=True)


def _internal(exc: BaseException) -> int:
    """A bug: one line that says so and how to see the traceback (the traceback itself with --debug)."""
    if EdgecnnGroup.debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    detail = str(exc).splitlines()[0] if str(exc) else ""
    click.echo(
        f"edgecnn: internal error (a bug in edgecnn): {type(exc).__name__}{': ' + detail if detail else ''}; "
        f"run again with --debug (or {DEBUG_ENV}=1) to see the traceback, and report it",
        err=True,
    )
    return EXIT_INTERNAL


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Our warnings as one line each; anything else as Python shows it."""
    if issubclass(category, EdgecnnWarning):
        click.echo(f"edgecnn: warning: {message}", err=True)
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        EdgecnnGroup.debug = True
    return value


@click.group(
    cls=EdgecnnGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__, prog_name="edgecnn")
@click.option(
    "--debug",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_set_debug,
    help=f"Show the traceback of an internal error (or set {DEBUG_ENV}=1).",
)
def cli() -> None:
    """Train an image classifier, quantize it to int8 TFLite, and prove the quantized model matches the float one.

    Typical flow: edgecnn train → edgecnn convert → edgecnn validate → edgecnn run; edgecnn demo does all four
    on the embedded digits.

    \b
    Example:
      edgecnn demo --out edgecnn-demo

    \b
    Exit codes: 0 success; 1 a verdict failed (a gate, a check, a budget); 2 usage or bad input;
    3 the environment (a target, device, runtime or extra is unavailable); 130 interrupted;
    70 an internal error (a bug: --debug shows the traceback).
    """


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="edgecnn")
