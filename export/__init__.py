"""Export: a checkpoint to encoder + decoder graphs (ONNX, TensorRT, CoreML) with a manifest, validated.

    from edgeclick.export import export, FORMATS

    paths = export("model.pt", "onnx", size=(640, 960), precision="fp16")   # → [artifacts/<name>/]

Names are imported on first use, so reading the format table loads no conversion tool.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .formats import FORMATS, ExportValidationError, MissingRequirement
    from .run import ExportIncomplete, export

_API: dict[str, str] = {
    "FORMATS": ".formats",
    "ExportIncomplete": ".run",
    "ExportValidationError": ".formats",
    "MissingRequirement": ".formats",
    "export": ".run",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name], __name__), name)
