"""One evaluation/training sample: an RGB image and its ground-truth mask with an ignore label."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE: int = -1
"""Value of `Sample.gt` for pixels excluded from IoU and from click errors (GrabCut's 128 band)."""


@dataclass(frozen=True)
class Sample:
    """An image and the mask of one object in it.

    Attributes:
        name: identifier unique within its dataset (file stem, plus instance index when several).
        image: H×W×3 uint8 RGB.
        gt: H×W int8; 1 object, 0 background, `IGNORE` (-1) excluded from metrics and clicks.
    """

    name: str
    image: np.ndarray
    gt: np.ndarray

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"{self.name}: image must be H×W×3 uint8 RGB, got {self.image.shape} {self.image.dtype}")
        if self.gt.shape != self.image.shape[:2]:
            raise ValueError(f"{self.name}: mask {self.gt.shape} does not match image {self.image.shape[:2]}")
        if self.gt.dtype != np.int8:
            raise ValueError(f"{self.name}: gt must be int8 (1 object, 0 background, -1 ignore), got {self.gt.dtype}")
