"""ConvLoRA: low-rank updates of frozen convs, and merging them back into plain convs.

For a k×k conv W ∈ R^{Cout×Cin×k×k}: A ∈ R^{(r·k)×(Cin·k)}, B ∈ R^{(Cout·k)×(r·k)},
ΔW = (B @ A).view(Cout, Cin, k, k) · alpha / r, B starts at zero so training starts from the base.
"""
from __future__ import annotations

import copy
import fnmatch
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import LoRAConfig


class ConvLoRA(nn.Module):
    """A frozen `nn.Conv2d` plus a trainable low-rank ΔW; same input/output shapes as the conv."""

    def __init__(self, conv: nn.Conv2d, rank: int, alpha: float) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError("ConvLoRA supports groups=1 convs only")
        k = conv.kernel_size[0]
        if conv.kernel_size[0] != conv.kernel_size[1]:
            raise ValueError(f"ConvLoRA needs a square kernel, got {conv.kernel_size}")
        self.conv = conv
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank * k, conv.in_channels * k))
        self.lora_B = nn.Parameter(torch.zeros(conv.out_channels * k, rank * k))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        """ΔW with the conv weight's shape Cout×Cin×k×k."""
        return (self.lora_B @ self.lora_A).view(self.conv.weight.shape) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, c.weight + self.delta_weight(), c.bias, c.stride, c.padding, c.dilation, c.groups)


def lora_targets(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Qualified names of the convs `config` selects (plain Conv2d, groups 1, kernel in kernel_sizes)."""
    names = []
    for name, module in model.named_modules():
        if type(module) is not nn.Conv2d or module.groups != 1 or module.kernel_size[0] not in config.kernel_sizes:
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in config.targets):
            names.append(name)
    return names


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def apply_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Wrap every selected conv of `model` in ConvLoRA, in place; return the wrapped names."""
    names = lora_targets(model, config)
    if not names:
        raise ValueError(f"LoRA targets {list(config.targets)} match no conv with kernel in {list(config.kernel_sizes)}")
    for name in names:
        _set_submodule(model, name, ConvLoRA(model.get_submodule(name), config.rank, config.alpha))
    return names


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of `model` with every ConvLoRA folded into a plain conv holding W + ΔW (no LoRA left).

    The copy's config (if it has one) drops its `lora` entry, so the merged checkpoint rebuilds plain.
    """
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, ConvLoRA):
            conv = module.conv
            conv.weight.add_(module.delta_weight())
            _set_submodule(merged, name, conv)
    for module in merged.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and getattr(cfg, "lora", None) is not None:
            module.config = type(cfg)(**{**cfg.__dict__, "lora": None})
    return merged
