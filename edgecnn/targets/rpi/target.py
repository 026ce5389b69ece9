"""The Raspberry Pi: on the Pi, the local runtime with Pi defaults; elsewhere, the Pi over SSH (``--host``).

On the Pi itself the model runs in ai-edge-litert or tflite-runtime (whichever is installed; no TensorFlow)
with 4 threads, one per Cortex-A core of a Pi 4 or 5. From a development machine, ``--host user@address``
starts ``edgecnn agent`` on the Pi over the system's OpenSSH client, sends it the bundle and preprocessed
images, and gets scores and timings back: inference and timing happen on the Pi, with the Pi's runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgecnn import __version__
from edgecnn.errors import TargetUnavailableError, UsageError
from edgecnn.runtime.bench import BenchPlan, BenchResult
from edgecnn.runtime.bundle import read_tflite_info
from edgecnn.runtime.interpreter import TFLiteRunner
from edgecnn.runtime.progress import ProgressFn
from edgecnn.runtime.runtimes import check_kernels, check_threads, installed_runtimes
from edgecnn.targets.base import Finding, Target
from edgecnn.targets.cpu import runtime_findings
from edgecnn.targets.facts import model_facts
from edgecnn.targets.rpi import PI_THREADS, pi_runtime
from edgecnn.targets.rpi.ssh import AgentSession, SshHost
from edgecnn.targets.session import AgentRunner, bench_in, send_bundle


class RpiTarget(Target):
    """A Raspberry Pi (64-bit Raspberry Pi OS): this machine if it is one, or ``remote`` over SSH.

    Args:
        threads: interpreter threads (default 4).
        host: the Pi to reach over SSH, ``user@address[:port]``; None runs here with the Pi's defaults.
        ssh_options: extra OpenSSH ``-o KEY=VALUE`` options.
        remote_edgecnn: the command that starts edgecnn on the Pi (default ``edgecnn``).
        kernels: ``default`` (XNNPACK) or ``reference`` (TFLite's reference kernels), on the Pi; None is
            ``default`` (:data:`~edgecnn.runtime.runtimes.KERNELS`).

    Raises:
        UsageError: a malformed host, option or command, SSH options without a host, or an unknown kernel set.
    """

    name = "rpi"

    def __init__(
        self,
        *,
        threads: int | None = None,
        host: str | None = None,
        ssh_options: Sequence[str] = (),
        remote_edgecnn: str | None = None,
        kernels: str | None = None,
    ) -> None:
        self.threads = check_threads(threads) or PI_THREADS
        self.kernels = check_kernels(kernels, target=self.name)
        if host is None and (ssh_options or remote_edgecnn):
            raise UsageError("--ssh-option and --remote-edgecnn need --host user@address")
        self.remote = (
            SshHost.parse(host, options=ssh_options, edgecnn=remote_edgecnn or "edgecnn") if host is not None else None
        )

    @property
    def where(self) -> str:
        return f"rpi {self.remote.destination}" if self.remote else "rpi"

    def check(self, model: Path) -> list[Finding]:
        if self.remote is not None:
            session, _ = _start(self.remote, model, self.threads, kernels=self.kernels, load=False)
            with closing(session):
                reply, _ = session.request({"op": "check", "threads": self.threads})
            return [Finding(f["severity"], f["code"], f["message"]) for f in reply["findings"]]
        runtime = pi_runtime() if installed_runtimes() else None
        findings = runtime_findings(model, runtime=runtime, threads=self.threads, kernels=self.kernels)
        quantization = model_facts(model).quantization
        if quantization in ("none", "float16"):
            findings.append(
                Finding(
                    "warning",
                    "float-model",
                    f"{'float32' if quantization == 'none' else 'float16'} weights computed in float: a full-integer "
                    "int8 model is about 4x smaller than float32; measure both on the Pi with edgecnn bench "
                    "--target rpi --host ...",
                )
            )
        return findings

    def open(self, model: Path) -> TFLiteRunner | AgentRunner:
        if self.remote is not None:
            return remote_runner(self.remote, model, threads=self.threads, kernels=self.kernels)
        return TFLiteRunner(model, num_threads=self.threads, runtime=pi_runtime(), kernels=self.kernels)

    def open_timed(self, model: Path) -> TFLiteRunner:
        """On the Pi (here, or in its agent for ``--host``): any ``.tflite``, sidecar or not."""
        return TFLiteRunner(
            model, num_threads=self.threads, runtime=pi_runtime(), kernels=self.kernels, require_sidecar=False
        )

    def bench(self, model: Path, plan: BenchPlan, *, on_progress: ProgressFn | None = None) -> BenchResult:
        if self.remote is None:
            return super().bench(model, plan, on_progress=on_progress)
        # Not opened at load: the agent's bench loads and times its own interpreter (any .tflite, sidecar or not).
        session, _ = _start(self.remote, model, self.threads, kernels=self.kernels, load=False)
        with closing(session):
            result = bench_in(session, plan, on_progress=on_progress)
        # The device timed it; name the model as the user knows it, and where it ran.
        return replace(result, target=self.where, model=str(model))


def _start(
    remote: SshHost, model: Path, threads: int, *, kernels: str = "default", load: bool = True
) -> tuple[AgentSession, dict[str, Any]]:
    """An agent session that has been sent the bundle for ``threads`` and ``kernels`` (and has loaded it, unless
    ``load`` is False), and its reply.

    The kernel set travels as the load's ``kernels`` option, as a child process's target options do, and only when
    it is not the default: an agent from before ``--kernels`` runs the default kernels as it always did, and one
    that does not list ``kernels`` in its hello is refused here for any other set.

    Raises:
        TargetUnavailableError: the Pi's edgecnn is too old for ``kernels``.
    """
    session = AgentSession(remote)
    if kernels != "default" and kernels not in _listed(session.hello.get("kernels")):
        session.close()
        raise TargetUnavailableError(
            f"edgecnn {session.hello.get('version', '?')} on {remote.destination} cannot run --kernels {kernels}: "
            f"it is older than the option; install the same version on both (pip install edgecnn=={__version__})"
        )
    options = {} if kernels == "default" else {"kernels": kernels}
    return session, send_bundle(session, model, target="rpi", threads=threads, options=options, load=load)


def _listed(value: object) -> list[str]:
    """The names in a list of an agent's hello (none, from an agent that does not send that list)."""
    return [str(v) for v in value] if isinstance(value, list) else []


def remote_runner(remote: SshHost, model: Path, *, threads: int, kernels: str = "default") -> AgentRunner:
    """A runner whose model runs on a Pi with ``kernels``: images go over SSH as float32 arrays, scores come back."""
    info = read_tflite_info(model)
    session, loaded = _start(remote, model, threads, kernels=kernels)
    return AgentRunner(session, model, runtime=f"{loaded.get('runtime', '?')} on {remote.destination}", info=info)
