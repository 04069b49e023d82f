"""Exact rewrites of an exported ONNX graph into ops that ONNX Runtime Mobile's NNAPI and Core ML EPs take.

    rewrite_for_mobile_eps(proto)      # export/onnx.py, after simplification and the fp16 conversion

Each rewrite computes the same values (bit-equal, or equal up to float summation order) and exists because
an EP refuses the original form, which would cut a graph into partitions with copies between the EP and the
CPU (`edgeclick phone-readiness` reports them):

- `fill_omitted_resize_inputs`: Resize's omitted `roi` / `scales` ('') as empty tensors. ORT's usability
  checker counted the omitted inputs as values of unknown shape and refused all 25 Resize nodes of the HRNet
  encoder for NNAPI and Core ML (6 partitions; 1 with the empty tensors).
- `depth_to_space_as_dcr`: DepthToSpace moving a single output channel in DCR mode. torch's pixel_shuffle
  exports CRD; NNAPI and Core ML's NeuralNetwork EPs take DCR only (a constraint the checker lists as a
  caveat but does not check). With one output channel both modes read input channel i·b + j for block
  offset (i, j), so the mode attribute is all that changes.

The conv adapter's ConvTranspose, which NNAPI and NeuralNetwork refuse, is replaced before tracing instead
(`edgeclick.model.adapters.SubPixelUp`, also used by the ExecuTorch export).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

RESIZE_NO_ROI = "resize_no_roi"
RESIZE_NO_SCALES = "resize_no_scales"


def rewrite_for_mobile_eps(proto: onnx.ModelProto) -> None:
    """Apply every rewrite of this module to `proto` in place (a graph they do not concern is left as is)."""
    fill_omitted_resize_inputs(proto)
    depth_to_space_as_dcr(proto)


def fill_omitted_resize_inputs(proto: onnx.ModelProto) -> None:
    """Give every Resize an empty float32 tensor where it omits `roi` / `scales` (the exporter writes '').

    Same meaning: onnxruntime reads an empty roi / scales as "not given". Float32 in every precision (Resize
    takes float32 scales in an fp16 graph too).
    """
    used = False
    for node in proto.graph.node:
        if node.op_type != "Resize":
            continue
        for index, name in ((1, RESIZE_NO_ROI), (2, RESIZE_NO_SCALES)):
            if len(node.input) > index and node.input[index] == "":
                node.input[index] = name
                used = True
    if used:
        proto.graph.initializer.extend(numpy_helper.from_array(np.zeros(0, np.float32), name)
                                       for name in (RESIZE_NO_ROI, RESIZE_NO_SCALES))


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def depth_to_space_mode(node: onnx.NodeProto) -> str:
    """A DepthToSpace node's mode, "DCR" (ONNX's default) or "CRD"."""
    return _attribute(node, "mode", b"DCR").decode()  # type: ignore[union-attr]


def _channels(proto: onnx.ModelProto) -> dict[str, int]:
    """Tensor name → its (static) axis-1 size, from shape inference, for 4-D values."""
    inferred = onnx.shape_inference.infer_shapes(proto).graph
    channels = {}
    for value in (*inferred.value_info, *inferred.input, *inferred.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[value.name] = dims[1].dim_value
    return channels


def depth_to_space_as_dcr(proto: onnx.ModelProto) -> int:
    """Switch DepthToSpace nodes with one output channel from CRD to DCR mode; return how many changed."""
    channels = _channels(proto)
    changed = 0
    for node in proto.graph.node:
        if node.op_type != "DepthToSpace" or depth_to_space_mode(node) != "CRD":
            continue
        block = int(_attribute(node, "blocksize", 0))  # type: ignore[call-overload]
        if channels.get(node.input[0]) != block * block:
            continue  # several output channels: the modes order them differently
        for a in node.attribute:
            if a.name == "mode":
                a.s = b"DCR"
        changed += 1
    return changed
