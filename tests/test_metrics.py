"""IoU, Boundary IoU, NoC / NoF on hand-computed masks."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edgeclick.metrics import (
    band_iou,
    boundary_band,
    boundary_iou,
    boundary_width,
    iou,
    mean_curve,
    noc,
    nof,
    summarize,
)


def test_iou_hand_computed_with_ignore() -> None:
    gt = np.zeros((4, 4), dtype=np.int8)
    gt[0:2, 0:2] = 1  # 4 object pixels
    pred = np.zeros((4, 4), dtype=bool)
    pred[0:2, 1:3] = True  # 2 on the object, 2 off it
    assert iou(pred, gt) == pytest.approx(2 / 6)
    gt[0, 2] = -1  # one of the false positives becomes ignore: union 5
    assert iou(pred, gt) == pytest.approx(2 / 5)
    gt[1, 2] = -1  # both: union 4
    assert iou(pred, gt) == pytest.approx(2 / 4)


def test_iou_ignore_inside_prediction_only_shrinks_union() -> None:
    gt = np.full((3, 3), -1, dtype=np.int8)
    gt[1, 1] = 1
    assert iou(np.ones((3, 3), bool), gt) == 1.0


def test_iou_both_empty_is_one() -> None:
    assert iou(np.zeros((3, 3), bool), np.zeros((3, 3), np.int8)) == 1.0


@pytest.mark.parametrize(
    ("shape", "d"),
    [((100, 100), 3), ((10, 10), 1), ((300, 400), 10), ((480, 640), 16), ((18, 18), 1), ((53, 0), 1)],
)
def test_boundary_width_from_diagonal(shape: tuple[int, int], d: int) -> None:
    # 100×100: 0.02·141.42 = 2.83 → 3; 10×10: 0.28 → 0 → at least 1; 300×400: 0.02·500 = 10;
    # 480×640: 0.02·800 = 16; 18×18: 0.509 → 1; 53×0: 1.06 → 1.
    assert boundary_width(*shape) == d


def test_band_of_square() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:12, 5:12] = True  # 7×7
    band1 = boundary_band(mask, 1)
    assert band1.sum() == 49 - 25
    assert not band1[6:11, 6:11].any()
    assert boundary_band(mask, 2).sum() == 49 - 9
    assert boundary_band(mask, 3).sum() == 49 - 1
    assert boundary_band(mask, 4).sum() == 49


def test_band_counts_image_border_as_boundary() -> None:
    mask = np.ones((10, 10), dtype=bool)
    band = boundary_band(mask, 1)
    assert band.sum() == 100 - 64  # the outer ring of the image
    assert band[0].all() and band[:, -1].all() and not band[1:-1, 1:-1].any()


@pytest.mark.parametrize("seed", range(6))
def test_band_matches_iterated_3x3_erosion(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((40, 50)) < 0.6)
    d = int(rng.integers(1, 5))
    eroded = ndimage.binary_erosion(mask, np.ones((3, 3), bool), iterations=d, border_value=0)
    np.testing.assert_array_equal(boundary_band(mask, d), mask & ~eroded)


def test_boundary_iou_hand_computed_shifted_square() -> None:
    gt = np.zeros((20, 20), dtype=np.int8)
    gt[5:12, 5:12] = 1
    pred = np.zeros((20, 20), dtype=bool)
    pred[5:12, 6:13] = True  # shifted right by one column; d = round(0.02·28.3) = 1
    # Rings of 24 px each share the top and bottom rows over columns 6..11: 12 px. Union 36.
    assert boundary_iou(pred, gt) == pytest.approx(12 / 36)
    assert iou(pred, gt) == pytest.approx(42 / 56)
    # Ignoring the prediction's right edge (column 12) removes its 7 band pixels from the union.
    gt[5:12, 12] = -1
    assert boundary_iou(pred, gt) == pytest.approx(12 / 29)


def test_boundary_iou_uses_diagonal_width() -> None:
    gt = np.zeros((100, 100), dtype=np.int8)  # d = 3
    gt[20:60, 20:60] = 1
    pred = gt == 1
    pred_in = np.zeros_like(pred)
    pred_in[23:57, 23:57] = True  # shrunk by exactly d: its band is the gt's next 3 rings inward
    # gt band: 40² − 34² = 444; pred band: 34² − 28² = 372; no overlap.
    assert boundary_iou(pred, gt) == 1.0
    assert boundary_iou(pred_in, gt) == 0.0
    # d = 6: gt band rows/cols 20..25 deep, pred band 23..28 deep. Overlap is the square 23..56 minus
    # 26..53 (34² − 28² = 372); union is 20..59 minus 29..50 (40² − 22² = 1116).
    assert boundary_iou(pred_in, gt, d=6) == pytest.approx(372 / 1116)


def test_band_iou_empty_is_one() -> None:
    z = np.zeros((3, 3), bool)
    assert band_iou(z, z, np.ones((3, 3), bool)) == 1.0


def test_noc_and_nof() -> None:
    reach = [0.5, 0.8, 0.86, 0.91, 0.96] + [0.96] * 15
    never = [0.5, 0.8, 0.86] + [0.86] * 17
    last = [0.1] * 19 + [0.97]  # reaches every threshold only at click 20
    ious = np.array([reach, never, last])
    np.testing.assert_array_equal(noc(ious, 0.85), [3, 3, 20])
    np.testing.assert_array_equal(noc(ious, 0.90), [4, 20, 20])
    np.testing.assert_array_equal(noc(ious, 0.95), [5, 20, 20])
    assert nof(ious, 0.85) == 0
    assert nof(ious, 0.90) == 1  # 'last' reached it at click 20: not a failure
    assert nof(ious, 0.95) == 1
    np.testing.assert_array_equal(noc(ious, 0.90, max_clicks=30), [4, 30, 20])


def test_noc_threshold_is_inclusive() -> None:
    assert noc(np.array([[0.8, 0.9, 0.95]]), 0.9)[0] == 2


def test_summarize() -> None:
    ious = np.array([[0.5, 0.9], [0.7, 0.8]])
    bious = np.array([[0.2, 0.95], [0.3, 0.4]])
    s = summarize(ious, bious, seconds=2.0, thresholds=(0.85, 0.9), max_clicks=2)
    assert s.n_samples == 2
    assert s.noc == {0.85: pytest.approx(2.0), 0.9: pytest.approx(2.0)}
    assert s.nof == {0.85: 1, 0.9: 1}
    assert s.noc_boundary == {0.85: 2.0, 0.9: 2.0}
    assert s.nof_boundary == {0.85: 1, 0.9: 1}
    assert s.miou == pytest.approx([0.6, 0.85])
    assert s.mbiou == pytest.approx(list(mean_curve(bious)))
    assert s.seconds_per_click == pytest.approx(0.5)
