"""Predictors and RITM's test-time transforms as predictor wrappers.

A predictor is anything with `set_image` / `predict` (the `Predictor` protocol; edgeclick's `Session`
implements it). `ZoomIn` and `FlipAveraged` wrap a predictor with RITM's inference transforms.

Coordinates: clicks are (x column, y row) pixels; boxes are RITM's inclusive
(row_min, row_max, col_min, col_max).
"""
from __future__ import annotations

from typing import Literal, Protocol, Sequence

import numpy as np

from edgeclick.clicks import Click

Box = tuple[int, int, int, int]
"""Inclusive (row_min, row_max, col_min, col_max)."""


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


