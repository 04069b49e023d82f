"""RITM-protocol evaluation: simulated clicks, per-click IoU / Boundary IoU, NoC.

`evaluate_sample` drives one predictor (see `edgeclick.predictors`) through up to 20 clicks of RITM's
clicker; `evaluate` runs samples in this process or in spawned workers; `evaluate_dataset` adds torchrun
sharding (rank r takes samples r::world_size, rank 0 gathers); `edgeclick.report` writes the results.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from edgeclick import contract
from edgeclick.clicks import Click, Clicker
from edgeclick.data.layouts import LAYOUTS
from edgeclick.data.sample import IGNORE, Sample
from edgeclick.metrics import (
    MAX_CLICKS,
    THRESHOLDS,
    Summary,
    band_iou,
    boundary_band,
    boundary_width,
    iou,
    summarize,
)
from edgeclick.predictors import Predictor, wrap_predictor
from edgeclick.report import results_table, write_report

PRED_THRESHOLD: float = contract.PROB_THRESHOLD

Box = tuple[int, int, int, int]
"""Inclusive (row_min, row_max, col_min, col_max)."""

DATASET_FORMATS: tuple[str, ...] = ("auto", *LAYOUTS)



# --------------------------------------------------------------------------------------------------
# One sample
# --------------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    """Per-click record of one sample.

    Attributes:
        index: position of the sample in the (limited) dataset, for a stable order across shards.
        name: sample name.
        clicks: the simulated clicks, in order.
        iou / biou: IoU / Boundary IoU after each click.
        seconds: wall time of each `predict` call (s).
        set_image_seconds: wall time of `set_image` (s).
    """

    index: int
    name: str
    clicks: list[Click]
    iou: list[float]
    biou: list[float]
    seconds: list[float]
    set_image_seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; clicks as [x, y, positive]."""
        record = asdict(self)
        record.update(clicks=[[c.x, c.y, bool(c.positive)] for c in self.clicks])
        return record


@dataclass
class Preview:
    """Downscaled picture of a sample's final state, for the worst-samples grid.

    Attributes:
        name: sample name.
        final_iou: IoU after the last click.
        image: h×w×3 uint8 thumbnail.
        mask: h×w bool final prediction.
        gt: h×w int8 ground truth.
        clicks: clicks in thumbnail pixels.
    """

    name: str
    final_iou: float
    image: np.ndarray
    mask: np.ndarray
    gt: np.ndarray
    clicks: list[Click]


def make_preview(sample: Sample, mask: np.ndarray, clicks: Sequence[Click], final_iou: float, size: int = 256) -> Preview:
    """Thumbnail (long side ≤ `size` px) of the H×W×3 image, the H×W bool mask, the gt and the clicks."""
    h, w = sample.gt.shape
    scale = min(1.0, size / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    image = np.asarray(Image.fromarray(sample.image).resize((tw, th), Image.BILINEAR))
    thumb_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((tw, th), Image.NEAREST)) > 127
    gt = np.asarray(Image.fromarray(sample.gt.view(np.uint8)).resize((tw, th), Image.NEAREST)).view(np.int8)
    sx, sy = tw / w, th / h
    return Preview(
        name=sample.name,
        final_iou=final_iou,
        image=image,
        mask=thumb_mask,
        gt=gt,
        clicks=[Click((c.x + 0.5) * sx - 0.5, (c.y + 0.5) * sy - 0.5, c.positive) for c in clicks],
    )


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


@dataclass
class EvalRun:
    """Results of evaluating a set of samples.

    Attributes:
        results: per-sample records sorted by index.
        previews: the worst samples (lowest final IoU), worst first.
        wall_seconds: wall time of the whole run (s).
        max_clicks: click budget K of the run.
        skipped: (file, reason) the dataset skipped, from every rank (filled by `evaluate_dataset`).
    """

    results: list[SampleResult]
    previews: list[Preview]
    wall_seconds: float
    max_clicks: int
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ious(self) -> np.ndarray:
        """N×K IoU per sample and click."""
        return np.array([r.iou for r in self.results], dtype=np.float64).reshape(len(self.results), -1)

    @property
    def bious(self) -> np.ndarray:
        """N×K Boundary IoU per sample and click."""
        return np.array([r.biou for r in self.results], dtype=np.float64).reshape(len(self.results), -1)

    @property
    def model_seconds(self) -> float:
        """Time spent in set_image and predict over all samples (s)."""
        return float(sum(sum(r.seconds) + r.set_image_seconds for r in self.results))

    def summary(self, thresholds: Sequence[float] = THRESHOLDS) -> Summary:
        """NoC / NoF / mIoU curves; seconds per click counts set_image and predict time."""
        if not self.results:
            raise ValueError("no samples were evaluated")
        return summarize(self.ious, self.bious, self.model_seconds, thresholds, self.max_clicks)


def _keep_worst(previews: list[Preview], new: Iterable[Preview], k: int) -> list[Preview]:
    """The k previews with the lowest final IoU (ties by name), worst first."""
    return sorted([*previews, *new], key=lambda p: (p.final_iou, p.name))[:k]


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
            previews = _keep_worst(previews, [preview], worst_k)
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


def _dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _shard(dataset: Iterable[Sample], n: int, rank: int, world: int) -> Iterator[tuple[int, Sample]]:
    """(index, sample) for indices rank, rank + world, … < n; random access when the dataset has it.

    With random access a ValueError from `dataset[i]` (edgeclick's BrokenSampleError: the file does not
    decode or its mask is empty) skips that sample; the dataset records why in its `skipped` list.
    """
    if hasattr(dataset, "__getitem__"):
        for i in range(rank, n, world):
            try:
                sample = dataset[i]  # type: ignore[index]
            except ValueError:
                continue
            if not isinstance(sample, Sample):
                raise TypeError(f"dataset[{i}] is {type(sample).__name__}, expected Sample")
            yield i, sample
    else:
        yield from itertools.islice(enumerate(dataset), rank, n, world)


def _gather(payload: Any, rank: int, world: int) -> list[Any] | None:
    """torch.distributed gather_object to rank 0 over gloo; the list on rank 0, None elsewhere."""
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(hours=24))
    # A process group the session opened for its own use may be NCCL; objects travel over gloo.
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timedelta(hours=24))
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(payload, gathered, dst=0, group=group)
    if created:
        dist.destroy_process_group()
    return gathered


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
    rank, world = _dist_env()
    n = len(dataset)  # type: ignore[arg-type]
    if limit is not None:
        n = min(n, limit)
    if world > 1 and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():  # one GPU per rank, whatever device the session picks by default
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    start = time.perf_counter()
    run = evaluate_indexed(
        _shard(dataset, n, rank, world),
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
    gathered = _gather((run.results, run.previews, run.skipped), rank, world)
    if gathered is None:
        return None
    results = sorted((r for part, _, _ in gathered for r in part), key=lambda r: r.index)
    previews = _keep_worst([], (p for _, part, _ in gathered for p in part), worst_k)
    skipped = list(dict.fromkeys(s for _, _, part in gathered for s in part))  # union, first-seen order
    return EvalRun(results, previews, time.perf_counter() - start, max_clicks, skipped)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionFactory:
    """Picklable recipe for a predictor: an edgeclick Session on a checkpoint, with optional transforms.

    With flip a second session holds the mirrored image, so neither re-encodes at every click.
    """

    checkpoint: str
    zoom_in: bool = False
    flip: bool = False
    device: str | None = None  # None: open_session's own default
    input_size: tuple[int, int] | None = None  # model input (H, W); None: each image at its own size (RITM)

    def __call__(self) -> Predictor:
        from edgeclick.runtimes.session import open_session

        kwargs: dict[str, Any] = {"input_size": self.input_size}
        if self.device is not None:
            kwargs["device"] = self.device
        base = open_session(self.checkpoint, **kwargs)
        mirror = open_session(self.checkpoint, **kwargs) if self.flip else None
        return wrap_predictor(base, zoom_in=self.zoom_in, flip=self.flip, mirror=mirror)


def _size(text: str) -> tuple[int, int]:
    from edgeclick.cli import parse_size

    return parse_size(text)


def register_cli(subparsers: Any) -> None:
    """Add the `evaluate` subcommand to an argparse subparsers object (handler in `func`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="RITM-protocol NoC evaluation of a checkpoint on a dataset",
        description="Simulate up to --max-clicks clicks per sample (RITM's clicker) and report "
        "NoC@85/90/95 for IoU and Boundary IoU, NoF, mIoU per click and seconds per click.",
    )
    p.add_argument("--checkpoint", required=True, help="model file opened with edgeclick's open_session, or a registered weights name (edgeclick weights list)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset-format", choices=DATASET_FORMATS, default="auto")
    p.add_argument("--max-clicks", type=int, default=MAX_CLICKS)
    p.add_argument("--zoom-in", action="store_true", help="RITM ZoomIn (crop long side 400 px)")
    p.add_argument("--flip", action="store_true", help="average with the horizontally mirrored prediction")
    p.add_argument("--workers", type=int, default=1, help="processes per rank (each opens its own session)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--out", default=None, help="report folder (default reports/eval/<dataset>_<checkpoint>)")
    p.add_argument("--device", default=None, help="passed to open_session (e.g. cpu, cuda); default: its own")
    p.add_argument("--size", type=_size, default=None, metavar="HxW",
                   help="model input size, images letterboxed into it as an exported graph sees them "
                        "(default: each image at its own size, padded to a multiple of 32, as RITM)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick evaluate`; returns the exit status."""
    from edgeclick.data.datasets import load_dataset

    dataset = load_dataset(args.data, args.dataset_format)
    factory = SessionFactory(str(args.checkpoint), zoom_in=args.zoom_in, flip=args.flip, device=args.device,
                             input_size=args.size)
    run = evaluate_dataset(dataset, factory, limit=args.limit, workers=args.workers, max_clicks=args.max_clicks)
    if run is None:  # a torchrun rank other than 0: rank 0 writes the report
        return 0
    name = f"{dataset.name}_{Path(args.checkpoint).stem}" + ("_zoom" if args.zoom_in else "") + ("_flip" if args.flip else "")
    out = Path(args.out) if args.out else Path("reports") / "eval" / name
    settings = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "dataset_format": args.dataset_format,
        "zoom_in": args.zoom_in,
        "flip": args.flip,
        "pred_threshold": PRED_THRESHOLD,
        "limit": args.limit,
        "device": args.device,
        "input_size": list(args.size) if args.size else None,
    }
    files = write_report(run, out, dataset.name, settings=settings, skipped=run.skipped)
    summary = run.summary()
    print(results_table(dataset.name, summary, run.wall_seconds))
    print(f"seconds per click: {summary.seconds_per_click:.4f} s; total wall time: {run.wall_seconds:.1f} s")
    print(f"report: {files['report']}")
    return 0

