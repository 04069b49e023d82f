"""Training clicks: RITM's multi-point sampler and the iterative training clicker."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from edgeclick import contract
from edgeclick.train.points import (
    MultiPointSampler,
    decaying_probs,
    next_training_clicks,
)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """60×80 gt: a 20×30 object, an ignore strip; and a mask of another object."""
    gt = np.zeros((60, 80), np.int8)
    gt[20:40, 25:55] = 1
    gt[:, 75:] = -1
    others = np.zeros(gt.shape, bool)
    others[2:10, 2:20] = True
    return gt, others


def _split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = rows[:, 2]
    return rows[labels == contract.LABEL_POSITIVE], rows[labels == contract.LABEL_NEGATIVE], rows[labels == contract.LABEL_PADDING]


def _at(gt_like: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    return gt_like[clicks[:, 1].astype(int), clicks[:, 0].astype(int)]


def test_sampler_rows_and_regions() -> None:
    gt, others = _scene()
    sampler = MultiPointSampler(max_num_points=24, prob_gamma=0.8)
    eroded = cv2.erode((gt == 1).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3).astype(bool)
    n_eroded = 0
    for seed in range(200):
        rows = sampler(gt, np.random.default_rng(seed), others=others)
        assert rows.shape == (24, 3) and rows.dtype == np.float32
        pos, neg, pad = _split(rows)
        assert len(pos) + len(neg) + len(pad) == 24
        assert len(pos) >= 1
        assert (pad == contract.LABEL_PADDING).all()
        # Clicks first, padding after, and the last 3 rows always free for iterative clicks.
        n_clicks = len(pos) + len(neg)
        assert (rows[:n_clicks, 2] >= 0).all() and (rows[n_clicks:, 2] == contract.LABEL_PADDING).all()
        assert n_clicks <= 21
        assert (rows[:n_clicks, 0] == np.rint(rows[:n_clicks, 0])).all()  # pixel centres
        assert (_at(gt, pos) == 1).all()
        assert (_at(gt, neg) == 0).all()  # background only: never the object, never ignore
        n_eroded += bool(_at(eroded, pos).all())
    assert n_eroded > 150  # erosion with probability 0.9


def test_sampler_negative_strategies() -> None:
    gt, others = _scene()
    only_other = MultiPointSampler(negative_probs=(0.0, 1.0, 0.0))
    only_border = MultiPointSampler(negative_probs=(0.0, 0.0, 1.0))
    radius = int(np.ceil(0.1 * np.sqrt((gt == 1).sum())))  # 3 px band for a 600 px object
    band = cv2.dilate((gt == 1).astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)).astype(bool) & (gt == 0)
    seen_other = seen_border = 0
    for seed in range(100):
        _, neg, _ = _split(only_other(gt, np.random.default_rng(seed), others=others))
        assert _at(others, neg).all()
        seen_other += len(neg)
        _, neg, _ = _split(only_border(gt, np.random.default_rng(seed)))
        assert _at(band, neg).all()
        seen_border += len(neg)
    assert seen_other > 50 and seen_border > 50


def test_sampler_count_distribution() -> None:
    # P(k positives) ∝ 0.8^(k-1): one positive in about 20 % of draws, two in 16 %.
    gt, _ = _scene()
    sampler = MultiPointSampler()
    counts = np.array([len(_split(sampler(gt, np.random.default_rng(s)))[0]) for s in range(2000)])
    assert abs((counts == 1).mean() - decaying_probs(24, 0.8)[0]) < 0.03
    assert (counts == 1).mean() > (counts == 2).mean() > (counts == 4).mean()


def test_sampler_thin_and_empty_objects() -> None:
    gt = np.zeros((40, 40), np.int8)
    gt[20, 5:35] = 1  # a 1 px wire vanishes under erosion: positives fall back to the wire itself
    for seed in range(20):
        pos, _, _ = _split(MultiPointSampler()(gt, np.random.default_rng(seed)))
        assert len(pos) >= 1 and (_at(gt, pos) == 1).all()
    empty = np.zeros((40, 40), np.int8)
    pos, neg, _ = _split(MultiPointSampler()(empty, np.random.default_rng(0)))
    assert len(pos) == 0 and (neg[:, 2] == contract.LABEL_NEGATIVE).all()


def test_sampler_deterministic() -> None:
    gt, others = _scene()
    sampler = MultiPointSampler()
    a = sampler(gt, np.random.default_rng(7), others=others)
    assert np.array_equal(a, sampler(gt, np.random.default_rng(7), others=others))
    assert any(not np.array_equal(a, sampler(gt, np.random.default_rng(s), others=others)) for s in range(8, 12))


def _clicks(rows: list[tuple[float, float, int]], n: int = 6) -> torch.Tensor:
    out = torch.full((1, n, 3), float(contract.LABEL_PADDING))
    for i, row in enumerate(rows):
        out[0, i] = torch.tensor(row, dtype=torch.float32)
    return out


def _edt_padded(region: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def test_next_click_in_larger_error_region() -> None:
    gt = torch.zeros(2, 1, 40, 50)
    gt[:, :, 5:25, 8:30] = 1
    prob = torch.zeros(2, 1, 40, 50)
    # Sample 0: nothing predicted → false negative square (20×22), a small false positive patch.
    prob[0, 0, 32:36, 40:44] = 0.9
    # Sample 1: everything predicted except a sliver of the object → false positives dominate.
    prob[1] = 0.9
    prob[1, 0, 5:7, 8:30] = 0.1
    clicks = torch.cat([_clicks([(10, 10, 1)]), _clicks([(10, 10, 1), (45, 35, 0)])])
    for seed in range(10):
        out = next_training_clicks(prob, gt, clicks, np.random.default_rng(seed))
        assert torch.equal(out[0, 0], clicks[0, 0]) and torch.equal(out[1, :2], clicks[1, :2])
        pred = prob[:, 0].numpy() > 0.49
        g = gt[:, 0].numpy()
        for b, (row, positive) in enumerate(((1, True), (2, False))):
            x, y, label = out[b, row].tolist()
            assert label == (contract.LABEL_POSITIVE if positive else contract.LABEL_NEGATIVE)
            error = ((g[b] == 1) & ~pred[b]) if positive else ((g[b] == 0) & pred[b])
            dist = _edt_padded(error)
            assert error[int(y), int(x)]
            assert dist[int(y), int(x)] > dist.max() / 2
            assert (out[b, row + 1:, 2] == contract.LABEL_PADDING).all()  # only the first padding row


def test_next_click_is_random_not_deepest() -> None:
    gt = torch.zeros(1, 1, 40, 50)
    gt[:, :, 5:35, 5:45] = 1
    prob = torch.zeros_like(gt)
    picks = {tuple(next_training_clicks(prob, gt, _clicks([]), np.random.default_rng(s))[0, 0, :2].tolist())
             for s in range(10)}
    assert len(picks) > 3


def test_next_click_leaves_finished_samples_alone() -> None:
    gt = torch.zeros(3, 1, 30, 30)
    gt[:, :, 10:20, 10:20] = 1
    gt[:, :, :, 25:] = -1
    prob = gt.clamp(min=0).clone()
    prob[:, :, :, 25:] = 1.0  # predicted object on ignore pixels: not an error
    prob[2] = 0.0  # sample 2 has errors but no padding row
    full = torch.tensor([[15.0, 15.0, 1.0]]).repeat(1, 4, 1)
    clicks = torch.cat([_clicks([(15, 15, 1)], 4), _clicks([], 4), full])
    out = next_training_clicks(prob, gt, clicks, np.random.default_rng(0))
    assert torch.equal(out, clicks)
    assert out is not clicks


@pytest.mark.parametrize("thr,expect_click", [(0.49, False), (0.7, True)])
def test_next_click_threshold(thr: float, expect_click: bool) -> None:
    gt = torch.zeros(1, 1, 20, 20)
    gt[:, :, 5:15, 5:15] = 1
    prob = gt * 0.6  # object predicted at 0.6: correct at 0.49, missed at 0.7
    out = next_training_clicks(prob, gt, _clicks([]), np.random.default_rng(0), pred_thr=thr)
    assert (out[0, 0, 2].item() == contract.LABEL_POSITIVE) is expect_click
