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
- `conv_transpose_as_subpixel`: the conv adapter's ConvTranspose (kernel 4, stride 2, pad 1, one output
  channel), which NNAPI and NeuralNetwork refuse, as a 3×3 convolution to 4 channels (one per output phase)
  followed by DepthToSpace(2, DCR).
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
    conv_transpose_as_subpixel(proto)
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
        if node.op_type != "DepthToSpace" or _attribute(node, "mode", b"DCR") != b"CRD":
            continue
        block = int(_attribute(node, "blocksize", 0))  # type: ignore[call-overload]
        if channels.get(node.input[0]) != block * block:
            continue  # several output channels: the modes order them differently
        for a in node.attribute:
            if a.name == "mode":
                a.s = b"DCR"
        changed += 1
    return changed


def subpixel_weights(weight: np.ndarray) -> np.ndarray:
    """ConvTranspose weight Cin×1×4×4 (stride 2, pad 1) → Conv weight 4×Cin×3×3 (pad 1), channel 2a + b
    computing output pixel (2m + a, 2n + b) from the input window centred on (m, n).

    Transposed conv: output row o = 2i − 1 + k for input row i and kernel row k. For o = 2m + a and
    i = m + d (d ∈ −1, 0, 1, the 3×3 tap d + 1), k = a + 1 − 2d; taps with k outside 0..3 are zero.
    """
    cin = weight.shape[0]
    out = np.zeros((4, cin, 3, 3), dtype=weight.dtype)
    for a in (0, 1):
        for b in (0, 1):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    kr, kc = a + 1 - 2 * dr, b + 1 - 2 * dc
                    if 0 <= kr < 4 and 0 <= kc < 4:
                        out[2 * a + b, :, dr + 1, dc + 1] = weight[:, 0, kr, kc]
    return out


def _is_adapter_upsampler(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in initializers:
        return False
    weight = initializers[node.input[1]]
    plain = (_attribute(node, "group", 1) == 1 and list(_attribute(node, "dilations", [1, 1])) == [1, 1]
             and list(_attribute(node, "output_padding", [0, 0])) == [0, 0] and not _attribute(node, "output_shape", [])
             and _attribute(node, "auto_pad", b"NOTSET") == b"NOTSET")
    return (plain and len(weight.dims) == 4 and list(weight.dims[1:]) == [1, 4, 4]
            and list(_attribute(node, "strides", [1, 1])) == [2, 2] and list(_attribute(node, "pads", [0] * 4)) == [1] * 4
            and (len(node.input) < 3 or node.input[2] == "" or node.input[2] in initializers))


def conv_transpose_as_subpixel(proto: onnx.ModelProto) -> int:
    """Replace each ConvTranspose(k=4, s=2, p=1, one output channel, constant weights) by Conv + DepthToSpace;
    return how many were replaced."""
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    nodes = list(graph.node)
    replaced = 0
    old_weights: set[str] = set()
    for node in nodes:
        if not _is_adapter_upsampler(node, initializers):
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        inputs = [node.input[0], f"{node.name or node.output[0]}_subpixel_weight"]
        new_inits = [numpy_helper.from_array(subpixel_weights(weight), inputs[1])]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(initializers[node.input[2]])
            inputs.append(f"{node.name or node.output[0]}_subpixel_bias")
            new_inits.append(numpy_helper.from_array(np.repeat(bias, 4).astype(bias.dtype), inputs[2]))
        phases = f"{node.output[0]}_phases"
        conv = onnx.helper.make_node("Conv", inputs, [phases], name=f"{node.name}_subpixel_conv",
                                     kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        shuffle = onnx.helper.make_node("DepthToSpace", [phases], list(node.output), name=f"{node.name}_subpixel_shuffle",
                                        blocksize=2, mode="DCR")
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, shuffle)
        graph.node.insert(index, conv)
        graph.initializer.extend(new_inits)
        old_weights.update(node.input[1:])
        replaced += 1
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name in old_weights and t.name not in used]:
        graph.initializer.remove(init)
    return replaced
