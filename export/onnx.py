"""ONNX export of the encoder and decoder graphs, then validation in onnxruntime against PyTorch.

    files = export_onnx_graphs(model, (640, 960), work_dir)            # {contract.ENCODER: .../encoder.onnx, ...}
    result = export_onnx(request)                                      # the format table's exporter

Pipeline per graph: trace (TorchScript exporter by default: compact graphs with stable names; the dynamo
exporter on request, static shapes only, weights inside the file) → onnxsim → I/O dims written as the
contract states them → fp16 (weights and activations, fp32 I/O, click rasteriser kept fp32) → empty tensors
for the roi / scales a Resize omits (ORT Mobile's checker) → contract metadata → `onnx.checker` (full check) → one self-contained .onnx file, never external data.
"""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
import torch

from edgeclick import contract
from edgeclick.model.adapters import use_subpixel_up
from edgeclick.model.base import ClickModel, use_rasteriser
from edgeclick.model.split import model_graph_specs, split_model

from .formats import PRECISIONS, ExportRequest, ExportResult, ExportValidationError, check_exportable
from .onnx_rewrites import rewrite_for_mobile_eps
from .options import OnnxOptions
from .validation import TensorInfo, check_structure, check_values, reference_feeds, validation_sizes

MIN_OPSET = 17
EXPORTERS: tuple[str, ...] = ("torchscript", "dynamo")
CONTROL_FLOW_OPS = frozenset({"Loop", "Scan", "If"})  # the click rasteriser must be broadcast arithmetic
META_PRECISION = "edgeclick.precision"
META_EXPORTER = "edgeclick.exporter"


def graph_filename(graph: str) -> str:
    """File name of a graph inside an artifact: "encoder.onnx" / "decoder.onnx"."""
    return f"{graph}.onnx"


def export_onnx_graphs(model: ClickModel, size: tuple[int, int], work_dir: Path, *, precision: str = "fp32",
                       dynamic: bool = False, opset: int = MIN_OPSET, simplify: bool = True,
                       exporter: str = "torchscript", mobile_rewrites: bool = True) -> dict[str, Path]:
    """Write the encoder and decoder of `model` as checked, self-contained ONNX files into `work_dir`.

    size: (H, W) model input; the trace size, and every shape when not `dynamic`.
    precision: "fp32", or "fp16" (float tensors fp16 inside, inputs/outputs float32, uint8 image uint8).
    dynamic: H/W axes symbolic as contract.TensorSpec.dynamic names them (TorchScript exporter only).
    mobile_rewrites: rewrite ops ORT Mobile's NNAPI / Core ML EPs refuse into equal ones they take
        (export/onnx_rewrites.py).
    Returns {contract.ENCODER: path, contract.DECODER: path}. Does not validate values (see export_onnx).
    """
    contract.check_size(*size)
    check_exportable(model)
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is below {MIN_OPSET}, the lowest edgeclick exports and validates")
    if exporter not in EXPORTERS:
        raise ValueError(f"ONNX exporter {exporter!r} is not one of {list(EXPORTERS)}")
    if dynamic and exporter == "dynamo":
        raise ValueError("dynamic H/W needs exporter=torchscript: the dynamo path here exports static shapes only")
    if precision not in PRECISIONS:
        raise ValueError(f"ONNX export precision must be one of {list(PRECISIONS)}, got {precision!r} (int8 is calibration's job)")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    specs = model_graph_specs(model)
    # The exporter flips the wrapped module's training flag back to the wrapper's own after tracing, so the
    # wrappers must be in eval mode too, or the shared model would be left in training mode.
    encoder, decoder = (m.eval() for m in split_model(model))
    feeds = reference_feeds(size)
    with torch.inference_mode():
        features = encoder(torch.from_numpy(feeds[contract.IMAGE]))
    args = {
        contract.ENCODER: (encoder, (torch.from_numpy(feeds[contract.IMAGE]),)),
        contract.DECODER: (decoder, (*features, torch.from_numpy(feeds[contract.CLICKS]), torch.from_numpy(feeds[contract.PREV_MASK]))),
    }
    config = json.dumps(model.config.to_dict(), sort_keys=True)
    files: dict[str, Path] = {}
    for graph, (module, example) in args.items():
        spec = specs[graph]
        path = work_dir / graph_filename(graph)
        proto = _trace(module, example, spec, path, opset=opset, dynamic=dynamic, exporter=exporter)
        if simplify:
            proto = _simplify(proto, graph)
        _write_io_dims(proto, spec, size, dynamic)
        if precision == "fp16":
            proto = _to_fp16(proto)
        if mobile_rewrites:
            rewrite_for_mobile_eps(proto)
        _set_metadata(proto, {
            contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
            contract.META_CONTRACT_HASH: contract.contract_hash(),
            contract.META_MODEL_CONFIG: config,
            contract.META_GRAPH: graph,
            META_PRECISION: precision,
            META_EXPORTER: exporter,
        })
        onnx.checker.check_model(proto, full_check=True)
        onnx.save_model(proto, path)  # < 2 GB: one file, weights inside
        files[graph] = path
    return files


def _trace(module: torch.nn.Module, example: tuple[torch.Tensor, ...], spec: contract.GraphSpec, path: Path, *,
           opset: int, dynamic: bool, exporter: str) -> onnx.ModelProto:
    """Run the chosen torch exporter into `path` and load the result."""
    names = {"input_names": spec.input_names(), "output_names": spec.output_names()}
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (see module docstring); its deprecation notice is noise.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        if exporter == "torchscript":
            axes = {t.name: dict(t.dynamic) for t in (*spec.inputs, *spec.outputs) if t.dynamic} if dynamic else None
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset, dynamic_axes=axes,
                              do_constant_folding=True, **names)
        else:
            torch.onnx.export(module, example, str(path), dynamo=True, external_data=False, opset_version=opset,
                              optimize=True, verbose=False, **names)
    stray = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)
    if stray:  # an exporter that split weights out would leave a file the artifact does not list
        raise ExportValidationError(f"{path.name}: the exporter wrote external data {stray}; edgeclick artifacts are single files")
    return onnx.load_model(path)


def _simplify(proto: onnx.ModelProto, graph: str) -> onnx.ModelProto:
    """onnxsim: constant folding, BN folded into convs, dead shape arithmetic removed."""
    import onnxsim

    # certify=False: the Z3 proof is best-effort and slow; values are checked against torch afterwards anyway.
    simplified, ok = onnxsim.simplify(proto, check_n=0, certify=False)
    if not ok:
        raise ExportValidationError(f"{graph}: onnxsim could not validate the simplified graph")
    return simplified


def _write_io_dims(proto: onnx.ModelProto, spec: contract.GraphSpec, size: tuple[int, int], dynamic: bool) -> None:
    """Declare every graph input/output shape exactly as the contract does (fixed dims, or its symbols)."""
    declared = {v.name: v for v in (*proto.graph.input, *proto.graph.output)}
    for tensor in (*spec.inputs, *spec.outputs):
        value = declared[tensor.name]
        symbols = dict(tensor.dynamic) if dynamic else {}
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for axis, size_ in enumerate(tensor.resolve(*size)):
            dim = dims.add()
            if axis in symbols:
                dim.dim_param = symbols[axis]
            else:
                dim.dim_value = size_


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give every node a unique name (fp16 block lists address nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def click_only_nodes(graph: onnx.GraphProto, clicks: str = contract.CLICKS) -> list[str]:
    """Names of the nodes computing from the click rows and constants only: the disk rasteriser.

    They stay float32 in the fp16 graph: click coordinates are sub-pixel (letterboxing scales them) and
    fp16 resolves only 0.5 px above 512 and 1 px above 1024, which would move disks.
    """
    const = {init.name for init in graph.initializer} | {""}
    from_clicks = {clicks}
    names = []
    for node in graph.node:  # topologically sorted (checked by onnx.checker before and after)
        if node.op_type in ("Shape", "Constant", "Size"):  # sizes are metadata, not data
            const.update(node.output)
            continue
        if all(i in const or i in from_clicks for i in node.input):
            if any(i in from_clicks for i in node.input):
                from_clicks.update(node.output)
                names.append(node.name)
            else:
                const.update(node.output)
    return names


def _to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Float tensors to fp16 inside; graph inputs/outputs keep their types (float32 / uint8)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    _name_nodes(proto.graph)
    keep = click_only_nodes(proto.graph)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # "initializer used by fp32 and fp16 nodes": handled by casts
        converted = convert_float_to_float16(proto, keep_io_types=True, node_block_list=keep)
    _toposort(converted.graph)
    _drop_fp16_round_trips(converted)
    return converted


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _drop_fp16_round_trips(proto: onnx.ModelProto) -> None:
    """Bypass fp32 → fp16 → fp32 Cast pairs, so blocked nodes read fp32 tensors directly.

    The converter keeps a blocked node's arithmetic in fp32 but rounds every tensor between two blocked
    nodes (and the fp32 graph inputs they read) through fp16; without this pass the rasteriser would still
    see fp16 click coordinates. Removing a lossy round trip only makes values closer to the fp32 model.
    """
    graph = proto.graph
    inferred = onnx.shape_inference.infer_shapes(proto).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {v.name for v in graph.output}
    bypass: dict[str, str] = {}
    for node in graph.node:
        src = producer.get(node.input[0]) if node.op_type == "Cast" else None
        if (src is not None and _cast_to(node) == onnx.TensorProto.FLOAT and _cast_to(src) == onnx.TensorProto.FLOAT16
                and types.get(src.input[0]) == onnx.TensorProto.FLOAT and node.output[0] not in outputs):
            bypass[node.output[0]] = src.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in bypass:
                node.input[i] = bypass[name]
    while True:  # drop the Casts nobody reads any more
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [i for i, node in enumerate(graph.node) if node.op_type == "Cast" and node.output[0] not in used]
        if not dead:
            break
        for i in reversed(dead):
            del graph.node[i]


def _toposort(graph: onnx.GraphProto) -> None:
    """Reorder nodes topologically (the fp16 converter appends its Cast nodes out of order)."""
    ready = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node]
    pending, ordered = list(range(len(nodes))), []
    while pending:
        rest = []
        for i in pending:
            if all(name in ready for name in nodes[i].input):
                ordered.append(i)
                ready.update(nodes[i].output)
            else:
                rest.append(i)
        if len(rest) == len(pending):
            raise ExportValidationError(f"graph has a cycle or a dangling input near node {nodes[rest[0]].name!r}")
        pending = rest
    del graph.node[:]
    graph.node.extend(nodes[i] for i in ordered)


def _set_metadata(proto: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Set metadata_props keys (replacing same-named ones, keeping others such as onnxsim's)."""
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)


def _op_counts(path: Path) -> dict[str, int]:
    return dict(Counter(n.op_type for n in onnx.load_model(path).graph.node).most_common())


def _ort_io(session: Any) -> tuple[list[TensorInfo], list[TensorInfo]]:
    from edgeclick.runtimes.ort import numpy_dtype

    def infos(values: Any) -> list[TensorInfo]:
        return [TensorInfo(v.name, numpy_dtype(v.type), tuple(v.shape)) for v in values]

    return infos(session.get_inputs()), infos(session.get_outputs())


def tool_versions(exporter: str = "torchscript") -> dict[str, str]:
    import onnxruntime
    import onnxsim

    tools = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
             "onnxsim": getattr(onnxsim, "__version__", "unknown")}
    if exporter == "dynamo":
        import onnxscript

        tools["onnxscript"] = onnxscript.__version__
    return tools


def export_onnx(request: ExportRequest) -> ExportResult:
    """The format table's ONNX exporter: write both graphs, then validate them in onnxruntime (CPU).

    Validation: no control-flow ops; I/O names, dtypes and shapes equal the contract; end-to-end logits
    within contract.TOLERANCES[precision] of the torch split model (at a second size too when dynamic).
    """
    from edgeclick.runtimes.ort import OrtBackend

    opts = OnnxOptions.from_dict(request.options)
    use_rasteriser(request.model, opts.rasteriser)
    if opts.mobile_rewrites:  # the conv adapter's ConvTranspose, refused by NNAPI / Core ML NeuralNetwork
        use_subpixel_up(request.model)
    files = export_onnx_graphs(request.model, request.size, request.work_dir, precision=request.precision,
                               dynamic=request.dynamic, opset=opts.opset, simplify=opts.simplify, exporter=opts.exporter,
                               mobile_rewrites=opts.mobile_rewrites)
    ops = {graph: _op_counts(path) for graph, path in files.items()}
    loops = {graph: sorted(CONTROL_FLOW_OPS & set(counts)) for graph, counts in ops.items() if CONTROL_FLOW_OPS & set(counts)}
    if loops:
        raise ExportValidationError(f"control-flow ops in exported graphs {loops}; the click rasteriser must be broadcast arithmetic")
    backend = OrtBackend.from_files(files, model_graph_specs(request.model), None if request.dynamic else request.size)
    structure = check_structure(request.model, {g: _ort_io(backend.sessions[g]) for g in files}, request.size, request.dynamic)
    values = check_values(request.model, backend.run, request.precision, validation_sizes(request.size, request.dynamic))
    metadata = {
        "tools": tool_versions(opts.exporter),
        "exporter": opts.exporter,
        "opset": opts.opset,
        "simplified": opts.simplify,
        "validated_with": backend.providers,
        "graphs": {graph: {"nodes": sum(counts.values()), "ops": counts} for graph, counts in ops.items()},
    }
    return ExportResult(files=files, metadata=metadata, validation={"structure": structure, **values})
