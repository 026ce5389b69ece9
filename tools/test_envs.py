#!/usr/bin/env python3
"""Build and locate the cached environments that edgecnn's target tests run in.

Standard library only: it runs with any Python 3.11 before a virtual environment exists.

Everything lives under ``$EDGECNN_TEST_ENVS`` (default ``~/.cache/edgecnn-test-envs``)::

    arm64/root/                   Debian 12 arm64 python3.11 + libraries, unpacked, with a Raspberry Pi 4 CPU
                                  (fake proc/cpuinfo and sys/devices/system/cpu) for qemu-aarch64-static -L
    arm64/site-litert/            aarch64 wheels, unzipped: ai-edge-litert + numpy 2, pillow, click
    arm64/site-tflite-runtime/    aarch64 wheels, unzipped: tflite-runtime 2.14 + numpy 1, pillow, click
    arm64/sizes.json              installed size and versions of each Raspberry Pi flavour
    x86/venv-tflite-runtime/      x86 venv: tflite-runtime, numpy<2, pillow, click, edgecnn (editable, no deps)
    x86/venv-runtime/             x86 venv: edgecnn's core dependencies from pyproject.toml, edgecnn; no TensorFlow
    x86/venv-train/               x86 venv: the core, train and micro dependencies from pyproject.toml, no edgecnn
                                  (run it from this checkout with PYTHONPATH): a second, separately installed
                                  TensorFlow/Keras/numpy for the reproducible-build tests
    x86/venv-pip/                 the pip that downloads the aarch64 wheels
    wheels/                       tflite-support's wheel, unopened: its generated metadata reader is a test oracle
    x86/venv-mediapipe/           x86 venv: MediaPipe Tasks (0.10.21), the real consumer of TFLite Metadata; its
                                  pins (numpy 1.26, protobuf 4) clash with TensorFlow 2.21, so it lives apart

Each environment carries a marker file holding the hash of its recipe and is rebuilt only when that changes.
Folders are built beside their final place and renamed into it, so a half-built one is never used; a venv
cannot move (its scripts hold absolute paths), so it is built in place and its marker is written last.

Usage::

    python3 tools/test_envs.py all                      # build whatever is missing (tools/setup_test_env.sh)
    python3 tools/test_envs.py arm64 | x86              # one half
    python3 tools/test_envs.py paths                    # JSON of every path
    python3 tools/test_envs.py status                   # JSON: which environments are built and current
    python3 tools/test_envs.py arm64-python litert      # the command line that runs the emulated Pi's python
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE_VARIABLE = "EDGECNN_TEST_ENVS"
RECIPE_VERSION = 1
MARKER = ".edgecnn-test-env.json"

QEMU = "qemu-aarch64-static"
QEMU_CPU = "cortex-a72"
"""The Raspberry Pi 4's core. Without it qemu's default CPU claims SVE2/SME and ai-edge-litert computes wrong int8."""

ARM64_PACKAGES = (
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libbz2-1.0",
    "liblzma5",
    "libcrypt1",
    "libuuid1",
    "libssl3",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11-minimal",
)
"""Debian 12 arm64 packages that make a working python3.11 (what Raspberry Pi OS 64-bit, Debian 12, has)."""

# pip takes each --platform tag literally: leave one out and it silently picks an old release built for a tag
# that is listed. Debian 12 has glibc 2.36, so every manylinux tag up to 2_36 fits.
AARCH64_PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)))

FLAVOURS: dict[str, tuple[str, ...]] = {
    "litert": ("ai-edge-litert==2.3.0", "numpy>=2,<3", "pillow", "click"),
    # tflite-runtime 2.14 requires only numpy (>=1.23.2) and is built against numpy 1.
    "tflite-runtime": ("tflite-runtime==2.14.0", "numpy<2", "pillow", "click"),
}
"""aarch64 requirement sets, one per interpreter a Raspberry Pi can run edgecnn with."""

RUNTIME_OF_FLAVOUR = {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime"}
"""The edgecnn runtime name (``TFLiteRunner(runtime=...)``) of each flavour."""

EXPECTED_VERSIONS: dict[str, dict[str, str]] = {
    "litert": {"ai-edge-litert": "2.3.", "numpy": "2."},
    "tflite-runtime": {"tflite-runtime": "2.14.0", "numpy": "1."},
}
"""Version prefixes pip must have picked; anything else means a platform tag is missing."""

X86_TFLITE_RUNTIME = ("tflite-runtime==2.14.0", "numpy<2", "pillow", "click")
X86_MEDIAPIPE = ("mediapipe==0.10.21", "pillow")
TFLITE_SUPPORT = "tflite-support==0.4.4"
"""Its generated metadata reader checks the TFLite Metadata edgecnn writes; only the wheel file is kept (it pins
protobuf<4, so it does not install beside TensorFlow 2.21)."""

PI4_CORES = 4
PI4_MIDR = 0x410FD083  # Arm (0x41), Cortex-A72 (part 0xd08), r0p3: the Raspberry Pi 4's BCM2711
PI4_CPUINFO_CORE = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
PI4_MODEL = "Raspberry Pi 4 Model B Rev 1.1"
PI4_CPUINFO_BOARD = f"""Hardware\t: BCM2835
Revision\t: c03111
Serial\t\t: 100000000000e5ab
Model\t\t: {PI4_MODEL}
"""


class StepError(Exception):
    """A build step failed; the message is one line that names what failed."""


class NeedsRoot(StepError):
    """A step needs a system change only root can make; the tests that need it skip."""


# ----------------------------------------------------------------------------------------------- locations


def cache_root() -> Path:
    """The folder that holds every environment: ``$EDGECNN_TEST_ENVS`` or ``~/.cache/edgecnn-test-envs``."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgecnn-test-envs"


def _site_key(flavour: str) -> str:
    return "arm64_site_" + flavour.replace("-", "_")


def paths() -> dict[str, str]:
    """Every path the tests use, as strings (``qemu`` is empty when qemu-aarch64-static is not installed).

    Keys: ``cache``, ``repo``, ``qemu``, ``arm64_root``, ``arm64_site_litert``, ``arm64_site_tflite_runtime``,
    ``arm64_sizes``, ``x86_venv_tflite_runtime``, ``x86_venv_runtime``, ``x86_venv_train``, ``x86_venv_pip``,
    ``x86_venv_mediapipe``.
    """
    root = cache_root()
    result = {
        "cache": str(root),
        "repo": str(REPO),
        "qemu": shutil.which(QEMU) or "",
        "arm64_root": str(root / "arm64" / "root"),
        "arm64_sizes": str(root / "arm64" / "sizes.json"),
        "x86_venv_tflite_runtime": str(root / "x86" / "venv-tflite-runtime"),
        "x86_venv_runtime": str(root / "x86" / "venv-runtime"),
        "x86_venv_train": str(root / "x86" / "venv-train"),
        "x86_venv_pip": str(root / "x86" / "venv-pip"),
        "x86_venv_mediapipe": str(root / "x86" / "venv-mediapipe"),
        "wheels": str(root / "wheels"),
    }
    for flavour in FLAVOURS:
        result[_site_key(flavour)] = str(root / "arm64" / f"site-{flavour}")
    return result


def arm64_python(flavour: str) -> list[str]:
    """The command line (an ``env`` prefix) that runs the emulated Raspberry Pi's python3.11 with a flavour.

    Append a script and its arguments. ``PYTHONPATH`` holds the flavour's site folder and the repository, so
    edgecnn's pure-Python package is imported from this checkout.

    Raises:
        KeyError: an unknown flavour.
    """
    found = paths()
    site = found[_site_key(flavour)]
    root = found["arm64_root"]
    return [
        "env",
        f"QEMU_CPU={QEMU_CPU}",
        f"PYTHONPATH={site}{os.pathsep}{REPO}",
        "PYTHONNOUSERSITE=1",
        found["qemu"] or QEMU,
        "-L",
        root,
        f"{root}/usr/bin/python3.11",
    ]


def venv_python(venv: str | os.PathLike[str]) -> Path:
    """The python of a venv."""
    return Path(venv) / "bin" / "python"


# ----------------------------------------------------------------------------------------------- recipes


def _runtime_requirements() -> list[str]:
    """edgecnn's core dependencies, read from pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 (tests may import this module): read the one array needed
        project = re.split(r"^\[", text.split("\n[project]\n", 1)[-1], maxsplit=1, flags=re.M)[0]
        found = re.search(r"^dependencies\s*=\s*\[(.*?)\]", project, flags=re.M | re.S)
        return re.findall(r'"([^"]+)"', found.group(1)) if found else []
    return list(tomllib.loads(text)["project"]["dependencies"])


def _extra_requirements(*extras: str) -> list[str]:
    """The requirements of edgecnn's optional-dependency groups ``extras``, read from pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: read the arrays of the one table needed
        table = re.split(r"^\[", text.split("\n[project.optional-dependencies]\n", 1)[-1], maxsplit=1, flags=re.M)[0]
        found = {m.group(1): m.group(2) for m in re.finditer(r"^([\w-]+)\s*=\s*\[(.*?)\]", table, flags=re.M | re.S)}
        return [r for extra in extras for r in re.findall(r'"([^"]+)"', found.get(extra, ""))]
    groups = tomllib.loads(text)["project"]["optional-dependencies"]
    return [requirement for extra in extras for requirement in groups[extra]]


TRAIN_EXTRAS = ("train", "micro")
"""What ``x86_venv_train`` installs beside the core: conversion (TensorFlow, Keras, ai-edge-quantizer) and
TensorFlow Lite Micro (``edgecnn export micro``)."""


def _recipes() -> dict[str, dict[str, object]]:
    """What each environment is built from; a change to one rebuilds it."""
    recipes: dict[str, dict[str, object]] = {
        "arm64_root": {"packages": ARM64_PACKAGES, "pi": _pi4_files()},
        "x86_venv_pip": {"python": "3.11"},
        "x86_venv_tflite_runtime": {"requirements": X86_TFLITE_RUNTIME, "repo": str(REPO)},
        "x86_venv_runtime": {"requirements": _runtime_requirements(), "repo": str(REPO)},
        # No repo: edgecnn is not installed there (the tests run this checkout with PYTHONPATH).
        "x86_venv_train": {"requirements": [*_runtime_requirements(), *_extra_requirements(*TRAIN_EXTRAS)]},
        "x86_venv_mediapipe": {"requirements": X86_MEDIAPIPE},
        "wheels": {"requirements": (TFLITE_SUPPORT,)},
    }
    for flavour, requirements in FLAVOURS.items():
        recipes[_site_key(flavour)] = {"requirements": requirements, "platforms": AARCH64_PLATFORMS}
    for recipe in recipes.values():
        recipe["recipe_version"] = RECIPE_VERSION
    return recipes


def _recipe_hash(name: str) -> str:
    text = json.dumps(_recipes()[name], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_marker(folder: Path) -> dict[str, object] | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _write_marker(folder: Path, name: str, started: float, **details: object) -> None:
    marker = {"recipe": _recipe_hash(name), "built_seconds": round(time.monotonic() - started, 1), **details}
    (folder / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


def is_ready(name: str) -> bool:
    """True when the environment ``name`` (a key of :func:`paths`) is built from the current recipe."""
    marker = _read_marker(Path(paths()[name]))
    return marker is not None and marker.get("recipe") == _recipe_hash(name)


def status() -> dict[str, bool]:
    """Which environments are built and current, and whether qemu is installed."""
    ready = {name: is_ready(name) for name in _recipes()}
    ready["qemu"] = bool(paths()["qemu"])
    return ready


# ----------------------------------------------------------------------------------------------- helpers


def _run(command: Sequence[str | os.PathLike[str]], what: str, hint: str = "", **options: object) -> str:
    """Run a command, return its stdout; on failure raise :class:`StepError` with its error line and ``hint``."""
    try:
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False, **options)
    except OSError as exc:
        raise StepError(f"{what} failed: {exc.strerror or exc}: {command[0]}") from None
    if done.returncode != 0:
        advice = f" ({hint})" if hint else ""
        raise StepError(f"{what} failed (exit {done.returncode}): {_error_line(done.stderr + done.stdout)}{advice}")
    return done.stdout


_NOISE = ("subprocess-exited-with-error", "this error originates", "did not run successfully", "see above for output")


def _error_line(output: str) -> str:
    """The first line of a tool's output that says what went wrong (pip's and apt's styles), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    useful = [line for line in lines if not any(noise in line.lower() for noise in _NOISE)]
    errors = [line for line in useful if "error" in line.lower() or line.startswith("E: ")]
    if errors:
        return errors[0]
    return useful[-1] if useful else "no output"


@contextlib.contextmanager
def _build_folder(final: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``final``; on success it replaces ``final`` in two renames."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield temporary
        if final.exists():
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            final.rename(old)
            temporary.rename(final)
            shutil.rmtree(old)
        else:
            temporary.rename(final)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)


def _remove_leftovers(folder: Path) -> None:
    """Delete half-built folders that an interrupted build left behind."""
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(entry, ignore_errors=True)


def _tree_bytes(folder: Path) -> int:
    """Sum of the sizes of the regular files under ``folder`` (what ``du --apparent-size`` adds up)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _python311() -> str:
    """A CPython 3.11 to make venvs with: this one if it is 3.11 (its base, when run from a venv)."""
    if sys.version_info[:2] == (3, 11):
        base = getattr(sys, "_base_executable", "") or sys.executable
        return base
    found = shutil.which("python3.11")
    if not found:
        raise StepError("no python3.11 found: install Python 3.11 (tflite-runtime 2.14 has wheels up to 3.11)")
    return found


def _say(message: str) -> None:
    print(f"test_envs: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- arm64 root


def _pi4_files() -> dict[str, str]:
    """A Raspberry Pi 4's CPU and board description, as paths relative to the root and their text.

    The CPU files are those the cpuinfo library (used by XNNPACK) reads: without them the emulated program reads
    the x86 host's /proc/cpuinfo and /sys, and ai-edge-litert crashed. The device-tree model is where programs
    (edgecnn's rpi target too) read the board's name.
    """
    cpus = f"0-{PI4_CORES - 1}"
    mask = format((1 << PI4_CORES) - 1, "x")
    base = "sys/devices/system/cpu"
    files = {f"{base}/{name}": f"{cpus}\n" for name in ("possible", "present", "online")}
    files[f"{base}/offline"] = "\n"
    files[f"{base}/kernel_max"] = "255\n"
    for n in range(PI4_CORES):
        cpu = f"{base}/cpu{n}"
        files[f"{cpu}/online"] = "1\n"
        files[f"{cpu}/cpu_capacity"] = "1024\n"
        files[f"{cpu}/regs/identification/midr_el1"] = f"0x{PI4_MIDR:016x}\n"
        files[f"{cpu}/regs/identification/revidr_el1"] = "0x0000000000000000\n"
        for name, value in {
            "cpuinfo_max_freq": "1500000",
            "cpuinfo_min_freq": "600000",
            "cpuinfo_cur_freq": "1500000",
            "scaling_cur_freq": "1500000",
            "scaling_max_freq": "1500000",
            "scaling_min_freq": "600000",
            "scaling_governor": "ondemand",
            "related_cpus": " ".join(str(i) for i in range(PI4_CORES)),
            "affected_cpus": " ".join(str(i) for i in range(PI4_CORES)),
        }.items():
            files[f"{cpu}/cpufreq/{name}"] = f"{value}\n"
        for name, value in {
            "physical_package_id": "0",
            "core_id": str(n),
            "cluster_id": "0",
            "core_siblings": mask,
            "core_siblings_list": cpus,
            "package_cpus": mask,
            "package_cpus_list": cpus,
            "cluster_cpus": mask,
            "cluster_cpus_list": cpus,
            "thread_siblings": format(1 << n, "x"),
            "thread_siblings_list": str(n),
            "core_cpus": format(1 << n, "x"),
            "core_cpus_list": str(n),
        }.items():
            files[f"{cpu}/topology/{name}"] = f"{value}\n"
    cores = "\n".join(PI4_CPUINFO_CORE.format(n=n) for n in range(PI4_CORES))
    files["proc/cpuinfo"] = f"{cores}\n{PI4_CPUINFO_BOARD}"
    for model in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        files[model] = PI4_MODEL + "\0"
    return files


def _ensure_arm64_apt() -> None:
    """Make apt able to download arm64 packages: the foreign architecture and its package lists."""
    for tool in ("dpkg", "apt-get", "apt-cache"):
        if not shutil.which(tool):
            raise StepError(f"{tool} not found: the arm64 root is built from Debian packages (Debian 12 or Ubuntu)")
    root = os.geteuid() == 0
    if "arm64" not in _run(["dpkg", "--print-foreign-architectures"], "dpkg --print-foreign-architectures").split():
        if not root:
            raise NeedsRoot("arm64 is not a dpkg architecture here: as root run dpkg --add-architecture arm64")
        _say("adding the arm64 dpkg architecture")
        _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
    probe = subprocess.run(["apt-cache", "show", "libc6:arm64"], capture_output=True, check=False)
    if probe.returncode != 0:
        if not root:
            raise NeedsRoot("apt has no arm64 package lists: as root run apt-get update")
        _say("apt-get update (arm64 package lists)")
        _run(["apt-get", "update", "-qq"], "apt-get update", "is a Debian mirror reachable?")


def _download_debs(folder: Path) -> list[Path]:
    """``apt-get download`` every arm64 package into ``folder``."""
    options = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    wanted = [f"{package}:arm64" for package in ARM64_PACKAGES]
    command = ["apt-get", "download", "-qq", *options, *wanted]
    try:
        _run(command, "apt-get download of the arm64 packages", cwd=folder)
    except StepError:
        if os.geteuid() != 0:
            raise
        # Package lists older than the mirror name files it no longer has: refresh them once and retry.
        _run(["apt-get", "update", "-qq"], "apt-get update", "is a Debian mirror reachable?")
        _run(command, "apt-get download of the arm64 packages", "is a Debian mirror reachable?", cwd=folder)
    debs = sorted(folder.glob("*.deb"))
    if len(debs) != len(ARM64_PACKAGES):
        raise StepError(f"apt-get download gave {len(debs)} packages, expected {len(ARM64_PACKAGES)}")
    return debs


def _check_arm64_python(root: Path) -> None:
    """Run the emulated python once (when qemu is installed) to prove the root works."""
    qemu = shutil.which(QEMU)
    if not qemu:
        _say(f"{QEMU} is not installed (apt-get install qemu-user-static): the arm64 root is not tried")
        return
    env = {**os.environ, "QEMU_CPU": QEMU_CPU, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    code = "import platform, ssl, zlib, ctypes, lzma, bz2; print(platform.machine())"
    out = _run([qemu, "-L", root, root / "usr/bin/python3.11", "-c", code], "the emulated python3.11", env=env)
    if out.strip() != "aarch64":
        raise StepError(f"the emulated python3.11 reports machine {out.strip()!r}, not aarch64")


def build_arm64_root() -> None:
    """The Debian 12 arm64 python3.11 root with a Raspberry Pi 4 CPU description."""
    name, final = "arm64_root", Path(paths()["arm64_root"])
    if is_ready(name):
        return
    started = time.monotonic()
    _ensure_arm64_apt()
    _say(f"building {final}")
    with _build_folder(final) as root, tempfile.TemporaryDirectory(dir=final.parent) as downloads:
        debs = _download_debs(Path(downloads))
        for deb in debs:
            _run(["dpkg-deb", "-x", deb, root], f"dpkg-deb -x {deb.name}")
        for relative, text in _pi4_files().items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        _check_arm64_python(root)
        _write_marker(root, name, started, packages=[deb.name for deb in debs])


# ----------------------------------------------------------------------------------------------- aarch64 sites


def _wheel_versions(wheels: Sequence[Path]) -> dict[str, str]:
    """``{distribution: version}`` from wheel file names (name-version-tags.whl), names normalized."""
    versions = {}
    for wheel in wheels:
        distribution, version = wheel.name.split("-")[:2]
        versions[distribution.lower().replace("_", "-")] = version
    return versions


def _check_versions(flavour: str, versions: dict[str, str]) -> None:
    for distribution, prefix in EXPECTED_VERSIONS[flavour].items():
        got = versions.get(distribution, "none")
        if not got.startswith(prefix):
            raise StepError(
                f"pip picked {distribution} {got} for {flavour} (expected {prefix}*): "
                "an aarch64 platform tag is missing"
            )


def _unpack_wheel(wheel: Path, site: Path) -> None:
    """Install a wheel by unzipping it: ``*.data/purelib`` and ``platlib`` go into the site folder too."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    for data in site.glob("*.data"):
        for scheme in ("purelib", "platlib"):
            if (data / scheme).is_dir():
                shutil.copytree(data / scheme, site, dirs_exist_ok=True)
        shutil.rmtree(data)  # scripts and headers are of no use to the tests


def _distribution_bytes(site: Path) -> dict[str, int]:
    """Installed bytes of each distribution, from the file sizes on disk of the files its RECORD lists."""
    sizes = {}
    for record in site.glob("*.dist-info/RECORD"):
        name = record.parent.name.split("-")[0].lower().replace("_", "-")
        total = 0
        for line in record.read_text().splitlines():
            path = site / line.rsplit(",", 2)[0]
            if path.is_file():
                total += path.stat().st_size
        sizes[name] = total
    return sizes


def _compile(site: Path) -> None:
    """Byte-compile like ``pip install`` does (the Pi writes the same cpython-311 files); faster under qemu too."""
    code = "import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0)"
    _run([_python311(), "-c", code, site], f"byte-compiling {site.name}")


def build_arm64_site(flavour: str) -> None:
    """Download a flavour's aarch64 wheels for CPython 3.11 and unzip them into its site folder."""
    name = _site_key(flavour)
    final = Path(paths()[name])
    if is_ready(name):
        return
    started = time.monotonic()
    pip = venv_python(paths()["x86_venv_pip"])
    _say(f"building {final}")
    with _build_folder(final) as site, tempfile.TemporaryDirectory(dir=final.parent) as downloads:
        platforms = [option for tag in AARCH64_PLATFORMS for option in ("--platform", tag)]
        target = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
        _run(
            [pip, "-m", "pip", "download", "--quiet", *target, *platforms, "--dest", downloads, *FLAVOURS[flavour]],
            f"pip download of the aarch64 {flavour} wheels",
            "is PyPI reachable?",
        )
        wheels = sorted(Path(downloads).glob("*.whl"))
        versions = _wheel_versions(wheels)
        _check_versions(flavour, versions)
        for wheel in wheels:
            _unpack_wheel(wheel, site)
        wheel_bytes = _tree_bytes(site)
        _compile(site)
        sizes = {
            "bytes": _tree_bytes(site),
            "bytes_without_pyc": wheel_bytes,
            "distributions": {
                dist: {"version": versions.get(dist, "?"), "bytes": size}
                for dist, size in sorted(_distribution_bytes(site).items())
            },
        }
        _write_marker(site, name, started, versions=versions, sizes=sizes)


def write_sizes() -> dict[str, object]:
    """Gather each built flavour's installed size and versions into ``arm64/sizes.json``."""
    sizes: dict[str, object] = {}
    for flavour in FLAVOURS:
        marker = _read_marker(Path(paths()[_site_key(flavour)]))
        if marker and "sizes" in marker:
            sizes[flavour] = {"runtime": RUNTIME_OF_FLAVOUR[flavour], **marker["sizes"]}  # type: ignore[dict-item]
    target = Path(paths()["arm64_sizes"])
    text = json.dumps(sizes, indent=2, sort_keys=True) + "\n"
    if sizes and (not target.exists() or target.read_text() != text):
        target.write_text(text)
    return sizes


# ----------------------------------------------------------------------------------------------- x86 venvs


def _build_venv(name: str, requirements: Sequence[str], *, editable: bool, check: str) -> None:
    """A venv of the base python3.11 with ``requirements`` (and edgecnn, editable, without its dependencies).

    A venv cannot be moved, so it is rebuilt in place; its marker, written last, is what makes it usable.
    """
    final = Path(paths()[name])
    if is_ready(name):
        return
    started = time.monotonic()
    _say(f"building {final}")
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _run([_python311(), "-m", "venv", final], f"python3.11 -m venv {final.name}", "is python3-venv installed?")
    python = venv_python(final)
    quiet = ["--quiet", "--disable-pip-version-check"]
    if requirements:
        _run(
            [python, "-m", "pip", "install", *quiet, *requirements],
            f"pip install into {final.name}",
            "is PyPI reachable?",
        )
    if editable:
        _run([python, "-m", "pip", "install", *quiet, "--no-deps", "-e", REPO], f"pip install -e {REPO}")
    if check:
        _run([python, "-c", check], f"importing in {final.name}")
    versions = json.loads(_run([python, "-m", "pip", "list", "--format=json"], f"pip list in {final.name}"))
    _write_marker(final, name, started, versions={v["name"].lower(): v["version"] for v in versions})


def build_x86_venvs() -> None:
    """The tflite-runtime venv, the runtime-only venv, the train venv and MediaPipe's venv."""
    _build_venv(
        "x86_venv_tflite_runtime",
        X86_TFLITE_RUNTIME,
        editable=True,
        check="import tflite_runtime.interpreter, edgecnn.runtime.interpreter",
    )
    _build_venv(
        "x86_venv_runtime",
        _runtime_requirements(),
        editable=True,
        check="import ai_edge_litert.interpreter, edgecnn.cli.main",
    )
    # edgecnn itself is not installed: the tests run this checkout's code with PYTHONPATH, so a code change
    # needs no rebuild, while TensorFlow, Keras and numpy are a second, separate install.
    _build_venv(
        "x86_venv_train",
        [*_runtime_requirements(), *_extra_requirements(*TRAIN_EXTRAS)],
        editable=False,
        check=f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "import tensorflow, keras, ai_edge_quantizer, tflite_micro, edgecnn.build.convert",
    )
    download_wheels()
    # No edgecnn inside: the consumer must read the metadata with its own code only.
    _build_venv(
        "x86_venv_mediapipe",
        X86_MEDIAPIPE,
        editable=False,
        check="from mediapipe.tasks.python.vision import ImageClassifier",
    )


def download_wheels() -> None:
    """Wheels the tests read files from without installing them: tflite-support's (its metadata reader)."""
    final = Path(paths()["wheels"])
    if is_ready("wheels"):
        return
    started = time.monotonic()
    _say(f"downloading into {final}")
    with _build_folder(final) as folder:
        _run(
            [_python311(), "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "-d", folder, TFLITE_SUPPORT],
            f"pip download {TFLITE_SUPPORT}",
            "is PyPI reachable?",
        )  # fmt: skip
        _write_marker(folder, "wheels", started, files=sorted(p.name for p in folder.glob("*.whl")))


def build_arm64() -> None:
    """The arm64 root, the pip that downloads wheels, both aarch64 sites, and sizes.json."""
    failures: list[StepError] = []
    for step in (build_arm64_root, lambda: _build_venv("x86_venv_pip", (), editable=False, check="")):
        try:
            step()
        except StepError as exc:
            failures.append(exc)
    if not is_ready("x86_venv_pip"):
        raise failures[0]
    for flavour in FLAVOURS:
        try:
            build_arm64_site(flavour)
        except StepError as exc:
            failures.append(exc)
    write_sizes()
    if failures:
        raise failures[0] if len(failures) == 1 else StepError("; ".join(str(f) for f in failures))


# ----------------------------------------------------------------------------------------------- command line


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One build at a time per cache folder."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for half in ("arm64", "x86"):
            _remove_leftovers(root / half)
        yield


def _build(steps: Sequence[str]) -> int:
    """Run build steps; print one line per failure. Returns the exit code."""
    actions = {"arm64": build_arm64, "x86": build_x86_venvs}
    failed = needs_root = 0
    with _locked():
        for step in steps:
            try:
                actions[step]()
            except NeedsRoot as exc:
                needs_root += 1
                _say(f"{step}: skipped: {exc} (the tests that need it skip)")
            except StepError as exc:
                failed += 1
                _say(f"{step}: FAILED: {exc}")
    ready = status()
    _say("ready: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in ready.items()))
    return 1 if failed or (needs_root and len(steps) == 1) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("arm64", help="the emulated Raspberry Pi: Debian arm64 root and aarch64 wheel sites")
    commands.add_parser("x86", help="the x86 venvs: tflite-runtime, runtime-only, train, MediaPipe")
    commands.add_parser("all", help="everything (what tools/setup_test_env.sh runs)")
    commands.add_parser("paths", help="print the paths as JSON")
    commands.add_parser("status", help="print which environments are built and current, as JSON")
    python = commands.add_parser("arm64-python", help="print the command line that runs the emulated python")
    python.add_argument("flavour", choices=sorted(FLAVOURS))
    args = parser.parse_args(argv)
    if args.command == "paths":
        print(json.dumps(paths(), indent=2))
        return 0
    if args.command == "status":
        print(json.dumps(status(), indent=2))
        return 0
    if args.command == "arm64-python":
        print(shlex.join(arm64_python(args.flavour)))
        return 0
    return _build(["arm64", "x86"] if args.command == "all" else [args.command])


if __name__ == "__main__":
    sys.exit(main())
