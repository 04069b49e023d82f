"""Late fusion: the HRNet backbone sees the image alone; clicks meet the cached features in a small head.

A click then costs only the head instead of the whole backbone. The head must carry a click to every pixel
of the object, however large: two small separable blocks (the first design) let a click reach only
~21 px at 320×480, so no training could make it mask a large object. The head is therefore RITM's own OCR
head moved after the click fusion:

    features (encoder, B×C×h×w, h = H/4)      ─┐
    [prev, pos, neg] at H/2 → click_encoder   ─┴─ + → fusion (2 separable blocks: local mixing)
        → region_head: 2 soft regions (object, background), B×2×h×w
        → ocr_gather_head: one C-vector per region, pooled over the WHOLE image (spatial softmax)
        → ocr_distri_head: every pixel attends to the two region vectors (pixel–region attention)
        → head: 16 logits per 4×4 cell → pixel shuffle → B×1×H×W

The pooling is what makes the head global: a click moves the region logits near it, which moves both
region vectors, which moves every pixel's context. With two regions the attention costs O(h·w·C).

`feature_proj` has the layout of RITM's `conv3x3_ocr` and `ocr_distri_head` that of its `SpatialOCR`,
with C = 2·ocr_width (the registry's default), so an early-fusion checkpoint's head weights carry over
(`edgeclick.model.convert`). Click maps are rasterised at half resolution (the same radius-5 disks in
input pixels) and the ×4 output upsampling is a learned sub-pixel shuffle: both measured cheaper in
onnxruntime at 640×960 than full-resolution maps and a 1-channel bilinear Resize.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeclick import contract

from .base import AUX_LOGITS, ClickModel, upsample
from .blocks import ScaleLayer
from .config import ModelConfig
from .hrnet import HighResolutionNet
from .ocr import SpatialGather, SpatialOCR

OUTPUT_STRIDE = 4
REGIONS = 2  # object, background


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
    """HRNet trunk (click-free) → C features at stride 4; clicks fused after it by a global OCR head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config.late_channels
        if c < 2 or c % 2:
            raise ValueError(f"late_channels must be an even number >= 2 (the OCR key width is C/2), got {c}")
        self.feature_extractor = HighResolutionNet(config.width, config.ocr_width, config.small, with_heads=False)
        self.feature_proj = nn.Sequential(  # RITM's conv3x3_ocr layout
            nn.Conv2d(self.feature_extractor.feature_channels, c, kernel_size=3, padding=1),
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
        self.region_head = nn.Conv2d(c, REGIONS, kernel_size=1)
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(in_channels=c, key_channels=c // 2, out_channels=c)
        self.head = nn.Conv2d(c, OUTPUT_STRIDE**2, kernel_size=1)  # one logit per pixel of each 4×4 cell

    def encode_normalized(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised image B×3×H×W → {"features": B×C×H/4×W/4}."""
        trunk = self.feature_extractor.features_from_stem(self.feature_extractor.stem(x), None)
        return {contract.FEATURES: self.feature_proj(trunk)}

    def encode(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.encode_normalized(self.normalize(image01))

    def decode(self, features: dict[str, torch.Tensor], clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features B×C×H/4×W/4, clicks B×N×3, prev_mask B×1×H×W → {"logits": B×1×H×W}.

        In training mode also AUX_LOGITS (B×1×H×W): object minus background region logit, trained with
        BCE as RITM trains its soft object regions (never exported: eval mode leaves it out).
        """
        half_mask = F.avg_pool2d(prev_mask, kernel_size=2)
        maps = self.click_maps(clicks, half_mask, radius=self.config.click_radius / 2, scale=0.5)
        x = self.fusion(features[contract.FEATURES] + self.click_encoder(maps))
        regions = self.region_head(x)
        x = self.ocr_distri_head(x, self.ocr_gather_head(x, regions))
        out = {contract.LOGITS: F.pixel_shuffle(self.head(x), OUTPUT_STRIDE)}
        if self.training:
            out[AUX_LOGITS] = upsample(regions[:, :1] - regions[:, 1:], prev_mask.shape[-2:])
        return out
