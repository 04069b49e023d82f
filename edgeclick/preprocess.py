"""The contract's preprocessing rule: fit the image into the model input keeping its aspect ratio, pad
bottom/right with zeros, and the inverse mapping for clicks and masks.

Coordinates map between pixel centres: x_model = (x + 0.5) · s − 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgeclick import contract


def padded_size(height: int, width: int) -> tuple[int, int]:
    """Smallest multiple-of-PAD_MULTIPLE size holding height×width."""
    m = contract.PAD_MULTIPLE
    return -(-height // m) * m, -(-width // m) * m


def _resize(array: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×C×h×w float → B×C×size, bilinear, anti-aliased when shrinking."""
    if tuple(array.shape[-2:]) == size:
        return array
    shrink = size[0] < array.shape[-2] or size[1] < array.shape[-1]
    return F.interpolate(array, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A torch view of `array` (copied when read-only or strided: torch.from_numpy warns on a read-only
    buffer, which is what Pillow and np.broadcast_to hand out)."""
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")
    return torch.from_numpy(array)


@dataclass(frozen=True)
class Letterbox:
    """How one image of `source` size (h, w) sits in a model input of `target` size (H, W)."""

    source: tuple[int, int]
    target: tuple[int, int]
    resized: tuple[int, int]

    @classmethod
    def fit(cls, source: tuple[int, int], target: tuple[int, int] | None) -> "Letterbox":
        """target None: keep the image's own size, padded to a multiple of PAD_MULTIPLE (RITM's native run)."""
        h, w = source
        if target is None:
            return cls(source, padded_size(h, w), source)
        contract.check_size(*target)
        scale = min(target[0] / h, target[1] / w)
        resized = (min(target[0], max(1, round(h * scale))), min(target[1], max(1, round(w * scale))))
        return cls(source, target, resized)

    @property
    def scale_xy(self) -> tuple[float, float]:
        return self.resized[1] / self.source[1], self.resized[0] / self.source[0]

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """h×w×3 uint8 → H×W×3 uint8 (resized, zero-padded)."""
        t = _tensor(rgb).permute(2, 0, 1)[None].float()
        t = _resize(t, self.resized).round().clamp(0, 255).to(torch.uint8)
        out = np.full((*self.target, 3), contract.PAD_VALUE, dtype=np.uint8)
        out[: self.resized[0], : self.resized[1]] = t[0].permute(1, 2, 0).numpy()
        return out

    def mask(self, prob: np.ndarray) -> np.ndarray:
        """h×w float probabilities → 1×1×H×W float32 (zeros in the padding)."""
        t = _resize(_tensor(np.asarray(prob, dtype=np.float32))[None, None], self.resized)
        # Interpolation weights sum to 1 only up to float32 rounding: a confident 0/1 mask comes back with
        # values like 1.0000001, which the decoder's prev_mask check (rightly) refuses.
        t = t.clamp(0.0, 1.0)
        out = np.zeros((1, 1, *self.target), dtype=np.float32)
        out[..., : self.resized[0], : self.resized[1]] = t.numpy()
        return out

    def points(self, xy: np.ndarray) -> np.ndarray:
        """K×2 (x, y) source pixels → model-input pixels."""
        sx, sy = self.scale_xy
        scale = np.array([sx, sy], dtype=np.float64)
        return ((np.asarray(xy, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)

    def unmap(self, model_map: np.ndarray) -> np.ndarray:
        """H×W (or 1×1×H×W) model-space map → h×w at the source size (crop the padding, resize back)."""
        m = np.asarray(model_map, dtype=np.float32).reshape(self.target)[: self.resized[0], : self.resized[1]]
        return _resize(_tensor(m)[None, None], self.source)[0, 0].numpy()
