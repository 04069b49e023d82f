"""Runtimes: one Session API over torch, onnxruntime, TensorRT and CoreML backends.

    from edgeclick.runtimes import Session, open_backend, open_session

    session = open_session("model.pt", input_size=(640, 960))        # torch reference over a checkpoint
    session = Session(open_backend("artifacts/w18s-late-640x960-fp32-onnx"))   # any exported artifact
    session.set_image(rgb); prob = session.click(120, 80, True)

Names are imported on first use, so `import edgeclick.runtimes.web` (or `edgeclick --help`) loads no backend.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from edgeclick.lazy import lazy_api

if TYPE_CHECKING:
    from .artifact import Source, open_backend, resolve_source
    from .backend import Backend
    from .session import Session, open_session
    from .torch_ref import TorchBackend

__getattr__, __all__ = lazy_api(__name__, {
    "Backend": ".backend",
    "Session": ".session",
    "Source": ".artifact",
    "TorchBackend": ".torch_ref",
    "open_backend": ".artifact",
    "open_session": ".session",
    "resolve_source": ".artifact",
})
