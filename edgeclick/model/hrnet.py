"""HRNetV2 backbone with the OCR head, built the way RITM builds it (`isegm/model/modeling/hrnet_ocr.py`).

The module tree mirrors RITM's so that `feature_extractor.*` keys of RITM checkpoints load unchanged.
The forward is split into `stem` (first conv, click-independent) and `from_stem` (everything after the
point where RITM adds the click features) so the early-fusion split can cut exactly there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BasicBlock, Bottleneck, conv_bn
from .ocr import SpatialGather, SpatialOCR

STEM_CHANNELS = 64


def _upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=True)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by all-to-all multi-resolution fusion (sum)."""

    def __init__(self, channels: list[int], num_blocks: int) -> None:
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels
        )
        self.fuse_layers = self._make_fuse_layers(channels) if self.num_branches > 1 else None
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _make_fuse_layers(channels: list[int]) -> nn.ModuleList:
        fuse_layers = []
        for i, c_out in enumerate(channels):
            row: list[nn.Module | None] = []
            for j, c_in in enumerate(channels):
                if j > i:  # lower resolution → 1×1 conv here, bilinear upsampling in forward
                    row.append(conv_bn(c_in, c_out, kernel=1, relu=False))
                elif j == i:
                    row.append(None)
                else:  # higher resolution → (i - j) stride-2 3×3 convs, ReLU between them
                    steps = [conv_bn(c_in, c_in, kernel=3, stride=2) for _ in range(i - j - 1)]
                    steps.append(conv_bn(c_in, c_out, kernel=3, stride=2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        return nn.ModuleList(fuse_layers)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """xs[i]: B×C_i×(H/2^i)×(W/2^i) → same shapes."""
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_branches):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = y + _upsample_to(row[j](xs[j]), xs[i])
                else:
                    y = y + row[j](xs[j])
            fused.append(self.relu(y))
        return fused


class HighResolutionNet(nn.Module):
    """HRNetV2-W{width} (small: the W18-small schedule) + OCR (ocr_width) with one output class.

    Input: normalised image B×3×H×W. Outputs at stride 4: (logits, aux_logits), each B×1×H/4×W/4.
    with_heads=False builds the trunk only (no OCR / aux heads).
    """

    def __init__(self, width: int, ocr_width: int, small: bool, with_heads: bool = True) -> None:
        super().__init__()
        if ocr_width <= 0:
            raise ValueError("edgeclick builds HRNet with its OCR head only (ocr_width > 0), as RITM's HRNet models")
        self.width = width
        self.ocr_width = ocr_width
        num_blocks = 2 if small else 4

        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)

        layer1_out = STEM_CHANNELS * Bottleneck.expansion
        downsample = conv_bn(STEM_CHANNELS, layer1_out, kernel=1, relu=False)
        self.layer1 = nn.Sequential(
            Bottleneck(STEM_CHANNELS, STEM_CHANNELS, downsample=downsample),
            *[Bottleneck(layer1_out, STEM_CHANNELS) for _ in range(num_blocks - 1)],
        )

        stage_channels = [[width * 2**i for i in range(n)] for n in (2, 3, 4)]
        stage_modules = (1, 3, 2) if small else (1, 4, 3)
        self.transition1 = self._make_transition([layer1_out], stage_channels[0])
        self.stage2 = nn.Sequential(*[HighResolutionModule(stage_channels[0], num_blocks) for _ in range(stage_modules[0])])
        self.transition2 = self._make_transition(stage_channels[0], stage_channels[1])
        self.stage3 = nn.Sequential(*[HighResolutionModule(stage_channels[1], num_blocks) for _ in range(stage_modules[1])])
        self.transition3 = self._make_transition(stage_channels[1], stage_channels[2])
        self.stage4 = nn.Sequential(*[HighResolutionModule(stage_channels[2], num_blocks) for _ in range(stage_modules[2])])

        self.feature_channels = sum(stage_channels[2])
        if not with_heads:  # late fusion uses the trunk only
            return
        mid = 2 * ocr_width
        self.conv3x3_ocr = nn.Sequential(
            nn.Conv2d(self.feature_channels, mid, kernel_size=3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(in_channels=mid, key_channels=ocr_width, out_channels=mid)
        self.cls_head = nn.Conv2d(mid, 1, kernel_size=1)
        self.aux_head = nn.Sequential(
            nn.Conv2d(self.feature_channels, self.feature_channels, kernel_size=1),
            nn.BatchNorm2d(self.feature_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.feature_channels, 1, kernel_size=1),
        )

    @staticmethod
    def _make_transition(prev: list[int], cur: list[int]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(conv_bn(prev[i], c, kernel=3) if prev[i] != c else None)
            else:  # a new, lower-resolution branch made from the lowest existing one
                n_down = i + 1 - len(prev)
                steps = [conv_bn(prev[-1], c if k == n_down - 1 else prev[-1], kernel=3, stride=2) for k in range(n_down)]
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _transit(transition: nn.ModuleList, ys: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, t in enumerate(transition):
            src = ys[i] if i < len(ys) else ys[-1]
            out.append(src if t is None else t(src))
        return out

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image B×3×H×W → B×64×H/2×W/2 (first conv + BN + ReLU; no clicks yet)."""
        return self.relu(self.bn1(self.conv1(x)))

    def features_from_stem(self, stem: torch.Tensor, click_features: torch.Tensor | None) -> torch.Tensor:
        """Stem output (+ click features, both B×64×H/2×W/2) → aggregated HRNet features B×C×H/4×W/4."""
        x = stem if click_features is None else stem + click_features
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        ys = self.stage2(self._transit(self.transition1, [x]))
        ys = self.stage3(self._transit(self.transition2, ys))
        ys = self.stage4(self._transit(self.transition3, ys))
        return torch.cat([ys[0]] + [_upsample_to(y, ys[0]) for y in ys[1:]], 1)

    def heads(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aggregated features B×C×h×w → (OCR logits, aux logits), each B×1×h×w."""
        aux = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        context = self.ocr_gather_head(feats, aux)
        feats = self.ocr_distri_head(feats, context)
        return self.cls_head(feats), aux

    def forward(self, x: torch.Tensor, click_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features_from_stem(self.stem(x), click_features))
