"""RITM evaluation clicker: hand-computed clicks on small synthetic masks."""
from __future__ import annotations

import numpy as np
import pytest

from edgeclick.clicks import Click, Clicker, clicked_map, next_click


def _gt(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, dtype=np.int8)


def _empty(gt: np.ndarray) -> np.ndarray:
    return np.zeros(gt.shape, dtype=bool)


def test_square_first_click_at_centre_with_x_column_y_row() -> None:
    gt = _gt((12, 14))
    gt[2:7, 5:10] = 1  # rows 2..6, cols 5..9 → centre row 4, col 7, distance 3 (unique maximum)
    assert next_click(_empty(gt), gt) == Click(x=7, y=4, positive=True)


def test_ring_click_lands_on_the_ring_not_in_the_hole() -> None:
    gt = _gt((15, 15))
    gt[2:13, 2:13] = 1
    gt[5:10, 5:10] = 0  # hole: the ring is 3 px thick, its deepest pixels are 2 px from an edge
    click = next_click(_empty(gt), gt)
    # First depth-2 pixel in row-major order: row 3 (row 2 touches the outside), col 3.
    assert click == Click(x=3, y=3, positive=True)
    assert gt[click.y, click.x] == 1


def test_image_border_counts_as_boundary() -> None:
    gt = _gt((10, 10))
    gt[0:5, :] = 1  # top half, cut by the top, left and right borders
    click = next_click(_empty(gt), gt)
    # Without border padding the deepest point would be on row 0 (5 px from the background).
    # With it: depth = min(row + 1, 5 - row, col + 1, 10 - col) is 3 at rows 2, cols 2..7.
    assert click == Click(x=2, y=2, positive=True)
    assert click.y != 0


def test_ignore_pixels_are_neither_errors_nor_clicked() -> None:
    gt = _gt((11, 11))
    gt[2:9, 2:9] = 1
    gt[4:7, 4:7] = -1  # the would-be centre (5, 5) is ignored
    click = next_click(_empty(gt), gt)
    assert gt[click.y, click.x] == 1
    # The ring around the ignored core is 2 px thick; its depth peaks at √2 on the inner corners.
    assert click == Click(x=3, y=3, positive=True)


def test_false_positives_on_ignore_pixels_do_not_count() -> None:
    gt = _gt((20, 20))
    gt[1:4, 1:4] = 1  # small object, depth 2 at its centre
    gt[8:19, 8:19] = -1  # large ignore block
    pred = gt == -1  # predicting the ignore block would be a depth-6 false positive if it counted
    assert next_click(pred, gt) == Click(x=2, y=2, positive=True)


def test_false_positive_gives_negative_click() -> None:
    gt = _gt((20, 20))
    gt[1:4, 1:4] = 1
    pred = np.zeros(gt.shape, dtype=bool)
    pred[1:4, 1:4] = True
    pred[8:15, 10:17] = True  # 7×7 false positive, centre row 11, col 13
    assert next_click(pred, gt) == Click(x=13, y=11, positive=False)


def test_equal_depths_give_negative_click() -> None:
    gt = _gt((10, 12))
    gt[1:4, 1:4] = 1  # false negative of depth 2 at (2, 2)
    pred = np.zeros(gt.shape, dtype=bool)
    pred[5:8, 7:10] = True  # false positive of depth 2 at (6, 8)
    assert next_click(pred, gt) == Click(x=8, y=6, positive=False)


def test_ties_go_to_the_first_pixel_in_row_major_order() -> None:
    gt = _gt((10, 12))
    gt[6:9, 1:4] = 1  # lower-left square, centre (7, 2)
    gt[2:5, 7:10] = 1  # upper-right square, centre (3, 8): earlier row wins despite larger column
    assert next_click(_empty(gt), gt) == Click(x=8, y=3, positive=True)
    gt2 = _gt((5, 12))
    gt2[1:4, 1:4] = 1
    gt2[1:4, 7:10] = 1  # same rows: the left one wins
    assert next_click(_empty(gt2), gt2) == Click(x=2, y=2, positive=True)


def test_already_clicked_pixels_are_excluded() -> None:
    gt = _gt((7, 7))
    gt[2:5, 2:5] = 1  # depth 2 only at the centre (3, 3), 1 elsewhere
    first = next_click(_empty(gt), gt)
    assert first == Click(3, 3, True)
    # The model ignored the click: the centre must not be clicked again; next is the square's top-left.
    assert next_click(_empty(gt), gt, [first]) == Click(2, 2, True)


def test_perfect_prediction_follows_ritm_negative_click_at_origin() -> None:
    gt = _gt((6, 6))
    gt[2:4, 2:4] = 1
    assert next_click(gt == 1, gt) == Click(0, 0, False)


def test_clicker_accumulates_clicks_and_never_repeats() -> None:
    gt = _gt((9, 9))
    gt[1:8, 1:8] = 1
    clicker = Clicker(gt)
    pred = np.zeros(gt.shape, dtype=bool)
    clicks = [clicker.make_next_click(pred) for _ in range(5)]
    assert clicker.clicks == clicks
    assert len({(c.x, c.y) for c in clicks}) == 5
    assert clicks[0] == Click(4, 4, True)


def test_clicked_map_rounds_and_skips_outside() -> None:
    m = clicked_map((4, 5), [Click(1.6, 0.2, True), Click(-1, 2, False), Click(4, 3, False), Click(9, 9, True)])
    expected = np.zeros((4, 5), dtype=bool)
    expected[0, 2] = True
    expected[3, 4] = True
    np.testing.assert_array_equal(m, expected)


def _brute_force_click(pred: np.ndarray, gt: np.ndarray) -> Click:
    """Reference: exact distances by broadcasting over all zero pixels of the padded full image."""
    h, w = gt.shape
    out = []
    for err in ((gt == 1) & ~pred, (gt == 0) & pred):
        padded = np.pad(err, 1)
        zr, zc = np.nonzero(~padded)
        er, ec = np.nonzero(padded)
        dist = np.zeros(padded.shape)
        if er.size:
            d2 = (er[:, None] - zr[None, :]) ** 2 + (ec[:, None] - zc[None, :]) ** 2
            dist[er, ec] = np.sqrt(d2.min(axis=1))
        out.append(dist[1:-1, 1:-1].astype(np.float32))
    fn, fp = out
    positive = bool(fn.max() > fp.max())
    r, c = np.unravel_index(np.argmax(fn if positive else fp), (h, w))
    return Click(int(c), int(r), positive)


@pytest.mark.parametrize("seed", range(12))
def test_matches_full_image_reference_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 24, size=2)
    gt = (rng.random((h, w)) < 0.5).astype(np.int8)
    gt[rng.random((h, w)) < 0.1] = -1
    pred = rng.random((h, w)) < 0.4
    assert next_click(pred, gt) == _brute_force_click(pred, gt)


def test_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        next_click(np.zeros((3, 3), bool), _gt((3, 4)))


def test_click_rows_encode_labels_and_pad() -> None:
    from edgeclick import contract
    from edgeclick.clicks import click_rows

    rows = click_rows([Click(3.5, 4, True), (7, 8.25, False)], batch=2)
    assert rows.shape == (2, contract.NUM_CLICKS, 3) and rows.dtype == np.float32
    assert rows[1, :2].tolist() == [[3.5, 4, contract.LABEL_POSITIVE], [7, 8.25, contract.LABEL_NEGATIVE]]
    assert (rows[:, 2:] == contract.LABEL_PADDING).all() and (rows[0] == rows[1]).all()
    assert (click_rows([]) == contract.LABEL_PADDING).all()
    with pytest.raises(ValueError, match="exceed"):
        click_rows([(0, 0, True)] * (contract.NUM_CLICKS + 1))
