"""``edgecnn bench``: a model's latency and throughput on a target, with random inputs or real images.

Any ``.tflite`` works: a model without a sidecar (from another converter, any number of inputs and outputs) is
timed on random values of each input's own type and range (:mod:`edgecnn.runtime.bench`). Real images need the
model's preprocessing, which only a sidecar gives, so ``--images`` with such a model is refused (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.errors import UsageError
from edgecnn.model.flatbuffer import read_flatbuffer
from edgecnn.runtime.bench import BenchPlan, BenchResult, check_counts, no_preprocessing_message
from edgecnn.runtime.bundle import check_model_file, sidecar_info
from edgecnn.runtime.data import Sample, collect_images, load_images
from edgecnn.runtime.progress import Progress, no_progress

if TYPE_CHECKING:
    from edgecnn.targets.base import Target


def bench_model(
    model_path: str | os.PathLike[str],
    target: Target,
    *,
    images: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    runs: int = 50,
    warmup: int = 5,
    batch: int = 1,
    strict: bool = False,
    follow_links: bool = False,
    on_progress: Progress | None = None,
) -> BenchResult:
    """Benchmark a ``.tflite`` model on a target, with real images or random inputs.

    Args:
        model_path: the model; its sidecar supplies the preprocessing (a model without one gets random inputs of
            its own types and ranges).
        target: an :class:`~edgecnn.targets.base.Target`.
        images: image files or a folder (searched recursively) to preprocess and cycle through; random pixels
            when None. Unreadable files are skipped and counted.
        limit: use at most this many of those images (sorted by path).
        runs / warmup / batch: see :class:`~edgecnn.runtime.bench.BenchPlan`.
        strict: fail on an unreadable image instead of skipping it.
        follow_links: follow symbolic links that lead outside the ``images`` folder.
        on_progress: progress of loading images and of the timed runs.

    Raises:
        ModelFormatError: missing or corrupt model, or an invalid sidecar.
        UsageError: bad counts, or images for a model without a sidecar.
        DatasetError: no readable image among ``images``.
    """
    check_counts(runs=runs, warmup=warmup, batch=batch)  # before any image is read
    model = check_model_file(model_path, suffixes=(".tflite",))
    info = sidecar_info(model)
    if info is None:
        read_flatbuffer(model)  # a file that is not a TFLite model fails here, in one line, before any device
        if images is not None:
            raise UsageError(no_preprocessing_message(model))
    stage = on_progress or no_progress
    pool, skipped = None, []
    if images is not None and info is not None:
        paths, skipped = collect_images([images], follow_links=follow_links)
        if limit is not None:
            if limit < 1:
                raise UsageError(f"--image-limit must be at least 1, not {limit}")
            paths = paths[:limit]
        loaded = load_images(
            [Sample(p, -1) for p in paths],
            info.preprocessing,
            strict=strict,
            skipped=skipped,
            on_progress=stage("loading images", len(paths)),
        )
        pool, skipped = loaded.images, loaded.skipped
    plan = BenchPlan(pool, runs, warmup, batch)
    result = target.bench(Path(model), plan, on_progress=stage("timed runs", runs))
    return replace(result, skipped=list(skipped))
