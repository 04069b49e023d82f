"""Open any exported artifact as a Backend, dispatching on its manifest's format.

    backend = open_backend("artifacts/w18s-late-640x960-fp32-onnx", threads=2)
    session = Session(backend)
    source = resolve_source("artifacts/w18s-late-640x960-fp32-onnx")   # manifest + its verified checkpoint

Backends are imported only when their format is opened (coremltools / tensorrt stay unimported otherwise).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeclick import contract
from edgeclick.io import sha256_file
from edgeclick.manifest import Manifest, read_manifest

from .backend import Backend

# manifest format → "module:class"; each class takes (artifact_dir, **kwargs).
BACKENDS: dict[str, str] = {
    "onnx": "edgeclick.runtimes.ort:OrtBackend",
    "coreml": "edgeclick.runtimes.coreml:CoreMLBackend",
    "trt": "edgeclick.runtimes.trt:TensorRTBackend",
    "executorch": "edgeclick.runtimes.executorch:ExecuTorchBackend",
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


POWER_FORMATS: frozenset[str] = frozenset({"onnx"})
"""Formats whose runtime has power-profile knobs (threads, spinning); CoreML and TensorRT schedule their own."""
POOL_FORMATS: frozenset[str] = frozenset({"executorch"})
"""Formats whose runtime has a thread count and no spinning knob: a named profile sets the count
(PowerProfile.executorch_threads) unless `threads` is given; without one the runtime keeps its pool as it is
(ExecuTorch's pool is process-wide and fixed once a program loads, so a default must not resize it)."""


def open_backend(artifact_dir: str | Path, *, power: str | None = None, **kwargs: Any) -> Backend:
    """The Backend for an artifact directory; kwargs go to the backend (e.g. threads=2, providers=[...]).

    power: power profile name (runtimes/power.py): passed to runtimes with such knobs (POWER_FORMATS; None:
    their default profile); a named profile for a runtime without them is refused.

    Raises ManifestError / ContractMismatch from read_manifest, ValueError for an unknown format, an
    incomplete artifact (e.g. a TensorRT export whose engine could not be built on this machine) or a
    power profile the runtime cannot apply.
    """
    from .power import get_profile
    manifest = read_manifest(artifact_dir)
    if not manifest.complete:
        raise ValueError(f"{manifest.root}: incomplete {manifest.format} artifact: {manifest.missing or 'a requirement was missing'}; "
                         "finish it where the requirement is met, or re-export")
    if manifest.format not in BACKENDS:
        raise ValueError(f"{manifest.root}: no runtime for format {manifest.format!r}; known: {sorted(BACKENDS)}")
    if manifest.format in POWER_FORMATS:
        kwargs["power"] = get_profile(power)
    elif manifest.format in POOL_FORMATS and power is not None:
        rule = get_profile(power).executorch_threads
        if kwargs.get("threads") is None and rule is not None:
            kwargs["threads"] = rule.count()
    elif power is not None:
        get_profile(power)  # an unknown name is that error first
        raise ValueError(f"{manifest.root}: the {manifest.format} runtime has no thread or spinning knobs, so power "
                         f"profile {power!r} cannot apply; leave --power out for this artifact")
    module_name, _, class_name = BACKENDS[manifest.format].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"{manifest.root}: the {manifest.format} runtime cannot be imported ({exc})") from exc
    return getattr(module, class_name)(artifact_dir, **kwargs)


@dataclass(frozen=True)
class Source:
    """An artifact's manifest and the checkpoint it was exported from (verified)."""

    manifest: Manifest
    checkpoint: Path


def resolve_source(artifact_dir: Path, checkpoint: Path | None = None) -> Source:
    """Read the artifact's manifest and find its source checkpoint.

    The manifest's path is tried as written, then relative to the artifact folder. The file must have
    the sha256 the manifest recorded: parity against other weights would measure nothing.

    Raises:
        FileNotFoundError: no checkpoint file (the message says to pass --checkpoint).
        ValueError: the checkpoint's sha256 differs from the one the artifact was exported from.
    """
    manifest = read_manifest(artifact_dir)
    recorded = Path(str(manifest.checkpoint.get("path", "")))
    if checkpoint is not None:
        path = checkpoint
    else:
        path = recorded if recorded.is_file() or recorded.is_absolute() else manifest.root / recorded
    if not path.is_file():
        raise FileNotFoundError(f"{artifact_dir}: source checkpoint {path} not found (manifest checkpoint.path "
                                f"{str(recorded)!r}); pass the checkpoint it was exported from with --checkpoint CKPT")
    expected = manifest.checkpoint.get("sha256")
    if expected:
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(f"checkpoint {path} has sha256 {actual[:12]}…, but {artifact_dir} was exported from "
                             f"{expected[:12]}…; pass the checkpoint it was exported from (--checkpoint) or re-export")
    return Source(manifest, path)
