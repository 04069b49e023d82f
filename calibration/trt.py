"""TensorRT int8 by explicit quantization: symmetric int8 Q/DQ ONNX that TensorRT 10.x and 11.x compile as is.

    data = collect_calibration_data(ckpt, samples, input_size=(640, 960))
    art = quantize_for_tensorrt("artifacts/m-late-640x960-fp32-onnx", data, "artifacts/m-late-640x960-int8-trt")
    backend = TensorRTBackend(art)               # runtimes.trt, unchanged (where TensorRT and a GPU are)

Per graph (encoder, decoder): calibration/ort.py's quantize_graph with TensorRT's Q/DQ placement (below)
→ check_tensorrt_qdq (a ValueError names every problem) → `<graph>.onnx` in the artifact. Then, exactly as
the export stage (export/tensorrt.py) does for fp32/fp16:
- `trtexec.sh` always: the trtexec lines for TensorRT 10.x and 11.x (strongly typed by default on both).
- With TensorRT >= 10, a CUDA GPU and build=True: both engines + JSON sidecars built by
  export/tensorrt.py's builder (precision "int8", qdq=True), then opened once with TensorRTBackend (engine
  I/O against the contract). Values are not gated here: the calibration gate compares variants on NoC.
- Without TensorRT or a GPU: the artifact (Q/DQ ONNX + trtexec.sh + a manifest marked `"complete": false`)
  is published, then MissingRequirement is raised naming what is missing and the script — the export
  stage's behaviour. build=False publishes the same incomplete artifact and returns without raising.
Failed runs publish nothing: everything is staged in `.<name>.staging-*` next to `out_dir` and renamed into
place at the end; an existing artifact of that name is replaced only then.

Facts this relies on (where they come from):
- TensorRT quantization is symmetric: signed int8 values, zero point 0; the ONNX parser rejects a nonzero
  zero point ("TRT only supports symmetric quantization - zeroPt must be all zeros", onnx-tensorrt's
  QuantizeLinear/DequantizeLinear importer; docs/operators.md: "`y_zero_point` must be 0"). TensorRT docs
  "Working with Quantized Types" (INT8, INT4, FP8, FP4 — no INT32).
- The parser does not import the operator-oriented int8 format: QLinearConv, QLinearMatMul, ConvInteger,
  MatMulInteger, DynamicQuantizeLinear are "N" in onnx-tensorrt's docs/operators.md.
- "When TensorRT detects Q/DQ layers in a network, it builds an engine using explicit quantization ...
  Use explicit quantization with Strong Typing. Precision-control build flags are not required and should
  not be specified." (TensorRT docs, "Explicit Quantization"). TensorRT 11 removed BuilderFlag.INT8, the
  int8 calibrator and trtexec --int8 / --calib: "Explicit quantization with Q/DQ nodes" (TensorRT 10.x→11.x
  migration guides). Weakly typed 10.x networks need BuilderFlag.INT8 for any int8 kernel (TensorRT
  developer guide: "To enable any quantization operations, the INT8 flag must be set in the builder
  configuration" — the 8.x guide; not re-verified for 10.x weak typing here); onnxruntime's TensorRT EP
  likewise builds strongly typed only when neither its fp16 nor its int8 switch is on
  (tensorrt_execution_provider.cc, onnxruntime PR #24298). See export/tensorrt.py's precision_mode.
- High-precision weights behind a Q/DQ pair are quantized by TensorRT with the Q scale at build time
  ("Explicit Quantization", Quantized Weights), so weights stay float32 in the ONNX (AddQDQPairToWeight).
- NVIDIA's own onnxruntime-based int8 recipe for TensorRT (TensorRT-Model-Optimizer,
  modelopt/onnx/quantization/ort_utils.py, configure_ort "trt_guided_options"): QuantizeBias False,
  ActivationSymmetric True, AddQDQPairToWeight True, DedicatedQDQPair True, QDQOpTypePerChannelSupportToAxis
  {"Conv": 0, "ConvTranspose": 1} (per_channel True), no output quantization of the quantized op types.
  onnxruntime's qdq_quantizer.py says why: "In TRT, QDQ pair can't be shared between nodes" and "In TRT,
  it's not recommended to quantize outputs for weighted ops such as Conv, Matmul, Gemm".
- Bias stays float (QuantizeBias False): onnxruntime would otherwise write int32 biases behind a
  DequantizeLinear, a quantized type TensorRT does not have (onnx-tensorrt's docs/operators.md lists
  DequantizeLinear for INT8 inputs).
- Per-axis scales (1-D y_scale, `axis`) exist from ONNX opset 13 (QuantizeLinear-13); earlier opsets have
  per-tensor Q/DQ only. Weights are quantized per output channel: axis 0 of a Conv weight (Cout, Cin/g, k, k),
  axis 1 of a ConvTranspose weight (Cin, Cout/g, k, k). Activations are per tensor.
- onnxruntime's symmetric int8 range is [-127, 127] (quant_utils.ONNX_INT_TYPE_SYMMETRIC_RANGE), inside
  TensorRT's [-128, 127].
Only the inputs of Conv / ConvTranspose / MatMul / Gemm are quantized (TensorRT runs int8 kernels for
these weighted ops; everything else stays float between the Q/DQ pairs); a tensor quantized for one of them
reaches its other readers (e.g. a residual Add) through their own Q/DQ pair (DedicatedQDQPair). As in
calibration/ort.py, the click rasteriser and the nodes producing graph outputs stay float.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np
import onnx
from edgeclick.export import tensorrt as trt_export
from edgeclick.export.formats import MissingRequirement
from edgeclick.manifest import (
    Manifest,
    file_entries,
    read_manifest,
    write_manifest,
)
from edgeclick.export.onnx import graph_filename
from edgeclick.runtimes import trt as trt_runtime
from onnx import numpy_helper

from edgeclick import contract
from edgeclick.io import publishing

from .data import CalibrationData
from .ort import METHODS, PRECISION, quantize_graph

FORMAT = "trt"
MIN_OPSET = 13  # per-axis QuantizeLinear / DequantizeLinear
QUANTIZED_OP_TYPES: tuple[str, ...] = ("Conv", "ConvTranspose", "MatMul", "Gemm")
WEIGHT_AXIS: dict[str, int] = {"Conv": 0, "ConvTranspose": 1}  # output-channel axis of each op's weight
TRT_EXTRA_OPTIONS: dict[str, Any] = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "AddQDQPairToWeight": True,
    "DedicatedQDQPair": True,
    "QuantizeBias": False,
    "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OP_TYPES),
    "QDQOpTypePerChannelSupportToAxis": dict(WEIGHT_AXIS),
}
"""quantize_static extra_options for TensorRT (see the module docstring for where each comes from)."""
INTEGER_OPS = frozenset({"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_ONNX_DOMAINS = ("", "ai.onnx")
_INT8 = onnx.TensorProto.INT8


# -- what TensorRT takes -----------------------------------------------------------------------------------

def onnx_opset(model: onnx.ModelProto) -> int:
    """The default (ai.onnx) opset version the model imports (0 when none)."""
    return max((o.version for o in model.opset_import if o.domain in _ONNX_DOMAINS), default=0)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """name → value of every initializer and Constant node output (tensor-valued)."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None:
                values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _inferred(model: onnx.ModelProto) -> onnx.GraphProto:
    """The graph with shape inference's value_info (the graph as it is when inference fails)."""
    try:
        return onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # a broken model still gets checked on what it declares
        return model.graph


def _elem_types(model: onnx.ModelProto, inferred: onnx.GraphProto, consts: dict[str, np.ndarray]) -> dict[str, int]:
    """name → ONNX element type, from the graph's declarations, shape inference and Q outputs.

    A QuantizeLinear output has its zero point's type, else `output_dtype` (opset 21), else uint8 (the
    ONNX default, which is what a Q without a zero point produces).
    """
    types: dict[str, int] = {}
    for v in [*inferred.input, *inferred.value_info, *inferred.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    for name, value in consts.items():
        types.setdefault(name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype))
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
            declared = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
            types[node.output[0]] = types.get(zp, onnx.TensorProto.UINT8) if zp else (declared or onnx.TensorProto.UINT8)
    return types


def _shapes(inferred: onnx.GraphProto, consts: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """name → shape for constants and tensors whose inferred shape has fixed dims (others left out)."""
    shapes = {name: tuple(value.shape) for name, value in consts.items()}
    for v in [*inferred.input, *inferred.value_info, *inferred.output]:
        dims = v.type.tensor_type.shape.dim if v.type.HasField("tensor_type") else []
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes.setdefault(v.name, tuple(d.dim_value for d in dims))
    return shapes


def _type_name(elem_type: int | None) -> str:
    return "unknown" if elem_type is None else onnx.TensorProto.DataType.Name(elem_type).lower()


def _operator_problem(node: onnx.NodeProto) -> str | None:
    """A QLinear* / *Integer operator or a non-ai.onnx one (e.g. onnxruntime's com.microsoft contrib ops),
    which TensorRT's ONNX parser does not import."""
    if node.op_type.startswith("QLinear") or node.op_type in INTEGER_OPS:
        return (f"node {node.name!r}: {node.op_type} is an operator-oriented int8 op TensorRT does not import; "
                "quantize in QDQ format (QuantizeLinear/DequantizeLinear around float ops)")
    if node.domain not in _ONNX_DOMAINS:
        fix = ("use the standard ai.onnx QuantizeLinear/DequantizeLinear (no UseQDQContribOps)" if node.op_type in QDQ_OPS
               else "keep onnxruntime's extended graph optimisations out of the graph")
        return f"node {node.name!r}: {node.domain}.{node.op_type} is a contrib op TensorRT does not import; {fix}"
    return None


def _scale_problems(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> list[str]:
    """The scale must be a float constant, finite and > 0 everywhere."""
    name = node.input[1]
    if name not in consts:
        return [f"node {node.name!r}: scale {name!r} is not a constant; TensorRT needs build-time scales"]
    scale = consts[name]
    if scale.dtype.kind != "f":
        return [f"node {node.name!r}: scale {name!r} is {scale.dtype}, not a float"]
    if not np.all(np.isfinite(scale)):
        return [(f"node {node.name!r}: scale {name!r} holds NaN or inf; recalibrate (a tensor that is constant "
                "or empty in the calibration data can give this)")]
    if not np.all(scale > 0):
        return [(f"node {node.name!r}: scale {name!r} has values <= 0 (min {float(scale.min()):g}); scales must be "
                "positive — recalibrate, or keep this node float (keep_float)")]
    return []


def _zero_point_problems(node: onnx.NodeProto, consts: dict[str, np.ndarray], types: dict[str, int]) -> list[str]:
    """int8 on both sides of the pair, and every zero point exactly 0 (symmetric)."""
    problems = []
    quant_type = types.get(node.output[0]) if node.op_type == "QuantizeLinear" else types.get(node.input[0])
    if quant_type != _INT8:
        side = "output" if node.op_type == "QuantizeLinear" else "input"
        problems.append(f"node {node.name!r}: {node.op_type} {side} is {_type_name(quant_type)}, not int8; TensorRT "
                        "takes signed int8 Q/DQ only (weight_type and activation_type QInt8, an int8 zero point)")
    zp_name = node.input[2] if len(node.input) > 2 else ""
    if zp_name:
        zp = consts.get(zp_name)
        if zp is None:
            problems.append(f"node {node.name!r}: zero point {zp_name!r} is not a constant")
        elif np.any(zp != 0):
            problems.append(f"node {node.name!r}: zero point {zp_name!r} is {zp.ravel()[:4].tolist()}, not 0; TensorRT "
                            "quantization is symmetric (ActivationSymmetric / WeightSymmetric True)")
    return problems


def _is_weight(node: onnx.NodeProto, consts: dict[str, np.ndarray], producers: dict[str, onnx.NodeProto]) -> bool:
    """Whether the Q/DQ quantizes a constant (a weight) rather than an activation."""
    src = node.input[0]
    if src in consts:
        return True
    q = producers.get(src)
    return node.op_type == "DequantizeLinear" and q is not None and q.op_type == "QuantizeLinear" and q.input[0] in consts


def _axis_problems(node: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                   producers: dict[str, onnx.NodeProto], consumers: dict[str, list[tuple[onnx.NodeProto, int]]]) -> list[str]:
    """Per-axis (1-D scale): only on weights, with an axis inside the tensor's rank, the scale one per
    channel, and the output-channel axis of the op that reads the weight."""
    scale = consts.get(node.input[1])
    if scale is None or scale.ndim == 0:
        return []  # per tensor (or already reported: not a constant)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    problems = []
    if not _is_weight(node, consts, producers):
        problems.append(f"node {node.name!r}: per-axis scale on activation {node.input[0]!r}; TensorRT quantizes "
                        "activations per tensor")
    shape = shapes.get(node.input[0])
    if shape is not None:
        rank = len(shape)
        if not -rank <= axis < rank:
            return problems + [f"node {node.name!r}: per-channel axis {axis} is out of range for a rank-{rank} tensor"]
        if shape[axis] != scale.size:
            problems.append(f"node {node.name!r}: {scale.size} scales for axis {axis} of size {shape[axis]}")
        axis %= rank
    if node.op_type == "DequantizeLinear":
        for user, index in consumers.get(node.output[0], []):
            want = WEIGHT_AXIS.get(user.op_type)
            if index == 1 and want is not None and axis != want:
                problems.append(f"node {node.name!r}: {user.op_type} {user.name!r} weight quantized on axis {axis}; "
                                f"TensorRT needs its output-channel axis {want}")
    return problems


def check_tensorrt_qdq(model: onnx.ModelProto) -> list[str]:
    """The problems that would stop TensorRT compiling `model` as an explicit int8 network ([] when none).

    Checked: ai.onnx opset >= 13; no QLinear*/ConvInteger/MatMulInteger/DynamicQuantizeLinear, no contrib ops;
    at least one Q/DQ pair; per Q/DQ node: int8 on the quantized side, constant float scales that are finite
    and > 0, constant zero points that are all 0, per-axis scales only on weights, with the axis in range,
    one scale per channel and the consuming Conv's (0) / ConvTranspose's (1) output-channel axis.
    """
    graph = model.graph
    problems: list[str] = []
    opset = onnx_opset(model)
    if opset < MIN_OPSET:
        problems.append(f"ai.onnx opset {opset} < {MIN_OPSET}: per-channel QuantizeLinear/DequantizeLinear need opset "
                        f"{MIN_OPSET}+; re-export the fp32 ONNX with a newer opset")
    consts = _constants(graph)
    inferred = _inferred(model)
    types = _elem_types(model, inferred, consts)
    shapes = _shapes(inferred, consts)
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
    qdq = 0
    for node in graph.node:
        problem = _operator_problem(node)
        if problem:
            problems.append(problem)
            continue
        if node.op_type not in QDQ_OPS:
            continue
        qdq += 1
        problems += _scale_problems(node, consts)
        problems += _zero_point_problems(node, consts, types)
        problems += _axis_problems(node, consts, shapes, producers, consumers)
    if qdq == 0:
        problems.append("no QuantizeLinear/DequantizeLinear nodes: TensorRT would build this graph in float, not int8")
    return problems


def check_graph_file(path: Path, graph: str) -> None:
    """check_tensorrt_qdq on a file; ValueError listing every problem (first 20) and the count."""
    problems = check_tensorrt_qdq(onnx.load(str(path)))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{graph}: the Q/DQ graph is not one TensorRT compiles as explicit int8 "
                         f"({len(problems)} problem(s)):\n  {shown}{more}")


# -- the artifact ------------------------------------------------------------------------------------------

def _source(artifact_dir: str | Path, data: CalibrationData) -> Manifest:
    """The fp32 ONNX artifact's manifest, checked against the calibration data."""
    src = read_manifest(artifact_dir)
    if src.format != "onnx":
        raise ValueError(f"{src.root}: a {src.format!r} artifact; TensorRT int8 starts from an fp32 ONNX artifact "
                         "(edgeclick export --format onnx)")
    if src.precision != "fp32":
        raise ValueError(f"{src.root}: precision {src.precision!r}; quantise the fp32 ONNX export")
    if not src.dynamic and tuple(data.input_size) != tuple(src.size):
        raise ValueError(f"calibration data is {data.input_size}, the artifact {src.size}; collect it at the artifact's size")
    return src


def _options(trt_options: dict[str, Any] | None) -> trt_export.TensorRTOptions:
    """TensorRTOptions from the caller's dict; `opset` is refused (the Q/DQ graphs keep the source's)."""
    given = dict(trt_options or {})
    if "opset" in given:
        raise ValueError("trt_options: `opset` is not accepted here; the Q/DQ graphs keep the source ONNX's opset "
                         "(re-export the fp32 ONNX artifact with --opset to change it)")
    return trt_export.TensorRTOptions.from_dict(given)


def _check_keep_float(src: Manifest, keep_float: Sequence[str]) -> None:
    present = {n.name for g in (contract.ENCODER, contract.DECODER)
               for n in onnx.load(str(src.path(g)), load_external_data=False).graph.node}
    unknown = [n for n in keep_float if n not in present]
    if unknown:
        raise ValueError(f"keep_float names nodes in neither graph: {unknown[:5]}")


def quantize_graph_for_tensorrt(src: Path, dst: Path, data: CalibrationData, graph: str, *, method: str = "minmax",
                                keep_float: Sequence[str] = (), work_dir: Path | None = None) -> list[str]:
    """One graph to TensorRT Q/DQ (calibration/ort.py's quantize_graph with TRT_EXTRA_OPTIONS and
    QUANTIZED_OP_TYPES), checked with check_tensorrt_qdq; return the node names kept float.

    keep_float names not among this graph's fp32 nodes are ignored (they may belong to the other graph)."""
    present = {n.name for n in onnx.load(str(src), load_external_data=False).graph.node}
    mine = [n for n in keep_float if n in present]
    kept = quantize_graph(src, dst, data, graph, method=method, per_channel=True, keep_float=mine, work_dir=work_dir,
                          op_types_to_quantize=QUANTIZED_OP_TYPES, extra_options=TRT_EXTRA_OPTIONS)
    check_graph_file(dst, graph)
    return kept


def _qdq_summary(path: Path) -> dict[str, Any]:
    """Op counts of a Q/DQ graph, for the manifest: how many Q/DQ nodes, which ops they feed."""
    model = onnx.load(str(path), load_external_data=False)
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    fed: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS and any(i in dq_out for i in node.input):
            fed[node.op_type] = fed.get(node.op_type, 0) + 1
    return {"quantize_linear": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
            "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in model.graph.node),
            "int8_ops": fed, "opset": onnx_opset(model)}


def _header(src: Manifest, data: CalibrationData, method: str, detected: str | None) -> list[str]:
    model = src.model
    return [(f"edgeclick TensorRT int8 engines (explicit quantization): contract {contract.CONTRACT_VERSION} "
             f"({contract.contract_hash()[:12]}), model {model.get('arch')}/{model.get('fusion')}"
             f"{' + conv adapter' if model.get('adapter') else ''}, checkpoint {src.checkpoint.get('path')}"),
            (f"input {src.size[0]}x{src.size[1]} (H x W), {'dynamic H/W within the profile' if src.dynamic else 'static shapes'}, "
            "precision int8: symmetric int8 Q/DQ in the ONNX (per-channel weights, per-tensor activations)"),
            f"calibrated with {method} on {data.image.shape[0]} images / {len(data)} decoder feeds; source {src.root}",
            f"TensorRT found when written: {detected or 'none'}"]


def _missing_message(missing: list[str], out: Path, onnx_names: list[str]) -> str:
    return ("TensorRT int8 engines were not built: missing " + "; ".join(missing) + ". "
            f"The Q/DQ ONNX graphs ({', '.join(onnx_names)}) and the exact trtexec command lines "
            f"({trt_export.TRTEXEC_SCRIPT}) are in {out}; there, on a machine with TensorRT 10.x or 11.x and an "
            f"NVIDIA GPU, run `sh {trt_export.TRTEXEC_SCRIPT} 10` or `sh {trt_export.TRTEXEC_SCRIPT} 11`.")


def _probe(build: bool, device: int) -> tuple[ModuleType | None, list[str]]:
    """(tensorrt module or None, what is missing) — nothing is probed when build=False."""
    if not build:
        return None, ["an engine build (build=False was passed)"]
    return trt_runtime.probe_tensorrt(device)


def _open_engines(root: Path, device: int) -> dict[str, Any]:
    """Deserialize both engines with TensorRTBackend (I/O names and dtypes against the contract)."""
    backend = trt_runtime.TensorRTBackend(root, device=device)
    io = {graph: backend.io(graph) for graph in (contract.ENCODER, contract.DECODER)}
    return {"opened_with": backend.name, "tensorrt_version": backend.tensorrt_version, "io_checked": True,
            "io": {g: {"inputs": [list(t) for t in ins], "outputs": [list(t) for t in outs]} for g, (ins, outs) in io.items()},
            "values": "not compared here; the calibration gate judges the int8 variant on NoC"}


def _tools(src: Manifest, detected: str | None) -> dict[str, Any]:
    import onnxruntime

    tools = {**src.tools, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    if detected:
        tools["tensorrt"] = detected
    return tools


def quantize_for_tensorrt(artifact_dir: str | Path, data: CalibrationData, out_dir: str | Path, *,
                          method: str = "minmax", keep_float: Sequence[str] = (), overwrite: bool = False,
                          build: bool = True, trt_options: dict[str, Any] | None = None) -> Path:
    """Write a TensorRT int8 artifact (format "trt", precision "int8") from the fp32 ONNX artifact `artifact_dir`.

    data: calibration feeds recorded at the artifact's size (calibration/data.py). method: onnxruntime
        calibration method, one of METHODS. keep_float: extra node names (of the pre-processed graphs) to
        leave unquantised. trt_options: export/tensorrt.py TensorRTOptions fields except `opset`
        (workspace_gb, device, optimization_level, timing_cache, tf32, strongly_typed).
    Writes into `out_dir`: encoder.onnx / decoder.onnx (Q/DQ), trtexec.sh, manifest.json and, when TensorRT
    >= 10 and a CUDA GPU are present and build=True, encoder.engine / decoder.engine with their .json
    sidecars and the timing cache. Returns `out_dir`.
    Raises ValueError for bad arguments or a Q/DQ graph TensorRT would not compile (nothing published),
    FileExistsError for a non-empty `out_dir` without overwrite, and — like the export stage —
    MissingRequirement after publishing the incomplete artifact when TensorRT or a GPU is missing
    (`.artifact` is `out_dir`). build=False publishes the incomplete artifact and returns.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} is not one of {list(METHODS)}")
    src = _source(artifact_dir, data)
    opts = _options(trt_options)
    _check_keep_float(src, keep_float)
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True)")
    specs = trt_runtime.config_graph_specs(src.model_config())
    profiles = trt_export.graph_profiles(specs, src.size, src.dynamic)  # impossible profiles fail before calibrating
    with publishing(out) as staging:
        work = staging / ".work"
        work.mkdir()
        onnx_paths: dict[str, Path] = {}
        kept: dict[str, list[str]] = {}
        for graph in (contract.ENCODER, contract.DECODER):
            onnx_paths[graph] = staging / graph_filename(graph)
            kept[graph] = quantize_graph_for_tensorrt(src.path(graph), onnx_paths[graph], data, graph, method=method,
                                                      keep_float=keep_float, work_dir=work)
        shutil.rmtree(work)
        plans = trt_export.engine_plans(profiles, onnx_paths, staging)
        trt, missing = _probe(build, opts.device)
        detected = str(trt.__version__) if trt is not None and hasattr(trt, "__version__") else None
        major = trt_runtime.tensorrt_major(detected) if detected else None
        script = staging / trt_export.TRTEXEC_SCRIPT
        script.write_text(trt_export.trtexec_script(plans, PRECISION, opts, staging, major,
                                                    _header(src, data, method, detected), qdq=True))
        script.chmod(0o755)
        files: dict[str, Path] = {p.name: p for p in onnx_paths.values()}
        files[script.name] = script
        message = _missing_message(missing, out, [p.name for p in onnx_paths.values()]) if missing else None
        validation: dict[str, Any] = {"passed": False, "reason": message} if message else {}
        if not missing:
            built = trt_export.build_engine_files(
                trt, plans, opts, specs=specs, model_config=src.model, size=src.size, dynamic=src.dynamic,
                precision=PRECISION, cache_file=opts.cache_file(staging), qdq=True)
            # A timing cache the caller keeps elsewhere is theirs, not part of the artifact.
            files.update({k: p for k, p in built.items() if p.resolve().is_relative_to(staging.resolve())})
            validation = _open_engines(staging, opts.device)
        calibration = {
            "method": method, "format": "QDQ", "weights": "QInt8 per-channel (Conv axis 0, ConvTranspose axis 1)",
            "activations": "QInt8 per-tensor", "symmetric": True, "op_types": list(QUANTIZED_OP_TYPES),
            "extra_options": dict(TRT_EXTRA_OPTIONS), "keep_float": kept, "source": str(src.root),
            "source_options": src.options, "data": data.meta}
        metadata = {
            contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
            contract.META_CONTRACT_HASH: contract.contract_hash(),
            trt_runtime.SIDECAR_PRECISION: PRECISION,
            trt_runtime.SIDECAR_DYNAMIC: src.dynamic,
            trt_runtime.SIDECAR_PROFILE: {g: {n: [list(s) for s in p] for n, p in prof.items()} for g, prof in profiles.items()},
            "build_commands": script.name, "explicit_quantization": True,
            "graphs": {g: _qdq_summary(p) for g, p in onnx_paths.items()}}
        options = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name != "opset"}
        manifest = dataclasses.replace(
            src, root=staging, name=out.name, format=FORMAT, complete=message is None, missing=message,
            precision=PRECISION, files=file_entries(staging, files), tools=_tools(src, detected), metadata=metadata,
            validation=validation, options={**options, "calibration": calibration},
            export_seconds=round(time.perf_counter() - start, 3),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_manifest(manifest)
    read_manifest(out)  # hashes and contract as a runtime will check them
    if message is not None and build:
        error = MissingRequirement(message)
        error.artifact = out
        raise error
    return out
