"""A real OpenSSH server on 127.0.0.1 for tests: fresh host and client keys, nothing outside its folder.

It stands in for a Raspberry Pi reached over the network: the same sshd a Pi runs, the real ssh client, key
authentication only. Sessions get ``TMPDIR`` inside the server's folder, so a test can see what the agent
left behind there.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


@dataclass
class SshServer:
    """A running sshd and the files a client needs to reach it."""

    folder: Path
    port: int
    client_key: Path
    known_hosts: Path
    remote_tmp: Path
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        """``user@127.0.0.1:port`` for ``--host``."""
        return f"{getpass.getuser()}@127.0.0.1:{self.port}"

    def ssh_options(self, *, key: Path | None = None, known_hosts: Path | None = None) -> list[str]:
        """``--ssh-option`` values that use this server's keys (never the user's own ~/.ssh)."""
        return [
            f"IdentityFile={key or self.client_key}",
            "IdentitiesOnly=yes",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "StrictHostKeyChecking=yes",
            "IdentityAgent=none",
        ]

    def cli_args(self, **options: Path) -> list[str]:
        """``--host ... --ssh-option ...`` arguments for the edgecnn CLI."""
        args = ["--host", self.host]
        for option in self.ssh_options(**options):
            args += ["--ssh-option", option]
        return args

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path) -> Path:
    """A new passphrase-less ed25519 key pair at ``path`` and ``path.pub``."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecnn-test", "-f", str(path)], check=True)
    return path


def start_sshd(folder: Path) -> SshServer:
    """Start sshd on a free loopback port, accepting only a key generated here.

    Raises:
        RuntimeError: sshd did not start listening.
    """
    folder.mkdir(parents=True, exist_ok=True)
    host_key = keygen(folder / "host_key")
    client_key = keygen(folder / "client_key")
    shutil.copyfile(client_key.with_suffix(".pub"), folder / "authorized_keys")
    remote_tmp = folder / "remote_tmp"
    remote_tmp.mkdir()
    port = free_port()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.with_suffix('.pub').read_text().split(' edgecnn')[0]}\n")
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                "StrictModes no",  # the test folder lives under /tmp, which sshd would refuse
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                f"SetEnv TMPDIR={remote_tmp}",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    log = (folder / "sshd.log").open("wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return SshServer(folder, port, client_key, known_hosts, remote_tmp, process)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"sshd did not listen on port {port}: {(folder / 'sshd.log').read_text()}")


def sshd_missing() -> str | None:
    """Why an SSH test cannot run here, or None."""
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "openssh-server and openssh-client are not installed"
    if os.geteuid() != 0 and not os.access("/run/sshd", os.W_OK):
        return "sshd needs /run/sshd (run the tests as root, or create it)"
    return None
