"""The messages between edgecnn on a development machine and ``edgecnn agent`` on a device, over SSH.

A message is one line of JSON (the header) followed by the binary parts it announces in ``sizes``. Arrays
travel as ``.npy`` bytes (no pickles), so the device computes on exactly the values sent.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

PROTOCOL = 1
"""Bumped whenever a message changes; both sides must speak the same one."""


class WireError(Exception):
    """The other side closed the stream or sent something that is not a message."""


def write_message(stream: BinaryIO, header: dict[str, Any], parts: Sequence[bytes] = ()) -> None:
    """Send a header and its binary parts, then flush."""
    line = json.dumps({**header, "sizes": [len(p) for p in parts]}, separators=(",", ":"))
    stream.write(line.encode() + b"\n")
    for part in parts:
        stream.write(part)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            raise WireError("the stream ended in the middle of a message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], list[bytes]] | None:
    """The next header and parts, or None when the stream ended cleanly before one.

    Raises:
        WireError: a truncated or malformed message.
    """
    line = stream.readline()
    if not line:
        return None
    try:
        header = json.loads(line)
        sizes = [int(n) for n in header.get("sizes", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        raise WireError(f"not an edgecnn message: {line[:80]!r}") from exc
    return header, [_read_exact(stream, n) for n in sizes]


def array_bytes(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def bytes_array(data: bytes) -> np.ndarray:
    """Inverse of :func:`array_bytes`."""
    return np.load(io.BytesIO(data), allow_pickle=False)
