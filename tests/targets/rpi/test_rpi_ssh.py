"""``--target rpi --host``: a real sshd on loopback, the real ssh client, edgecnn in a runtime-only environment.

The "Pi" is this machine reached over SSH, with edgecnn installed in a virtual environment that has no
TensorFlow (built by tools/test_envs.py). Results through SSH must equal local runs with the same runtime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from envs import missing, require
from helpers import copy_subset, run_cli
from targets.rpi.sshd import SshServer, keygen, sshd_missing, start_sshd


@pytest.fixture(scope="module")
def remote_edgecnn() -> str:
    """edgecnn in the runtime-only environment (no TensorFlow) that plays the Pi's installation."""
    return str(require("x86_venv_runtime") / "bin" / "edgecnn")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    reason = sshd_missing()
    if reason:
        missing(reason)
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, photos_test: Path) -> Path:
    """3 test photos from each of 10 classes."""
    return copy_subset(photos_test, tmp_path_factory.mktemp("images"), per_class=3)


def _remote_args(sshd: SshServer, remote_edgecnn: str, **options: Path) -> list[str]:
    return ["--target", "rpi", *sshd.cli_args(**options), "--remote-edgecnn", remote_edgecnn]


def _json(result: object) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _agent_folders(sshd: SshServer) -> list[str]:
    """What the agent left in the Pi's temporary folder. Its runs' folders live under ``edgecnn-<uid>``, which stays
    (the next run cleans stale ones there): what is inside it counts, not the folder itself."""
    found = []
    for entry in sshd.remote_tmp.iterdir():
        if entry.is_dir() and entry.name == f"edgecnn-{os.getuid()}":
            found += [f"{entry.name}/{inner.name}" for inner in entry.iterdir()]
        else:
            found.append(entry.name)
    return sorted(found)


def test_run_over_ssh_equals_the_local_run(
    sshd: SshServer, remote_edgecnn: str, models: dict[str, Path], images: Path
) -> None:
    model = models["int8"]
    local = _json(run_cli("run", "--target", "rpi", model, images, "--top-k", "10", "--json"))
    remote = _json(run_cli("run", *_remote_args(sshd, remote_edgecnn), model, images, "--top-k", "10", "--json"))
    assert remote["runtime"] == f"ai-edge-litert on {sshd.host.rsplit(':', 1)[0]}"
    assert remote["target"] == f"rpi {sshd.host.rsplit(':', 1)[0]}"
    assert remote["num_images"] == local["num_images"] == 30
    assert remote["predictions"] == local["predictions"]  # every score of every image, exactly
    assert _agent_folders(sshd) == []  # the agent removed the bundle it was sent


def test_validate_over_ssh_equals_the_local_validation(
    sshd: SshServer, remote_edgecnn: str, models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    common = ["-r", models["float"], "-c", models["int8"], "--max-drop", "100", "--json"]
    local = _json(run_cli("validate", images, "--target", "rpi", *common))
    remote = _json(run_cli("validate", images, *_remote_args(sshd, remote_edgecnn), *common))
    for key in ("num_images", "reference_accuracy", "candidate_accuracy", "agreement", "candidate_confusion"):
        assert remote[key] == local[key], key
    assert remote["candidate_runtime"].startswith("ai-edge-litert on ")
    assert _agent_folders(sshd) == []


def test_bench_and_check_over_ssh(sshd: SshServer, remote_edgecnn: str, models: dict[str, Path], images: Path) -> None:
    model = models["int8"]
    args = _remote_args(sshd, remote_edgecnn)
    bench = _json(run_cli("bench", *args, model, "--runs", "7", "--warmup", "2", "--batch", "4", "--json"))
    assert (bench["runs"], bench["warmup"], bench["batch"], bench["threads"]) == (7, 2, 4, 4)
    assert bench["runtime"] == "ai-edge-litert" and bench["target"].startswith("rpi ")
    assert bench["model"] == str(model) and bench["inputs"] == "random"
    ms = bench["latency_ms"]
    assert 0 < ms["min"] <= ms["p50"] <= ms["p90"] <= ms["max"]
    assert bench["throughput"] == pytest.approx(4 * 1000.0 / ms["mean"], rel=1e-6)
    real = _json(run_cli("bench", *args, model, "--runs", "3", "--images", images, "--json"))
    assert real["inputs"] == "images:30"

    local = _json(run_cli("check", "--target", "rpi", model, "--json"))
    remote = _json(run_cli("check", *args, model, "--json"))
    assert remote["findings"] == local["findings"] and remote["passed"]
    assert _agent_folders(sshd) == []


def test_bench_and_check_over_ssh_without_a_sidecar(
    sshd: SshServer, remote_edgecnn: str, models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    """A model from elsewhere (no sidecar) goes to the Pi alone: the agent checks it and times it on random inputs."""
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(models["int8"].read_bytes())
    args = _remote_args(sshd, remote_edgecnn)
    bench = _json(run_cli("bench", *args, bare, "--runs", "3", "--warmup", "1", "--json"))
    assert bench["inputs"] == "random" and bench["target"].startswith("rpi ") and bench["model"] == str(bare)
    assert [(t["dtype"], t["shape"]) for t in bench["input_tensors"]] == [("int8", [1, 32, 32, 3])]
    remote = _json(run_cli("check", *args, bare, "--json"))
    local = _json(run_cli("check", "--target", "rpi", bare, "--json"))
    assert remote["findings"] == local["findings"] and remote["passed"]
    assert "no sidecar" in next(f["message"] for f in remote["findings"] if f["code"] == "model")
    refused = run_cli("bench", *args, bare, "--images", images)
    assert refused.exit_code == 2 and "--images needs the model's preprocessing" in refused.stderr
    assert _agent_folders(sshd) == []


def test_unreachable_host(models: dict[str, Path], images: Path, tmp_path: Path) -> None:
    from targets.rpi.sshd import free_port

    out = tmp_path / "report.json"
    result = run_cli(
        "validate", images, "--target", "rpi", "--host", f"pi@127.0.0.1:{free_port()}",
        "--ssh-option", "UserKnownHostsFile=/dev/null", "--ssh-option", "StrictHostKeyChecking=no",
        "-r", models["float"], "-c", models["int8"], "--json-out", out,
    )  # fmt: skip
    assert result.exit_code == 3
    assert result.stderr.startswith("edgecnn: error: cannot reach pi@127.0.0.1 over SSH (")
    assert "Connection refused" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written here


def test_authentication_failure(
    sshd: SshServer, remote_edgecnn: str, models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    stranger = keygen(tmp_path / "stranger")  # a key the server does not know
    result = run_cli("run", *_remote_args(sshd, remote_edgecnn, key=stranger), models["int8"], images)
    assert result.exit_code == 3
    assert "SSH authentication to" in result.stderr and "ssh-copy-id" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_host_key(
    sshd: SshServer, remote_edgecnn: str, models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = run_cli("bench", *_remote_args(sshd, remote_edgecnn, known_hosts=empty), models["int8"])
    assert result.exit_code == 3 and "host key of" in result.stderr and "known_hosts" in result.stderr


def test_edgecnn_missing_on_the_pi(sshd: SshServer, models: dict[str, Path], images: Path) -> None:
    result = run_cli(
        "run", "--target", "rpi", *sshd.cli_args(), "--remote-edgecnn", "/opt/nowhere/bin/edgecnn",
        models["int8"], images,
    )  # fmt: skip
    assert result.exit_code == 3
    assert "edgecnn is not installed on" in result.stderr
    assert "pip install edgecnn==" in result.stderr and "--remote-edgecnn" in result.stderr
    # With the default command name: sshd's PATH has no edgecnn either.
    plain = run_cli("check", "--target", "rpi", *sshd.cli_args(), models["int8"])
    assert plain.exit_code == 3 and "edgecnn is not installed on" in plain.stderr


def test_a_dropped_connection_leaves_nothing_on_the_pi(
    sshd: SshServer, remote_edgecnn: str, models: dict[str, Path]
) -> None:
    """The ssh client dies mid-session (a laptop closed, a cable pulled): the agent still cleans up."""
    from edgecnn.targets.rpi.ssh import SshHost
    from edgecnn.targets.rpi.target import remote_runner

    host = SshHost.parse(sshd.host, options=sshd.ssh_options(), edgecnn=remote_edgecnn)
    runner = remote_runner(host, models["int8"], threads=1)
    assert len(_agent_folders(sshd)) == 1  # the bundle is on the "Pi" while the session lasts
    runner._session._process.kill()  # the connection drops without a goodbye
    deadline = time.monotonic() + 20  # only against a hang: the assertion is on the folders
    while _agent_folders(sshd) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _agent_folders(sshd) == []
    runner.close()


def test_a_chatty_login_is_reported_not_hung(
    sshd: SshServer, remote_edgecnn: str, models: dict[str, Path], tmp_path: Path
) -> None:
    """A device whose shell prints before edgecnn starts: one clear line, not a client left waiting for a reply.

    The real CLI runs as a process of its own; if it hangs, the timeout kills it (and its ssh) and fails the test.
    """
    chatty = tmp_path / "chatty-edgecnn"
    chatty.write_text(f"#!/bin/sh\necho 'Welcome to the Pi!'\nexec {remote_edgecnn} \"$@\"\n")
    chatty.chmod(0o755)
    args = [str(a) for a in (*_remote_args(sshd, str(chatty)), models["int8"])]
    command = [sys.executable, "-m", "edgecnn", "check", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the CLI and the ssh it started
        process.communicate()
        pytest.fail("edgecnn check hung on a login that prints before edgecnn starts", pytrace=False)
    assert process.returncode == 3, stderr
    assert "unexpected output from" in stderr and "Welcome" in stderr and len(stderr.strip().splitlines()) == 1
