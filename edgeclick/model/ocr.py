"""Object-Contextual Representations head (Yuan et al. 2020) as RITM's HRNet-OCR uses it.

Module nesting (e.g. `f_pixel.1.0` for a BN inside a Sequential) mirrors RITM's `ocr.py` so checkpoint
keys match.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=1, bias=False), nn.Sequential(nn.BatchNorm2d(cout), nn.ReLU(inplace=True))]


class SpatialGather(nn.Module):
    """Soft object regions → one context vector per class.

    feats B×C×H×W, probs B×K×H×W (region logits) → context B×C×K×1.
    """

    def forward(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        b, k = probs.shape[0], probs.shape[1]
        weights = F.softmax(probs.reshape(b, k, -1), dim=2)  # B×K×HW
        # (weights @ pixelsᵀ)ᵀ computed as pixels @ weightsᵀ: the same products, and the result is a
        # contiguous B×C×K (no permuted view leaves the block; see ObjectAttentionBlock).
        pixels = feats.reshape(b, feats.shape[1], -1)  # B×C×HW
        # reshape, not unsqueeze: Core ML NeuralNetwork (ORT Mobile's older Core ML EP) refuses Unsqueeze.
        # bmm, not matmul: ExecuTorch lowers matmul's batch broadcast to full-size expand copies outside XNNPACK.
        return torch.bmm(pixels, weights.transpose(1, 2)).reshape(b, pixels.shape[1], k, 1)


class ObjectAttentionBlock(nn.Module):
    """Pixel-to-region attention: every pixel attends to the K region vectors (scale 1, no pooling)."""

    def __init__(self, in_channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(*_conv_bn_relu(in_channels, key_channels), *_conv_bn_relu(key_channels, key_channels))
        self.f_object = nn.Sequential(*_conv_bn_relu(in_channels, key_channels), *_conv_bn_relu(key_channels, key_channels))
        self.f_down = nn.Sequential(*_conv_bn_relu(in_channels, key_channels))
        self.f_up = nn.Sequential(*_conv_bn_relu(key_channels, in_channels))

    def forward(self, x: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        """x B×C×H×W, proxy B×C×K×1 → context B×C×H×W."""
        b, _, h, w = x.shape
        query = self.f_pixel(x).reshape(b, self.key_channels, -1)  # B×Ck×HW
        key = self.f_object(proxy).reshape(b, self.key_channels, -1)  # B×Ck×K
        value = self.f_down(proxy).reshape(b, self.key_channels, -1)  # B×Ck×K
        # RITM computes sim = softmax(queryᵀ·key) (HW×K) and context = (sim·valueᵀ)ᵀ; the transposed
        # products below are the same numbers with the pixel axis last, so `context` is a contiguous
        # B×Ck×HW and its reshape to NCHW is a plain view. RITM's order ends in a permuted view, which
        # reshapes to a channels-last tensor: torch.export then carries that layout to the head, and the
        # late head's pixel shuffle ended in a channels-last copy of its 1-channel output that ExecuTorch's
        # runtime refuses (`dim_order_ops::_clone_dim_order.out` check failed).
        # The softmax over the K regions runs on the last axis of a small transposed copy (B×HW×K): XNNPACK's
        # softmax takes only the last axis, and over axis 1 ExecuTorch ran it on its portable kernel.
        logits = torch.bmm(key.transpose(1, 2), query) * (self.key_channels**-0.5)  # B×K×HW
        sim = F.softmax(logits.transpose(1, 2), dim=2).transpose(1, 2)  # B×K×HW
        context = torch.bmm(value, sim).reshape(b, self.key_channels, h, w)  # B×Ck×H×W
        return self.f_up(context)


class SpatialOCR(nn.Module):
    """cat(object context, pixel features) → 1×1 conv + BN + ReLU (+ dropout, identity in eval)."""

    def __init__(self, in_channels: int, key_channels: int, out_channels: int, dropout: float = 0.05) -> None:
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(in_channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * in_channels, out_channels, kernel_size=1, bias=False),
            nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)),
            nn.Dropout2d(dropout),
        )

    def forward(self, feats: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        """feats B×C×H×W, proxy B×C×K×1 → B×out×H×W."""
        context = self.object_context_block(feats, proxy)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))
