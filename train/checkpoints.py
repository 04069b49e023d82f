"""Checkpoints of training runs: adapter-only files, loading them onto their base, merging, atomic I/O.

Three kinds of file come out of `edgeclick train`:

- base runs: a plain edgeclick checkpoint (`edgeclick.model.checkpoint.save_checkpoint`);
- adapter runs: an adapter checkpoint holding ONLY the tensors that trained (LoRA A/B, the conv
  adapter's down_image / down_clicks / up, the base's first conv when trained), the full model's
  ModelConfig and the sha256 of the base checkpoint file they were trained on:

      {"format": "edgeclick-adapter", "format_version": 1, "config": ModelConfig.to_dict(),
       "base_sha256": hex, "base_checkpoint": path as given, "train_first_conv": bool,
       "tensors": {name: tensor}, "meta": {...}}

- Lightning's resumable state `out_dir/last.ckpt`, written through `AtomicCheckpointIO`.

`merge(base, adapter, out)` folds LoRA into the base convs and writes one plain edgeclick checkpoint,
after checking that its logits equal the unmerged model's.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from edgeclick import contract
from edgeclick.clicks import click_rows
from edgeclick.io import atomic_write, sha256_file
from edgeclick.model import build_model, merge_lora
from edgeclick.model.adapters import ADAPTER_PATTERNS, FIRST_CONV, freeze_base
from edgeclick.model.base import ClickModel
from edgeclick.model.checkpoint import CheckpointError, load_checkpoint, load_payload, save_checkpoint
from edgeclick.model.config import ModelConfig
from edgeclick.model.convert import place_base_state

ADAPTER_FORMAT = "edgeclick-adapter"
ADAPTER_FORMAT_VERSION = 1
MERGE_TOLERANCE = 1e-5
"""Max |logit difference| allowed between a merged checkpoint and the unmerged model."""


class BaseMismatchError(CheckpointError):
    """An adapter offered a base checkpoint other than the one it was trained on."""


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------


def _save_synced(obj: Any, path: Path) -> None:
    """torch.save to `path` and fsync it, so the rename that follows publishes complete bytes."""
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_atomic(obj: Any, path: str | Path, saver: Callable[[Any, Path], None] = _save_synced) -> Path:
    """torch.save `obj` to `path` via a temporary file in the same folder and os.replace."""
    return atomic_write(path, lambda tmp: saver(obj, tmp))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO that writes temp-file-then-os.replace in the destination's folder.

    Lightning 2.6's TorchCheckpointIO goes through an fsspec transaction whose temporary file is made by
    `tempfile.mkstemp()` in the system temp dir and moved with `shutil.move`: a rename (atomic) only when
    that dir is on the checkpoint's filesystem, otherwise a copy that a crash can leave truncated. Local
    paths only (no fsspec URLs).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        save_atomic(checkpoint, Path(path))


# --------------------------------------------------------------------------------------------------
# Base + adapters
# --------------------------------------------------------------------------------------------------


def is_adapter_tensor(name: str) -> bool:
    """Whether a parameter name belongs to an adapter (LoRA A/B, down_image, down_clicks, up)."""
    return any(fnmatch.fnmatchcase(name, p) for p in ADAPTER_PATTERNS)


def attach_base(config: ModelConfig, base_checkpoint: str | Path) -> ClickModel:
    """Build the model `config` describes and fill everything but the adapters from a base checkpoint.

    The base must be a plain model (no adapter, no LoRA) with the same architecture and fusion. Adapter
    tensors keep their initialisation (LoRA B = 0, down_clicks / up = 0), so the result computes the
    base (on the 2× downsampled image with the conv adapter).

    Raises:
        CheckpointError: the base is not plain, its architecture differs, or keys do not line up.
    """
    base = load_checkpoint(base_checkpoint)
    expected = replace(config, adapter=None, lora=None)
    if base.config != expected:
        raise CheckpointError(
            f"{base_checkpoint}: base checkpoint config {base.config.to_dict()} does not match the run's "
            f"base {expected.to_dict()}; adapters train on a plain base (no adapter, no LoRA) of the same model")
    model = build_model(config)
    try:
        missing = place_base_state(model, base.state_dict())
    except CheckpointError as exc:
        raise CheckpointError(f"{base_checkpoint}: base {exc}") from None
    missing = [k for k in missing if not is_adapter_tensor(k)]
    if missing:
        raise CheckpointError(f"{base_checkpoint}: base weights do not fill the model: missing {missing[:5]}")
    return model


def adapter_parameter_names(model: ClickModel, train_first_conv: bool) -> list[str]:
    """Freeze the base of `model` and return the names that train (freeze_base's list).

    Raises:
        ValueError: train_first_conv is asked but the model has no conv adapter's base first conv.
    """
    names = freeze_base(model, train_first_conv=train_first_conv)
    if train_first_conv and FIRST_CONV not in names:
        raise ValueError(f"train_first_conv: {FIRST_CONV} is not a plain parameter of this model "
                         "(it needs the conv adapter, and LoRA must not wrap the first conv)")
    return names


def save_adapter(
    model: ClickModel,
    path: str | Path,
    *,
    names: list[str],
    base_sha256: str,
    base_checkpoint: str | Path,
    train_first_conv: bool,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the adapter checkpoint of `model` (only the tensors in `names`) atomically."""
    state = model.state_dict()
    payload = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "base_sha256": base_sha256,
        "base_checkpoint": str(base_checkpoint),
        "train_first_conv": bool(train_first_conv),
        "tensors": {n: state[n].detach().cpu().clone() for n in names},
        "meta": meta or {},
    }
    return save_atomic(payload, path)


def read_adapter(path: str | Path) -> dict[str, Any]:
    """Load and validate an adapter checkpoint's payload (tensors and plain data only)."""
    path = Path(path)
    payload = load_payload(path, "adapter checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != ADAPTER_FORMAT:
        hint = " It is a full edgeclick checkpoint: open it directly." if isinstance(payload, dict) and payload.get("format") == "edgeclick" else ""
        raise CheckpointError(f"{path}: not an edgeclick adapter checkpoint.{hint}")
    if payload.get("format_version") != ADAPTER_FORMAT_VERSION:
        raise CheckpointError(f"{path}: adapter format version {payload.get('format_version')} != {ADAPTER_FORMAT_VERSION}")
    return payload


def check_base(adapter_payload: dict[str, Any], adapter_path: str | Path, base_checkpoint: str | Path) -> str:
    """Return the base's sha256, or raise BaseMismatchError naming both hashes."""
    actual = sha256_file(base_checkpoint)
    expected = adapter_payload["base_sha256"]
    if actual != expected:
        raise BaseMismatchError(
            f"adapter {adapter_path} was trained on a base with sha256 {expected} "
            f"(recorded path {adapter_payload.get('base_checkpoint')}), but {base_checkpoint} has sha256 {actual}; "
            "pass the base checkpoint the adapter was trained on")
    return actual


def load_adapter(base_checkpoint: str | Path, adapter_checkpoint: str | Path) -> ClickModel:
    """The full model: the base checkpoint's weights plus the adapter's tensors, in eval mode.

    Raises:
        BaseMismatchError: the base file's sha256 differs from the one the adapter recorded.
        CheckpointError: unreadable files, mismatched configs, missing or unexpected adapter tensors.
    """
    payload = read_adapter(adapter_checkpoint)
    check_base(payload, adapter_checkpoint, base_checkpoint)
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{adapter_checkpoint}: bad model config: {exc}") from exc
    model = attach_base(config, base_checkpoint)
    expected = set(adapter_parameter_names(model, payload["train_first_conv"]))
    got = set(payload["tensors"])
    if got != expected:
        raise CheckpointError(f"{adapter_checkpoint}: adapter tensors do not match its config: "
                              f"missing {sorted(expected - got)[:5]}, unexpected {sorted(got - expected)[:5]}")
    try:
        model.load_state_dict(payload["tensors"], strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{adapter_checkpoint}: {exc}") from exc
    return model.eval()


@torch.no_grad()
def max_logit_difference(a: ClickModel, b: ClickModel, size: tuple[int, int] = (64, 96), seed: int = 0) -> float:
    """Max |logits(a) − logits(b)| on a fixed random image, three clicks and a random previous mask.

    size is the base resolution (H, W); models with the conv adapter get 2× that.
    """
    scale = a.config.input_scale
    h, w = size[0] * scale, size[1] * scale
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, h, w, generator=gen)
    prev = torch.rand(1, 1, h, w, generator=gen)
    clicks = torch.from_numpy(click_rows([(w * 0.5, h * 0.5, True), (w * 0.2, h * 0.3, False), (w * 0.7, h * 0.6, True)]))
    la = a.eval()(image, clicks, prev)[contract.LOGITS]
    lb = b.eval()(image, clicks, prev)[contract.LOGITS]
    return float((la - lb).abs().max())


def merge(base_checkpoint: str | Path, adapter_checkpoint: str | Path, out: str | Path) -> Path:
    """Fold the adapter's LoRA into the base convs and write one plain edgeclick checkpoint to `out`.

    The conv adapter (if any) stays as it is: it is part of the plain model's config. The written file
    is reloaded and its logits compared with the unmerged model's before it replaces `out`.

    Raises:
        RuntimeError: the merged checkpoint's logits differ by more than MERGE_TOLERANCE.
    """
    model = load_adapter(base_checkpoint, adapter_checkpoint)
    payload = read_adapter(adapter_checkpoint)
    merged = merge_lora(model) if model.config.lora is not None else model
    meta = {
        "source": "edgeclick merge",
        "base_checkpoint": str(base_checkpoint),
        "base_sha256": payload["base_sha256"],
        "adapter_checkpoint": str(adapter_checkpoint),
        "adapter_sha256": sha256_file(adapter_checkpoint),
        "adapter_meta": payload.get("meta", {}),
    }

    def write_and_check(tmp: Path) -> None:
        save_checkpoint(merged, tmp, meta=meta)
        diff = max_logit_difference(model, load_checkpoint(tmp))
        if diff > MERGE_TOLERANCE:
            raise RuntimeError(f"merged checkpoint differs from the unmerged model by {diff:.3g} > {MERGE_TOLERANCE}")

    # The check runs on the written temporary file, before it is renamed over `out`.
    return atomic_write(out, write_and_check)
