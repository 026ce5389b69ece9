"""A thin wrapper over the Android Debug Bridge client (``adb``): devices, shell commands, file transfers.

Every call runs the system's ``adb`` as a subprocess with an argument list and a timeout; a failure becomes one
:class:`~edgecnn.errors.TargetUnavailableError` line that says what failed and how to fix it.

Shell commands carry an exit marker: not every adb returns the remote exit code (devices without the shell v2
protocol always report 0), so each command ends with ``printf '\\n__edgecnn_rc=%d\\n' $?`` and the code is read
from the output. A missing marker means the command never finished (a dropped connection, an unplugged phone).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.errors import TargetUnavailableError, UsageError

ADB_FIX = "install Android's platform-tools (Debian/Ubuntu: apt install adb) or pass --adb PATH"
DEVICES_FIX = "enable USB debugging on the phone (Settings > Developer options), connect it, and check `adb devices`"
TIMEOUT_S = 60.0
"""Default limit of one adb call (a transfer or a short command)."""

MARKER = "__edgecnn_rc="
_MARKER_RE = re.compile(r"\n?" + re.escape(MARKER) + r"(-?\d+)\n?\s*$")
_TAIL_CHARS = 400


def find_adb(adb: str | None = None) -> str:
    """The adb executable: ``adb`` as given (``--adb``), else the first ``adb`` on PATH.

    Raises:
        UsageError: ``adb`` was given but is not an executable file.
        TargetUnavailableError: none was given and there is no ``adb`` on PATH.
    """
    if adb is not None:
        path = Path(adb).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise UsageError(f"--adb {adb} is not an executable file: point it at the adb of Android's platform-tools")
        return str(path)
    found = shutil.which("adb")
    if found is None:
        raise TargetUnavailableError(f"adb was not found on PATH (needed to reach an Android device): {ADB_FIX}")
    return found


@dataclass(frozen=True)
class AdbDevice:
    """One line of ``adb devices -l``.

    Attributes:
        serial: the device's serial (``-s``).
        state: ``device`` when usable; ``unauthorized``, ``offline``, ``no permissions``, ``bootloader``...
        details: the ``key:value`` pairs adb knows (``model``, ``product``, ``device``, ``transport_id``).
    """

    serial: str
    state: str
    details: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``SERIAL (state)`` or ``SERIAL (model)`` for error messages."""
        if self.state == "device":
            return f"{self.serial} ({self.details['model']})" if self.details.get("model") else self.serial
        return f"{self.serial} ({self.state})"


def parse_devices(text: str) -> list[AdbDevice]:
    """Parse the output of ``adb devices -l`` (or ``adb devices``).

    The header, blank lines and adb's own ``* daemon ...`` notices are skipped. A ``no permissions (...)`` state
    keeps its first two words.
    """
    devices = []
    for line in text.replace("\r\n", "\n").splitlines():
        if not line.strip() or line.startswith(("List of devices", "*", "adb server", "adb: ")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        serial, state = parts[0], parts[1]
        rest = parts[2:]
        if state == "no" and rest[:1] == ["permissions"]:
            state = "no permissions"
        details = dict(p.split(":", 1) for p in rest if ":" in p and not p.startswith(("(", "[", "http")))
        devices.append(AdbDevice(serial, state, details))
    return devices


def choose_device(devices: Sequence[AdbDevice], serial: str | None) -> AdbDevice:
    """The one device a command should use, as adb itself would pick it, or an error that says how to fix it.

    Raises:
        TargetUnavailableError: no device, several without ``serial``, an unknown ``serial``, or a device that is
            not usable (unauthorised, offline, no USB permissions).
    """
    if serial is not None:
        matches = [d for d in devices if d.serial == serial]
        if not matches:
            seen = ", ".join(d.describe() for d in devices) or "no device at all"
            raise TargetUnavailableError(
                f"no Android device with serial {serial!r}: adb sees {seen} (check `adb devices`)"
            )
        device = matches[0]
    elif not devices:
        raise TargetUnavailableError(f"no Android device is connected: {DEVICES_FIX}")
    elif len(devices) > 1:
        listed = ", ".join(d.describe() for d in devices)
        raise TargetUnavailableError(f"several Android devices are connected ({listed}): pick one with --serial SERIAL")
    else:
        device = devices[0]
    return _usable(device)


def _usable(device: AdbDevice) -> AdbDevice:
    if device.state == "device":
        return device
    if device.state == "unauthorized":
        raise TargetUnavailableError(
            f"Android device {device.serial} has not authorised this computer: unlock the phone and accept the "
            "'Allow USB debugging?' prompt, then retry"
        )
    if device.state == "offline":
        raise TargetUnavailableError(
            f"Android device {device.serial} is offline: reconnect the USB cable (or restart adb with "
            "`adb kill-server`) and check `adb devices`"
        )
    if device.state == "no permissions":
        raise TargetUnavailableError(
            f"no USB permission for Android device {device.serial}: add a udev rule for the phone (or install "
            "the android-sdk-platform-tools-common package) and reconnect it"
        )
    raise TargetUnavailableError(
        f"Android device {device.serial} is in state {device.state!r}, not booted into Android: boot it normally and "
        "check `adb devices`"
    )


@dataclass(frozen=True)
class ShellResult:
    """What a device command printed and how it ended (the code comes from the exit marker).

    Attributes:
        stdout: its standard output, without the marker (stdout and stderr together on devices without shell v2).
        stderr: its standard error (empty on devices without shell v2).
        returncode: the command's exit code on the device.
    """

    stdout: str
    stderr: str
    returncode: int


def tail(text: str, limit: int = _TAIL_CHARS) -> str:
    """The end of ``text`` on one line, for an error message."""
    flat = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def split_marker(stdout: str) -> tuple[str, int | None]:
    """``(output, exit code)`` from a command's output ending with the exit marker; None when the marker is missing."""
    text = stdout.replace("\r\n", "\n")
    match = _MARKER_RE.search(text)
    if match is None:
        return text, None
    return text[: match.start()], int(match.group(1))


class Adb:
    """The adb client, optionally bound to one device (``-s SERIAL``).

    Args:
        executable: the adb binary (see :func:`find_adb`).
        serial: the device every device command addresses; None for host commands such as ``devices``.
    """

    def __init__(self, executable: str, serial: str | None = None) -> None:
        self.executable = executable
        self.serial = serial

    def on(self, serial: str) -> Adb:
        """The same client, addressing the device ``serial``."""
        return Adb(self.executable, serial)

    @property
    def _where(self) -> str:
        return f"Android device {self.serial}" if self.serial else "adb"

    def run(self, args: Sequence[str], *, timeout: float = TIMEOUT_S, what: str) -> subprocess.CompletedProcess[str]:
        """Run ``adb [-s SERIAL] ARGS``; its result whatever the exit code.

        Raises:
            TargetUnavailableError: adb cannot be started, or did not finish within ``timeout`` seconds.
        """
        command = [self.executable, *(["-s", self.serial] if self.serial else []), *args]
        try:
            # stdin closed: adb shell would otherwise read (and wait on) this process's stdin.
            return subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TargetUnavailableError(
                f"{what} on {self._where} did not finish within {timeout:.0f} s: check the USB connection and that "
                "the phone is awake (`adb devices`)"
            ) from None
        except OSError as exc:
            raise TargetUnavailableError(f"cannot run {self.executable} ({exc.strerror or exc}): {ADB_FIX}") from None

    def checked(self, args: Sequence[str], *, timeout: float = TIMEOUT_S, what: str) -> str:
        """Run ``adb ARGS`` and return its stdout; a non-zero exit becomes one error line with adb's message.

        Raises:
            TargetUnavailableError: adb failed (device gone, transfer refused...) or timed out.
        """
        done = self.run(args, timeout=timeout, what=what)
        if done.returncode != 0:
            message = tail(done.stderr or done.stdout) or f"exit code {done.returncode}"
            raise TargetUnavailableError(f"{what} on {self._where} failed: {message}")
        return done.stdout

    def devices(self) -> list[AdbDevice]:
        """The devices adb sees (``adb devices -l``); this starts the adb server if it is not running."""
        return parse_devices(self.checked(["devices", "-l"], what="listing devices (adb devices -l)"))

    def shell(self, args: Sequence[str], *, timeout: float = TIMEOUT_S, check: bool = True) -> ShellResult:
        """Run one program on the device, each argument quoted for the device's shell.

        Raises:
            TargetUnavailableError: see :meth:`shell_script`.
        """
        return self.shell_script(shlex.join(args), timeout=timeout, check=check)

    def shell_script(self, script: str, *, timeout: float = TIMEOUT_S, check: bool = True) -> ShellResult:
        """Run a line of the device's shell (``sh`` syntax, quoted by the caller) and check how it ended.

        Args:
            script: the command line; it must not ``exit`` (the exit marker follows it).
            timeout: seconds before adb is stopped.
            check: raise when the command's exit code is not 0.

        Raises:
            TargetUnavailableError: adb failed, the output has no exit marker, or (with ``check``) the command failed.
        """
        what = f"`{_short(script)}`"
        done = self.run(["shell", f"{script}; printf '\\n{MARKER}%d\\n' $?"], timeout=timeout, what=what)
        stdout, code = split_marker(done.stdout)
        stderr = done.stderr.replace("\r\n", "\n")
        if code is None:
            if done.returncode != 0:
                raise TargetUnavailableError(f"{what} on {self._where} failed: {tail(stderr or stdout) or 'no output'}")
            raise TargetUnavailableError(
                f"{what} on {self._where} ended without its exit marker (the connection dropped?): "
                f"{tail(stderr or stdout) or 'no output'}"
            )
        if check and code != 0:
            raise TargetUnavailableError(
                f"{what} failed on {self._where} (exit code {code}): {tail(stderr or stdout) or 'no output'}"
            )
        return ShellResult(stdout, stderr, code)

    def push(self, sources: Sequence[Path], destination: str, *, timeout: float = TIMEOUT_S) -> None:
        """Copy local files or folders to the device (``adb push``); several sources need a folder destination."""
        self.checked(["push", *(str(s) for s in sources), destination], timeout=timeout, what="adb push")

    def pull(self, source: str, destination: Path, *, timeout: float = TIMEOUT_S) -> None:
        """Copy a device file or folder here (``adb pull``); a folder lands inside an existing ``destination``."""
        self.checked(["pull", source, str(destination)], timeout=timeout, what="adb pull")


_PROP_RE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")


def parse_getprop(text: str) -> dict[str, str]:
    """Parse ``getprop``'s listing (``[name]: [value]`` per line)."""
    props = {}
    for line in text.replace("\r\n", "\n").splitlines():
        match = _PROP_RE.match(line.strip())
        if match:
            props[match.group(1)] = match.group(2)
    return props


def _short(script: str, limit: int = 60) -> str:
    line = " ".join(script.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
