"""Open any exported artifact as a Backend, dispatching on its manifest's format.

    backend = open_backend("artifacts/w18s-late-640x960-fp32-onnx", threads=2)
    session = Session(backend)

Backends are imported only when their format is opened (coremltools / tensorrt stay unimported otherwise).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgeclick import contract
from edgeclick.export.manifest import Manifest, read_manifest

from .backend import Backend

# manifest format → "module:class"; each class takes (artifact_dir, **kwargs).
BACKENDS: dict[str, str] = {
    "onnx": "edgeclick.runtimes.ort:OrtBackend",
    "coreml": "edgeclick.runtimes.coreml:CoreMLBackend",
    "trt": "edgeclick.runtimes.trt:TensorRTBackend",
}
DEFAULT_SKIP_CHANNELS = 16  # contract.graph_specs' default when the model has no conv adapter


def graph_specs_from_manifest(manifest: Manifest) -> dict[str, contract.GraphSpec]:
    """The contract's encoder/decoder specs for the model config recorded in the manifest.

    Same result as edgeclick.model.split.model_graph_specs on the model, without building it.
    """
    model = manifest.model
    adapter = model.get("adapter")
    skip = int(adapter.get("skip_channels", DEFAULT_SKIP_CHANNELS)) if adapter else DEFAULT_SKIP_CHANNELS
    return contract.graph_specs(model["fusion"], adapter is not None, late_channels=int(model.get("late_channels", 32)),
                                skip_channels=skip)


def open_backend(artifact_dir: str | Path, **kwargs: Any) -> Backend:
    """The Backend for an artifact directory; kwargs go to the backend (e.g. threads=2, providers=[...]).

    Raises ManifestError / ContractMismatch from read_manifest, ValueError for an unknown format or an
    incomplete artifact (e.g. a TensorRT export whose engine could not be built on this machine).
    """
    manifest = read_manifest(artifact_dir)
    if not manifest.complete:
        raise ValueError(f"{manifest.root}: incomplete {manifest.format} artifact: {manifest.missing or 'a requirement was missing'}; "
                         "finish it where the requirement is met, or re-export")
    if manifest.format not in BACKENDS:
        raise ValueError(f"{manifest.root}: no runtime for format {manifest.format!r}; known: {sorted(BACKENDS)}")
    module_name, _, class_name = BACKENDS[manifest.format].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"{manifest.root}: the {manifest.format} runtime cannot be imported ({exc})") from exc
    return getattr(module, class_name)(artifact_dir, **kwargs)
