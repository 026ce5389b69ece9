"""The adb server stand-in (adb_server.py) against Debian's real ``adb`` client (1.0.41, 29.0.6).

Each test runs the real client as a subprocess with ``server.env``; the messages asserted here are what that
client prints against the real server's replies. Without /usr/bin/adb the module skips (fails under CI).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from envs import in_ci
from targets.android.adb_server import AdbServer, FakeDevice

ADB = Path("/usr/bin/adb")
PIXEL = {"ro.product.model": "Pixel 7", "ro.product.name": "panther", "ro.product.device": "panther"}


@pytest.fixture(autouse=True)
def real_client() -> None:
    if not ADB.exists():
        message = f"{ADB} is missing (apt-get install adb)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so this fails instead of skipping", pytrace=False)
        pytest.skip(message)


def adb(server: AdbServer, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the real client against ``server`` (stdin closed unless given, as a program under test should)."""
    return subprocess.run(
        [str(ADB), *args],
        env=server.env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )


def forked_adb_servers(port: int) -> list[str]:
    """Command lines of real adb servers started on ``port`` (the client forks one when it cannot connect)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fork-server" in args and any(f"tcp:{port}".encode() in a for a in args):
            found.append(" ".join(a.decode(errors="replace") for a in args))
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AdbServer]:
    """Two devices: a shell_v2 Pixel and an old device without shell_v2."""
    devices = [
        FakeDevice("pixel-1", tmp_path / "pixel", props=PIXEL),
        FakeDevice("old-2", tmp_path / "old", shell_v2=False),
    ]
    with AdbServer(devices) as running:
        yield running
    assert running.unknown == [], "the client sent requests the stand-in does not implement"
    assert forked_adb_servers(running.port) == [], "the client started a real adb server"


def test_devices_lists_states_and_props(server: AdbServer, tmp_path: Path) -> None:
    server.devices.append(FakeDevice("locked-3", tmp_path / "locked", state="unauthorized"))
    server.devices.append(FakeDevice("gone-4", tmp_path / "gone", state="offline"))
    short = adb(server, "devices")
    assert short.returncode == 0
    assert short.stdout.decode().splitlines() == [
        "List of devices attached",
        "gone-4\toffline",
        "locked-3\tunauthorized",
        "old-2\tdevice",
        "pixel-1\tdevice",
        "",
    ]
    long = adb(server, "devices", "-l").stdout.decode().splitlines()
    pixel = next(line for line in long if line.startswith("pixel-1"))
    assert pixel.split()[1:5] == ["device", "product:panther", "model:Pixel_7", "device:panther"]
    assert pixel.split()[-1].startswith("transport_id:")
    assert next(line for line in long if line.startswith("locked-3")).split()[1] == "unauthorized"
    assert server.requests[:2] == ["host:version", "host:devices"]  # version first: 41, so no restart


def test_shell_v2_streams_exit_code_and_device_paths(server: AdbServer, tmp_path: Path) -> None:
    done = adb(server, "-s", "pixel-1", "shell", "echo out; echo err >&2; getprop ro.product.model; pwd; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (
        3,
        f"out\nPixel 7\n{tmp_path / 'pixel'}\n".encode(),
        b"err\n",
    )
    # Several arguments: the client joins them with spaces and quotes nothing (the caller must quote).
    done = adb(server, "-s", "pixel-1", "shell", "echo", "hi  there", ">", "/data/local/tmp/note;", "getprop", "x.y")
    assert done.stdout == b"\n"  # getprop prints an empty line for an unknown property
    assert (tmp_path / "pixel/data/local/tmp/note").read_text() == "hi there\n"
    assert server.commands[-1] == ("pixel-1", "echo hi  there > /data/local/tmp/note; getprop x.y")
    assert server.requests[:4] == [
        "host:version",
        "host-serial:pixel-1:features",
        "host:tport:serial:pixel-1",
        "shell,v2,TERM=xterm,raw:echo out; echo err >&2; getprop ro.product.model; pwd; exit 3",
    ]


def test_shell_v2_forwards_stdin_and_binary_stdout(server: AdbServer, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    (tmp_path / "pixel/data/local/tmp/blob").write_bytes(data)
    assert adb(server, "-s", "pixel-1", "shell", "cat /data/local/tmp/blob").stdout == data
    done = adb(server, "-s", "pixel-1", "shell", "cat; echo end", stdin=b"from stdin\n")
    assert done.stdout == b"from stdin\nend\n"
    assert adb(server, "-s", "pixel-1", "shell", "kill -9 $$").returncode == 137


def test_old_shell_has_no_exit_code(server: AdbServer) -> None:
    done = adb(server, "-s", "old-2", "shell", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"out\nerr\n", b"")  # one stream, exit code lost
    assert "shell:echo out; echo err >&2; exit 3" in server.requests
    assert adb(server, "-s", "pixel-1", "exec-out", "echo raw; exit 4").stdout == b"raw\n"
    assert server.requests[-1] == "exec:echo raw; exit 4"


def test_other_ways_to_name_a_device(tmp_path: Path) -> None:
    devices = [FakeDevice("192.168.1.20:5555", tmp_path / "wifi"), FakeDevice("usb-2", tmp_path / "usb")]
    with AdbServer(devices) as server:
        assert adb(server, "-s", "192.168.1.20:5555", "shell", "echo wifi").stdout == b"wifi\n"
        assert adb(server, "-t", "2", "shell", "echo two").stdout == b"two\n"  # ids in list order from 1
        assert adb(server, "-s", "usb-2", "get-state").stdout == b"device\n"
        assert adb(server, "-s", "usb-2", "wait-for-device").returncode == 0
    assert "host-transport-id:2:features" in server.requests and "host:transport-id:2" in server.requests
    assert "host-serial:usb-2:wait-for-any-device" in server.requests
    assert forked_adb_servers(server.port) == []


def test_shell_without_serial_uses_the_only_device(tmp_path: Path) -> None:
    with AdbServer([FakeDevice("solo", tmp_path / "solo")]) as server:
        assert adb(server, "shell", "exit 5").returncode == 5
        assert adb(server, "wait-for-device").returncode == 0
    assert "host:tport:any" in server.requests and "host:features" in server.requests
    assert "host:wait-for-any-device" in server.requests
    assert forked_adb_servers(server.port) == []


def test_push_and_pull_a_file_byte_identical_with_mode(server: AdbServer, tmp_path: Path) -> None:
    local = tmp_path / "blob.bin"
    local.write_bytes(os.urandom(100_000))
    local.chmod(0o750)
    pushed = adb(server, "-s", "pixel-1", "push", str(local), "/data/local/tmp/bench/blob.bin")
    assert pushed.returncode == 0, pushed.stderr
    on_device = tmp_path / "pixel/data/local/tmp/bench/blob.bin"
    assert on_device.read_bytes() == local.read_bytes() and on_device.stat().st_mode & 0o777 == 0o750
    pulled = adb(server, "-s", "pixel-1", "pull", "/data/local/tmp/bench/blob.bin", str(tmp_path / "back.bin"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    assert b"1 file pulled" in pulled.stdout
    assert server.commands == []  # file transfer goes through sync:, not the shell
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho ran $1 in $(pwd)\n")
    script.chmod(0o755)
    assert adb(server, "-s", "pixel-1", "push", str(script), "/data/local/tmp/").returncode == 0  # into the folder
    ran = adb(server, "-s", "pixel-1", "shell", "/data/local/tmp/run.sh ok")
    assert ran.stdout == f"ran ok in {tmp_path / 'pixel'}\n".encode()
    missing = adb(server, "-s", "pixel-1", "pull", "/data/local/tmp/nope", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stderr) == (1, b"")
    assert missing.stdout == b"adb: error: remote object '/data/local/tmp/nope' does not exist\n"


@pytest.mark.parametrize("serial", ["pixel-1", "old-2"])
def test_push_and_pull_a_folder(server: AdbServer, tmp_path: Path, serial: str) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.tflite").write_bytes(b"\0\1\2")
    (src / "sub" / "labels.txt").write_text("cat\ndog\n")
    assert adb(server, "-s", serial, "push", str(src), "/data/local/tmp/model").returncode == 0
    device_dir = server.devices[0 if serial == "pixel-1" else 1].root / "data/local/tmp/model"
    assert (device_dir / "sub/labels.txt").read_text() == "cat\ndog\n"
    done = adb(server, "-s", serial, "pull", "/data/local/tmp/model", str(tmp_path / "back"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back/a.tflite").read_bytes() == b"\0\1\2"
    assert (tmp_path / "back/sub/labels.txt").read_text() == "cat\ndog\n"
    assert server.commands == []  # no "mkdir" through the shell: fixed_push_mkdir is advertised


UNAUTHORIZED = (  # the real server names its own $ADB_VENDOR_KEYS, so does the stand-in
    f"device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is {os.environ.get('ADB_VENDOR_KEYS', 'not set')}\n"
    "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.\n"
)


def test_errors_read_as_with_the_real_server(server: AdbServer, tmp_path: Path) -> None:
    """The 29.0.6 client exits 1; shell errors go to stderr, push/pull errors to stdout (sic)."""

    def error(*args: str) -> tuple[str, str]:
        done = adb(server, *args)
        assert done.returncode == 1
        return done.stdout.decode(), done.stderr.decode()

    push = ("push", __file__, "/data/local/tmp/x")
    pull = ("pull", "/data/local/tmp/x", str(tmp_path / "x"))
    assert error("-s", "nope", "shell", "true") == ("", "error: device 'nope' not found\n")
    assert error("-s", "nope", *push) == ("adb: error: failed to get feature set: device 'nope' not found\n", "")
    assert error("shell", "true") == ("", "error: more than one device/emulator\n")
    assert error(*pull) == ("adb: error: failed to get feature set: more than one device/emulator\n", "")
    server.devices[0].state = "unauthorized"  # changes take effect on the next command
    assert error("-s", "pixel-1", "shell", "true") == ("", "error: " + UNAUTHORIZED)
    assert error("-s", "pixel-1", *pull) == ("adb: error: failed to get feature set: " + UNAUTHORIZED, "")
    assert error("-s", "pixel-1", "get-state") == ("", "error: " + UNAUTHORIZED)
    server.devices[0].state = "offline"
    assert error("-s", "pixel-1", "shell", "true") == ("", "error: device offline\n")
    assert error("-s", "pixel-1", *push) == ("adb: error: failed to get feature set: device offline\n", "")
    server.devices = []
    assert error("shell", "true") == ("", "error: no devices/emulators found\n")
    assert server.commands == []


def wait_until(condition: Callable[[], bool], *, seconds: float = 30) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (a generous bound, only against a hang); its last value."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_exit_stops_a_running_command_and_all_threads(tmp_path: Path) -> None:
    before = threading.active_count()
    server = AdbServer([FakeDevice("solo", tmp_path / "solo")]).__enter__()
    client = subprocess.Popen([str(ADB), "shell", "sleep 60"], env=server.env, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: bool(server.commands)), "the device command never started"
        assert server.commands == [("solo", "sleep 60")]
    except BaseException:
        client.kill()
        server.__exit__(None, None, None)
        raise
    # Leaving the server stops the command: the exit is not still waiting for `sleep 60` (the bound is half of it).
    leaving = threading.Thread(target=server.__exit__, args=(None, None, None), name="leaving", daemon=True)
    leaving.start()
    leaving.join(timeout=30)
    assert not leaving.is_alive(), "leaving the server waits for the running device command instead of stopping it"
    # The connection went away before the exit packet: the 29.0.6 client then exits 0, even with shell_v2.
    assert client.wait(timeout=30) == 0
    assert threading.active_count() == before
    assert forked_adb_servers(server.port) == []


def test_a_client_that_goes_away_ends_its_command(server: AdbServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "pixel/data/local/tmp/pid"
    client = subprocess.Popen(
        [str(ADB), "-s", "pixel-1", "shell", "echo $$ > /data/local/tmp/pid; sleep 60"],
        env=server.env,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: pid_file.exists() and bool(pid_file.read_text().strip())), "the command never ran"
    finally:
        client.kill()  # as a test timeout would
        client.wait(timeout=30)
    device_shell = Path("/proc") / pid_file.read_text().strip()
    # The device shell runs `sleep 60`: gone well before that means the server ended it when its client went away.
    assert wait_until(lambda: not device_shell.exists()), "the device command outlived its client"
