"""Which nodes to keep float in an int8 graph, found by measuring masks rather than guessed.

    effects = measure_groups(fp32_artifact, data, contract.DECODER)
    keep = chosen_nodes(effects, min_gain=0.002)      # node names for quantize_onnx_artifact(keep_float=...)

For one graph, every candidate group of nodes (all Softmax nodes — OCR's attention —, all Resize nodes —
the upsampling —, the first and the last Conv, …) is kept float in turn while the rest is quantised
exactly as `calibration.ort.quantize_graph` does; the effect is the mean mask IoU of the resulting
model against the fp32 model over recorded click-session feeds (logits > 0, the contract's threshold).
For the encoder, whose outputs are features, masks come from running its features through the fp32
decoder with the recorded clicks. A group earns its place when it raises the mean mask IoU by at least
`min_gain` over quantising everything (the defaults already keep the click rasteriser and the output
producers float).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from edgeclick import contract

from .data import CalibrationData

NodeGroup = Callable[[onnx.GraphProto], list[str]]


def _of_type(op_type: str) -> NodeGroup:
    return lambda graph: [n.name for n in graph.node if n.op_type == op_type]


def _first(op_type: str) -> NodeGroup:
    return lambda graph: [n.name for n in graph.node if n.op_type == op_type][:1]


def _last(op_type: str) -> NodeGroup:
    return lambda graph: [n.name for n in graph.node if n.op_type == op_type][-1:]


GROUPS: dict[str, NodeGroup] = {
    "softmax": _of_type("Softmax"),       # OCR's spatial and object attention
    "resize": _of_type("Resize"),         # upsampling (HRNet fusion, the output)
    "first_conv": _first("Conv"),         # sees raw pixels / click maps
    "last_conv": _last("Conv"),           # the mask logits head
    "matmul": _of_type("MatMul"),         # attention products (and the late head's click projection)
}
"""Candidate groups: name → the node names of the (pre-processed) graph it covers."""


@dataclass(frozen=True)
class GroupEffect:
    """One measured group.

    Attributes:
        group: GROUPS key, or "none" for everything quantised (the reference row).
        nodes: node names kept float for this measurement (the group's; empty for "none").
        mean_mask_iou: mean over feeds of the mask IoU against fp32.
        min_mask_iou: the worst feed.
        gain: mean_mask_iou − the "none" row's.
    """

    group: str
    nodes: tuple[str, ...]
    mean_mask_iou: float
    min_mask_iou: float
    gain: float


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of logits > 0 (1.0 when both are empty)."""
    ma, mb = a > 0, b > 0
    union = np.logical_or(ma, mb).sum()
    return 1.0 if union == 0 else float(np.logical_and(ma, mb).sum() / union)


def _session(path: Path) -> "object":
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _masks(encoder: Path, decoder: Path, data: CalibrationData, feeds: Sequence[int], graph: str) -> list[np.ndarray]:
    """Decoder logits for the chosen decoder feeds; with graph=ENCODER the features are recomputed by `encoder`."""
    dec = _session(decoder)
    enc = _session(encoder) if graph == contract.ENCODER else None
    features: dict[int, dict[str, np.ndarray]] = {}
    out = []
    all_feeds = list(data.decoder_feeds())
    for k in feeds:
        feed = dict(all_feeds[k])
        if enc is not None:
            s = int(data.sample_index[k])
            if s not in features:
                names = [o.name for o in enc.get_outputs()]  # type: ignore[attr-defined]
                values = enc.run(None, {contract.IMAGE: data.image[s : s + 1]})  # type: ignore[attr-defined]
                features[s] = dict(zip(names, values))
            feed.update(features[s])
        out.append(dec.run([contract.LOGITS], feed)[0])  # type: ignore[attr-defined]
    return out


def measure_groups(artifact_dir: str | Path, data: CalibrationData, graph: str, *, method: str = "minmax",
                   groups: Sequence[str] = tuple(GROUPS), eval_feeds: int = 16,
                   calibration_feeds: int | None = 64, seed: int = 0, activations: str = "uint8",
                   log: Callable[[str], None] = lambda _: None) -> list[GroupEffect]:
    """Quantise `graph` of the fp32 ONNX artifact once per candidate group (that group float) and measure masks.

    eval_feeds: decoder feeds (a seeded choice) the mask IoU is averaged over.
    calibration_feeds: decoder feeds used to calibrate each trial (a subset keeps the search affordable;
        None: all). Returns the "none" row first, then one row per group that has nodes in this graph.
    """
    from edgeclick.manifest import read_manifest
    from onnxruntime.quantization import quant_pre_process

    from .ort import quantize_graph

    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown node group(s) {unknown}; known: {list(GROUPS)}")
    if graph not in (contract.ENCODER, contract.DECODER):
        raise ValueError(f"unknown graph {graph!r}")
    manifest = read_manifest(artifact_dir)
    src = {g: manifest.path(g) for g in (contract.ENCODER, contract.DECODER)}
    rng = np.random.default_rng(seed)
    feeds = sorted(rng.choice(len(data), size=min(eval_feeds, len(data)), replace=False).tolist())
    trial_data = data if calibration_feeds is None else _subset(data, calibration_feeds, seed)
    reference = _masks(src[contract.ENCODER], src[contract.DECODER], data, feeds, graph)
    with tempfile.TemporaryDirectory(prefix="edgeclick-sensitivity-") as tmp:
        work = Path(tmp)
        pre = work / "pre.onnx"
        quant_pre_process(str(src[graph]), str(pre))
        pre_graph = onnx.load(str(pre)).graph
        trials = [("none", [])] + [(g, GROUPS[g](pre_graph)) for g in groups]
        effects: list[GroupEffect] = []
        for name, nodes in trials:
            if name != "none" and not nodes:
                continue
            log(f"sensitivity: {graph} with {name} float ({len(nodes)} nodes)")
            dst = work / f"{name}.onnx"
            quantize_graph(src[graph], dst, trial_data, graph, method=method, keep_float=nodes, work_dir=work,
                           activations=activations)
            paths = dict(src)
            paths[graph] = dst
            candidate = _masks(paths[contract.ENCODER], paths[contract.DECODER], data, feeds, graph)
            ious = [mask_iou(a, b) for a, b in zip(reference, candidate, strict=True)]
            base = effects[0].mean_mask_iou if effects else float(np.mean(ious))
            effects.append(GroupEffect(name, tuple(nodes), float(np.mean(ious)), float(np.min(ious)),
                                       float(np.mean(ious)) - base))
    return effects


def _subset(data: CalibrationData, n: int, seed: int) -> CalibrationData:
    """A seeded subset of n decoder feeds (every sample's encoder input kept)."""
    if n >= len(data):
        return data
    keep = np.sort(np.random.default_rng(seed + 1).choice(len(data), size=n, replace=False))
    return CalibrationData(image=data.image, features=data.features, clicks=data.clicks[keep],
                           prev_mask=data.prev_mask[keep], sample_index=data.sample_index[keep],
                           click_index=data.click_index[keep], meta={**data.meta, "subset": n})


def chosen_nodes(effects: Sequence[GroupEffect], min_gain: float = 0.002) -> list[str]:
    """Node names of every group whose gain is at least `min_gain` (mean mask IoU, absolute)."""
    names: list[str] = []
    for e in effects:
        if e.group != "none" and e.gain >= min_gain:
            names.extend(e.nodes)
    return list(dict.fromkeys(names))


def effects_table(effects: Sequence[GroupEffect], graph: str) -> str:
    """Markdown rows: group, nodes kept float, mean / min mask IoU vs fp32, gain."""
    lines = [f"| {graph}: kept float | nodes | mean mask IoU | min mask IoU | gain |", "|---|---|---|---|---|"]
    for e in effects:
        lines.append(f"| {e.group} | {len(e.nodes)} | {e.mean_mask_iou:.4f} | {e.min_mask_iou:.4f} | {e.gain:+.4f} |")
    return "\n".join(lines)
