"""Training losses against hand-computed values: NFL, BCE, boundary loss, signed distance maps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeclick.train.losses import (
    BoundaryLoss,
    NormalizedFocalLoss,
    SigmoidBCELoss,
    signed_distance_map,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    """1×1×2×2 logits with probabilities 0.5, 0.75, 0.25, sigmoid(2) and gt 1, 0, 1, ignore."""
    logits = torch.tensor([[[[0.0, LN3], [-LN3, 2.0]]]], requires_grad=True)
    gt = torch.tensor([[[[1.0, 0.0], [1.0, -1.0]]]])
    return logits, gt


def test_nfl_hand_computed() -> None:
    # p = 0.5, 0.75, 0.25 (the ignored pixel drops out).  p_t = 0.5, 1 - 0.75 = 0.25, 0.25.
    # beta = (1 - p_t)^2 = 0.25, 0.5625, 0.5625;  S = sum beta = 1.375.
    # sum beta·(-ln p_t) = 0.25·ln2 + 2·0.5625·ln4 = 0.25·ln2 + 2.25·ln2 = 2.5·ln2.
    # loss = alpha · 2.5·ln2 / S = 0.5 · 2.5·ln2 / 1.375 = (10/11)·ln2.
    logits, gt = _example()
    loss = NormalizedFocalLoss(alpha=0.5, gamma=2.0)(logits, gt)
    assert loss.item() == pytest.approx(10.0 / 11.0 * LN2, rel=1e-6)


def test_nfl_gradient_uses_detached_normaliser() -> None:
    logits, gt = _example()
    NormalizedFocalLoss()(logits, gt).backward()
    grad = logits.grad[0, 0]
    # Pixel (0, 0): label 1, p = 0.5. With S held constant, d/dx [(1-p)^2 (-ln p)] · alpha / S,
    # dp/dx = p(1-p):  p(1-p)·[-2(1-p)(-ln p) - (1-p)^2 / p] = 0.25·(-ln2 - 0.5).
    expected_00 = 0.5 / 1.375 * 0.25 * (-LN2 - 0.5)
    # Pixel (0, 1): label 0, p = 0.75, p_t = 1 - p: d/dx [p^2 (-ln(1-p))] = p(1-p)·[2p(-ln(1-p)) + p^2/(1-p)]
    #   = 0.1875·(1.5·ln4 + 2.25).
    expected_01 = 0.5 / 1.375 * 0.1875 * (1.5 * 2 * LN2 + 2.25)
    assert grad[0, 0].item() == pytest.approx(expected_00, rel=1e-5)
    assert grad[0, 1].item() == pytest.approx(expected_01, rel=1e-5)
    assert grad[1, 1].item() == 0.0  # ignore pixel
    # Letting gradients flow through S changes them: the detach is what the test above pins down.
    x, _ = _example()
    p = torch.sigmoid(x)[0, 0]
    beta = torch.stack([(1 - p[0, 0]) ** 2, p[0, 1] ** 2, (1 - p[1, 0]) ** 2])
    nll = torch.stack([-torch.log(p[0, 0]), -torch.log(1 - p[0, 1]), -torch.log(p[1, 0])])
    (0.5 * (beta * nll).sum() / beta.sum()).backward()
    assert abs(x.grad[0, 0, 0, 0].item() - expected_00) > 1e-3


def test_nfl_batch_mean_and_all_ignored_image() -> None:
    logits, gt = _example()
    ignored = torch.full_like(gt, -1.0)
    loss = NormalizedFocalLoss()(torch.cat([logits, logits]), torch.cat([gt, ignored]))
    assert loss.item() == pytest.approx(10.0 / 11.0 * LN2 / 2, rel=1e-6)  # the empty image contributes 0


def test_bce_hand_computed() -> None:
    # -ln 0.5 = ln2; -ln(1 - 0.75) = ln4; -ln 0.25 = ln4; ignore 0. RITM divides by all 4 pixels.
    logits, gt = _example()
    loss = SigmoidBCELoss()(logits, gt)
    assert loss.item() == pytest.approx((LN2 + 2 * 2 * LN2) / 4, rel=1e-6)
    loss.backward()
    grad = logits.grad[0, 0]
    assert grad[0, 0].item() == pytest.approx((0.5 - 1.0) / 4)  # (p - y) / pixels
    assert grad[0, 1].item() == pytest.approx((0.75 - 0.0) / 4)
    assert grad[1, 1].item() == 0.0


def test_boundary_loss_hand_computed() -> None:
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    sdm = torch.tensor([[[[-1.0, 0.0], [1.0, 2.0]]]])
    assert BoundaryLoss()(logits, sdm).item() == pytest.approx(0.5 * (-1 + 0 + 1 + 2) / 4)
    valid = torch.tensor([[[[True, True], [True, False]]]])
    assert BoundaryLoss()(logits, sdm, valid).item() == pytest.approx(0.5 * (-1 + 0 + 1) / 3)


def test_boundary_loss_prefers_the_right_mask() -> None:
    gt = np.zeros((16, 16), np.int8)
    gt[4:12, 5:11] = 1
    sdm = torch.from_numpy(signed_distance_map(gt))[None, None]
    perfect = torch.from_numpy(np.where(gt == 1, 10.0, -10.0).astype(np.float32))[None, None]
    loss = BoundaryLoss()
    assert loss(perfect, sdm) < loss(torch.zeros_like(perfect), sdm) < loss(-perfect, sdm)


def test_signed_distance_map_square() -> None:
    gt = np.zeros((9, 9), np.int8)
    gt[2:7, 2:7] = 1  # 5×5 square, centre (4, 4)
    gt[8, 8] = -1
    sdm = signed_distance_map(gt)
    assert sdm.dtype == np.float32 and sdm.shape == gt.shape
    assert sdm[4, 4] == pytest.approx(-2.0)  # 3 px to the nearest background pixel, minus 1
    assert sdm[3, 4] == pytest.approx(-1.0)
    assert sdm[2, 4] == 0.0 and sdm[2, 2] == 0.0  # boundary pixels of the object
    assert sdm[1, 4] == pytest.approx(1.0)  # just outside
    assert sdm[0, 4] == pytest.approx(2.0)
    assert sdm[0, 0] == pytest.approx(math.sqrt(8.0))  # to the corner (2, 2)
    assert sdm[8, 8] == 0.0  # ignore
    assert (sdm[gt == 1] <= 0).all() and (sdm[gt == 0] > 0).all()


def test_signed_distance_map_degenerate() -> None:
    assert not signed_distance_map(np.zeros((5, 6), np.int8)).any()
    assert not signed_distance_map(np.full((5, 6), -1, np.int8)).any()
    assert not signed_distance_map(np.ones((5, 6), np.int8)).any()  # no boundary anywhere
