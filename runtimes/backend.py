"""The one interface every runtime implements: run a named graph on named numpy feeds.

torch (reference), onnxruntime, TensorRT and CoreML backends all look like this to `Session`.

Sharing: one backend may serve several Sessions on several threads. `run` keeps no per-call state on the
backend: torch runs under inference_mode with the model in eval mode, onnxruntime's InferenceSession.run is
thread-safe; TensorRT (one execution context and stream per graph) and CoreML (not verified thread-safe)
hold a lock around `run`, so they are shared safely but serve one call at a time.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from edgeclick import contract
from edgeclick.contract import ContractMismatch, check_contract  # noqa: F401 - what every backend checks


class Backend(Protocol):
    name: str
    contract_hash: str
    input_size: tuple[int, int] | None  # fixed model input (H, W), or None when any multiple of 32 works
    graphs: dict[str, contract.GraphSpec]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` (contract.ENCODER / contract.DECODER) and return its outputs by contract name."""
        ...


def feed_size(spec: contract.GraphSpec, feeds: dict[str, np.ndarray]) -> tuple[int, int]:
    """Model input (H, W) implied by the feeds: the encoder's NHWC image or the decoder's NCHW prev mask."""
    if spec.name == contract.ENCODER:
        return tuple(feeds[contract.IMAGE].shape[1:3])  # type: ignore[return-value]
    return tuple(feeds[contract.PREV_MASK].shape[2:4])  # type: ignore[return-value]


def check_feeds(spec: contract.GraphSpec, feeds: dict[str, np.ndarray]) -> tuple[int, int]:
    """Raise ValueError unless `feeds` holds exactly the spec's inputs with their dtypes and shapes;
    return the model input size (H, W) they imply."""
    names = set(feeds)
    expected = set(spec.input_names())
    if names != expected:
        raise ValueError(f"{spec.name}: feeds {sorted(names)} differ from the contract's inputs {sorted(expected)}")
    size = feed_size(spec, feeds)
    for t in spec.inputs:
        arr = feeds[t.name]
        shape = t.resolve(*size)
        if arr.dtype != np.dtype(t.dtype):
            raise ValueError(f"{spec.name}.{t.name}: dtype {arr.dtype}, contract says {t.dtype}")
        if tuple(arr.shape) != shape:
            raise ValueError(f"{spec.name}.{t.name}: shape {tuple(arr.shape)}, contract says {shape}")
    return size

