"""Training losses: RITM's normalized focal loss and BCE, and Kervadec et al.'s boundary (surface) loss.

All losses take raw logits B×1×H×W and return a scalar: the mean over the batch of a per-image value
(RITM's trainer applies `torch.mean` to the per-image losses its criteria return). Ground-truth maps are
B×1×H×W float with 1 object, 0 background and `IGNORE_LABEL` (-1) for pixels that carry no supervision.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeclick.data.sample import IGNORE
from edgeclick.train.distance import distance_to_zero

IGNORE_LABEL: float = float(IGNORE)
"""Value of a ground-truth pixel that no loss supervises."""

RITM_EPS: float = 1e-12
"""RITM's epsilon in NormalizedFocalLossSigmoid (log guard and normaliser denominators)."""


class NormalizedFocalLoss(nn.Module):
    """RITM's NormalizedFocalLossSigmoid (Sofiiuk et al., "AdaptIS"/RITM), ignore label -1.

    Per pixel, with p = sigmoid(logit), p_t = p on object pixels and 1 - p on background pixels:
        l = -alpha_t · (1 - p_t)^gamma · log(min(p_t + eps, 1)),  alpha_t = alpha (object) or 1 - alpha.
    Per image the focal weights are renormalised so they sum to the number of valid pixels, i.e. the
    image's loss is  Σ_valid alpha_t (1-p_t)^gamma (-log p_t) / Σ_valid (1-p_t)^gamma  (up to eps). The
    normaliser Σ (1-p_t)^gamma is detached (RITM's detach_delimeter=True): it rescales the gradient of
    hard pixels but is not itself a path for gradients. An image with no valid pixel contributes 0.
    """

    def __init__(self, alpha: float = 0.5, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, logits: Tensor, gt: Tensor) -> Tensor:
        """Args: logits B×1×H×W; gt B×1×H×W float {1, 0, -1}. Returns the batch-mean loss (scalar)."""
        valid = gt != IGNORE_LABEL
        is_object = gt > 0.5
        prob = torch.sigmoid(logits)
        alpha = torch.where(is_object, self.alpha, 1.0 - self.alpha) * valid
        # Ignore pixels get p_t = 1, so their focal weight (1 - p_t)^gamma is exactly 0.
        p_t = torch.where(valid, 1.0 - torch.abs(gt - prob), torch.ones_like(prob))
        beta = (1.0 - p_t) ** self.gamma
        dims = tuple(range(1, logits.dim()))
        n_valid = valid.sum(dim=dims, keepdim=True).to(logits.dtype)
        mult = (n_valid / (beta.sum(dim=dims, keepdim=True) + RITM_EPS)).detach()
        # min(·, 1): p_t + eps may round above 1, and log must not turn positive.
        log_pt = torch.log(torch.clamp(p_t + RITM_EPS, max=1.0))
        pixel_loss = -alpha * beta * mult * log_pt * valid
        per_image = pixel_loss.sum(dim=dims) / (n_valid.flatten() + RITM_EPS)
        return per_image.mean()


class SigmoidBCELoss(nn.Module):
    """RITM's SigmoidBinaryCrossEntropyLoss with ignore label -1 (the aux head's loss, weight 0.4 by the caller).

    Per pixel: the numerically stable BCE with logits, zeroed on ignore pixels. As in RITM the per-image
    value is the mean over ALL pixels, so ignore pixels count in the denominator (they only dilute the loss).
    """

    def forward(self, logits: Tensor, gt: Tensor) -> Tensor:
        """Args: logits B×1×H×W; gt B×1×H×W float {1, 0, -1}. Returns the batch-mean loss (scalar)."""
        valid = gt != IGNORE_LABEL
        target = torch.where(valid, gt, torch.zeros_like(gt))
        pixel_loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid
        return pixel_loss.flatten(1).mean(dim=1).mean()


class BoundaryLoss(nn.Module):
    """Kervadec et al. 2019 boundary ("surface") loss for one foreground class.

    Per image: mean over valid pixels of sigmoid(logit) · sdm, with `sdm` from `signed_distance_map`
    (negative inside the object, positive outside). Predicting the object exactly minimises it; predicted
    probability far from the object costs in proportion to the distance. The value can be negative.
    """

    def forward(self, logits: Tensor, sdm: Tensor, valid: Tensor | None = None) -> Tensor:
        """Args:
            logits: B×1×H×W.
            sdm: B×1×H×W signed distances (pixels), 0 on ignore pixels.
            valid: optional B×1×H×W bool of supervised pixels (gt != -1); by default every pixel counts,
                which equals the valid mean's numerator (ignore pixels have sdm 0) over a larger count.

        Returns:
            Batch mean of the per-image means (scalar).
        """
        prod = torch.sigmoid(logits) * sdm
        if valid is None:
            return prod.flatten(1).mean(dim=1).mean()
        valid = valid.to(prod.dtype)
        per_image = (prod * valid).flatten(1).sum(dim=1) / valid.flatten(1).sum(dim=1).clamp_min(1.0)
        return per_image.mean()


def signed_distance_map(gt: np.ndarray) -> np.ndarray:
    """Kervadec's signed distance map of a ground truth, in pixels (not normalised).

    Follows `one_hot2dist` of LIVIAETS/boundary-loss: outside the object, the Euclidean distance to the
    nearest object pixel (≥ 1); inside, minus (distance to the nearest non-object pixel - 1), so the
    object's own boundary pixels are 0 and deeper pixels negative. Ignore pixels count as non-object for
    the distances and are then set to 0 (no supervision). A gt without object pixels, or without any
    non-object pixel (no boundary anywhere), gives all zeros.

    Pixels, not a normalised scale, because "BL weighted 0.1 next to NFL" (the paper) refers to
    Kervadec's definition; its per-pixel gradient sdm·p(1-p)/N stays small next to NFL's (which is
    renormalised onto the hard pixels), while dividing by e.g. the image diagonal would make it vanish.

    Args:
        gt: H×W array with 1 object, 0 background, -1 ignore (any int or float dtype).

    Returns:
        H×W float32.
    """
    obj = gt == 1
    if not obj.any() or obj.all():
        return np.zeros(gt.shape, dtype=np.float32)
    outside = distance_to_zero(~obj)
    inside = distance_to_zero(obj)
    sdm = np.where(obj, 1.0 - inside, outside).astype(np.float32)
    sdm[gt == IGNORE] = 0.0
    return sdm
