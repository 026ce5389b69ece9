#!/bin/bash
# `edgecnn validate` at an earlier commit against this checkout, on the same models and images: wall seconds and
# peak RSS of each, as fresh processes, interleaved, round 0 untimed; prints the medians and their ratio.
#
#   bash tools/bench/validate_commits.sh BEFORE_COMMIT MODEL.keras MODEL_int8.tflite TEST_DIR [ROUNDS]
#
# The earlier commit is checked out in a temporary git worktree (removed afterwards) and run with this venv's
# Python and packages, from a neutral folder so that neither tree's edgecnn shadows the other's.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 BEFORE_COMMIT MODEL.keras MODEL_int8.tflite TEST_DIR [ROUNDS]" >&2; exit 2; }
before=$1; keras=$(realpath "$2"); int8=$(realpath "$3"); data=$(realpath "$4"); rounds=${5:-4}
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$(command -v python)}
work=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$work/before" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$repo" worktree add -q --detach "$work/before" "$before"
cd "$work"
for round in $(seq 0 "$rounds"); do
  for side in before after; do
    tree=$repo; [ "$side" = before ] && tree=$work/before
    /usr/bin/time -o "$work/time" -f "%e %M" env PYTHONPATH="$tree" "$python" -m edgecnn validate "$data" \
      -r "$keras" -c "$int8" --json -q > "$work/$side.json" || [ $? -eq 1 ]  # 1: a gate failed, still timed
    [ "$round" -gt 0 ] && echo "$side $(cat "$work/time")" >> "$work/times"
  done
done
"$python" - "$work/times" "$before" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {side: (statistics.median(float(r[1]) for r in rows if r[0] == side),
              statistics.median(float(r[2]) for r in rows if r[0] == side) / 1024) for side in ("before", "after")}
for side, (seconds, mb) in med.items():
    print(f"{side:6} ({sys.argv[2] if side == 'before' else 'this checkout'}): {seconds:.2f} s, peak RSS {mb:.0f} MiB")
print(f"speed-up {med['before'][0] / med['after'][0]:.2f}x, memory {med['after'][1] / med['before'][1]:.2f}x")
PY
