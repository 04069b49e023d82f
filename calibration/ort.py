"""Static int8 quantisation of an fp32 ONNX artifact into a QDQ ONNX artifact (onnxruntime.quantization).

    data = collect_calibration_data(ckpt, samples, input_size=(640, 960))
    art = quantize_onnx_artifact("artifacts/m-late-640x960-fp32-onnx", data, "artifacts/m-late-640x960-int8-onnx")
    backend = OrtBackend(art)                      # runtimes.ort, unchanged

Per graph: quant_pre_process (shape inference + basic optimisations) → quantize_static in QDQ format,
symmetric int8 weights (per channel by default) and activations as `activations` says → contract
metadata restored → onnx.checker.

Activations: "uint8" (asymmetric, the default for onnxruntime on CPU) or "int8" (symmetric, zero point 0:
what TensorRT takes; calibration/trt.py uses it). Measured on w18s late at 640×960, 2 threads: the
"int8" encoder ran 1.4–1.75× *slower* than fp32 in onnxruntime, "uint8" 1.7–2.1× faster. With symmetric
activations a Relu after a Conv cannot be folded into the output's Q (the int8 range keeps negatives), so
onnxruntime fuses only 56 of 145 Convs into QLinearConv and runs the rest in float behind a
DequantizeLinear of their weights at every call; the asymmetric range absorbs the Relu. The click rasteriser (nodes computing from the click
rows only) and the nodes producing graph outputs stay float unless `keep_float` says otherwise.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import onnx
from edgeclick.export.onnx import META_PRECISION, click_only_nodes, graph_filename
from edgeclick.manifest import file_entries, read_manifest, write_manifest

from edgeclick import contract
from edgeclick.io import publishing

from .data import CalibrationData

METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
"""onnxruntime's calibration methods. Measured: "entropy" gives exactly minmax's scales here, because
quantize_static builds its entropy calibrator with 128 histogram bins and 128 quantised bins, leaving the
full range as the only threshold (num_bins cannot be passed through quantize_static). Computing the
ranges ourselves with 2048 bins took ~10 min for the tiny test model's 378 tensors (onnxruntime's KL
search runs in Python per tensor), far too slow for w18s. "percentile" is the clipping alternative."""
PRECISION = "int8"


def output_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes that produce a graph output."""
    outputs = {o.name for o in graph.output}
    return [node.name for node in graph.node if any(o in outputs for o in node.output)]


def default_keep_float(graph: onnx.GraphProto) -> list[str]:
    """Nodes kept float by default: the click rasteriser and the output producers."""
    names = click_only_nodes(graph) + output_nodes(graph)
    return list(dict.fromkeys(names))


def _calibrate_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if method not in table:
        raise ValueError(f"calibration method {method!r} is not one of {list(METHODS)}")
    return table[method]


ACTIVATIONS: tuple[str, ...] = ("uint8", "int8")


def calibration_stride(n: int, most: int = 8) -> int:
    """The largest chunk size <= `most` that divides `n` feeds (onnxruntime requires an exact division)."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def quantize_graph(src: Path, dst: Path, data: CalibrationData, graph: str, *, method: str = "minmax",
                   per_channel: bool = True, keep_float: Sequence[str] = (), default_float: bool = True,
                   work_dir: Path | None = None, op_types_to_quantize: Sequence[str] | None = None,
                   extra_options: dict[str, Any] | None = None, activations: str = "int8") -> list[str]:
    """Quantise one ONNX graph file `src` to QDQ `dst`; return the node names excluded (kept float).

    activations: "int8" (symmetric) or "uint8" (asymmetric); see the module docstring.

    op_types_to_quantize: operator types quantize_static may quantize (None: every type it knows).
    extra_options: quantize_static extra_options laid over the defaults below (None: the defaults only);
        calibration/trt.py passes TensorRT's Q/DQ placement this way.
    """
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    calibrate_method = _calibrate_method(method)
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations {activations!r} is not one of {list(ACTIVATIONS)}")
    work = Path(work_dir or tempfile.mkdtemp(prefix="edgeclick-quant-"))
    pre = work / f"{graph}.pre.onnx"
    quant_pre_process(str(src), str(pre))
    pre_proto = onnx.load(str(pre))
    names = {n.name for n in pre_proto.graph.node}
    unknown = [n for n in keep_float if n not in names]
    if unknown:
        raise ValueError(f"{graph}: keep_float names nodes that are not in the graph: {unknown[:5]}")
    exclude = list(dict.fromkeys((default_keep_float(pre_proto.graph) if default_float else []) + list(keep_float)))
    inputs = [i.name for i in pre_proto.graph.input]
    reader = data.reader(graph, inputs)
    op_types = None if op_types_to_quantize is None else list(op_types_to_quantize)
    quantize_static(
        str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
        weight_type=QuantType.QInt8, calibrate_method=calibrate_method,
        activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
        nodes_to_exclude=exclude,
        op_types_to_quantize=op_types,
        # CalibStridedMinMax: collect in chunks; without it every calibrator keeps every feed's activations
        # of every node until the end (hundreds of feeds × a full-resolution decoder do not fit in memory).
        extra_options={"ActivationSymmetric": activations == "int8", "WeightSymmetric": True, "CalibMovingAverage": False,
                       "CalibStridedMinMax": calibration_stride(len(reader)), **(extra_options or {})},
    )
    # Restore the contract metadata (quantize_static keeps the graph, not necessarily metadata_props).
    src_meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    src_meta[META_PRECISION] = PRECISION
    out = onnx.load(str(dst))
    del out.metadata_props[:]
    for key, value in src_meta.items():
        out.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(out, full_check=True)
    onnx.save(out, str(dst))
    return exclude


def quantize_onnx_artifact(artifact_dir: str | Path, data: CalibrationData, out_dir: str | Path, *,
                           method: str = "minmax", per_channel: bool = True, keep_float: Sequence[str] = (),
                           graphs: Sequence[str] = (contract.ENCODER, contract.DECODER), overwrite: bool = False,
                           activations: str = "uint8") -> Path:
    """Write an int8 QDQ copy of the fp32 ONNX artifact `artifact_dir` to `out_dir`; return `out_dir`.

    data: calibration feeds recorded at the artifact's size. keep_float: extra node names (of the
        pre-processed graph) to leave unquantised; a name not in a quantised graph is an error only when
        it is in none of them. graphs: which graphs to quantise; the others are copied fp32.
        activations: "uint8" (asymmetric; fast on onnxruntime CPU) or "int8" (symmetric).
    The manifest is the source's with precision "int8", new file hashes and the calibration in options.
    """
    src = read_manifest(artifact_dir)
    if src.format != "onnx":
        raise ValueError(f"{src.root}: a {src.format!r} artifact; int8 calibration here takes an fp32 ONNX artifact")
    if src.precision != "fp32":
        raise ValueError(f"{src.root}: precision {src.precision!r}; quantise the fp32 export")
    if not src.dynamic and tuple(data.input_size) != tuple(src.size):
        raise ValueError(f"calibration data is {data.input_size}, the artifact {src.size}; collect it at the artifact's size")
    bad = [g for g in graphs if g not in (contract.ENCODER, contract.DECODER)]
    if bad:
        raise ValueError(f"unknown graph(s) {bad}; expected {contract.ENCODER!r} / {contract.DECODER!r}")
    present = {n.name for g in graphs for n in onnx.load(str(src.path(g)), load_external_data=False).graph.node}
    unknown = [n for n in keep_float if n not in present]
    if unknown:
        raise ValueError(f"keep_float names nodes in none of the graphs {list(graphs)}: {unknown[:5]}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True)")
    with publishing(out) as staging:
        files: dict[str, Path] = {}
        excluded: dict[str, list[str]] = {}
        work = staging / ".work"
        work.mkdir()
        for graph in (contract.ENCODER, contract.DECODER):
            dst = staging / graph_filename(graph)
            if graph in graphs:
                excluded[graph] = _quantize_with_keep(src.path(graph), dst, data, graph, method=method,
                                                      per_channel=per_channel, keep_float=keep_float, work=work,
                                                      activations=activations)
            else:
                shutil.copy2(src.path(graph), dst)
            files[graph] = Path(dst.name)
        shutil.rmtree(work)
        options = {**src.options, "calibration": {
            "method": method, "per_channel": per_channel, "format": "QDQ", "weights": "QInt8 symmetric",
            "activations": "QInt8 symmetric" if activations == "int8" else "QUInt8 asymmetric", "graphs": list(graphs), "keep_float": excluded, "source": str(src.root),
            "data": data.meta}}
        manifest = dataclasses.replace(
            src, root=staging, name=out.name, precision=PRECISION, files=file_entries(staging, files), options=options,
            validation={}, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_manifest(manifest)
    read_manifest(out)  # hashes and contract as a runtime will check them
    return out


def _quantize_with_keep(src: Path, dst: Path, data: CalibrationData, graph: str, *, method: str, per_channel: bool,
                        keep_float: Sequence[str], work: Path, activations: str) -> list[str]:
    """quantize_graph with only the keep_float names that exist in this graph's fp32 nodes."""
    present = {n.name for n in onnx.load(str(src), load_external_data=False).graph.node}
    mine = [n for n in keep_float if n in present]
    return quantize_graph(src, dst, data, graph, method=method, per_channel=per_channel, keep_float=mine, work_dir=work,
                          activations=activations)
