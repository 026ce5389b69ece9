"""Reaching a device over SSH with the system's OpenSSH client, and talking to ``edgecnn agent`` there.

OpenSSH runs in batch mode: the user's own keys, agent, ``~/.ssh/config`` and ``known_hosts`` decide who
connects, never a password prompt. One connection serves a whole command; the agent removes everything it
was sent when the connection ends, however it ends.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgecnn import __version__
from edgecnn.errors import EdgecnnError, TargetUnavailableError, UsageError
from edgecnn.targets.session import Session
from edgecnn.targets.wire import WireError

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


class AgentSession(Session):
    """``edgecnn agent`` running on a device, reached over SSH: send requests, get replies.

    Raises:
        TargetUnavailableError: the device cannot be reached, refuses the key, lacks edgecnn, or speaks another
            protocol version; each with the fix in the message.
    """

    def __init__(self, host: SshHost) -> None:
        self.host = host
        super().__init__(host.ssh_command([*host.edgecnn, "agent"]), prefix=f"on {host.destination}: ")

    def refused(self, hello: dict[str, Any]) -> EdgecnnError:
        if hello.get("agent") != "edgecnn":
            return TargetUnavailableError(
                f"{' '.join(self.host.edgecnn)} on {self.host.destination} is not edgecnn's agent"
            )
        return TargetUnavailableError(
            f"edgecnn {hello.get('version')} on {self.host.destination} speaks another protocol than edgecnn "
            f"{__version__} here: install the same version on both (pip install edgecnn=={__version__})"
        )

    def unexpected(self, exc: WireError) -> EdgecnnError:
        # Something other than the agent wrote to stdout: typically a login script that prints in non-interactive
        # shells.
        return TargetUnavailableError(
            f"unexpected output from {self.host.destination} ({exc}): a login script on the device prints to "
            "stdout in non-interactive SSH sessions; make it print only in interactive shells"
        )

    def diagnose(self, returncode: int | None, stderr: str) -> EdgecnnError:
        return TargetUnavailableError(diagnose(self.host, returncode, stderr))
