"""edgeclick's checkpoint format: weights + the config that rebuilds the model, written atomically.

    {"format": "edgeclick", "format_version": 1, "config": ModelConfig.to_dict(), "state_dict": ..., "meta": {...}}
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from edgeclick.io import atomic_write

from . import build_model
from .config import ModelConfig
from .base import ClickModel

FORMAT = "edgeclick"
FORMAT_VERSION = 1
# torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle (protocol >= 2 starts
# with 0x80); anything else is not a torch file, and torch's own error for it is misleading advice.
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"


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


def sniff_torch_file(path: Path, what: str = "checkpoint") -> None:
    """CheckpointError unless `path` is a non-empty file that starts like something torch.save wrote."""
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a {what} file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file ({what} expected); check the path")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: cannot be read as a {what}: the file is empty (0 bytes); re-save or re-download it")
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        raise CheckpointError(f"{path}: cannot be read as a {what}: not a PyTorch file (it starts with {head[:8]!r}); "
                              "pass a checkpoint written by torch.save")


def explain_load_failure(path: Path, exc: BaseException, what: str = "checkpoint") -> str:
    """Why torch.load(weights_only=True) refused a file that looked like a torch file, in one phrase,
    without torch's advice to retry with weights_only=False (wrong for a damaged file, unsafe for code)."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (f"{path}: holds pickled Python objects ({found.group(1)}), not only tensors and plain data; "
                "refused without running any of it")
    if "central directory" in text or "PytorchStreamReader" in text or "zip archive" in text:
        return f"{path}: cannot be read as a {what}: truncated or damaged (its zip archive is incomplete); re-save or re-download it"
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if detail:
        reason = detail.group(1).strip()
    elif text.startswith("Weights only load failed"):
        reason = "not a pickle of tensors and plain data"
    else:
        reason = text.splitlines()[0] if text else type(exc).__name__
    return f"{path}: cannot be read as a {what}: damaged ({reason}); re-save or re-download it"


def load_payload(path: str | Path, what: str = "checkpoint") -> Any:
    """torch.load of tensors and plain data only, with errors that name the file, the problem and the fix."""
    path = Path(path)
    sniff_torch_file(path, what)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 34": the error below says it better
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, damaged pickle, or pickled objects we refuse to run
        raise CheckpointError(explain_load_failure(path, exc, what)) from exc


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the payload of an edgeclick checkpoint (tensors and plain data only)."""
    payload = load_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " It looks like a RITM checkpoint: convert it with `edgeclick import-ritm`." if isinstance(payload, dict) and "config" in payload and "state_dict" in payload else ""
        raise CheckpointError(f"{path}: not an edgeclick checkpoint.{hint}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} != {FORMAT_VERSION}")
    return payload


def meta_input_size(payload: dict[str, Any]) -> tuple[int, int] | None:
    """The input size [H, W] a checkpoint's meta says it is meant to run at (the letterbox size it was trained
    and evaluated at), or None. `demo` and `calibrate` default to it."""
    size = (payload.get("meta") or {}).get("input_size")
    return (int(size[0]), int(size[1])) if size else None


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
