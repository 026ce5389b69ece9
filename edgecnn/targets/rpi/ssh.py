"""Reaching a device over SSH with the system's OpenSSH client, and talking to ``edgecnn agent`` there.

OpenSSH runs in batch mode: the user's own keys, agent, ``~/.ssh/config`` and ``known_hosts`` decide who
connects, never a password prompt. One connection serves a whole command; the agent removes everything it
was sent when the connection ends, however it ends.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgecnn import __version__
from edgecnn.errors import TargetUnavailableError, UsageError, remote_error
from edgecnn.targets.rpi.wire import PROTOCOL, WireError, read_message, write_message

_HOST = re.compile(
    r"(?P<user>[^@\s]+@)?"  # user@ (optional: ssh's default or ~/.ssh/config decides)
    r"(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<name>[^:@\s\[\]]+))"  # [IPv6] or a name / IPv4 address
    r"(?::(?P<port>\d{1,5}))?"
)


@dataclass(frozen=True)
class SshHost:
    """Where and how to reach a device.

    Attributes:
        destination: ``user@address`` (or a ``Host`` alias from ``~/.ssh/config``).
        port: SSH port, when not the default.
        options: extra OpenSSH ``-o`` options (``IdentityFile=...``, ``UserKnownHostsFile=...``).
        edgecnn: the command that starts edgecnn on the device.
        connect_timeout: seconds to wait for the connection.
    """

    destination: str
    port: int | None = None
    options: tuple[str, ...] = ()
    edgecnn: tuple[str, ...] = ("edgecnn",)
    connect_timeout: int = 10

    @classmethod
    def parse(cls, host: str, *, options: Sequence[str] = (), edgecnn: str = "edgecnn") -> SshHost:
        """Read ``--host user@address[:port]``, ``--ssh-option KEY=VALUE`` and ``--remote-edgecnn CMD``.

        Raises:
            UsageError: a malformed host, option or command.
        """
        match = _HOST.fullmatch(host.strip())
        if not match or host.strip().startswith("-"):
            raise UsageError(f"--host takes user@address or user@address:port, not {host!r}")
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"--host port must be between 1 and 65535, not {port}")
        for option in options:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*=.+", option):
                raise UsageError(f"--ssh-option takes KEY=VALUE (for example Port=2222), not {option!r}")
        command = tuple(shlex.split(edgecnn))
        if not command:
            raise UsageError("--remote-edgecnn must name a command (for example ~/venv/bin/edgecnn)")
        address = match["v6"] or match["name"]
        return cls(f"{match['user'] or ''}{address}", port, tuple(options), command)

    def ssh_command(self, remote: Sequence[str]) -> list[str]:
        """The OpenSSH command line that runs ``remote`` (quoted for the device's shell) on the device.

        Raises:
            TargetUnavailableError: no OpenSSH client is installed.
        """
        ssh = shutil.which("ssh")
        if ssh is None:
            raise TargetUnavailableError(
                "the OpenSSH client (ssh) is not installed: install it (apt install openssh-client) to reach the Pi"
            )
        argv = [ssh, "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        # Notice a Pi that was unplugged mid-run instead of waiting for ever.
        argv += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        for option in self.options:
            argv += ["-o", option]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        return [*argv, "--", self.destination, " ".join(_remote_word(w) for w in remote)]


def _remote_word(word: str) -> str:
    """Quote one word for the device's shell, keeping a leading ``~/`` meaning the remote home folder."""
    if word.startswith("~/"):
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def diagnose(host: SshHost, returncode: int | None, stderr: str) -> str:
    """One line that says why a session with the device ended before it answered, and what to do."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip() and not l.startswith("Warning: Permanently added")]
    last = lines[-1] if lines else f"exit code {returncode}"
    dest = host.destination
    command = shlex.join(host.edgecnn)
    text = stderr.lower()
    if returncode == 255 or "ssh:" in text:
        if "permission denied" in text:
            return (
                f"SSH authentication to {dest} failed ({last}): edgecnn uses your SSH keys only (no passwords); "
                f"install your public key on the Pi with ssh-copy-id {dest}"
            )
        if "host key verification failed" in text or "remote host identification has changed" in text:
            return (
                f"the host key of {dest} is unknown or has changed: connect once with ssh {dest} to check and accept "
                "it (or add it to known_hosts)"
            )
        if "could not resolve hostname" in text:
            return f"cannot resolve the address of {dest}: check the name (or use the Pi's IP address)"
        return (
            f"cannot reach {dest} over SSH ({last}): check that the Pi is on, on the network, and has SSH enabled "
            "(sudo raspi-config, Interface Options, SSH)"
        )
    if returncode in (126, 127) or "not found" in text or "no such file" in text:
        return (
            f"edgecnn is not installed on {dest} ({command!r} was not found there): install it on the Pi with "
            f"python3 -m pip install edgecnn=={__version__} (targets/rpi/README.md), or give its path with "
            "--remote-edgecnn ~/venv/bin/edgecnn"
        )
    return f"edgecnn on {dest} failed: {last}"


class AgentSession:
    """``edgecnn agent`` running on a device, reached over SSH: send requests, get replies.

    Raises:
        TargetUnavailableError: the device cannot be reached, refuses the key, lacks edgecnn, or speaks another
            protocol version; each with the fix in the message.
    """

    def __init__(self, host: SshHost) -> None:
        self.host = host
        argv = host.ssh_command([*host.edgecnn, "agent"])
        # ssh's own messages, read only to explain a failure (a file, so a chatty remote never blocks on a pipe).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        hello = self._receive()
        if hello[0].get("agent") != "edgecnn":
            self.close()
            raise TargetUnavailableError(f"{' '.join(host.edgecnn)} on {host.destination} is not edgecnn's agent")
        if hello[0].get("protocol") != PROTOCOL:
            self.close()
            raise TargetUnavailableError(
                f"edgecnn {hello[0].get('version')} on {host.destination} speaks another protocol than edgecnn "
                f"{__version__} here: install the same version on both (pip install edgecnn=={__version__})"
            )
        self.hello: dict[str, Any] = hello[0]

    def _receive(self) -> tuple[dict[str, Any], list[bytes]]:
        assert self._process is not None and self._process.stdout is not None
        try:
            message = read_message(self._process.stdout)
        except WireError as exc:
            # Something other than the agent wrote to stdout: typically a login script that prints in
            # non-interactive shells. The agent is waiting for input, so end the session now.
            self._process.kill()
            self.close()
            raise TargetUnavailableError(
                f"unexpected output from {self.host.destination} ({exc}): a login script on the device prints to "
                "stdout in non-interactive SSH sessions; make it print only in interactive shells"
            ) from None
        if message is None:
            raise TargetUnavailableError(self._failure())
        return message

    def _failure(self) -> str:
        """Why the session ended: wait for ssh to exit and read what it said."""
        assert self._process is not None
        try:
            returncode = self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            returncode = self._process.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        self.close()
        return diagnose(self.host, returncode, stderr)

    def request(self, header: dict[str, Any], parts: Sequence[bytes] = ()) -> tuple[dict[str, Any], list[bytes]]:
        """Send one request and return the reply.

        Raises:
            TargetUnavailableError: the connection broke.
            EdgecnnError: the device refused the request (its message, prefixed with the device).
        """
        if self._process is None or self._process.stdin is None:
            raise TargetUnavailableError(f"the session with {self.host.destination} is closed")
        try:
            write_message(self._process.stdin, header, parts)
        except (BrokenPipeError, ConnectionError):
            raise TargetUnavailableError(self._failure()) from None
        reply, reply_parts = self._receive()
        if "error" in reply:
            # The device's error keeps its kind (a bad model is bad input there too, exit 2; a missing runtime on
            # the device is the environment, exit 3); an agent too old to send one is taken as the environment.
            raise remote_error(str(reply.get("kind", "")), f"on {self.host.destination}: {reply['error']}")
        return reply, reply_parts

    def close(self) -> None:
        """End the session (the agent then deletes what it was sent) and wait for ssh to exit."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):  # the pipe is already broken: the agent is gone
                    process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()
