"""What every edgeclick model shares (as RITM keeps `is_model.py` apart from `is_hrnet_model.py`): the
`ClickModel` base with in-graph normalisation, click maps and the encode / decode split, plus the helpers
every fusion mode and adapter uses. Models: `ritm.py` (early fusion), `late.py`, `adapters.py`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeclick import contract

from .config import ModelConfig
from .disks import DEFAULT_RASTERISER, RASTERISERS, click_disks

AUX_LOGITS = "aux_logits"  # training-only output of the auxiliary head; never exported


def upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize with align_corners=True, as RITM does for every output."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def scale_clicks(clicks: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply the x, y of B×N×3 click rows by `factor`, keeping labels (and padding rows) as they are."""
    return torch.cat([clicks[..., :2] * factor, clicks[..., 2:]], dim=-1)


def use_rasteriser(model: nn.Module, rasteriser: str) -> nn.Module:
    """Draw click maps with `rasteriser` (a key of disks.RASTERISERS) in `model` and every ClickModel inside
    it (an adapter model's base); returns `model`."""
    if rasteriser not in RASTERISERS:
        raise ValueError(f"unknown click rasteriser {rasteriser!r}; choose one of {', '.join(RASTERISERS)}")
    for module in model.modules():
        if isinstance(module, ClickModel):
            module.rasteriser = rasteriser
    return model


class ClickModel(nn.Module):
    """What every edgeclick model shares: config, in-graph normalisation, click maps, the split API.

    Subclasses implement `encode` (image only, once per image) and `decode` (per click). `forward` is
    their composition, so any model can be cut into the exported encoder / decoder graphs.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # Not in the state dict: RITM keeps normalisation outside its parameters too.
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        # How click maps are drawn, not what they are (the formulations agree on pixel clicks): an exporter's
        # choice per target, set with `use_rasteriser`, so not part of the config that travels with the weights.
        self.rasteriser = DEFAULT_RASTERISER

    def normalize(self, image01: torch.Tensor) -> torch.Tensor:
        """B×3×H×W RGB in [0, 1] → ImageNet-normalised."""
        return (image01 - self.mean) / self.std

    def click_maps(self, clicks: torch.Tensor, prev_mask: torch.Tensor, radius: float, scale: float = 1.0) -> torch.Tensor:
        """[prev_mask, pos, neg] stacked: B×3×h×w at prev_mask's size (RITM's coord features)."""
        h, w = prev_mask.shape[-2:]
        return torch.cat([prev_mask, click_disks(clicks, h, w, radius, scale, self.rasteriser)], dim=1)

    def encode(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decode(self, features: dict[str, torch.Tensor], clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, image01: torch.Tensor, clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """image01 B×3×H×W in [0,1], clicks B×N×3 (x, y, label), prev_mask B×1×H×W probabilities →
        {contract.LOGITS: B×1×H×W, AUX_LOGITS: B×1×H×W (early fusion only)}."""
        return self.decode(self.encode(image01), clicks, prev_mask)
