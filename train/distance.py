"""Exact, deterministic Euclidean distance transform (cv2 speed, bit-reproducible values)."""
from __future__ import annotations

import cv2
import numpy as np


def distance_to_zero(mask: np.ndarray, border_is_zero: bool = False) -> np.ndarray:
    """Euclidean distance of every nonzero pixel of `mask` to the nearest zero pixel (0 on zero pixels).

    cv2's DIST_MASK_PRECISE is the exact transform (same values as scipy's distance_transform_edt) and
    several times faster, but its float32 output varies in the last bits between calls (SIMD paths
    depend on buffer alignment). Exact distances are square roots of integers, so rounding d² to the
    nearest integer (the error is < 1e-3 for any image side below 10⁴ px) and taking the root again makes
    the values reproducible bit for bit — training items and clicks must be deterministic.

    Args:
        mask: H×W array, nonzero = inside.
        border_is_zero: count the pixels just outside the image as zero (the image border is a boundary).

    Returns:
        H×W float32 distances in pixels.
    """
    src = (mask != 0).astype(np.uint8)
    if border_is_zero:
        src = np.pad(src, 1)
    dist = cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)
    if border_is_zero:
        dist = dist[1:-1, 1:-1]
    # A mask without any zero pixel (and border_is_zero False) has no defined distance: cv2 then returns
    # a huge sentinel (~1.8e19) that survives the rounding; callers rule that case out.
    return np.sqrt(np.rint(dist * dist)).astype(np.float32)
