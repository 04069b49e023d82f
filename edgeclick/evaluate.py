"""RITM-protocol evaluation: simulated clicks, per-click IoU / Boundary IoU, NoC.

`evaluate_sample` drives one predictor (see `edgeclick.predictors`) through up to 20 clicks of RITM's
clicker; `evaluate` runs samples in this process or in spawned workers; `evaluate_dataset` adds torchrun
sharding (`edgeclick.distributed`: rank r takes samples r::world_size, rank 0 gathers); the results are
`edgeclick.results` types, which `edgeclick.report` writes. The command line is `runtimes/evaluate_cli.py`.
"""
from __future__ import annotations

import collections
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from edgeclick import contract, distributed
from edgeclick.clicks import Clicker
from edgeclick.data.layouts import LAYOUTS
from edgeclick.data.sample import IGNORE, Sample
from edgeclick.metrics import MAX_CLICKS, band_iou, boundary_band, boundary_width, iou
from edgeclick.predictors import Predictor
from edgeclick.results import EvalRun, Preview, SampleResult, keep_worst, make_preview

PRED_THRESHOLD: float = contract.PROB_THRESHOLD

Box = tuple[int, int, int, int]
"""Inclusive (row_min, row_max, col_min, col_max)."""

DATASET_FORMATS: tuple[str, ...] = ("auto", *LAYOUTS)



# --------------------------------------------------------------------------------------------------
# One sample
# --------------------------------------------------------------------------------------------------


def evaluate_sample(
    sample: Sample,
    predictor: Predictor,
    *,
    max_clicks: int = MAX_CLICKS,
    pred_thr: float = PRED_THRESHOLD,
    index: int = 0,
    preview_size: int = 256,
) -> tuple[SampleResult, Preview]:
    """Run RITM's click loop on one sample.

    Each step places the clicker's next click on the current error, asks the predictor with all clicks
    and the previous probability map, thresholds at `pred_thr` and scores the mask. All `max_clicks`
    clicks are made (RITM stops early at its target IoU, which NoC does not need but the mIoU curve does).

    Returns:
        The per-click record and a thumbnail of the final state.
    """
    gt = sample.gt
    valid = gt != IGNORE
    d = boundary_width(*gt.shape)
    gt_band = boundary_band(gt == 1, d)  # fixed for the sample, so computed once

    start = time.perf_counter()
    predictor.set_image(sample.image)
    set_image_seconds = time.perf_counter() - start

    clicker = Clicker(gt)
    pred = np.zeros(gt.shape, dtype=bool)
    prev: np.ndarray | None = None
    ious: list[float] = []
    bious: list[float] = []
    seconds: list[float] = []
    for _ in range(max_clicks):
        clicker.make_next_click(pred)
        start = time.perf_counter()
        probs = predictor.predict(list(clicker.clicks), prev)
        seconds.append(time.perf_counter() - start)
        probs = np.asarray(probs, dtype=np.float32)
        if probs.shape != gt.shape:
            raise ValueError(f"{sample.name}: predictor returned {probs.shape}, expected {gt.shape}")
        pred = probs > pred_thr
        prev = probs
        ious.append(iou(pred, gt))
        bious.append(band_iou(boundary_band(pred, d), gt_band, valid))

    result = SampleResult(index, sample.name, list(clicker.clicks), ious, bious, seconds, set_image_seconds)
    return result, make_preview(sample, pred, clicker.clicks, ious[-1] if ious else 0.0, preview_size)


# --------------------------------------------------------------------------------------------------
# Many samples: this process, spawned workers, torchrun ranks
# --------------------------------------------------------------------------------------------------


_WORKER_STATE: dict[str, Any] = {}


def _init_worker(factory: Callable[[], Predictor], options: dict[str, Any], threads: int) -> None:
    """Pool initializer: build this process's own predictor once."""
    _WORKER_STATE["options"] = options
    try:
        _WORKER_STATE["predictor"] = factory()
    except Exception as error:  # noqa: BLE001 - re-raised by the first task, in the parent
        # A failing initializer makes multiprocessing.Pool respawn workers forever; a failing task
        # reaches the parent as an exception instead.
        _WORKER_STATE["error"] = error
    if "torch" in sys.modules:  # K workers each using every core would oversubscribe the CPU
        sys.modules["torch"].set_num_threads(threads)


def _work(item: tuple[int, Sample]) -> tuple[SampleResult, Preview]:
    if "error" in _WORKER_STATE:
        raise RuntimeError("building the predictor in a worker failed") from _WORKER_STATE["error"]
    index, sample = item
    return evaluate_sample(sample, _WORKER_STATE["predictor"], index=index, **_WORKER_STATE["options"])


def _in_order(pool: Any, items: Iterable[tuple[int, Sample]], depth: int) -> Iterator[tuple[SampleResult, Preview]]:
    """Results of `_work` over `items` in order, with at most `depth` tasks submitted ahead."""
    pending: collections.deque[Any] = collections.deque()
    for item in items:
        pending.append(pool.apply_async(_work, (item,)))
        if len(pending) >= depth:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def evaluate_indexed(
    items: Iterable[tuple[int, Sample]],
    predictor_factory: Callable[[], Predictor],
    *,
    max_clicks: int = MAX_CLICKS,
    pred_thr: float = PRED_THRESHOLD,
    workers: int = 1,
    worst_k: int = 8,
    progress: bool = True,
    total: int | None = None,
) -> EvalRun:
    """Evaluate (index, sample) pairs here (workers ≤ 1) or in `workers` spawned processes.

    Workers receive samples one at a time in order and each builds its own predictor with the picklable
    `predictor_factory`, so results do not depend on the number of workers.
    """
    options = {"max_clicks": max_clicks, "pred_thr": pred_thr}
    start = time.perf_counter()
    results: list[SampleResult] = []
    previews: list[Preview] = []
    bar = tqdm(total=total, disable=not progress, desc="evaluate", unit="sample", dynamic_ncols=True)

    def collect(outputs: Iterable[tuple[SampleResult, Preview]]) -> None:
        nonlocal previews
        for result, preview in outputs:
            results.append(result)
            previews = keep_worst(previews, [preview], worst_k)
            bar.update(1)
            bar.set_postfix(iou=f"{result.iou[-1]:.3f}" if result.iou else "-")

    try:
        if workers <= 1:
            predictor = predictor_factory()
            collect(evaluate_sample(s, predictor, index=i, **options) for i, s in items)
        else:
            import multiprocessing

            threads = max(1, (os.cpu_count() or 1) // workers)
            pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (predictor_factory, options, threads))
            try:
                collect(_in_order(pool, items, depth=2 * workers))
            finally:
                # close + join, never terminate: Pool.terminate can deadlock while its task feeder is
                # blocked on the queue (seen with a failing worker); at most `depth` tasks are in flight.
                pool.close()
                pool.join()
    finally:
        bar.close()
    results.sort(key=lambda r: r.index)
    return EvalRun(results, previews, time.perf_counter() - start, max_clicks)


def evaluate(
    samples: Iterable[Sample],
    predictor_factory: Callable[[], Predictor],
    **kwargs: Any,
) -> EvalRun:
    """Evaluate samples in order (indices 0, 1, …); keyword arguments as `evaluate_indexed`."""
    if "total" not in kwargs and hasattr(samples, "__len__"):
        kwargs["total"] = len(samples)  # type: ignore[arg-type]
    return evaluate_indexed(enumerate(samples), predictor_factory, **kwargs)


def evaluate_dataset(
    dataset: Iterable[Sample],
    predictor_factory: Callable[[], Predictor],
    *,
    limit: int | None = None,
    workers: int = 1,
    max_clicks: int = MAX_CLICKS,
    pred_thr: float = PRED_THRESHOLD,
    worst_k: int = 8,
    progress: bool = True,
) -> EvalRun | None:
    """Evaluate a dataset (anything iterable over Sample with len()), sharded under torchrun.

    Under torchrun (RANK / WORLD_SIZE set) rank r evaluates samples r::world_size, possibly with
    `workers` processes of its own, and the ranks' results are gathered on rank 0.

    Returns:
        The whole run on rank 0 (or without torchrun); None on the other ranks.
    """
    rank, world = distributed.dist_env()
    n = len(dataset)  # type: ignore[arg-type]
    if limit is not None:
        n = min(n, limit)
    if world > 1 and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():  # one GPU per rank, whatever device the session picks by default
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    start = time.perf_counter()
    run = evaluate_indexed(
        distributed.shard(dataset, n, rank, world),
        predictor_factory,
        max_clicks=max_clicks,
        pred_thr=pred_thr,
        workers=workers,
        worst_k=worst_k,
        progress=progress and rank == 0,
        total=len(range(rank, n, world)),
    )
    # Decode-time skips are recorded by whichever rank touched the sample.
    run.skipped = [tuple(s) for s in getattr(dataset, "skipped", [])]  # type: ignore[misc]
    if world <= 1:
        return run
    gathered = distributed.gather((run.results, run.previews, run.skipped), rank, world)
    if gathered is None:
        return None
    results = sorted((r for part, _, _ in gathered for r in part), key=lambda r: r.index)
    previews = keep_worst([], (p for _, part, _ in gathered for p in part), worst_k)
    skipped = list(dict.fromkeys(s for _, _, part in gathered for s in part))  # union, first-seen order
    return EvalRun(results, previews, time.perf_counter() - start, max_clicks, skipped)
