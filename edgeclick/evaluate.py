"""RITM-protocol evaluation: simulated clicks, per-click IoU / Boundary IoU, NoC report, plots.

A predictor is anything with `set_image` / `predict` (the `Predictor` protocol below; edgeclick's
`Session` implements it). `ZoomIn` and `FlipAveraged` wrap a predictor with RITM's test-time
transforms. `evaluate` runs samples in this process or in spawned workers; `evaluate_dataset` adds
torchrun sharding (rank r takes samples r::world_size, rank 0 gathers); `write_report` writes the
per-sample JSON, the summary, a Markdown table, the mIoU curve and a grid of the worst samples.

Coordinates: clicks are (x column, y row) pixels; boxes are RITM's inclusive
(row_min, row_max, col_min, col_max).
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from edgeclick.clicks import Click, Clicker
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

PRED_THRESHOLD: float = 0.49
"""RITM's probability threshold for the evaluated mask."""

Box = tuple[int, int, int, int]
"""Inclusive (row_min, row_max, col_min, col_max)."""

DATASET_FORMATS: tuple[str, ...] = ("auto", "grabcut", "berkeley", "davis", "coco_mval", "sbd", "pascalvoc", "hq")


class Predictor(Protocol):
    """An interactive segmentation model bound to one image at a time."""

    def set_image(self, rgb: np.ndarray) -> None:
        """Bind the H×W×3 uint8 RGB image that following `predict` calls refer to."""
        ...

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        """H×W float32 object probabilities at the image's size.

        Args:
            clicks: all clicks so far, in image pixels.
            prev_mask: H×W float32 previous probability map, None before the first click.
        """
        ...


# --------------------------------------------------------------------------------------------------
# Test-time transforms (RITM's inference/transforms), as predictor wrappers
# --------------------------------------------------------------------------------------------------


def resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with align_corners=True semantics (torch's F.interpolate, as RITM uses).

    Args:
        array: H×W or H×W×C numeric array.
        height, width: output size in pixels.

    Returns:
        height×width(×C) float32.
    """
    src = np.asarray(array, dtype=np.float32)
    h, w = src.shape[:2]
    # align_corners=True maps output index i to input coordinate i·(in−1)/(out−1): corners coincide.
    ys = np.linspace(0.0, h - 1, height) if height > 1 else np.zeros(1)
    xs = np.linspace(0.0, w - 1, width) if width > 1 else np.zeros(1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0).astype(np.float32).reshape((-1, 1) + (1,) * (src.ndim - 2))
    wx = (xs - x0).astype(np.float32).reshape((1, -1) + (1,) * (src.ndim - 2))
    rows = src[y0] * (1 - wy) + src[y1] * wy
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def _logit(p: np.ndarray) -> np.ndarray:
    """Inverse sigmoid of H×W probabilities, clipped so 0 and 1 stay finite."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


class FlipAveraged:
    """Horizontal-flip test-time augmentation: average the predictions on the image and its mirror.

    The mirror sees clicks at x' = W − 1 − x and the mirrored previous mask; its output is mirrored back.
    With one inner predictor it is re-bound to each image at every click (correct, but the encoder
    runs twice per click); pass a second predictor as `mirror` to keep both images bound.

    Args:
        predictor: the model.
        mirror: optional second instance of the model, bound to the mirrored image.
        average: "prob" averages probabilities; "logit" averages logits and applies the sigmoid, which
            is what RITM does (its flip sits before the sigmoid).
    """

    def __init__(
        self,
        predictor: Predictor,
        mirror: Predictor | None = None,
        average: Literal["prob", "logit"] = "prob",
    ) -> None:
        if average not in ("prob", "logit"):
            raise ValueError(f"average must be 'prob' or 'logit', got {average!r}")
        self.predictor = predictor
        self.mirror = mirror
        self.average = average
        self._image: np.ndarray | None = None
        self._mirror_image: np.ndarray | None = None
        self._bound: str | None = None  # which image the shared predictor holds now

    def set_image(self, rgb: np.ndarray) -> None:
        """Bind the H×W×3 uint8 image (and, with a second predictor, its mirror)."""
        self._image = rgb
        self._mirror_image = np.ascontiguousarray(rgb[:, ::-1])
        self._bound = None
        if self.mirror is not None:
            self.predictor.set_image(self._image)
            self.mirror.set_image(self._mirror_image)

    def _bind(self, which: str) -> Predictor:
        if self.mirror is not None:
            return self.predictor if which == "direct" else self.mirror
        if self._bound != which:
            self.predictor.set_image(self._image if which == "direct" else self._mirror_image)
            self._bound = which
        return self.predictor

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        """H×W float32 average of the direct and the mirrored prediction."""
        if self._image is None:
            raise RuntimeError("set_image must be called before predict")
        width = self._image.shape[1]
        mirrored_clicks = [Click(width - 1 - c.x, c.y, c.positive) for c in clicks]
        mirrored_prev = None if prev_mask is None else np.ascontiguousarray(prev_mask[:, ::-1])
        direct = np.asarray(self._bind("direct").predict(clicks, prev_mask), dtype=np.float32)
        flipped = np.asarray(self._bind("mirrored").predict(mirrored_clicks, mirrored_prev), dtype=np.float32)[:, ::-1]
        if self.average == "logit":
            return (1.0 / (1.0 + np.exp(-0.5 * (_logit(direct) + _logit(flipped))))).astype(np.float32)
        return (0.5 * (direct + flipped)).astype(np.float32)


def _expand_box(box: Box, ratio: float, min_size: float) -> Box:
    """Scale an inclusive box about its centre by `ratio`, each side at least `min_size` pixels."""
    r0, r1, c0, c1 = box
    rc, cc = 0.5 * (r0 + r1), 0.5 * (c0 + c1)
    height = max(ratio * (r1 - r0 + 1), min_size)
    width = max(ratio * (c1 - c0 + 1), min_size)
    # Python's round (half to even) on purpose: RITM's expand_bbox uses it, and .5 cases are common.
    return (
        int(round(rc - 0.5 * height)),
        int(round(rc + 0.5 * height)),
        int(round(cc - 0.5 * width)),
        int(round(cc + 0.5 * width)),
    )


def object_roi(mask: np.ndarray, clicks: Sequence[Click], expansion_ratio: float, min_crop_size: int) -> Box:
    """RITM's zoom-in crop: the box of the mask and the positive clicks, expanded and clamped.

    Args:
        mask: H×W bool current prediction (non-empty or with a positive click).
        clicks: clicks so far; positive ones are added to the mask first.
        expansion_ratio: box growth factor (1.4).
        min_crop_size: minimum side in pixels (200) before clamping to the image.

    Returns:
        Inclusive box inside the image.
    """
    mask = mask.copy()
    h, w = mask.shape
    for click in clicks:  # ≤ max_clicks items, not pixels
        if click.positive and 0 <= click.y < h and 0 <= click.x < w:
            mask[int(click.y), int(click.x)] = True
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = _expand_box((int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])), expansion_ratio, min_crop_size)
    return max(0, r0), min(h - 1, r1), max(0, c0), min(w - 1, c1)


def box_iou(a: Box, b: Box) -> float:
    """RITM's box overlap: the product of the row-interval IoU and the column-interval IoU."""

    def segment_iou(s0: int, s1: int, t0: int, t1: int) -> float:
        inter = max(0, min(s1, t1) - max(s0, t0) + 1)
        return inter / max(1e-6, max(s1, t1) - min(s0, t0) + 1)

    return segment_iou(a[0], a[1], b[0], b[1]) * segment_iou(a[2], a[3], b[2], b[3])


def clicks_inside(box: Box, clicks: Sequence[Click]) -> bool:
    """Whether every positive click lies in the box (RITM's check: min ≤ coord < max, max exclusive)."""
    r0, r1, c0, c1 = box
    return all(r0 <= c.y < r1 and c0 <= c.x < c1 for c in clicks if c.positive)


class ZoomIn:
    """RITM's ZoomIn: after the first click, predict on a crop around the current object.

    From click `skip_clicks + 1` on, the crop is the box of the previous mask (prob > `prob_thresh`)
    plus the positive clicks, grown by `expansion_ratio` to at least `min_crop_size` pixels and clamped
    to the image. The crop is kept until a positive click falls outside it or the new box overlaps it
    by less than `recompute_iou` (RITM's per-axis box IoU). The inner predictor sees the crop resized
    (bilinear, align_corners) so its long side is `target_size`, the clicks mapped into it and the
    cropped previous mask; its output is resized back and pasted into a zero map of the image's size.

    Deviation from RITM: when the previous mask is empty RITM feeds the whole image but still pastes
    the result into the old crop (a bug); here the whole image is predicted and returned as is.
    The crop image is rounded back to uint8 (RITM resizes the float image).
    """

    def __init__(
        self,
        predictor: Predictor,
        target_size: int = 400,
        expansion_ratio: float = 1.4,
        min_crop_size: int = 200,
        recompute_iou: float = 0.5,
        skip_clicks: int = 1,
        prob_thresh: float = 0.5,
    ) -> None:
        if skip_clicks < 0:
            raise ValueError("skip_clicks must be ≥ 0 (RITM's fixed-crop mode is not supported)")
        self.predictor = predictor
        self.target_size = target_size
        self.expansion_ratio = expansion_ratio
        self.min_crop_size = min_crop_size
        self.recompute_iou = recompute_iou
        self.skip_clicks = skip_clicks
        self.prob_thresh = prob_thresh
        self._image: np.ndarray | None = None
        self.roi: Box | None = None
        self._bound: tuple[int, ...] | None = None  # () = whole image, a box = that crop

    def set_image(self, rgb: np.ndarray) -> None:
        """Bind the H×W×3 uint8 image and forget the crop."""
        self._image = rgb
        self.roi = None
        self._bound = None

    def _choose_roi(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> Box | None:
        if len(clicks) <= self.skip_clicks or prev_mask is None:
            return None
        mask = prev_mask > self.prob_thresh
        if not mask.any():
            return None
        current = object_roi(mask, clicks, self.expansion_ratio, self.min_crop_size)
        if (
            self.roi is None
            or not clicks_inside(self.roi, clicks)
            or box_iou(current, self.roi) < self.recompute_iou
        ):
            self.roi = current
        return self.roi

    def _crop_size(self, roi: Box) -> tuple[int, int]:
        height, width = roi[1] - roi[0] + 1, roi[3] - roi[2] + 1
        scale = self.target_size / max(height, width)
        return int(round(height * scale)), int(round(width * scale))

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        """H×W float32 probabilities; zero outside the crop when a crop is used."""
        if self._image is None:
            raise RuntimeError("set_image must be called before predict")
        roi = self._choose_roi(clicks, prev_mask)
        if roi is None:
            if self._bound != ():
                self.predictor.set_image(self._image)
                self._bound = ()
            return np.asarray(self.predictor.predict(clicks, prev_mask), dtype=np.float32)

        r0, r1, c0, c1 = roi
        height, width = r1 - r0 + 1, c1 - c0 + 1
        new_h, new_w = self._crop_size(roi)
        if self._bound != roi:
            crop = resize_bilinear(self._image[r0 : r1 + 1, c0 : c1 + 1], new_h, new_w)
            self.predictor.set_image(np.clip(np.rint(crop), 0, 255).astype(np.uint8))
            self._bound = roi
        # RITM's click mapping: scale by output/input extent (not the align_corners grid).
        crop_clicks = [
            Click(new_w * (c.x - c0) / width, new_h * (c.y - r0) / height, c.positive) for c in clicks
        ]
        crop_prev = None if prev_mask is None else resize_bilinear(prev_mask[r0 : r1 + 1, c0 : c1 + 1], new_h, new_w)
        probs = np.asarray(self.predictor.predict(crop_clicks, crop_prev), dtype=np.float32)
        full = np.zeros(self._image.shape[:2], dtype=np.float32)
        full[r0 : r1 + 1, c0 : c1 + 1] = resize_bilinear(probs, height, width)
        return full


def wrap_predictor(
    predictor: Predictor,
    *,
    zoom_in: bool = False,
    flip: bool = False,
    mirror: Predictor | None = None,
    target_size: int = 400,
) -> Predictor:
    """Apply RITM's test-time transforms in RITM's order: zoom-in outside, flip inside the crop."""
    if flip:
        predictor = FlipAveraged(predictor, mirror)
    if zoom_in:
        predictor = ZoomIn(predictor, target_size=target_size)
    return predictor


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
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, _init_worker, (predictor_factory, options, threads)) as pool:
                collect(pool.imap(_work, items, chunksize=1))
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
# Report
# --------------------------------------------------------------------------------------------------


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write a file so readers see the old or the new content, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _pct(t: float) -> str:
    return f"{round(t * 100):d}"


def results_table(dataset: str, summary: Summary, wall_seconds: float) -> str:
    """Markdown table in RITM's layout: one row per score (IoU, Boundary IoU)."""
    ts = list(summary.noc)
    header = (
        ["Dataset", "Metric"]
        + [f"NoC@{_pct(t)}" for t in ts]
        + [f"NoF@{_pct(t)}" for t in ts]
        + ["SPC, s", "Time"]
    )
    elapsed = str(timedelta(seconds=int(wall_seconds)))
    rows = []
    for metric, noc_, nof_ in (
        ("IoU", summary.noc, summary.nof),
        ("Boundary IoU", summary.noc_boundary, summary.nof_boundary),
    ):
        rows.append(
            [dataset, metric]
            + [f"{noc_[t]:.2f}" for t in ts]
            + [str(nof_[t]) for t in ts]
            + [f"{summary.seconds_per_click:.3f}", elapsed]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()


def plot_miou(summary: Summary, title: str) -> bytes:
    """PNG of mean IoU and mean Boundary IoU against the number of clicks."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    k = np.arange(1, len(summary.miou) + 1)
    ax.plot(k, summary.miou, marker="o", markersize=3, label="mIoU")
    ax.plot(k, summary.mbiou, marker="s", markersize=3, label="mean Boundary IoU")
    for t in summary.noc:
        ax.axhline(t, color="grey", linewidth=0.5, linestyle=":")
    ax.set(xlabel="number of clicks", ylabel="score", title=title, ylim=(0, 1), xlim=(0.5, k[-1] + 0.5 if k.size else 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _png(fig)


def plot_worst(previews: Sequence[Preview], columns: int = 4) -> bytes:
    """PNG grid of previews: mask in blue, object outline in yellow, clicks green (+) and red (−)."""
    from matplotlib.figure import Figure

    n = max(1, len(previews))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows), dpi=100)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i >= len(previews):
            continue
        p = previews[i]
        ax.imshow(p.image)
        overlay = np.zeros((*p.mask.shape, 4), dtype=np.float32)
        overlay[p.mask] = (0.1, 0.4, 1.0, 0.5)
        ax.imshow(overlay)
        obj = (p.gt == 1).astype(np.float32)
        if 0 < obj.sum() < obj.size:
            ax.contour(obj, levels=[0.5], colors="yellow", linewidths=0.8)
        for positive, color in ((True, "lime"), (False, "red")):
            pts = np.array([(c.x, c.y) for c in p.clicks if c.positive == positive], dtype=np.float64).reshape(-1, 2)
            ax.scatter(pts[:, 0], pts[:, 1], s=18, c=color, edgecolors="white", linewidths=0.5)
        ax.set_title(f"{p.name}\nIoU {p.final_iou:.3f}, {len(p.clicks)} clicks", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def write_report(
    run: EvalRun,
    out_dir: str | Path,
    dataset: str,
    *,
    settings: dict[str, Any] | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> dict[str, Path]:
    """Write samples.json, summary.json, report.md, miou.png and worst.png into `out_dir`.

    Args:
        run: the evaluation results.
        out_dir: output folder (created).
        dataset: dataset name for the table and titles.
        settings: how the run was made (checkpoint, zoom-in, flip, …), copied into the files.
        skipped: (file, reason) the dataset loader skipped, listed in the report.

    Returns:
        File kind → path.
    """
    out = Path(out_dir)
    summary = run.summary()
    settings = dict(settings or {})
    files: dict[str, Path] = {}
    files["samples"] = atomic_write(
        out / "samples.json",
        json.dumps({"dataset": dataset, "settings": settings, "samples": [r.to_json() for r in run.results]}),
    )
    summary_json = {
        "dataset": dataset,
        "settings": settings,
        "n_samples": summary.n_samples,
        "max_clicks": run.max_clicks,
        "noc": {_pct(t): v for t, v in summary.noc.items()},
        "nof": {_pct(t): v for t, v in summary.nof.items()},
        "noc_boundary": {_pct(t): v for t, v in summary.noc_boundary.items()},
        "nof_boundary": {_pct(t): v for t, v in summary.nof_boundary.items()},
        "miou": summary.miou,
        "mbiou": summary.mbiou,
        "seconds_per_click": summary.seconds_per_click,
        "wall_seconds": run.wall_seconds,
        "skipped": [list(s) for s in skipped],
    }
    files["summary"] = atomic_write(out / "summary.json", json.dumps(summary_json, indent=2))

    ks = [k for k in (1, 2, 3, 5, 10, 20) if k <= len(summary.miou)]
    lines = [
        f"# Evaluation: {dataset}",
        "",
        results_table(dataset, summary, run.wall_seconds),
        "",
        "mIoU@k: " + ", ".join(f"{k}: {summary.miou[k - 1]:.4f}" for k in ks),
        "",
        "mean Boundary IoU@k: " + ", ".join(f"{k}: {summary.mbiou[k - 1]:.4f}" for k in ks),
        "",
        f"Samples: {summary.n_samples}; max clicks: {run.max_clicks}; NoF counts samples that never reach the "
        f"threshold; SPC counts set_image + predict time.",
    ]
    if settings:
        lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())]
    if skipped:
        lines += ["", f"Skipped by the loader ({len(skipped)}):", ""]
        lines += [f"- {name}: {reason}" for name, reason in skipped]
    lines += ["", "![mIoU vs clicks](miou.png)", "", "![worst samples](worst.png)", ""]
    files["report"] = atomic_write(out / "report.md", "\n".join(lines))
    files["miou_plot"] = atomic_write(out / "miou.png", plot_miou(summary, f"{dataset}: score vs clicks"))
    files["worst_plot"] = atomic_write(out / "worst.png", plot_worst(run.previews))
    return files


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

    def __call__(self) -> Predictor:
        from edgeclick.runtimes.session import open_session

        kwargs = {} if self.device is None else {"device": self.device}
        base = open_session(self.checkpoint, **kwargs)
        mirror = open_session(self.checkpoint, **kwargs) if self.flip else None
        return wrap_predictor(base, zoom_in=self.zoom_in, flip=self.flip, mirror=mirror)


def register_cli(subparsers: Any) -> None:
    """Add the `evaluate` subcommand to an argparse subparsers object (handler in `func`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="RITM-protocol NoC evaluation of a checkpoint on a dataset",
        description="Simulate up to --max-clicks clicks per sample (RITM's clicker) and report "
        "NoC@85/90/95 for IoU and Boundary IoU, NoF, mIoU per click and seconds per click.",
    )
    p.add_argument("--checkpoint", required=True, help="model file opened with edgeclick's open_session")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset-format", choices=DATASET_FORMATS, default="auto")
    p.add_argument("--max-clicks", type=int, default=MAX_CLICKS)
    p.add_argument("--zoom-in", action="store_true", help="RITM ZoomIn (crop long side 400 px)")
    p.add_argument("--flip", action="store_true", help="average with the horizontally mirrored prediction")
    p.add_argument("--workers", type=int, default=1, help="processes per rank (each opens its own session)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--out", default=None, help="report folder (default reports/eval/<dataset>_<checkpoint>)")
    p.add_argument("--device", default=None, help="passed to open_session (e.g. cpu, cuda); default: its own")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick evaluate`; returns the exit status."""
    from edgeclick.data.datasets import load_dataset

    dataset = load_dataset(args.data, args.dataset_format)
    factory = SessionFactory(str(args.checkpoint), zoom_in=args.zoom_in, flip=args.flip, device=args.device)
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
    }
    files = write_report(run, out, dataset.name, settings=settings, skipped=run.skipped)
    summary = run.summary()
    print(results_table(dataset.name, summary, run.wall_seconds))
    print(f"seconds per click: {summary.seconds_per_click:.4f} s; total wall time: {run.wall_seconds:.1f} s")
    print(f"report: {files['report']}")
    return 0
