"""Training clicks: RITM's multi-point sampler for the first clicks, and its iterative training clicker.

Click rows follow the contract: (x, y, label) in crop pixels, x the column and y the row, label
`LABEL_POSITIVE` / `LABEL_NEGATIVE`, `LABEL_PADDING` rows (-1, -1, -1) at the end. RITM itself keeps
(y, x, index) rows in separate positive/negative halves; only the encoding differs, not the sampling.
"""
from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np
import torch
from torch import Tensor

from edgeclick.contract import LABEL_NEGATIVE, LABEL_PADDING, LABEL_POSITIVE, PROB_THRESHOLD
from edgeclick.train.distance import distance_to_zero

NEGATIVE_STRATEGIES: tuple[str, ...] = ("bg", "other", "border")
"""RITM's negative-click sources: any background pixel, other objects, a band around the object."""


@cache
def decaying_probs(n: int, gamma: float) -> np.ndarray:
    """Probabilities ∝ gamma^k for k = 0..n-1 (RITM's generate_probs): how many clicks to sample."""
    probs = gamma ** np.arange(n, dtype=np.float64)
    return probs / probs.sum()


class MultiPointSampler:
    """RITM's MultiPointSampler for one selected object (no object merging, no hierarchy).

    Positives: 1 + k clicks, P(k) ∝ prob_gamma^k (k < max_num_points), uniform over the object eroded by
    `positive_erode_iters` 3×3 iterations (with probability `positive_erode_prob`; the uneroded object when
    erosion leaves ≤ 10 pixels, e.g. thin structures). Negatives: k clicks, P(k) ∝ prob_gamma^k
    (k ≤ max_num_points), each from a strategy drawn with probabilities (bg, other, border): any
    background pixel; a pixel of another object (falls back to background when there is none); a pixel
    of the band of width ceil(expand_ratio·sqrt(area)) around the object. A click whose source region is
    empty is dropped, as in RITM. Ignore pixels (-1) are never clicked.

    RITM has 24 slots per sign and lets iterative clicks overwrite the last ones; with one shared block
    of `max_num_points` rows, the sampler instead leaves the last `reserved_rows` rows as padding
    (sampled counts are capped, positives first) so `next_training_clicks` always has room.
    """

    def __init__(
        self,
        max_num_points: int = 24,
        prob_gamma: float = 0.8,
        *,
        reserved_rows: int = 3,
        positive_erode_prob: float = 0.9,
        positive_erode_iters: int = 3,
        negative_probs: tuple[float, float, float] = (0.1, 0.4, 0.5),
        expand_ratio: float = 0.1,
    ) -> None:
        if not 0 <= reserved_rows < max_num_points:
            raise ValueError(f"reserved_rows must be in [0, {max_num_points}), got {reserved_rows}")
        if not math.isclose(sum(negative_probs), 1.0):
            raise ValueError(f"negative_probs {negative_probs} must sum to 1 (bg, other, border)")
        self.max_num_points = max_num_points
        self.prob_gamma = prob_gamma
        self.reserved_rows = reserved_rows
        self.positive_erode_prob = positive_erode_prob
        self.positive_erode_iters = positive_erode_iters
        self.negative_probs = np.asarray(negative_probs, dtype=np.float64)
        self.expand_ratio = expand_ratio

    def __call__(self, gt: np.ndarray, rng: np.random.Generator, others: np.ndarray | None = None) -> np.ndarray:
        """Sample the first clicks for the object `gt == 1`.

        Args:
            gt: H×W int8, 1 object, 0 background, -1 ignore.
            rng: the only source of randomness (same rng state → same clicks).
            others: optional H×W mask of other objects (bool, or an instance map where > 0 is an object);
                pixels of the selected object and ignore pixels are excluded.

        Returns:
            max_num_points×3 float32 rows (x, y, label): positives, then negatives, then padding rows.
        """
        obj = gt == 1
        background = gt == 0
        limit = self.max_num_points - self.reserved_rows
        n_pos = 0
        if obj.any():
            n_pos = 1 + int(rng.choice(self.max_num_points, p=decaying_probs(self.max_num_points, self.prob_gamma)))
        n_neg = int(rng.choice(self.max_num_points + 1, p=decaying_probs(self.max_num_points + 1, self.prob_gamma)))
        n_pos = min(n_pos, limit)
        n_neg = min(n_neg, limit - n_pos)

        rows = np.full((self.max_num_points, 3), float(LABEL_PADDING), dtype=np.float32)
        filled = 0
        if n_pos:
            pos = _pick(np.flatnonzero(self._positive_region(obj, rng)), n_pos, rng)
            filled = _write(rows, filled, pos, gt.shape[1], LABEL_POSITIVE)
        if n_neg:
            regions = self._negative_regions(obj, background, others)
            strategy = rng.choice(len(NEGATIVE_STRATEGIES), size=n_neg, p=self.negative_probs)
            for s, region in enumerate(regions):
                count = int((strategy == s).sum())
                if count:
                    filled = _write(rows, filled, _pick(region, count, rng), gt.shape[1], LABEL_NEGATIVE)
        return rows

    def _positive_region(self, obj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """H×W bool where positive clicks may land."""
        if rng.random() >= self.positive_erode_prob:
            return obj
        eroded = cv2.erode(obj.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=self.positive_erode_iters)
        # Thin objects vanish under erosion; RITM then falls back to the whole object.
        return eroded.astype(bool) if int(eroded.sum()) > 10 else obj

    def _negative_regions(self, obj: np.ndarray, background: np.ndarray, others: np.ndarray | None) -> list[np.ndarray]:
        """Flat pixel indices of the (bg, other, border) sources, in `NEGATIVE_STRATEGIES` order."""
        bg = np.flatnonzero(background)
        other = bg
        if others is not None:
            other_mask = (others > 0) & background
            if other_mask.any():
                other = np.flatnonzero(other_mask)
        border = np.empty(0, dtype=np.int64)
        area = int(obj.sum())
        if area:
            radius = int(math.ceil(self.expand_ratio * math.sqrt(area)))
            # r iterations of a 3×3 dilation equal one dilation by a (2r+1)×(2r+1) square.
            grown = cv2.dilate(obj.astype(np.uint8), np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
            border = np.flatnonzero(grown.astype(bool) & background)
        return [bg, other, border]


def _pick(flat: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` flat indices drawn uniformly with replacement (RITM), or none from an empty region."""
    if flat.size == 0:
        return flat
    return flat[rng.integers(0, flat.size, size=count)]


def _write(rows: np.ndarray, start: int, flat: np.ndarray, width: int, label: int) -> int:
    """Write clicks at flat pixel indices into rows[start:]; returns the next free row."""
    end = start + flat.size
    rows[start:end, 0] = flat % width
    rows[start:end, 1] = flat // width
    rows[start:end, 2] = label
    return end


def next_training_clicks(
    prob: Tensor, gt: Tensor, clicks: Tensor, rng: np.random.Generator, pred_thr: float = PROB_THRESHOLD
) -> Tensor:
    """RITM trainer's get_next_points: one more click per sample from the model's current errors.

    For each sample: false negatives (gt == 1, prob ≤ pred_thr) and false positives (gt == 0,
    prob > pred_thr), ignore pixels in neither; each region's Euclidean distance transform with the image
    border counted as boundary (zero padding, exact L2). The larger error is the one with the greater
    maximal distance (fn wins only when strictly greater); the click is a uniformly random pixel of it
    whose distance exceeds half that maximum — random rather than the deepest point (the evaluation
    clicker), so training sees varied corrective clicks. It goes into the first padding row, label
    positive for a false negative, negative otherwise. Samples without a padding row or without any error
    are returned unchanged.

    Args:
        prob: B×1×H×W probabilities (sigmoid of the logits), any device.
        gt: B×1×H×W float, 1 object, 0 background, -1 ignore.
        clicks: B×N×3 click rows (x, y, label) in pixels.
        rng: source of randomness for the pixel choice.
        pred_thr: probability threshold of the prediction (RITM's 0.49).

    Returns:
        B×N×3, a new tensor on `clicks`' device and dtype.
    """
    out = clicks.detach().clone()
    labels = out[..., 2].cpu().numpy()
    pred = (prob.detach()[:, 0] > pred_thr).cpu().numpy()
    target = gt.detach()[:, 0].cpu().numpy()
    for b in range(out.shape[0]):
        free = np.flatnonzero(labels[b] == LABEL_PADDING)
        if free.size == 0:
            continue
        fn = distance_to_zero((target[b] == 1) & ~pred[b], border_is_zero=True)
        fp = distance_to_zero((target[b] == 0) & pred[b], border_is_zero=True)
        fn_max, fp_max = float(fn.max()), float(fp.max())
        if max(fn_max, fp_max) <= 0.0:
            continue
        positive = fn_max > fp_max
        dist = fn if positive else fp
        candidates = np.argwhere(dist > max(fn_max, fp_max) / 2.0)
        row, col = candidates[rng.integers(0, len(candidates))]
        label = LABEL_POSITIVE if positive else LABEL_NEGATIVE
        out[b, free[0]] = torch.tensor([float(col), float(row), float(label)], dtype=out.dtype)
    return out

