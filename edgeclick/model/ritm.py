"""RITM's interactive HRNet model (early fusion): clicks join right after the first stem conv.

Numerically this is RITM's `HRNetModel` with `use_rgb_conv=False, use_disks=True, with_prev_mask=True,
with_aux_output=True`: ImageNet normalisation inside, `[prev_mask, pos, neg]` maps through the Conv1S
branch (`maps_transform`) added to the stem, OCR logits at stride 4 upsampled with align_corners=True.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeclick import contract

from .blocks import ScaleLayer
from .config import ModelConfig
from .disks import click_disks
from .hrnet import STEM_CHANNELS, HighResolutionNet


AUX_LOGITS = "aux_logits"  # training-only output of the auxiliary head; never exported


def upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize with align_corners=True, as RITM does for every output."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def scale_clicks(clicks: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply the x, y of B×N×3 click rows by `factor`, keeping labels (and padding rows) as they are."""
    return torch.cat([clicks[..., :2] * factor, clicks[..., 2:]], dim=-1)


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

    def normalize(self, image01: torch.Tensor) -> torch.Tensor:
        """B×3×H×W RGB in [0, 1] → ImageNet-normalised."""
        return (image01 - self.mean) / self.std

    def click_maps(self, clicks: torch.Tensor, prev_mask: torch.Tensor, radius: float, scale: float = 1.0) -> torch.Tensor:
        """[prev_mask, pos, neg] stacked: B×3×h×w at prev_mask's size (RITM's coord features)."""
        h, w = prev_mask.shape[-2:]
        return torch.cat([prev_mask, click_disks(clicks, h, w, radius, scale)], dim=1)

    def encode(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decode(self, features: dict[str, torch.Tensor], clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, image01: torch.Tensor, clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """image01 B×3×H×W in [0,1], clicks B×N×3 (x, y, label), prev_mask B×1×H×W probabilities →
        {contract.LOGITS: B×1×H×W, AUX_LOGITS: B×1×H×W (early fusion only)}."""
        return self.decode(self.encode(image01), clicks, prev_mask)


class EarlyFusionModel(ClickModel):
    """RITM HRNet-OCR with the Conv1S click branch (state-dict keys as in RITM checkpoints)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        activation: nn.Module = nn.LeakyReLU(negative_slope=0.2) if config.use_leaky_relu else nn.ReLU(inplace=True)
        self.maps_transform = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=1),
            activation,
            nn.Conv2d(16, STEM_CHANNELS, kernel_size=3, stride=2, padding=1),
            ScaleLayer(init_value=0.05),
        )
        self.feature_extractor = HighResolutionNet(config.width, config.ocr_width, config.small)

    def encode_normalized(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised image B×3×H×W → {"stem": B×64×H/2×W/2}."""
        return {contract.STEM: self.feature_extractor.stem(x)}

    def encode(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.encode_normalized(self.normalize(image01))

    def decode(self, features: dict[str, torch.Tensor], clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.click_maps(clicks, prev_mask, self.config.click_radius)
        feats = self.feature_extractor.features_from_stem(features[contract.STEM], self.maps_transform(maps))
        logits, aux = self.feature_extractor.heads(feats)
        size = prev_mask.shape[-2:]
        return {contract.LOGITS: upsample(logits, size), AUX_LOGITS: upsample(aux, size)}
