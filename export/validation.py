"""Validation after export (optimum-style): I/O structure against the contract, then values against PyTorch.

Format-agnostic: an exporter passes what its runtime reports about each graph's inputs/outputs
(`TensorInfo`) and a `run(graph, feeds) -> outputs` callable; both checks raise ExportValidationError
naming what differs. The values are compared on one deterministic, realistic input — an image with
structure, three clicks (two positive, one negative, fractional coordinates as letterboxing gives) and a
non-trivial previous mask — end to end (exported encoder → exported decoder) against the torch split
model, gated by contract.TOLERANCES[precision].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from edgeclick import contract
from edgeclick.clicks import click_rows
from edgeclick.model.base import ClickModel
from edgeclick.model.split import model_graph_specs, split_model

from .formats import ExportValidationError

Runner = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class TensorInfo:
    """An exported graph's input or output as its runtime reports it; symbolic dims are strings (or None)."""

    name: str
    dtype: str  # numpy dtype name: "uint8", "float32", ...
    shape: tuple[int | str | None, ...]


def reference_feeds(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Deterministic realistic inputs at model size (H, W).

    Returns {contract.IMAGE: 1×H×W×3 uint8, contract.CLICKS: 1×N×3 float32, contract.PREV_MASK: 1×1×H×W
    float32 in [0, 1]}: a colour gradient with a bright ellipse, a dark rectangle and mild noise; two
    positive clicks inside the ellipse, one negative in the rectangle; the previous mask a soft ellipse
    offset from the object (as after an imperfect first click).
    """
    h, w = size
    rng = np.random.default_rng(1234)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    image = np.stack([60 + 100 * xx / w, 80 + 60 * yy / h, 140 - 80 * xx / w], axis=-1)
    ellipse = ((xx - 0.45 * w) / (0.22 * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2
    image[ellipse <= 1] = (230, 200, 90)
    rect = (xx > 0.72 * w) & (xx < 0.9 * w) & (yy > 0.15 * h) & (yy < 0.45 * h)
    image[rect] = (20, 30, 40)
    image += rng.normal(0, 6, image.shape)
    image_u8 = np.clip(image, 0, 255).round().astype(np.uint8)[None]

    clicks = click_rows([(0.45 * w + 0.25, 0.5 * h + 0.5, True), (0.38 * w + 0.75, 0.62 * h + 0.25, True),
                         (0.81 * w + 0.5, 0.3 * h + 0.75, False)])

    offset = ((xx - 0.5 * w) / (0.2 * w)) ** 2 + ((yy - 0.45 * h) / (0.28 * h)) ** 2
    prev = 1.0 / (1.0 + np.exp(6.0 * (np.sqrt(offset) - 1.0)))
    return {contract.IMAGE: image_u8, contract.CLICKS: clicks, contract.PREV_MASK: prev.astype(np.float32)[None, None]}


@torch.inference_mode()
def torch_reference(model: ClickModel, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The torch split model on `feeds`: (encoder outputs by contract name, decoder logits 1×1×H×W)."""
    encoder, decoder = (m.eval() for m in split_model(model.eval()))
    features = encoder(torch.from_numpy(feeds[contract.IMAGE]))
    named = dict(zip(encoder.output_names, features))
    logits = decoder(*features, torch.from_numpy(feeds[contract.CLICKS]), torch.from_numpy(feeds[contract.PREV_MASK]))
    return {k: v.numpy() for k, v in named.items()}, logits.numpy()


def check_structure(model: ClickModel, io: dict[str, tuple[Sequence[TensorInfo], Sequence[TensorInfo]]],
                    size: tuple[int, int], dynamic: bool) -> dict[str, str]:
    """Names (in order), dtypes and shapes of every graph's inputs and outputs equal the contract's.

    io: graph → (inputs, outputs) as the runtime reports them. With `dynamic`, the contract's variable
    axes must be symbolic and every other axis fixed; without it every axis equals the resolved shape.
    """
    problems: list[str] = []
    for graph, spec in model_graph_specs(model).items():
        if graph not in io:
            problems.append(f"{graph}: graph missing")
            continue
        for kind, expected, actual in (("inputs", spec.inputs, io[graph][0]), ("outputs", spec.outputs, io[graph][1])):
            names = [t.name for t in actual]
            if names != [t.name for t in expected]:
                problems.append(f"{graph} {kind}: names {names}, contract says {[t.name for t in expected]}")
                continue
            for want, got in zip(expected, actual):
                problems += _tensor_problems(f"{graph}.{want.name}", want, got, size, dynamic)
    if problems:
        raise ExportValidationError("exported graphs differ from the I/O contract:\n  " + "\n  ".join(problems))
    return {graph: "names, dtypes and shapes match the contract" for graph in io}


def _tensor_problems(where: str, want: contract.TensorSpec, got: TensorInfo, size: tuple[int, int], dynamic: bool) -> list[str]:
    if got.dtype != want.dtype:
        return [f"{where}: dtype {got.dtype}, contract says {want.dtype}"]
    shape = want.resolve(*size)
    if len(got.shape) != len(shape):
        return [f"{where}: rank {len(got.shape)} (shape {got.shape}), contract says {shape}"]
    variable = {axis for axis, _ in want.dynamic} if dynamic else set()
    for axis, (g, s) in enumerate(zip(got.shape, shape)):
        if axis in variable and isinstance(g, int):
            return [f"{where}: axis {axis} is fixed at {g} in a dynamic export (contract: variable {dict(want.dynamic)[axis]!r})"]
        if axis not in variable and g != s:
            return [f"{where}: shape {got.shape}, contract says {shape}"]
    return []


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the thresholded masks of two logit maps (1.0 when both are empty)."""
    pa = a > _logit(contract.PROB_THRESHOLD)
    pb = b > _logit(contract.PROB_THRESHOLD)
    union = np.logical_or(pa, pb).sum()
    return 1.0 if union == 0 else float(np.logical_and(pa, pb).sum() / union)


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def check_values(model: ClickModel, run: Runner, precision: str, sizes: Sequence[tuple[int, int]]) -> dict[str, object]:
    """Exported graphs vs the torch split model on `reference_feeds` at each size.

    Gates (contract.TOLERANCES[precision]): end-to-end max |Δlogit| (exported encoder → exported decoder)
    and the thresholded mask's IoU. Reported only: encoder outputs' max |Δ| and the decoder alone on
    torch features. Returns those numbers; raises ExportValidationError naming the first failure.
    """
    tol = contract.TOLERANCES[precision]
    report: dict[str, object] = {"reference": "torch split model (float32)", "precision": precision,
                                 "tolerance": {"max_abs_logit": tol.max_abs_logit, "min_mask_iou": tol.min_mask_iou_per_click},
                                 "inputs": "structured image, 2 positive + 1 negative click, soft prev mask", "sizes": {}}
    failures: list[str] = []
    for size in sizes:
        feeds = reference_feeds(size)
        ref_features, ref_logits = torch_reference(model, feeds)
        features = run(contract.ENCODER, {contract.IMAGE: feeds[contract.IMAGE]})
        clicks = {contract.CLICKS: feeds[contract.CLICKS], contract.PREV_MASK: feeds[contract.PREV_MASK]}
        logits = run(contract.DECODER, {**features, **clicks})[contract.LOGITS]
        decoder_only = run(contract.DECODER, {**ref_features, **clicks})[contract.LOGITS]
        key = f"{size[0]}x{size[1]}"
        for name, out in [*features.items(), (contract.LOGITS, logits)]:
            if not np.isfinite(out).all():
                failures.append(f"{key}: {name} holds NaN/inf")
        if logits.shape != ref_logits.shape:
            failures.append(f"{key}: {contract.LOGITS} shape {logits.shape}, torch gives {ref_logits.shape}")
            continue
        entry = {
            "encoder_max_abs": {name: float(np.abs(features[name] - ref).max()) for name, ref in ref_features.items()},
            "decoder_only_max_abs_logit": float(np.abs(decoder_only - ref_logits).max()),
            "max_abs_logit": float(np.abs(logits - ref_logits).max()),
            "mask_iou": _mask_iou(logits, ref_logits),
            "logit_range": [float(ref_logits.min()), float(ref_logits.max())],
        }
        report["sizes"][key] = entry  # type: ignore[index]
        if not entry["max_abs_logit"] <= tol.max_abs_logit:
            failures.append(f"{key}: max |Δlogit| {entry['max_abs_logit']:.3g} > {tol.max_abs_logit} ({precision} tolerance); "
                            f"decoder alone on torch features {entry['decoder_only_max_abs_logit']:.3g}, encoder {entry['encoder_max_abs']}")
        if not entry["mask_iou"] >= tol.min_mask_iou_per_click:
            failures.append(f"{key}: mask IoU vs torch {entry['mask_iou']:.4f} < {tol.min_mask_iou_per_click}")
    if failures:
        raise ExportValidationError("exported graphs differ from PyTorch:\n  " + "\n  ".join(failures))
    report["max_abs_logit"] = max(e["max_abs_logit"] for e in report["sizes"].values())  # type: ignore[union-attr]
    report["passed"] = True
    return report


def validation_sizes(size: tuple[int, int], dynamic: bool) -> list[tuple[int, int]]:
    """The export size, plus a second size of another aspect ratio when the graphs are dynamic."""
    h, w = size
    return [size, (h + 2 * contract.PAD_MULTIPLE, w + contract.PAD_MULTIPLE)] if dynamic else [size]
