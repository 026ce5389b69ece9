"""Options several commands share, declared once, and the parameter types that refuse meaningless values.

Numbers are parsed here (a NaN or an infinity is refused at once, exit 2); what range a value must lie in is the
library's to say, so the same check protects a caller of the Python API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from edgecnn.targets.android.benchmark_model import DELEGATE_FLAGS

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloat(click.ParamType):
    """A real number: NaN and infinities are refused (they would pass every ``<=`` comparison silently)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Size(click.ParamType):
    """A size in bytes: 262144, 256K, 256KB, 256KiB, 1M."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from edgecnn.units import parse_size

        try:
            size = parse_size(value, whole=True)
        except ValueError:
            self.fail(f"{value!r} is not a size: give bytes or K/M suffixes, such as 256K or 1M", param, ctx)
        if size <= 0:
            self.fail(f"{value!r} must be a positive number of bytes", param, ctx)
        return size


class Numbers(click.ParamType):
    """Comma-separated finite numbers: ``0.5`` or ``0.485,0.456,0.406``; ``count`` fixes how many."""

    name = "numbers"

    def __init__(self, count: int | None = None) -> None:
        self.count = count

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        numbers = tuple(NUMBER.convert(part.strip(), param, ctx) for part in str(value).split(",") if part.strip())
        if not numbers or (self.count is not None and len(numbers) != self.count):
            wanted = f"{self.count} comma-separated numbers" if self.count else "comma-separated numbers"
            self.fail(f"{value!r} is not {wanted}", param, ctx)
        return numbers


NUMBER = FiniteFloat()
SIZE = Size()


def _apply(f: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        f = option(f)
    return f


def json_flag(f: F) -> F:
    """``--json``: one JSON document on stdout, and no human text there."""
    return click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document on stdout.")(f)


def quiet_option(f: F) -> F:
    """``--quiet``: no progress on stderr."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")(f)


def strict_option(f: F) -> F:
    """``--strict``: an unreadable image is an error instead of a skipped, counted file."""
    return click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")(f)


def follow_links_option(f: F) -> F:
    """``--follow-links``: follow symbolic links that leave the data folder (trusted data only)."""
    return click.option(
        "--follow-links",
        is_flag=True,
        help="Follow symbolic links that lead outside the data folder (not followed by default).",
    )(f)


def trust_model_option(f: F) -> F:
    """``--trust-model``: load a Keras model with safe mode off, so its Python code (``Lambda`` layers) runs."""
    return click.option(
        "--trust-model",
        "trust",
        is_flag=True,
        help="Load a Keras model that holds Python code (Lambda layers): only for a file you trust.",
    )(f)


def limit_option(f: F) -> F:
    """``--limit-per-class N``: a fixed, class-balanced subset."""
    return click.option(
        "--limit-per-class", type=int, metavar="N", help="Use only the first N images (by name) of each class."
    )(f)


def min_reference_accuracy_option(f: F) -> F:
    """``--min-reference-accuracy F``: the floor under the reference's accuracy on the labelled images."""
    return click.option(
        "--min-reference-accuracy",
        type=NUMBER,
        metavar="F",
        help="Smallest allowed reference accuracy on the labelled images, a fraction; 0 turns it off "
        "[2x the most common class's share of the images, at most halfway to 1].",
    )(f)


def seed_option(help_text: str) -> Callable[[F], F]:
    """``--seed N`` with what the seed decides."""
    return click.option("--seed", default=0, show_default=True, help=help_text)


def target_options(f: F) -> F:
    """``--target`` and the options that say how to reach it, shared by run, validate, bench and check.

    The function gets them as keyword arguments; :func:`pop_target_options` takes them out for
    :func:`edgecnn.targets.make_target`.
    """
    return _apply(
        f,
        [
            click.option(
                "--target", "-t", default="host", show_default=True, help="Where it runs (see edgecnn targets)."
            ),
            click.option("--threads", type=int, help="Interpreter threads [host: runtime default; rpi: 4]."),
            click.option("--host", help="rpi: reach the Pi over SSH, user@address or user@address:port."),
            click.option(
                "--ssh-option",
                "ssh_options",
                multiple=True,
                metavar="KEY=VALUE",
                help="rpi: extra OpenSSH -o option (repeat).",
            ),
            click.option("--remote-edgecnn", metavar="CMD", help="rpi: how to start edgecnn on the Pi [edgecnn]."),
            click.option("--device", metavar="usb[:N]|pci[:N]", help="coral: which Edge TPU [the first found]."),
            click.option(
                "--kernels",
                metavar="NAME",
                help="host, rpi: default (XNNPACK) or reference (TFLite's reference kernels); micro: reference or "
                "cmsis-nn (Arm's, on an emulated board) [default / reference].",
            ),
            click.option("--board", metavar="NAME", help="micro: the board whose RAM and flash budget the model."),
            click.option(
                "--tflm-dir",
                type=click.Path(file_okay=False),
                metavar="DIR",
                help="micro: the TFLM source trees to build firmware with [$EDGECNN_TFLM_DIR].",
            ),
            click.option("--ram", type=SIZE, help="micro: RAM for the arena, bytes or 256K/1M (or --board)."),
            click.option("--flash", type=SIZE, help="micro: flash for the model, bytes or 256K/1M (or --board)."),
            click.option("--serial", "-s", metavar="S", help="android: which phone, as adb devices lists it."),
            click.option("--adb", metavar="PATH", help="android: the adb client [adb on PATH]."),
            click.option(
                "--benchmark-binary", metavar="PATH", help="android: TFLite's benchmark_model for Android arm64."
            ),
            click.option(
                "--delegate",
                type=click.Choice(list(DELEGATE_FLAGS)),
                help="android: benchmark_model's kernels [xnnpack].",
            ),
        ],
    )


TARGET_OPTIONS = (
    "target",
    "threads",
    "host",
    "ssh_options",
    "remote_edgecnn",
    "device",
    "kernels",
    "board",
    "tflm_dir",
    "ram",
    "flash",
    "serial",
    "adb",
    "benchmark_binary",
    "delegate",
)


def input_options(f: F) -> F:
    """What a model from elsewhere cannot say about its input: labels, pixel range or mean/std, BGR, layout."""
    return _apply(
        f,
        [
            click.option(
                "--labels", type=click.Path(), metavar="FILE", help="Class names, one per line in output order."
            ),
            click.option(
                "--input-range",
                type=Numbers(2),
                metavar="LOW,HIGH",
                help="Pixels 0..255 map linearly onto LOW..HIGH (0,1 / -1,1 / 0,255).",
            ),
            click.option("--mean", type=Numbers(), metavar="M[,M,M]", help="Per-channel mean, 0..1 pixel scale."),
            click.option("--std", type=Numbers(), metavar="S[,S,S]", help="Per-channel std, 0..1 pixel scale."),
            click.option("--bgr", is_flag=True, help="Feed colour channels in BGR order (default RGB)."),
            click.option(
                "--layout",
                type=click.Choice(["NHWC", "NCHW"], case_sensitive=False),
                help="Input layout [recognised from the input shape].",
            ),
        ],
    )


def pop_input_options(options: dict[str, Any]) -> Any:
    """Take the :func:`input_options` out of ``options`` as one checked ``InputHints``."""
    from edgecnn.runtime.hints import make_hints

    return make_hints(**{name: options.pop(name) for name in ("labels", "input_range", "mean", "std", "bgr", "layout")})


def pop_target_options(options: dict[str, Any]) -> dict[str, Any]:
    """Take :func:`target_options`' values out of a command's keyword arguments."""
    return {key: options.pop(key) for key in TARGET_OPTIONS}
