"""Numbers people read and type: sizes parsed from text, and one formatter per kind of number.

Every report (the command line's text, the HTML report, the exported C++ comments) formats a percentage, a
percentage-point change, a size or a latency with the function here, so the same number reads the same
everywhere. Standard library only: the command line imports it without numpy.
"""

from __future__ import annotations

import re

MISSING = "—"
"""What a formatter shows for a number that was not measured (None)."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str | int, *, whole: bool = False) -> int:
    """Bytes from a size as people and tools write it, with binary multiples (K = 1024 bytes).

    Accepts ``2097152``, ``256K``, ``256KB``, ``256KiB``, ``1M``, ``1.5M``, and what edgetpu_compiler prints
    (``3.41MiB``, ``512.00KiB``, ``0.00B``).

    Args:
        text: the size.
        whole: refuse a size that is not a whole number of bytes (``1.5``); otherwise it is rounded, as a
            tool's rounded figure (``3.41MiB``) is meant.

    Raises:
        ValueError: not a size, negative, or (with ``whole``) a fraction of a byte; callers turn it into their
            own error, naming the option or file.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        return text
    match = _SIZE.match(str(text))
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    value = float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]
    if whole and value != int(value):
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return round(value)


def _no_negative_zero(text: str) -> str:
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text.split("e")[0]) else text


def fmt_percent(fraction: float | None) -> str:
    """A fraction in [0, 1] as a percentage with 2 decimals: ``0.98765`` → ``98.77%``."""
    return MISSING if fraction is None else _no_negative_zero(f"{100.0 * fraction:.2f}") + "%"


def fmt_pp(points: float | None, *, signed: bool = False) -> str:
    """Percentage points with 2 decimals: ``1.2`` → ``1.20 pp`` (``+1.20 pp`` when ``signed``)."""
    if points is None:
        return MISSING
    text = _no_negative_zero(f"{points:.2f}")
    return f"{'+' if signed and not text.startswith('-') and float(text) != 0 else ''}{text} pp"


def fmt_float(value: float | None) -> str:
    """A real number with 4 significant digits: ``0.31`` → ``0.3100``, ``1.2e-7`` → ``1.200e-07``."""
    return MISSING if value is None else _no_negative_zero(f"{value:#.4g}")


def fmt_int(value: int | None) -> str:
    """A count with thousands separators: ``12345`` → ``12,345``."""
    return MISSING if value is None else f"{int(value):,}"


def fmt_bytes(size: int | None) -> str:
    """A size in bytes, exact and in KiB: ``96768`` → ``96,768 bytes (94.5 KiB)``."""
    return MISSING if size is None else f"{int(size):,} bytes ({size / 1024:,.1f} KiB)"


def fmt_ms(value: float | None) -> str:
    """Milliseconds with 3 decimals: ``0.4567`` → ``0.457 ms``."""
    return MISSING if value is None else f"{value:.3f} ms"


def fmt_ratio(value: float | None) -> str:
    """A ratio with 2 decimals: ``0.2512`` → ``0.25×``."""
    return MISSING if value is None else f"{value:.2f}×"
