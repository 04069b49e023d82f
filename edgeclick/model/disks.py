"""Click rows → disk maps, with broadcast arithmetic only (exports as plain tensor ops, no loops)."""
from __future__ import annotations

import torch

from edgeclick.contract import LABEL_NEGATIVE, LABEL_POSITIVE


def click_disks(clicks: torch.Tensor, height: int, width: int, radius: float, scale: float = 1.0) -> torch.Tensor:
    """Rasterise click rows into binary positive / negative disk maps.

    Args:
        clicks: B×N×3 rows (x, y, label) in input pixels; label 1 positive, 0 negative, -1 padding.
        height, width: size of the output maps in pixels (after `scale`).
        radius: disk radius in output pixels; a pixel (row i, col j) is inside when
            (i - y·scale)² + (j - x·scale)² ≤ radius² (RITM's DistMaps with use_disks=True).
        scale: factor from click coordinates to output pixels (0.5 for a half-resolution map).

    Returns:
        B×2×height×width float maps: channel 0 positive, channel 1 negative, values in {0, 1}.
    """
    x = clicks[..., 0:1].unsqueeze(-1) * scale  # B×N×1×1
    y = clicks[..., 1:2].unsqueeze(-1) * scale
    label = clicks[..., 2:3].unsqueeze(-1)
    rows = torch.arange(height, dtype=clicks.dtype, device=clicks.device).view(1, 1, height, 1)
    cols = torch.arange(width, dtype=clicks.dtype, device=clicks.device).view(1, 1, 1, width)
    inside = ((rows - y) ** 2 + (cols - x) ** 2 <= radius**2).to(clicks.dtype)  # B×N×H×W
    is_pos = (label == LABEL_POSITIVE).to(clicks.dtype)
    is_neg = (label == LABEL_NEGATIVE).to(clicks.dtype)
    pos = torch.amax(inside * is_pos, dim=1, keepdim=True)
    neg = torch.amax(inside * is_neg, dim=1, keepdim=True)
    return torch.cat([pos, neg], dim=1)
