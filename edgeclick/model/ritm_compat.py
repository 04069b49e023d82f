"""Reading RITM checkpoints (`{'state_dict': ..., 'config': ...}` saved by RITM's trainer).

RITM's `config` is its `serialize` record: {'class': 'isegm.model.is_hrnet_model.HRNetModel',
'params': {name: {'type', 'value', 'specified'}}}. The model variant is read from it, never guessed from
the file name. RITM's own loader uses `load_state_dict(strict=False)`, which silently ignores wrong keys;
edgeclick refuses them by name instead, tolerating only `num_batches_tracked` (BN counters that some
checkpoints lack and that never affect inference).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgeclick.contract import LABEL_NEGATIVE, LABEL_PADDING, LABEL_POSITIVE
from edgeclick.io import sha256_file

from . import ARCHS, build_model
from .config import ModelConfig
from .ritm import EarlyFusionModel

RITM_CLASS = "HRNetModel"
# RITM parameter → value edgeclick requires (these switch off code paths edgeclick does not build).
REQUIRED: dict[str, Any] = {
    "use_rgb_conv": False,
    "use_disks": True,
    "with_prev_mask": True,
    "clicks_groups": None,
    "conv_extend": False,
    "binary_prev_mask": False,
}
RITM_DEFAULTS: dict[str, Any] = {  # HRNetModel / ISModel signature defaults, used when a param is absent
    "width": 48, "ocr_width": 256, "small": False, "norm_radius": 260, "use_leaky_relu": False,
    "use_rgb_conv": True, "use_disks": False, "with_prev_mask": False, "clicks_groups": None,
    "conv_extend": False, "binary_prev_mask": False,
    "norm_mean_std": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


class RITMImportError(ValueError):
    """A RITM checkpoint edgeclick cannot represent; the message says which entry and why."""


def _param(params: dict[str, Any], name: str) -> Any:
    entry = params.get(name)
    if entry is None:
        return RITM_DEFAULTS[name]
    return entry["value"] if isinstance(entry, dict) else entry


def config_from_ritm(ritm_config: dict[str, Any], source: str = "checkpoint") -> ModelConfig:
    """Translate RITM's serialized model config into an edgeclick ModelConfig (early fusion)."""
    cls = str(ritm_config.get("class", ""))
    if not cls.endswith(RITM_CLASS):
        raise RITMImportError(f"{source}: model class {cls!r} is not RITM's {RITM_CLASS}; only HRNet-OCR models import")
    params = ritm_config.get("params", {})
    for name, required in REQUIRED.items():
        value = _param(params, name)
        if value != required:
            raise RITMImportError(f"{source}: RITM param {name}={value!r} is not supported (edgeclick builds {name}={required!r}, "
                                  "as RITM's COCO+LVIS HRNet models)")
    width, ocr_width, small = int(_param(params, "width")), int(_param(params, "ocr_width")), bool(_param(params, "small"))
    if ocr_width <= 0:
        raise RITMImportError(f"{source}: ocr_width={ocr_width}: HRNet without OCR is not supported")
    arch = next((n for n, spec in ARCHS.items() if spec == (width, ocr_width, small)),
                f"hrnet{width}{'s' if small else ''}_ocr{ocr_width}")
    mean, std = _param(params, "norm_mean_std")
    return ModelConfig(arch=arch, width=width, ocr_width=ocr_width, small=small, fusion="early",
                       click_radius=int(_param(params, "norm_radius")), use_leaky_relu=bool(_param(params, "use_leaky_relu")),
                       mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


def convert_state_dict(ritm_state: dict[str, torch.Tensor], model: EarlyFusionModel, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Check RITM weights against `model` key by key and shape by shape; return a loadable state dict."""
    expected = model.state_dict()
    unexpected = [k for k in ritm_state if k not in expected]
    if unexpected:
        raise RITMImportError(f"{source}: unknown key(s) {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} "
                              f"({len(unexpected)} in all) — not part of RITM's HRNetModel as edgeclick builds it")
    missing = [k for k in expected if k not in ritm_state and not k.endswith("num_batches_tracked")]
    if missing:
        raise RITMImportError(f"{source}: missing key(s) {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)} in all)")
    state = {}
    for key, ref in expected.items():
        value = ritm_state.get(key, ref)  # absent BN counters keep the model's own
        if value.shape != ref.shape:
            raise RITMImportError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(ref.shape)} for {model.config.arch}")
        state[key] = value.to(ref.dtype)
    return state


def read_ritm(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    """Load a RITM checkpoint file; tensors and plain data only unless `trust_pickle`."""
    from .checkpoint import CheckpointError, explain_load_failure, sniff_torch_file

    path = Path(path)
    try:
        sniff_torch_file(path, "RITM checkpoint")  # --trust-pickle cannot help a file that is not a checkpoint
    except CheckpointError as exc:
        raise RITMImportError(str(exc)) from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:
        message = explain_load_failure(path, exc, "RITM checkpoint")
        hint = " If you trust the file, retry with --trust-pickle" if "pickled Python objects" in message else ""
        raise RITMImportError(f"{message}.{hint}") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        keys = list(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise RITMImportError(f"{path}: not a RITM checkpoint: expected a dict with 'state_dict' and 'config', got {keys}")
    return payload


def load_ritm_checkpoint(path: str | Path, trust_pickle: bool = False) -> EarlyFusionModel:
    """A RITM checkpoint as an edgeclick early-fusion model in eval mode (same logits as RITM)."""
    return model_from_ritm_payload(read_ritm(path, trust_pickle), str(path))


def model_from_ritm_payload(payload: dict[str, Any], source: str) -> EarlyFusionModel:
    """The model of an already loaded RITM payload (`{'state_dict','config'}`), checked key by key."""
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        keys = list(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise RITMImportError(f"{source}: not a RITM checkpoint: expected a dict with 'state_dict' and 'config', got {keys}")
    config = config_from_ritm(payload["config"], source)
    model = build_model(config)
    assert isinstance(model, EarlyFusionModel)
    model.load_state_dict(convert_state_dict(payload["state_dict"], model, source))
    return model.eval()


def import_ritm(src: str | Path, dst: str | Path, trust_pickle: bool = False) -> Path:
    """`edgeclick import-ritm`: convert a RITM checkpoint into edgeclick's format at `dst`."""
    from .checkpoint import save_checkpoint

    model = load_ritm_checkpoint(src, trust_pickle)
    meta = {"source": "ritm", "source_file": Path(src).name, "source_sha256": sha256_file(src)}
    return save_checkpoint(model, dst, meta=meta)


def ritm_points_to_clicks(points: torch.Tensor) -> torch.Tensor:
    """RITM points B×2P×3 (y, x, index; first P positive, last P negative; -1 rows padding) →
    edgeclick click rows B×2P×3 (x, y, label)."""
    num = points.shape[1] // 2
    label = torch.full_like(points[..., :1], LABEL_POSITIVE)
    label[:, num:] = LABEL_NEGATIVE
    # RITM treats a point as absent when both coordinates are negative.
    invalid = torch.amax(points[..., :2], dim=-1, keepdim=True) < 0
    label = torch.where(invalid, torch.full_like(label, LABEL_PADDING), label)
    return torch.cat([points[..., 1:2], points[..., 0:1], label], dim=-1)
