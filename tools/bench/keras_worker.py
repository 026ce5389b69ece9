"""A Keras model timed in its own process, with TensorFlow's thread pools fixed before TensorFlow starts.

TensorFlow sizes its intra-op pool once per process, so the host section keeps one worker per thread count and
asks it for measurements over stdin/stdout, one JSON object per line:

    python tools/bench/keras_worker.py MODEL.keras THREADS
    → {"batch": 64, "runs": 20, "warmup": 3, "seed": 0}
    ← {"seconds": [...], "init_ms": ...}
    → {"matmul": 2048, "runs": 5, "warmup": 1}   (TensorFlow's float32 matrix product, seconds of each)
    ← {"seconds": [...]}
    → {"predict": "images.npy"}            (parity check: scores of real images, written to scores.npy beside them)
    ← {"scores": "images.scores.npy"}

The model is called through a ``tf.function`` traced once per batch size with a fixed input signature
(``model(x, training=False)``), the way a deployed TensorFlow graph runs; the input tensor is made outside the
timing, as edgecnn's protocol sets a TFLite input before each timed ``invoke``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tf_matmul_seconds(tf: Any, np: Any, size: int, runs: int, warmup: int) -> list[float]:
    """Seconds of each timed ``size`` x ``size`` float32 ``tf.linalg.matmul`` (a graph function, result fetched)."""
    from edgecnn.runtime.bench import time_runs

    a = tf.constant(np.random.default_rng(0).standard_normal((size, size), dtype=np.float32))
    product = tf.function(lambda: tf.linalg.matmul(a, a, transpose_b=True))
    return time_runs(lambda i: None, lambda: product().numpy(), runs=runs, warmup=warmup)


def main(argv: list[str]) -> None:
    """Serve measurements of ``argv[0]`` with ``argv[1]`` intra-op threads until stdin closes."""
    model_path, threads = Path(argv[0]), int(argv[1])
    import numpy as np
    import tensorflow as tf

    # Before any operation runs: afterwards TensorFlow refuses to change them.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from edgecnn.runtime.bench import batch_picker, random_images, time_runs
    from edgecnn.runtime.bundle import read_keras_info

    spec = read_keras_info(model_path).preprocessing
    model = keras.saving.load_model(model_path, compile=False)
    functions: dict[int, Any] = {}

    def compiled(batch: int) -> Any:
        if batch not in functions:
            signature = [tf.TensorSpec((batch, *spec.shape), tf.float32)]
            functions[batch] = tf.function(lambda x: model(x, training=False), input_signature=signature)
        return functions[batch]

    for line in sys.stdin:
        request = json.loads(line)
        if "matmul" in request:
            # TensorFlow's own float32 matrix product (Eigen/oneDNN) on this worker's thread count: a second
            # measure of what the CPU reaches, beside numpy's OpenBLAS.
            seconds = tf_matmul_seconds(tf, np, int(request["matmul"]), int(request["runs"]), int(request["warmup"]))
            reply: dict[str, Any] = {"seconds": seconds}
        elif "predict" in request:
            images = np.load(request["predict"])
            scores = np.concatenate([compiled(1)(tf.constant(image[None])).numpy() for image in images])
            out = str(Path(request["predict"]).with_suffix(".scores.npy"))
            np.save(out, scores)
            reply = {"scores": out}
        else:
            batch = int(request["batch"])
            start = time.perf_counter()
            function = compiled(batch)
            pick = batch_picker(random_images(spec, max(2 * batch, 64), seed=int(request.get("seed", 0))), batch)
            function(tf.constant(pick(0)))  # traces the graph: initialisation, as a TFLite runner's allocation
            init_ms = (time.perf_counter() - start) * 1000.0
            current: list[Any] = []

            def set_input(i: int, pick: Any = pick, current: list[Any] = current) -> None:
                current[:] = [tf.constant(pick(i))]

            def invoke(function: Any = function, current: list[Any] = current) -> None:
                function(current[0])

            seconds = time_runs(set_input, invoke, runs=int(request["runs"]), warmup=int(request["warmup"]))
            reply = {"seconds": seconds, "init_ms": init_ms}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
