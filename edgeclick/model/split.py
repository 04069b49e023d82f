"""Encoder (once per image) and Decoder (once per click) views of a model, with the contract's I/O.

These are thin export wrappers in the spirit of segment-anything's: they convert the contract's tensors
(uint8 NHWC image, click rows, prev mask) to the model's and order outputs by contract name. The model
code itself stays untouched.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeclick import contract

from .adapters import ConvAdapterModel
from .base import ClickModel


def model_graph_specs(model: ClickModel) -> dict[str, contract.GraphSpec]:
    """The contract's encoder/decoder specs for this model's fusion mode and adapter."""
    cfg = model.config
    skip = cfg.adapter.skip_channels if cfg.adapter is not None else 16
    return contract.graph_specs(cfg.fusion, isinstance(model, ConvAdapterModel),
                                late_channels=cfg.late_channels, skip_channels=skip)


class Encoder(nn.Module):
    """image uint8 1×H×W×3 RGB → the encoder outputs named in the contract (a tuple in contract order)."""

    def __init__(self, model: ClickModel) -> None:
        super().__init__()
        self.model = model
        self.output_names = model_graph_specs(model)[contract.ENCODER].output_names()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image01 = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        features = self.model.encode(image01)
        return tuple(features[name] for name in self.output_names)


class Decoder(nn.Module):
    """(encoder outputs..., clicks 1×N×3, prev_mask 1×1×H×W) → logits 1×1×H×W."""

    def __init__(self, model: ClickModel) -> None:
        super().__init__()
        self.model = model
        self.feature_names = model_graph_specs(model)[contract.ENCODER].output_names()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *features, clicks, prev_mask = inputs
        return self.model.decode(dict(zip(self.feature_names, features)), clicks, prev_mask)[contract.LOGITS]


def split_model(model: ClickModel) -> tuple[Encoder, Decoder]:
    return Encoder(model), Decoder(model)
