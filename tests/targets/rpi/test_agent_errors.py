"""Errors keep their kind across the SSH link: what the Pi's agent reports is re-raised here as the same kind, so a
bad model is bad input (exit 2) and a missing runtime is the environment (exit 3) on either side."""

from __future__ import annotations

import io
import signal

import pytest

from edgecnn.errors import (
    DatasetError,
    EdgecnnError,
    MissingDependencyError,
    ModelFormatError,
    ModelLoadError,
    TargetUnavailableError,
    UnknownTargetError,
    UsageError,
    error_kind,
    remote_error,
)
from edgecnn.targets.agent import serve
from edgecnn.targets.wire import read_message, write_message


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (UsageError("u"), UsageError, 2),
        (DatasetError("d"), DatasetError, 2),
        (ModelFormatError("m"), ModelFormatError, 2),
        (ModelLoadError("l", reason="r"), ModelFormatError, 2),
        (UnknownTargetError("t"), UnknownTargetError, 2),
        (TargetUnavailableError("x"), TargetUnavailableError, 3),
        (MissingDependencyError("tflite-runtime"), TargetUnavailableError, 3),
    ],
)
def test_an_error_travels_as_its_kind(error: EdgecnnError, kind: type[EdgecnnError], code: int) -> None:
    back = remote_error(error_kind(error), f"on pi@raspberrypi: {error}")
    assert type(back) is kind and back.exit_code == error.exit_code == code
    assert str(back).startswith("on pi@raspberrypi: ")


def test_an_unknown_kind_is_the_environment() -> None:
    """An agent too old to name the kind: the device is the problem, as before (exit 3)."""
    assert type(remote_error("", "on pi: broken")) is TargetUnavailableError
    assert type(remote_error("SomethingNew", "on pi: broken")) is TargetUnavailableError


def test_the_agent_reports_the_kind_of_a_refused_request() -> None:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGHUP, signal.SIGTERM)}  # serve() sets its own
    try:
        _serve_two_bad_requests()
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _serve_two_bad_requests() -> None:
    requests = io.BytesIO()
    write_message(requests, {"op": "predict"}, [])  # nothing was loaded: the caller's mistake
    write_message(requests, {"op": "load", "threads": 1}, [b"model", b"sidecar", b"?"])  # a model and its sidecar
    requests.seek(0)
    replies = io.BytesIO()
    serve(requests, replies)
    replies.seek(0)
    hello = read_message(replies)
    assert hello is not None and hello[0]["agent"] == "edgecnn"
    for _ in range(2):
        reply = read_message(replies)
        assert reply is not None and reply[0]["kind"] == "UsageError", reply
    assert read_message(replies) is None
