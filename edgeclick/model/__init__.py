"""edgeclick models: a registry of RITM HRNet-OCR variants, fusion modes and adapters.

    model = create_model("hrnet18s", fusion="late", adapter="conv", lora=LoRAConfig(rank=4))
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from .adapters import ConvAdapterModel
from .config import ConvAdapterConfig, LoRAConfig, ModelConfig
from .late import LateFusionModel
from .lora import apply_lora, merge_lora
from .base import ClickModel
from .ritm import EarlyFusionModel

# name → (HRNet width, OCR width, small schedule). Names follow RITM's checkpoints (hrnet18s_cocolvis...).
ARCHS: dict[str, tuple[int, int, bool]] = {
    "tiny": (4, 8, True),  # for tests only: seconds on a CPU
    "hrnet18s": (18, 48, True),
    "hrnet18": (18, 64, False),
    "hrnet32": (32, 128, False),
}
ALIASES: dict[str, str] = {"w18s": "hrnet18s", "w18": "hrnet18", "w32": "hrnet32"}


def list_models() -> list[str]:
    return list(ARCHS)


def model_config(name: str, fusion: str = "early", adapter: Any = None, lora: Any = None, **overrides: Any) -> ModelConfig:
    """The ModelConfig for a registered name (or alias) with fusion / adapter / LoRA choices."""
    arch = ALIASES.get(name, name)
    if arch not in ARCHS:
        raise ValueError(f"unknown model {name!r}; registered: {list_models()} (aliases {ALIASES})")
    width, ocr_width, small = ARCHS[arch]
    if adapter == "conv" or adapter is True:
        adapter = ConvAdapterConfig()
    elif isinstance(adapter, dict):
        adapter = ConvAdapterConfig(**adapter)
    elif adapter not in (None, False) and not isinstance(adapter, ConvAdapterConfig):
        raise ValueError(f"adapter must be None, 'conv', a dict or ConvAdapterConfig, got {adapter!r}")
    if isinstance(lora, dict):
        lora = LoRAConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in lora.items()})
    elif lora is True:
        lora = LoRAConfig()
    # The late decoder is as wide as RITM's OCR head (2·ocr_width), so an early checkpoint's head carries over.
    late = {"late_channels": 2 * ocr_width} if fusion == "late" else {}
    cfg = ModelConfig(arch=arch, width=width, ocr_width=ocr_width, small=small, fusion=fusion,
                      adapter=adapter or None, lora=lora or None, **late)
    return replace(cfg, **overrides) if overrides else cfg


def build_model(config: ModelConfig) -> ClickModel:
    """Instantiate the model a config describes (weights freshly initialised)."""
    base_cls = EarlyFusionModel if config.fusion == "early" else LateFusionModel
    model: ClickModel = base_cls(config)
    if config.adapter is not None:
        model = ConvAdapterModel(model, config.adapter)
    if config.lora is not None:
        apply_lora(model, config.lora)
    return model


def create_model(name: str, fusion: str = "early", adapter: Any = None, lora: Any = None, **overrides: Any) -> ClickModel:
    """Registry entry point: `create_model("hrnet18s", fusion="late", adapter="conv", lora=LoRAConfig())`."""
    return build_model(model_config(name, fusion, adapter, lora, **overrides))


__all__ = [
    "ARCHS", "ClickModel", "ConvAdapterConfig", "ConvAdapterModel", "EarlyFusionModel", "LateFusionModel",
    "LoRAConfig", "ModelConfig", "apply_lora", "build_model", "create_model", "list_models", "merge_lora",
    "model_config",
]
