"""Late fusion: the HRNet backbone sees the image alone; clicks meet the cached features in a small head.

A click then costs only the head instead of the whole backbone. The head is edgeclick's own design (not
RITM's) and must be trained; its accuracy is measured, not assumed. Its shape follows onnxruntime
profiles at 640×960 (2 CPU threads): click maps are rasterised at half resolution (the same radius-5
disks in input pixels; full-resolution rasterising and the stride-2 conv over it were 40% of the time),
and the ×4 output upsampling is a learned sub-pixel shuffle (a 1-channel bilinear Resize cost 25 ms
there, as onnxruntime pads it to 16 channels).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeclick import contract

from .base import ClickModel
from .blocks import ScaleLayer
from .config import ModelConfig
from .hrnet import HighResolutionNet

OUTPUT_STRIDE = 4


class SeparableResidual(nn.Module):
    """Depthwise 3×3 + pointwise 1×1 with BN, residual, ReLU: B×C×h×w → B×C×h×w."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(x + self.bn2(self.pointwise(out)))


class LateFusionModel(ClickModel):
    """HRNet trunk (no OCR) on the image → projected features; clicks + prev mask fused at stride 4."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config.late_channels
        self.feature_extractor = HighResolutionNet(config.width, config.ocr_width, config.small, with_heads=False)
        self.feature_proj = nn.Sequential(
            nn.Conv2d(self.feature_extractor.feature_channels, c, kernel_size=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.click_encoder = nn.Sequential(  # [prev, pos, neg] at H/2 → C at H/4
            nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(negative_slope=0.2),
            nn.Conv2d(16, c, kernel_size=1),
            ScaleLayer(init_value=0.5),
        )
        self.fusion = nn.Sequential(SeparableResidual(c), SeparableResidual(c))
        self.head = nn.Conv2d(c, OUTPUT_STRIDE**2, kernel_size=1)  # one logit per pixel of each 4×4 cell

    def encode_normalized(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised image B×3×H×W → {"features": B×C×H/4×W/4}."""
        trunk = self.feature_extractor.features_from_stem(self.feature_extractor.stem(x), None)
        return {contract.FEATURES: self.feature_proj(trunk)}

    def encode(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.encode_normalized(self.normalize(image01))

    def decode(self, features: dict[str, torch.Tensor], clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features B×C×H/4×W/4, clicks B×N×3, prev_mask B×1×H×W → {"logits": B×1×H×W}."""
        half_mask = F.avg_pool2d(prev_mask, kernel_size=2)
        maps = self.click_maps(clicks, half_mask, radius=self.config.click_radius / 2, scale=0.5)
        logits = self.head(self.fusion(features[contract.FEATURES] + self.click_encoder(maps)))
        return {contract.LOGITS: F.pixel_shuffle(logits, OUTPUT_STRIDE)}
