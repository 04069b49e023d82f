"""Cheap in-training validation: the RITM evaluation protocol run on a batch of crops at once.

For each sample the RITM clicker (`edgeclick.clicks.Clicker`: next click at the point deepest inside
the larger error region, border counted as boundary) places click k on the prediction after click
k−1; the model gets all clicks so far and the previous probability map; the prediction is
probability > 0.49; IoU and Boundary IoU are recorded after every click. NoC@t is the first click
reaching t, capped at the click budget (metrics.noc).

Differences from `edgeclick evaluate` (documented, on purpose, to keep it cheap): the crops are fed at
the model's input size directly (no letterbox, float [0,1] input instead of uint8), the encoder runs
once per batch and the decoder once per click for the whole batch, and the budget may be below 20.
"""
from __future__ import annotations

import numpy as np
import torch

from edgeclick import contract
from edgeclick.clicks import Clicker, click_rows
from edgeclick.data.sample import IGNORE
from edgeclick.metrics import band_iou, boundary_band, boundary_width, iou
from edgeclick.model.base import ClickModel


@torch.no_grad()
def click_scores(
    model: ClickModel,
    rgb: torch.Tensor,
    gt: torch.Tensor,
    max_clicks: int,
    pred_thr: float = contract.PROB_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate `max_clicks` RITM clicks per sample and score each step.

    Args:
        model: a ClickModel (put in eval mode by the caller).
        rgb: B×3×H×W float in [0, 1] (the model's input size).
        gt: B×1×H×W float, 1 object, 0 background, −1 ignore.
        max_clicks: click budget K ≤ contract.NUM_CLICKS.
        pred_thr: probability threshold of the evaluated mask.

    Returns:
        (ious, bious): B×K float64 IoU and Boundary IoU after clicks 1..K.
    """
    if not 1 <= max_clicks <= contract.NUM_CLICKS:
        raise ValueError(f"max_clicks must be in 1..{contract.NUM_CLICKS} (click rows per sample), got {max_clicks}")
    batch, _, height, width = rgb.shape
    gts = gt[:, 0].round().to(torch.int8).cpu().numpy()
    valid = gts != IGNORE
    d = boundary_width(height, width)
    gt_bands = [boundary_band(g == 1, d) for g in gts]
    clickers = [Clicker(g) for g in gts]
    preds = np.zeros((batch, height, width), dtype=bool)
    prev = torch.zeros(batch, 1, height, width, device=rgb.device, dtype=rgb.dtype)
    ious = np.zeros((batch, max_clicks))
    bious = np.zeros((batch, max_clicks))
    features = model.encode(rgb)
    for k in range(max_clicks):
        for i, clicker in enumerate(clickers):
            clicker.make_next_click(preds[i])
        rows = torch.from_numpy(np.concatenate([click_rows(clicker.clicks) for clicker in clickers]))
        logits = model.decode(features, rows.to(rgb.device, rgb.dtype), prev)[contract.LOGITS]
        prev = torch.sigmoid(logits.float()).to(rgb.dtype)
        preds = (prev[:, 0] > pred_thr).cpu().numpy()
        for i in range(batch):
            ious[i, k] = iou(preds[i], gts[i])
            bious[i, k] = band_iou(boundary_band(preds[i], d), gt_bands[i], valid[i])
    return ious, bious
