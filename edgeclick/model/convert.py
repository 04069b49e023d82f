"""An early-fusion checkpoint (RITM's or edgeclick's) turned into a late-fusion model.

Early fusion feeds the clicks into the backbone; late fusion runs the same backbone on the image alone and
fuses the clicks after it. The backbone weights therefore carry over unchanged, and so does RITM's OCR head
where the late decoder has its shapes (late_channels = 2·ocr_width, the registry's default):

    early                                         late
    feature_extractor.{conv1 … stage4}.*      →   feature_extractor.{conv1 … stage4}.*   (the trunk)
    feature_extractor.conv3x3_ocr.*           →   feature_proj.*                          (encoder output)
    feature_extractor.ocr_distri_head.*       →   ocr_distri_head.*                       (pixel–region attention)
    feature_extractor.cls_head (1 logit)      →   head (the same logit for each of the 16 sub-pixels)

What does not carry: the click branch (`maps_transform` joins inside the backbone, the late click encoder
after it) and the aux head (it reads the 270-channel trunk; the late region head reads C channels).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from . import build_model
from .base import ClickModel
from .checkpoint import CheckpointError, load_checkpoint
from .config import ModelConfig
from .late import OUTPUT_STRIDE
from .lora import ConvLoRA

HEADS = ("conv3x3_ocr.", "ocr_gather_head.", "ocr_distri_head.", "cls_head.", "aux_head.")
"""Parameter prefixes (under feature_extractor.) of the early model's heads, i.e. not of the trunk."""

HEAD_RENAMES = {
    "feature_extractor.conv3x3_ocr.": "feature_proj.",
    "feature_extractor.ocr_distri_head.": "ocr_distri_head.",
}


def early_to_late_state(early: dict[str, torch.Tensor], late: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of an early state dict that a plain late model (state dict `late`) can take, under late names.

    Every trunk tensor must fit (same name, same shape); each head module is carried only when all its
    tensors fit.

    Raises:
        CheckpointError: a trunk tensor of `late` is missing from `early` or has another shape.
    """
    carried: dict[str, torch.Tensor] = {}
    for key, value in early.items():
        if not key.startswith("feature_extractor.") or key.removeprefix("feature_extractor.").startswith(HEADS):
            continue
        if key not in late or late[key].shape != value.shape:
            have = tuple(late[key].shape) if key in late else "nothing"
            raise CheckpointError(f"backbone tensor {key} {tuple(value.shape)} does not fit the late model ({have}); "
                                  "choose the late model of the checkpoint's architecture (model=...)")
        carried[key] = value
    missing = [k for k in late if k.startswith("feature_extractor.") and k not in carried]
    if missing:
        raise CheckpointError(f"the checkpoint lacks backbone tensors {missing[:3]} of the late model; "
                              "choose the late model of the checkpoint's architecture (model=...)")
    for old, new in HEAD_RENAMES.items():  # a head module carries whole or not at all
        group = {new + k.removeprefix(old): v for k, v in early.items() if k.startswith(old)}
        if group and all(n in late and late[n].shape == v.shape for n, v in group.items()):
            carried.update(group)
    cls_w, cls_b = early.get("feature_extractor.cls_head.weight"), early.get("feature_extractor.cls_head.bias")
    if cls_w is not None and cls_b is not None and late["head.weight"].shape[1:] == cls_w.shape[1:]:
        cells = OUTPUT_STRIDE**2
        carried["head.weight"] = cls_w.repeat(cells, 1, 1, 1)
        carried["head.bias"] = cls_b.repeat(cells)
    return carried


def late_config_for(early: ModelConfig, late: ModelConfig | None = None) -> ModelConfig:
    """The late config a conversion builds: `late` if given (its architecture must be the early one's), else
    the registry's late model of the early architecture, with the early model's click radius."""
    from . import model_config

    target = late or model_config(early.arch, "late")
    if (target.width, target.ocr_width, target.small) != (early.width, early.ocr_width, early.small):
        raise CheckpointError(f"the checkpoint is {early.arch} (width {early.width}, OCR {early.ocr_width}); the late "
                              f"model asked for is {target.arch}: set model={early.arch}")
    if target.fusion != "late":
        raise CheckpointError(f"late_from_early builds a late-fusion model; the target config says {target.fusion!r}")
    return replace(target, click_radius=early.click_radius, mean=early.mean, std=early.std)


def base_name(model: ClickModel) -> Callable[[str], str]:
    """Maps a plain model's tensor name to its name in `model`, which may wrap that plain model
    (conv adapter: `base.` in front; LoRA: the frozen conv is `.conv` of its ConvLoRA)."""
    prefix = "base." if model.config.adapter is not None else ""
    wrapped = {name for name, module in model.named_modules() if isinstance(module, ConvLoRA)}

    def name_in_model(key: str) -> str:
        module_name, _, leaf = (prefix + key).rpartition(".")
        return f"{module_name}.conv.{leaf}" if module_name in wrapped else prefix + key

    return name_in_model


def place_base_state(model: ClickModel, state: dict[str, torch.Tensor]) -> list[str]:
    """Load a plain model's state into `model` (see `base_name`); returns the names `state` did not fill.

    Raises:
        CheckpointError: `state` holds a tensor `model` does not have.
    """
    rename = base_name(model)
    missing, unexpected = model.load_state_dict({rename(k): v for k, v in state.items()}, strict=False)
    if unexpected:
        raise CheckpointError(f"weights do not fit the model: unexpected {unexpected[:5]}")
    return list(missing)


def late_from_early(source: str | Path | ClickModel, late: ModelConfig | None = None) -> tuple[ClickModel, list[str]]:
    """(late model, names of its tensors carried from `source`) from an early-fusion checkpoint or model.

    `late` may add LoRA or the conv adapter around the late model (variants b and c); their tensors, the
    click encoder, the region head and whatever head tensor did not fit keep their fresh initialisation.

    Raises:
        CheckpointError: the source is already late fusion, still holds adapters, or its shapes do not fit.
    """
    name = str(source) if not isinstance(source, ClickModel) else type(source).__name__
    early = source if isinstance(source, ClickModel) else load_checkpoint(source)
    cfg = early.config
    if cfg.fusion != "early":
        raise CheckpointError(f"{name}: already late fusion; late_from_early takes an early-fusion checkpoint "
                              "(edgeclick's or RITM's)")
    if cfg.adapter is not None or cfg.lora is not None:
        raise CheckpointError(f"{name}: holds a {'conv adapter' if cfg.adapter else 'LoRA'}; convert a plain early "
                              "model (merge LoRA first with `edgeclick merge`, or convert the adapter's base)")
    try:
        target = late_config_for(cfg, late)
    except CheckpointError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    model = build_model(target)
    plain = build_model(replace(target, adapter=None, lora=None))
    try:
        carried = early_to_late_state(early.state_dict(), plain.state_dict())
    except CheckpointError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    place_base_state(model, carried)
    rename = base_name(model)
    return model, [rename(k) for k in carried]
