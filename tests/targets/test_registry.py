"""Target registry, SSH host parsing and failure diagnosis, the agent's wire format, benchmark statistics."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgecnn.errors import UnknownTargetError, UsageError
from edgecnn.runtime.bench import BenchResult, latency_stats, random_images
from edgecnn.runtime.preprocess import Preprocessing
from edgecnn.targets import TARGETS, list_targets, make_target
from edgecnn.targets.rpi.ssh import SshHost, diagnose
from edgecnn.targets.wire import WireError, array_bytes, bytes_array, read_message, write_message


def test_registry_lists_host_and_rpi_with_availability() -> None:
    assert list(TARGETS)[:2] == ["host", "rpi"]
    statuses = {s.name: s for s in list_targets()}
    assert statuses["host"].usable and "ai-edge-litert" in statuses["host"].detail
    assert statuses["rpi"].summary and statuses["rpi"].detail


@pytest.mark.parametrize(("name", "hint"), [("rpii", "did you mean 'rpi'?"), ("hots", "did you mean 'host'?")])
def test_unknown_target_names_closest_match_and_all_known(name: str, hint: str) -> None:
    with pytest.raises(UnknownTargetError) as info:
        make_target(name)
    assert hint in str(info.value) and "known targets: host, rpi" in str(info.value)


def test_unknown_target_without_a_close_match_lists_known_ones() -> None:
    with pytest.raises(UnknownTargetError, match=r"unknown target 'zzz': known targets: host, rpi"):
        make_target("zzz")


def test_target_option_combinations() -> None:
    assert make_target("rpi").threads == 4  # the Pi's four cores
    assert make_target("rpi", threads=2).threads == 2
    assert make_target("host").threads is None
    with pytest.raises(UsageError, match="--host applies to --target rpi, not --target host"):
        make_target("host", host="pi@raspberrypi")
    with pytest.raises(UsageError, match="--ssh-option applies to --target rpi, not --target coral"):
        make_target("coral", ssh_options=["Port=2222"])
    with pytest.raises(UsageError, match="need --host"):
        make_target("rpi", ssh_options=["Port=2222"])
    for threads in (0, -1, 257, 100_000):
        with pytest.raises(UsageError, match="--threads must be between 1 and 256"):
            make_target("rpi", threads=threads)


@pytest.mark.parametrize(
    ("text", "destination", "port"),
    [
        ("pi@raspberrypi", "pi@raspberrypi", None),
        ("pi@192.168.1.20:2222", "pi@192.168.1.20", 2222),
        ("raspberrypi.local", "raspberrypi.local", None),
        ("pi@[fe80::1]:22", "pi@fe80::1", 22),
    ],
)
def test_ssh_host_parse(text: str, destination: str, port: int | None) -> None:
    host = SshHost.parse(text)
    assert (host.destination, host.port) == (destination, port)


@pytest.mark.parametrize("text", ["-oProxyCommand=x", "pi@", "pi@host:99999", "two words", ""])
def test_ssh_host_parse_refuses_bad_hosts(text: str) -> None:
    with pytest.raises(UsageError, match="--host"):
        SshHost.parse(text)


def test_ssh_command_quotes_the_remote_command_and_uses_batch_mode() -> None:
    host = SshHost.parse("pi@pi:2200", options=["IdentityFile=/k"], edgecnn="'/home/pi/my env/bin/edgecnn'")
    argv = host.ssh_command([*host.edgecnn, "agent"])
    assert argv[argv.index("-p") + 1] == "2200" and "BatchMode=yes" in argv and "IdentityFile=/k" in argv
    assert argv[-3:] == ["--", "pi@pi", "'/home/pi/my env/bin/edgecnn' agent"]
    home = SshHost.parse("pi@pi", edgecnn="~/edgecnn/bin/edgecnn")
    assert home.ssh_command([*home.edgecnn, "agent"])[-1] == '"$HOME"/edgecnn/bin/edgecnn agent'
    with pytest.raises(UsageError, match="KEY=VALUE"):
        SshHost.parse("pi@pi", options=["-oProxyCommand"])


@pytest.mark.parametrize(
    ("code", "stderr", "expected"),
    [
        (255, "ssh: connect to host 10.0.0.9 port 22: Connection refused\n", "cannot reach pi@pi"),
        (255, "pi@pi: Permission denied (publickey).\n", "ssh-copy-id pi@pi"),
        (255, "Host key verification failed.\n", "host key of pi@pi"),
        (255, "ssh: Could not resolve hostname pi: Name or service not known\n", "cannot resolve"),
        (127, "bash: line 1: edgecnn: command not found\n", "edgecnn is not installed on pi@pi"),
        (1, "Traceback ...\nValueError: boom\n", "edgecnn on pi@pi failed: ValueError: boom"),
    ],
)
def test_diagnose_names_the_cause_and_the_fix(code: int, stderr: str, expected: str) -> None:
    message = diagnose(SshHost.parse("pi@pi"), code, stderr)
    assert expected in message and "\n" not in message


def test_wire_round_trip_and_truncation() -> None:
    stream = io.BytesIO()
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1) / 7
    write_message(stream, {"op": "predict"}, [array_bytes(array), b"xyz"])
    stream.seek(0)
    header, parts = read_message(stream)
    assert header["op"] == "predict" and parts[1] == b"xyz"
    assert np.array_equal(bytes_array(parts[0]), array) and bytes_array(parts[0]).dtype == np.float32
    assert read_message(stream) is None  # clean end
    with pytest.raises(WireError):
        read_message(io.BytesIO(b'{"sizes": [10]}\nabc'))
    with pytest.raises(WireError):
        read_message(io.BytesIO(b"SSH noise\n"))


def test_latency_stats_in_milliseconds() -> None:
    stats = latency_stats([0.001, 0.002, 0.003, 0.004, 0.010])
    assert stats["min"] == pytest.approx(1.0) and stats["max"] == pytest.approx(10.0)
    assert stats["p50"] == pytest.approx(3.0) and stats["p90"] == pytest.approx(7.6)
    assert stats["mean"] == pytest.approx(4.0)


def test_random_images_follow_the_preprocessing() -> None:
    spec = Preprocessing(height=4, width=5, channels=3, mean=(0.5,), std=(0.5,))
    images = random_images(spec, 3, seed=1)
    assert images.shape == (3, 4, 5, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.3
    assert np.array_equal(images, random_images(spec, 3, seed=1))


def test_bench_result_round_trip() -> None:
    stats = latency_stats([0.001, 0.002])
    result = BenchResult("rpi", "m.tflite", "tflite-runtime", 4, 1, 2, 1, "random", 3.0, stats, 666.0, {"arch": "a"})
    assert BenchResult.from_dict(result.to_dict()) == result


def test_batch_picker_cycles_whole_batches_and_fills_short_pools() -> None:
    from edgecnn.runtime.bench import batch_picker

    pool = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1)
    pick = batch_picker(pool, 2)
    assert [pick(i).ravel().tolist() for i in range(3)] == [[0, 1], [2, 3], [0, 1]]
    assert batch_picker(pool, 7)(0).ravel().tolist() == [0, 1, 2, 3, 4, 0, 1]
