"""edgeclick's checkpoint format: weights + the config that rebuilds the model, written atomically.

    {"format": "edgeclick", "format_version": 1, "config": ModelConfig.to_dict(), "state_dict": ..., "meta": {...}}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgeclick.io import atomic_write

from . import build_model
from .config import ModelConfig
from .ritm import ClickModel

FORMAT = "edgeclick"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file, the problem and the fix."""


def save_checkpoint(model: ClickModel, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (weights + config) to `path` atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "meta": meta or {},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_payload(path: str | Path, what: str = "checkpoint") -> Any:
    """torch.load of tensors and plain data only, with errors that name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, or pickled objects we refuse to run
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({exc})") from exc


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the payload of an edgeclick checkpoint (tensors and plain data only)."""
    payload = load_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " It looks like a RITM checkpoint: convert it with `edgeclick import-ritm`." if isinstance(payload, dict) and "config" in payload and "state_dict" in payload else ""
        raise CheckpointError(f"{path}: not an edgeclick checkpoint.{hint}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} != {FORMAT_VERSION}")
    return payload


def load_checkpoint(path: str | Path) -> ClickModel:
    """Rebuild the model a checkpoint describes and load its weights (strict), in eval mode."""
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config: {exc}") from exc
    model = build_model(config)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match config {config.arch}/{config.fusion}: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    return model.eval()
