"""RITM's interactive HRNet model (early fusion): clicks join right after the first stem conv.

Numerically this is RITM's `HRNetModel` with `use_rgb_conv=False, use_disks=True, with_prev_mask=True,
with_aux_output=True`: ImageNet normalisation inside, `[prev_mask, pos, neg]` maps through the Conv1S
branch (`maps_transform`) added to the stem, OCR logits at stride 4 upsampled with align_corners=True.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeclick import contract

from .base import AUX_LOGITS, ClickModel, upsample
from .blocks import ScaleLayer
from .config import ModelConfig
from .hrnet import STEM_CHANNELS, HighResolutionNet

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
