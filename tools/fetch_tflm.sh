#!/usr/bin/env bash
# Fetch TensorFlow Lite Micro's C++ sources and the dependencies it pins, side by side, for building firmware:
#
#   bash tools/fetch_tflm.sh DIR        # then: export EDGECNN_TFLM_DIR=DIR (or edgecnn ... --tflm-dir DIR)
#
# Needs git and network access to GitHub (a machine without it can copy a DIR fetched elsewhere). The commits are the
# ones edgecnn's firmware is tested with: TFLM's own pins for its dependencies (its make files' *_download.sh name
# them). flatbuffers must be exactly v25.9.23: other versions fail a static assert in TFLM's generated schema.
# Idempotent: a tree already at its commit is left alone.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: bash tools/fetch_tflm.sh DIR" >&2
    exit 2
fi
dir="$1"
mkdir -p "$dir"

# folder  repository  commit or tag
pins=(
    "tflite-micro https://github.com/tensorflow/tflite-micro 90b983c2b3f1480642e040bbd2ddb37b998f3424"
    "flatbuffers https://github.com/google/flatbuffers v25.9.23"
    "gemmlowp https://github.com/google/gemmlowp 719139ce755a0f31cbf1c37f7f98adcc7fc9f425"
    "ruy https://github.com/google/ruy d37128311b445e758136b8602d1bbd2a755e115d"
    "cmsis-nn https://github.com/ARM-software/CMSIS-NN 4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae"
)

for pin in "${pins[@]}"; do
    read -r folder url ref <<<"$pin"
    target="$dir/$folder"
    if [[ -f "$target/.edgecnn-pin" ]] && [[ "$(cat "$target/.edgecnn-pin")" == "$ref" ]]; then
        echo "fetch_tflm: $folder already at $ref" >&2
        continue
    fi
    echo "fetch_tflm: $folder at $ref" >&2
    tmp="$(mktemp -d "$dir/.fetch-XXXXXX")"
    git -C "$tmp" init -q
    git -C "$tmp" fetch -q --depth 1 "$url" "$ref"
    git -C "$tmp" -c advice.detachedHead=false checkout -q FETCH_HEAD
    rm -rf "$tmp/.git"
    echo "$ref" >"$tmp/.edgecnn-pin"
    rm -rf "$target"
    mv "$tmp" "$target"
done
echo "fetch_tflm: done; export EDGECNN_TFLM_DIR=$(cd "$dir" && pwd)" >&2
