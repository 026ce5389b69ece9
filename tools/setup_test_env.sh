#!/usr/bin/env bash
# Prepare this machine for edgecnn's target tests: system packages (among them the Arm GNU toolchain, newlib and
# qemu-system-arm for firmware), then the cached test environments
# (the emulated Raspberry Pi root and wheels, the x86 tflite-runtime, runtime-only and MediaPipe venvs, and
# tflite-support's wheel).
#
# Idempotent and quick when everything is already there. Run it as root on Debian 12 (or Ubuntu);
# without root it names the packages to install and goes on, and the tests that need them skip.
#
#   bash tools/setup_test_env.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

# Each entry: "package:command or file that proves it is installed".
wanted=(
    "openssh-server:/usr/sbin/sshd"
    "openssh-client:/usr/bin/ssh"
    "qemu-user-static:/usr/bin/qemu-aarch64-static"
    "chromium-headless-shell:/usr/bin/chromium-headless-shell"
    "adb:/usr/bin/adb"
    "gcc:/usr/bin/gcc"
    # Firmware for the micro target: the host build, and Cortex-M builds run on qemu's mps2 boards.
    "g++:/usr/bin/g++"
    "make:/usr/bin/make"
    "gcc-arm-none-eabi:/usr/bin/arm-none-eabi-g++"
    "libnewlib-arm-none-eabi:/usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/librdimon.a"
    "libstdc++-arm-none-eabi-newlib:/usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/libstdc++.a"
    "qemu-system-arm:/usr/bin/qemu-system-arm"
)
# Debian splits venv/ensurepip out of python3; the runtime venvs need it.
if ! "$python" -c "import ensurepip, venv" >/dev/null 2>&1; then
    wanted+=("python3-venv:/nonexistent/python3-venv-check")
fi

missing=()
for entry in "${wanted[@]}"; do
    package="${entry%%:*}"
    proof="${entry#*:}"
    if [[ ! -e "$proof" ]] && ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "setup_test_env: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || { echo "setup_test_env: apt-get update failed (is a Debian mirror reachable?)" >&2; exit 1; }
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || { echo "setup_test_env: apt-get install ${missing[*]} failed" >&2; exit 1; }
    else
        echo "setup_test_env: missing ${missing[*]}: install them as root (apt-get install ${missing[*]}); the tests that need them will skip" >&2
    fi
fi

exec "$python" "$here/test_envs.py" all
