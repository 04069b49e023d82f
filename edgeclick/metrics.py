"""Segmentation metrics for the RITM evaluation protocol: IoU, Boundary IoU, NoC, NoF, mIoU@k.

Pure numpy (scipy.ndimage for the distance transform). Masks are H×W; `gt` uses the `Sample.gt`
encoding (1 object, 0 background, -1 ignore) and ignore pixels never count in a numerator or a
denominator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from edgeclick.data.sample import IGNORE

THRESHOLDS: tuple[float, ...] = (0.85, 0.90, 0.95)
"""IoU thresholds reported by default (NoC@85/90/95)."""

MAX_CLICKS: int = 20
"""RITM's click budget: NoC is capped here and samples that never reach the threshold count as NoF."""

BOUNDARY_RATIO: float = 0.02
"""Boundary IoU band width as a fraction of the image diagonal (Cheng et al. 2021)."""


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of a predicted mask with the object, ignore pixels excluded.

    Args:
        pred: H×W bool (or 0/1) predicted mask.
        gt: H×W int8, 1 object, 0 background, -1 ignore.

    Returns:
        IoU in [0, 1]; 1.0 when both the prediction and the object are empty (nothing to disagree on;
        RITM would return NaN there).
    """
    pred = np.asarray(pred, dtype=bool)
    valid = gt != IGNORE
    obj = gt == 1
    inter = np.count_nonzero(pred & obj)  # obj already excludes ignore pixels
    union = np.count_nonzero((pred | obj) & valid)
    return float(inter / union) if union else 1.0


def boundary_width(height: int, width: int, ratio: float = BOUNDARY_RATIO) -> int:
    """Band width d in pixels: max(1, round(ratio · image diagonal)), as in the Boundary IoU API.

    Python's round() (half to even) is used on purpose: it is what the reference implementation calls.
    """
    return max(1, int(round(ratio * float(np.hypot(height, width)))))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive (row_min, row_max, col_min, col_max) of the True pixels of an H×W mask, None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def boundary_band(mask: np.ndarray, d: int) -> np.ndarray:
    """Inner boundary band of a mask: the mask minus its erosion by a (2d+1)×(2d+1) square.

    Equivalent to the reference `mask - erode(pad(mask, 1), ones(3, 3), iterations=d)`: the image border
    counts as background, so an object cut by the border has a band along it too.

    Args:
        mask: H×W bool.
        d: band width in pixels (≥ 1).

    Returns:
        H×W bool, True on mask pixels whose chessboard distance to the background (or to the outside of
        the image) is at most d.
    """
    mask = np.asarray(mask, dtype=bool)
    band = np.zeros_like(mask)
    box = _bbox(mask)
    if box is None:
        return band
    r0, r1, c0, c1 = box
    # Everything outside the mask's box is background, so the box plus a one-pixel zero ring gives the
    # same distances as the whole image (and the ring doubles as the image border when the box touches it).
    crop = np.pad(mask[r0 : r1 + 1, c0 : c1 + 1], 1)
    # Iterating a 3×3 erosion d times removes exactly the pixels within chessboard distance d of a zero.
    dist = ndimage.distance_transform_cdt(crop, metric="chessboard")[1:-1, 1:-1]
    band[r0 : r1 + 1, c0 : c1 + 1] = mask[r0 : r1 + 1, c0 : c1 + 1] & (dist <= d)
    return band


def band_iou(pred_band: np.ndarray, gt_band: np.ndarray, valid: np.ndarray) -> float:
    """IoU of two H×W bool bands over the H×W bool `valid` pixels; 1.0 when both are empty there."""
    inter = np.count_nonzero(pred_band & gt_band & valid)
    union = np.count_nonzero((pred_band | gt_band) & valid)
    return float(inter / union) if union else 1.0


def boundary_iou(pred: np.ndarray, gt: np.ndarray, d: int | None = None) -> float:
    """Boundary IoU (Cheng et al. 2021) of a predicted mask with the object, ignore pixels excluded.

    Args:
        pred: H×W bool predicted mask.
        gt: H×W int8, 1 object, 0 background, -1 ignore. Ignore pixels count as non-object when the
            object's band is built, and are then left out of the intersection and the union.
        d: band width in pixels; default `boundary_width(H, W)`.

    Returns:
        IoU of the two inner bands in [0, 1]; 1.0 when both bands are empty.
    """
    if d is None:
        d = boundary_width(*gt.shape)
    return band_iou(boundary_band(pred, d), boundary_band(gt == 1, d), gt != IGNORE)


def noc(ious: np.ndarray, threshold: float, max_clicks: int = MAX_CLICKS) -> np.ndarray:
    """Number of clicks each sample needs to reach a threshold.

    Args:
        ious: N×K per-click scores (IoU or Boundary IoU) of N samples after clicks 1..K.
        threshold: target score, e.g. 0.9.
        max_clicks: value given to samples that never reach the threshold.

    Returns:
        N int array: 1-based index of the first click whose score ≥ threshold, else max_clicks.
    """
    hit = np.asarray(ious, dtype=np.float64) >= threshold
    if hit.ndim != 2:
        raise ValueError(f"ious must be N×K, got shape {hit.shape}")
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, max_clicks)


def nof(ious: np.ndarray, threshold: float) -> int:
    """Number of samples whose N×K per-click scores never reach the threshold within the K clicks.

    RITM's ">=20@t" column instead counts NoC == max_clicks, which also includes samples that reach the
    threshold exactly at the last click; this counts only real failures.
    """
    return int(np.count_nonzero(~(np.asarray(ious, dtype=np.float64) >= threshold).any(axis=1)))


def mean_curve(ious: np.ndarray) -> np.ndarray:
    """K array: the mean over N samples of N×K per-click scores (mIoU after k = 1..K clicks)."""
    return np.asarray(ious, dtype=np.float64).mean(axis=0)


@dataclass(frozen=True)
class Summary:
    """Dataset-level results of one evaluation run.

    Attributes:
        n_samples: number of evaluated samples N.
        noc: threshold → mean NoC over samples (IoU).
        nof: threshold → number of samples that never reach it (IoU).
        noc_boundary / nof_boundary: the same for Boundary IoU.
        miou / mbiou: length-K mean IoU / Boundary IoU after 1..K clicks.
        seconds_per_click: model seconds divided by the number of clicks (s).
    """

    n_samples: int
    noc: dict[float, float]
    nof: dict[float, int]
    noc_boundary: dict[float, float]
    nof_boundary: dict[float, int]
    miou: list[float] = field(default_factory=list)
    mbiou: list[float] = field(default_factory=list)
    seconds_per_click: float = 0.0


def summarize(
    ious: np.ndarray,
    bious: np.ndarray,
    seconds: float,
    thresholds: Sequence[float] = THRESHOLDS,
    max_clicks: int = MAX_CLICKS,
) -> Summary:
    """Aggregate per-click scores into NoC, NoF and mIoU curves.

    Args:
        ious: N×K IoU after each click.
        bious: N×K Boundary IoU after each click.
        seconds: total model time of the run (s), divided by N·K for seconds per click.
        thresholds: NoC thresholds.
        max_clicks: NoC cap.
    """
    ious = np.asarray(ious, dtype=np.float64)
    bious = np.asarray(bious, dtype=np.float64)
    n_clicks = ious.size
    return Summary(
        n_samples=int(ious.shape[0]),
        noc={t: float(noc(ious, t, max_clicks).mean()) for t in thresholds},
        nof={t: nof(ious, t) for t in thresholds},
        noc_boundary={t: float(noc(bious, t, max_clicks).mean()) for t in thresholds},
        nof_boundary={t: nof(bious, t) for t in thresholds},
        miou=mean_curve(ious).tolist(),
        mbiou=mean_curve(bious).tolist(),
        seconds_per_click=float(seconds / n_clicks) if n_clicks else 0.0,
    )
