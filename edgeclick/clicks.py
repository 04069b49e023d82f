"""Clicks: the user's input, its encoding as the graphs' click rows, and RITM's clicker that simulates a user."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from edgeclick import contract


class Click(NamedTuple):
    """One user click in pixel coordinates of the image it was placed on.

    x is the column, y the row (integers in RITM's protocol; floats are accepted by the model).
    """

    x: float
    y: float
    positive: bool


def click_label(positive: bool) -> int:
    """The contract's label of a positive (LABEL_POSITIVE) or negative (LABEL_NEGATIVE) click."""
    return contract.LABEL_POSITIVE if positive else contract.LABEL_NEGATIVE


def click_rows(clicks: Sequence[Click | tuple[float, float, bool]], *, batch: int = 1) -> np.ndarray:
    """The `clicks` input of a decoder: B×N×3 float32 rows (x, y, label), N = contract.NUM_CLICKS.

    Row i holds click i (x column, y row in model-input pixels; label from `click_label`), the rows after
    the last click are padding (every column contract.LABEL_PADDING); each of the `batch` items gets the same
    clicks. The only place click rows are built: the decoder rasterises its disks from them (the radius is
    the model's, `ModelConfig.click_radius`).

    Raises:
        ValueError: more clicks than contract.NUM_CLICKS.
    """
    if len(clicks) > contract.NUM_CLICKS:
        raise ValueError(f"{len(clicks)} clicks exceed the contract's {contract.NUM_CLICKS} click rows")
    rows = np.full((batch, contract.NUM_CLICKS, 3), contract.LABEL_PADDING, dtype=np.float32)
    for i, (x, y, positive) in enumerate(clicks):
        rows[:, i] = (x, y, click_label(bool(positive)))
    return rows


def _error_distance(error: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of each error pixel to the nearest non-error pixel or image border.

    Args:
        error: H×W bool error region.

    Returns:
        H×W float32 distances in pixels, 0 outside the region. float32 because RITM's
        cv2.distanceTransform (DIST_L2, precise mask) returns float32, and ties are decided on these values.
    """
    dist = np.zeros(error.shape, dtype=np.float32)
    rows = np.flatnonzero(error.any(axis=1))
    if rows.size == 0:
        return dist
    cols = np.flatnonzero(error.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # A one-pixel zero ring around the region's box gives the same distances as the whole image: any
    # zero outside the box projects onto the ring at no greater distance. At the image edge the ring
    # plays RITM's padding, so the border counts as boundary.
    crop = np.pad(error[r0:r1, c0:c1], 1)
    dist[r0:r1, c0:c1] = ndimage.distance_transform_edt(crop)[1:-1, 1:-1]
    return dist


def clicked_map(shape: tuple[int, int], clicks: Sequence[Click]) -> np.ndarray:
    """H×W bool, True at the pixels of the given clicks (coordinates rounded; clicks outside skipped)."""
    clicked = np.zeros(shape, dtype=bool)
    if clicks:
        xy = np.rint(np.array([(c.x, c.y) for c in clicks], dtype=np.float64)).astype(np.int64)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < shape[0])
        clicked[xy[inside, 1], xy[inside, 0]] = True
    return clicked


def next_click(pred: np.ndarray, gt: np.ndarray, clicks: Sequence[Click] = ()) -> Click:
    """The RITM evaluation click: the point deepest inside the larger error region.

    False negatives are object pixels the prediction misses, false positives background pixels it
    covers; ignore pixels are neither. Each region's distance transform counts the image border as
    boundary. Already-clicked pixels get distance 0 (RITM's not_clicked_map), so a click is never
    repeated while another error pixel is left. The click is positive when the deepest false negative is
    strictly deeper than the deepest false positive, and lands on the first pixel of that depth in
    row-major order. With no error left RITM's rule still answers: a negative click at (0, 0).

    Args:
        pred: H×W bool current prediction (all False before the first click).
        gt: H×W int8, 1 object, 0 background, -1 ignore.
        clicks: clicks made so far (their pixels are excluded).

    Returns:
        The next click, integer pixel coordinates (x column, y row).
    """
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    not_clicked = ~clicked_map(gt.shape, clicks)
    fn = _error_distance((gt == 1) & ~pred) * not_clicked
    fp = _error_distance((gt == 0) & pred) * not_clicked
    positive = bool(fn.max() > fp.max())
    # np.argmax returns the first maximum of the flattened (row-major) array.
    row, col = np.unravel_index(int(np.argmax(fn if positive else fp)), gt.shape)
    return Click(x=int(col), y=int(row), positive=positive)


class Clicker:
    """Simulated user for one sample: keeps the clicks and places each next one with `next_click`."""

    def __init__(self, gt: np.ndarray) -> None:
        """Args: gt: H×W int8 ground truth (1 object, 0 background, -1 ignore)."""
        self.gt = gt
        self.clicks: list[Click] = []

    def make_next_click(self, pred: np.ndarray) -> Click:
        """Add and return the click that corrects the H×W bool prediction `pred` the most."""
        click = next_click(pred, self.gt, self.clicks)
        self.clicks.append(click)
        return click
