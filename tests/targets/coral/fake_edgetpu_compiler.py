"""A stand-in for ``edgetpu_compiler`` in tests (the real one ships only from Coral's apt repository).

It takes the real command line (``-s -o OUT_DIR MODEL``), prints a report in compiler 16.0's format (the
lines of real reports in tests/targets/coral/test_compiler_report.py) with the model's own operators from its
flatbuffer, and writes ``<stem>_edgetpu.tflite`` (the input's bytes: there is no Edge TPU to compile for)
and ``<stem>_edgetpu.log``. ``FAKE_EDGETPU_COMPILER=not-quantized`` makes it refuse the model the way
compiler 14.1 refuses a float model, exiting 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

from edgecnn.model.flatbuffer import read_flatbuffer

VERSION = "16.0.384591198"


def main() -> int:
    parser = argparse.ArgumentParser(prog="edgetpu_compiler")
    parser.add_argument("-s", "--show_operations", action="store_true")
    parser.add_argument("-o", "--out_dir", default=".")
    parser.add_argument("model")
    args = parser.parse_args()
    model = Path(args.model)
    print(f"Edge TPU Compiler version {VERSION}")
    if os.environ.get("FAKE_EDGETPU_COMPILER") == "not-quantized":
        print(f"Invalid model: {model.name}\nModel not quantized")
        return 1
    out = Path(args.out_dir) / f"{model.stem}_edgetpu.tflite"
    log = out.with_suffix(".log")
    shutil.copyfile(model, out)
    ops = Counter(op.name for op in read_flatbuffer(model).operators)
    table = ["Operator                       Count      Status", ""]
    table += [f"{name:<31}{count:<11}Mapped to Edge TPU" for name, count in sorted(ops.items())]
    size = model.stat().st_size / 1024
    print(
        "Started a compilation timeout timer of 180 seconds.\n\n"
        "Model compiled successfully in 412 ms.\n\n"
        f"Input model: {model}\nInput size: {size:.2f}KiB\nOutput model: {out}\nOutput size: {size:.2f}KiB\n"
        f"On-chip memory used for caching model parameters: {size:.2f}KiB\n"
        "On-chip memory remaining for caching model parameters: 7.73MiB\n"
        "Off-chip memory used for streaming uncached model parameters: 0.00B\n"
        "Number of Edge TPU subgraphs: 1\n"
        f"Total number of operations: {sum(ops.values())}\n"
        f"Operation log: {log}\n\n" + "\n".join(table) + "\n"
    )
    log.write_text(f"Edge TPU Compiler version {VERSION}\nInput: {model}\nOutput: {out}\n\n" + "\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
