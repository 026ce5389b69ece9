"""A stand-in for the adb server, for tests: the real ``adb`` client talks to it over 127.0.0.1.

It speaks the host side of adb's smart-socket protocol (what the client sends to the server on port 5037;
AOSP's ``SERVICES.TXT``, ``SYNC.TXT`` and ``shell_protocol.h`` describe it), so ``adb devices``, ``adb shell``,
``adb push`` and ``adb pull`` run unchanged with ``ANDROID_ADB_SERVER_PORT`` pointing here. Its devices are
folders on this machine: a shell command runs under ``/bin/sh -c`` with ``/data/local/tmp`` rewritten into the
device's folder, and sync paths map into that folder too.

Wire format, in short: every request is 4 hex digits of length and then the text. The server answers ``OKAY``
or ``FAIL`` plus a length-prefixed message; ``host:version`` and the other queries answer ``OKAY`` plus a
length-prefixed string. ``host:transport:SERIAL`` (or ``host:tport:...``, which adds an 8-byte transport id)
picks a device; the next request on the same connection is then a device service (``shell...:``, ``exec:``,
``sync:``), after which the connection carries that service's own stream.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

SERVER_VERSION = 41  # adb 1.0.41 (Debian's 29.0.6): any other answer makes the client kill and restart the server
DEVICE_TMP = "/data/local/tmp"
SYNC_DATA_MAX = 64 * 1024
T = TypeVar("T")
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4  # shell v2 packet ids


class AdbError(Exception):
    """A request the real server would refuse: the message goes back as ``FAIL`` and the client prints it."""


@dataclass
class FakeDevice:
    """One device as the server lists it; its file system is the folder ``root``."""

    serial: str
    root: Path
    state: str = "device"  # "device" | "unauthorized" | "offline"
    shell_v2: bool = True  # advertise shell_v2 (exit codes come back) or not (old devices)
    props: dict[str, str] = field(default_factory=dict)  # what `getprop NAME` prints on the device

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.host_path(DEVICE_TMP).mkdir(parents=True, exist_ok=True)

    @property
    def features(self) -> str:
        # As few as possible: without stat_v2/ls_v2 the client uses the v1 sync commands. fixed_push_mkdir tells
        # it that SEND creates missing folders, so a folder push does not add "mkdir" shell commands.
        return "shell_v2,fixed_push_mkdir" if self.shell_v2 else "fixed_push_mkdir"

    def host_path(self, device_path: str) -> Path:
        """Where the device path (absolute) lives on this machine."""
        return self.root / device_path.lstrip("/")

    def shell_env(self) -> dict[str, str]:
        """The environment of a device shell: this machine's, with the device's ``getprop`` first on PATH."""
        bin_dir = self.host_path("/system/bin")
        bin_dir.mkdir(parents=True, exist_ok=True)
        cases = "".join(f"  {shlex.quote(k)}) printf '%s\\n' {shlex.quote(v)} ;;\n" for k, v in self.props.items())
        listing = "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items()))
        script = (
            '#!/bin/sh\n# getprop of a fake adb device (tests/targets/android/adb_server.py)\ncase "$1" in\n'
            f"  '') printf '%s' {shlex.quote(listing)} ;;\n{cases}  *) printf '%s\\n' \"$2\" ;;\nesac\n"
        )
        # Written for every command (props may change between commands), atomically: commands may run at once.
        tmp = bin_dir / f".getprop.{threading.get_ident()}"
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(bin_dir / "getprop")
        return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


class AdbServer:
    """Context manager: ``with AdbServer([FakeDevice(...), ...]) as server:`` listens on a free 127.0.0.1 port."""

    def __init__(self, devices: list[FakeDevice] | None = None) -> None:
        # Read on every request (the caller's list, not a copy): tests may change it between commands.
        self.devices = devices if devices is not None else []
        self.commands: list[tuple[str, str]] = []  # (serial, shell command) of every shell/exec command
        self.requests: list[str] = []  # every service requested, in order (sync sub-commands not included)
        self.unknown: list[str] = []  # requests this stand-in does not implement
        self.port = 0
        self.env: dict[str, str] = {}
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._stopping = threading.Event()

    def __enter__(self) -> AdbServer:
        self._server = _TcpServer(("127.0.0.1", 0), _Connection)
        self._server.adb = self
        self.port = self._server.server_address[1]
        env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_SERIAL", "ADB_SERVER_SOCKET")}
        self.env = {**env, "ANDROID_ADB_SERVER_PORT": str(self.port)}  # those two would override -s / the port
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="adb-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        with self._lock:  # wake connections still blocked on a client or a command
            for sock in self._sockets:
                _quietly(sock.shutdown, socket.SHUT_RDWR)
            for process in self._processes:
                _kill(process)
        self._server.server_close()  # joins the connection threads
        self._thread.join()

    # -- host services ------------------------------------------------------------------------------------------

    def select(self, serial: str | None = None, transport_id: int | None = None) -> FakeDevice:
        """The device a request means, or the error the real server gives (transport.cpp acquire_one_transport)."""
        if transport_id is not None:
            error = f"no device with transport id '{transport_id}'"
            found = [d for d in self.devices if self.transport_id(d) == transport_id]
        elif serial is not None:
            error = f"device '{serial}' not found"
            found = [d for d in self.devices if d.serial == serial]
        else:
            error = "no devices/emulators found"
            found = list(self.devices)
        if len(found) > 1:
            raise AdbError("more than one device" if serial else "more than one device/emulator")
        if not found:
            raise AdbError(error)
        if found[0].state == "unauthorized":
            raise AdbError(
                "device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is "
                f"{os.environ.get('ADB_VENDOR_KEYS', 'not set')}\nTry 'adb kill-server' if that seems wrong.\n"
                "Otherwise check for a confirmation dialog on your device."
            )
        if found[0].state == "offline":
            raise AdbError("device offline")
        return found[0]

    def transport_id(self, device: FakeDevice) -> int:
        """A stable id per serial, as `adb devices -l` shows it."""
        with self._lock:
            return self._ids.setdefault(device.serial, len(self._ids) + 1)

    def list_devices(self, long: bool) -> str:
        """The text of ``host:devices`` / ``host:devices-l`` (the client prints its own header)."""
        text = ""
        for d in sorted(self.devices, key=lambda d: d.serial):  # the real server sorts by serial too
            if not long:
                text += f"{d.serial}\t{d.state}\n"
                continue
            # Only a connected device has sent its banner (product, model, device); the model keeps only [A-Za-z0-9].
            known = d.props if d.state == "device" else {}
            model = "".join(c if c.isalnum() else "_" for c in known.get("ro.product.model", ""))
            info = {"product": known.get("ro.product.name"), "model": model, "device": known.get("ro.product.device")}
            text += f"{d.serial:<22} {d.state}" + "".join(f" {k}:{v}" for k, v in info.items() if v)
            text += f" transport_id:{self.transport_id(d)}\n"
        return text

    def wait_for(self, request: str) -> bytes:
        """``adb wait-for-device`` (``host[-serial:S]:wait-for-any-device``): OKAY once the device is usable."""
        serial = request.removeprefix("host-serial:").rpartition(":")[0] if request.startswith("host-serial:") else None
        while not self._stopping.wait(0.05):
            try:
                self.select(serial)
                return b"OKAY"
            except AdbError as error:
                if "more than one" in str(error):
                    return b"FAIL" + _counted(str(error))
        return b"FAIL" + _counted("server stopped")

    def host_query(self, request: str) -> str:
        """Answer a ``host...:`` query that returns one string (raises AdbError for FAIL)."""
        prefix, _, command = request.partition(":")
        serial = transport_id = None
        if prefix == "host-serial":
            serial, _, command = command.rpartition(":")  # serials may contain ':' (ip:port), commands here do not
        elif prefix == "host-transport-id":
            number, _, command = command.partition(":")
            transport_id = int(number)
        if command == "version":
            return f"{SERVER_VERSION:04x}"
        if command in ("devices", "devices-l"):
            return self.list_devices(long=command == "devices-l")
        if command == "features":
            return self.select(serial, transport_id).features
        if command in ("get-serialno", "get-state"):
            device = self.select(serial, transport_id)
            return device.serial if command == "get-serialno" else device.state
        self.unknown.append(request)
        print(f"adb_server: unknown host request {request!r}", file=sys.stderr)
        raise AdbError("unknown host service")


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # so server_close() joins the connection threads
    adb: AdbServer


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: host requests, or a transport switch and then one device service."""

    server: _TcpServer
    request: socket.socket

    def handle(self) -> None:
        adb, sock = self.server.adb, self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small replies (DENT...) must not wait for ACKs
        with adb._lock:
            adb._sockets.add(sock)
        try:
            self.serve(adb)
        except AdbError as error:
            self.send(b"FAIL" + _counted(str(error)))
        except (EOFError, OSError):
            pass  # the client went away
        finally:
            # Orderly close: closing with unread input would send a reset, which can cost the client the tail of
            # our output. So end our side, let the client finish (it closes after reading), then close.
            _quietly(sock.shutdown, socket.SHUT_WR)
            sock.settimeout(5)
            while _quietly(sock.recv, 65536):
                pass
            with adb._lock:
                adb._sockets.discard(sock)

    def serve(self, adb: AdbServer) -> None:
        """Read the request(s) and run the service."""
        request = self.read_request()
        adb.requests.append(request)
        transport = request.removeprefix("host:")
        if "wait-for-" in request:
            self.send(b"OKAY")  # accepted; the second OKAY says the device is there
            self.send(adb.wait_for(request))
            return
        if not transport.startswith(("transport", "tport:")):
            self.send(b"OKAY" + _counted(adb.host_query(request)))
            return
        kind = transport.removeprefix("tport:").removeprefix("transport").lstrip("-:")
        if kind.startswith("serial:"):  # host:tport:serial:S
            device = adb.select(serial=kind.removeprefix("serial:"))
        elif kind.startswith("id:"):  # host:transport-id:N
            device = adb.select(transport_id=int(kind.removeprefix("id:")))
        elif kind in ("any", "usb", "local"):
            device = adb.select()
        else:  # host:transport:S
            device = adb.select(serial=kind)
        reply = b"OKAY"
        if transport.startswith("tport:"):  # the newer form answers with the transport id too
            reply += struct.pack("<Q", adb.transport_id(device))
        self.send(reply)

        service = self.read_request()
        adb.requests.append(service)
        name, _, argument = service.partition(":")
        options = name.split(",")
        if options[0] not in ("shell", "exec") and service != "sync:":
            adb.unknown.append(service)
            print(f"adb_server: unknown device service {service!r}", file=sys.stderr)
            raise AdbError(f"unknown service {name}")
        self.send(b"OKAY")
        if service == "sync:":
            self.sync(device)
            return
        adb.commands.append((device.serial, argument))
        if "v2" in options:  # shell,v2,TERM=xterm,raw:COMMAND
            self.shell_v2(adb, device, argument)
        else:  # shell:COMMAND (devices without shell_v2) or exec:COMMAND (adb exec-out)
            self.shell_raw(adb, device, argument)

    # -- shell ---------------------------------------------------------------------------------------------------

    def spawn(self, adb: AdbServer, device: FakeDevice, command: str, stderr: int) -> subprocess.Popen[bytes]:
        """Start the device shell running ``command`` (``/data/local/tmp`` mapped into the device's folder)."""
        command = command.replace(DEVICE_TMP, str(device.host_path(DEVICE_TMP)))
        argv = ["/bin/sh", "-c", command] if command else ["/bin/sh"]  # empty: `adb shell` reads commands
        process = subprocess.Popen(
            argv,
            cwd=device.root,
            env=device.shell_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, so stopping the server can kill all of it
        )
        with adb._lock:
            adb._processes.add(process)
        return process

    def shell_raw(self, adb: AdbServer, device: FakeDevice, command: str) -> None:
        """The old ``shell:``/``exec:`` service: stdout and stderr as one raw stream, no exit code."""
        process = self.spawn(adb, device, command, stderr=subprocess.STDOUT)
        assert process.stdin and process.stdout
        process.stdin.close()  # what the client sends here is not forwarded; the client gets EOF when we close
        try:
            while data := os.read(process.stdout.fileno(), SYNC_DATA_MAX):
                self.send(data)
        except OSError:
            _kill(process)  # the client went away: adbd ends the command then too
            raise
        finally:
            self.reap(adb, process)

    def shell_v2(self, adb: AdbServer, device: FakeDevice, command: str) -> None:
        """The shell v2 protocol: packets of (id byte, little-endian length, data), the last one the exit code."""
        process = self.spawn(adb, device, command, stderr=subprocess.PIPE)
        assert process.stdin and process.stdout and process.stderr
        lock = threading.Lock()  # two pumps write packets to one socket

        def packet(kind: int, data: bytes) -> None:
            with lock:
                self.send(struct.pack("<BI", kind, len(data)) + data)

        def pump(stream: int, kind: int) -> None:
            while data := os.read(stream, SYNC_DATA_MAX):
                _quietly(packet, kind, data)  # keep reading even if the client is gone, so the command can end

        def feed() -> None:  # client stdin packets to the command, then read the connection to its end
            stdin = process.stdin
            try:
                while True:
                    kind, size = struct.unpack("<BI", self.recv_exactly(5))
                    data = self.recv_exactly(size)
                    if kind == SHELL_STDIN and stdin and _quietly(stdin.write, data) is not None:
                        _quietly(stdin.flush)
                    elif kind == SHELL_CLOSE_STDIN and stdin:
                        _quietly(stdin.close)
                        stdin = None
            except (EOFError, OSError):
                _kill(process)  # the connection ended; if the command still runs, the client went away
            finally:
                if stdin:
                    _quietly(stdin.close)

        feeder = threading.Thread(target=feed, daemon=True)
        errors = threading.Thread(target=pump, args=(process.stderr.fileno(), SHELL_STDERR), daemon=True)
        feeder.start()
        errors.start()
        try:
            pump(process.stdout.fileno(), SHELL_STDOUT)
            errors.join()
            packet(SHELL_EXIT, bytes([self.reap(adb, process) & 0xFF]))
            _quietly(self.request.shutdown, socket.SHUT_WR)
        finally:
            feeder.join(timeout=5)  # feed() reads until the client closes (it does after the exit packet)

    def reap(self, adb: AdbServer, process: subprocess.Popen[bytes]) -> int:
        """Wait for a command; its exit code as a shell reports it (128 + signal when killed)."""
        code = process.wait()
        with adb._lock:
            adb._processes.discard(process)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream:
                _quietly(stream.close)
        return code if code >= 0 else 128 - code

    # -- sync (file transfer): 4-byte id, little-endian length, then data ------------------------------------------

    def sync(self, device: FakeDevice) -> None:
        """Serve STAT, LIST, SEND, RECV until QUIT (SYNC.TXT); v1 commands only, as no sync v2 feature is shown."""
        while True:
            command, size = struct.unpack("<4sI", self.recv_exactly(8))
            if command == b"QUIT":
                return
            path = self.recv_exactly(size).decode()
            local = device.host_path(path)
            if command == b"STAT":  # lstat; all zero when the path does not exist
                st = _quietly(os.lstat, local)
                self.sync_reply(b"STAT", *((st.st_mode, st.st_size, int(st.st_mtime)) if st else (0, 0, 0)))
            elif command == b"LIST":
                for entry in sorted(os.scandir(local), key=lambda e: e.name) if local.is_dir() else []:
                    st, name = entry.stat(follow_symlinks=False), entry.name.encode()
                    self.sync_reply(b"DENT", st.st_mode, st.st_size, int(st.st_mtime), len(name), data=name)
                self.sync_reply(b"DONE", 0, 0, 0, 0)
            elif command == b"SEND":
                self.receive_file(device, path)
            elif command == b"RECV":
                try:
                    with open(local, "rb") as f:
                        while data := f.read(SYNC_DATA_MAX):
                            self.sync_reply(b"DATA", len(data), data=data)
                    self.sync_reply(b"DONE", 0)
                except OSError as error:
                    self.sync_fail(f"open failed: {error.strerror}")
            else:
                raise AdbError(f"unknown sync command {command!r}")

    def receive_file(self, device: FakeDevice, spec: str) -> None:
        """SEND "path,mode": DATA chunks until DONE (whose length field is the mtime); then OKAY or FAIL."""
        path, _, mode = spec.rpartition(",")
        local = device.host_path(path)
        try:
            local.parent.mkdir(parents=True, exist_ok=True)  # as adbd does (the fixed_push_mkdir feature)
            f = open(local, "wb")  # noqa: SIM115 (kept open across the DATA packets)
        except OSError as e:
            f, error = None, f"{e.strerror}: {path}"
        while (packet := struct.unpack("<4sI", self.recv_exactly(8)))[0] == b"DATA":
            data = self.recv_exactly(packet[1])
            if f:
                f.write(data)
        if packet[0] != b"DONE":
            raise AdbError(f"unexpected {packet[0]!r} during SEND")
        if not f:
            return self.sync_fail(error)
        f.close()
        local.chmod(stat.S_IMODE(int(mode)))
        os.utime(local, (packet[1], packet[1]))
        self.sync_reply(b"OKAY", 0)

    def sync_reply(self, command: bytes, *fields: int, data: bytes = b"") -> None:
        """A sync packet: 4-byte id, little-endian 32-bit fields, then ``data``."""
        self.send(struct.pack(f"<4s{len(fields)}I", command, *fields) + data)

    def sync_fail(self, message: str) -> None:
        self.sync_reply(b"FAIL", len(message.encode()), data=message.encode())

    # -- bytes ---------------------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.request.sendall(data)

    def recv_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def read_request(self) -> str:
        """One request: 4 hex digits of length, then the text."""
        return self.recv_exactly(int(self.recv_exactly(4), 16)).decode()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill a command that still runs, with its process group (``sh -c`` may leave children holding the pipes)."""
    if process.poll() is None:
        _quietly(os.killpg, process.pid, signal.SIGKILL)


def _counted(text: str) -> bytes:
    """A string as the host protocol sends it: 4 hex digits of length first."""
    data = text.encode()
    return f"{len(data):04x}".encode() + data


def _quietly(function: Callable[..., T], *args: object) -> T | None:
    """Call ``function``; None when the socket or pipe is closed (OSError; ValueError for a closed Python file)."""
    try:
        return function(*args)
    except (OSError, ValueError):
        return None
