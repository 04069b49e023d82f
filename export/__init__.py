"""Export: a checkpoint to encoder + decoder graphs (ONNX, TensorRT, CoreML) with a manifest, validated.

    from edgeclick.export import export, FORMATS

    paths = export("model.pt", "onnx", size=(640, 960), precision="fp16")   # → [artifacts/<name>/]

Names are imported on first use, so reading the format table loads no conversion tool.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from edgeclick.lazy import lazy_api

if TYPE_CHECKING:
    from .formats import FORMATS, ExportValidationError, MissingRequirement
    from .run import ExportIncomplete, export

__getattr__, __all__ = lazy_api(__name__, {
    "FORMATS": ".formats",
    "ExportIncomplete": ".run",
    "ExportValidationError": ".formats",
    "MissingRequirement": ".formats",
    "export": ".run",
})
