"""A reference evaluator for converted ML Programs, so CoreML exports get a numeric check on Linux.

Core ML itself predicts only on macOS (coremltools' `MLModel.predict` needs the macOS framework). What
Linux can do is read the MIL program back out of the saved `.mlpackage`
(`coremltools.converters.mil.frontend.milproto.load`, weights included) and evaluate its ops one by one
with PyTorch kernels. That checks everything the *conversion* decided — op choice and parameters
(padding, strides, resize scales and align_corners, slicing masks), the image input's scale, the fp16
weights and casts — against the torch model. It does not check Core ML's runtime kernels, the Neural
Engine's own fp16 arithmetic or its op placement; that stays the macOS test's job.

Precision: ops whose MIL output type is fp16 are computed in float32 and rounded to float16 at the op
boundary ("fp16 storage, fp32 accumulation", what Core ML's GPU path does by default), so the numbers are
an estimate of fp16 error, not the Neural Engine's exact result.

Compressed programs (calibration/coreml.py): the weight ops coremltools 9 emits — iOS 16/17
`constexpr_affine_dequantize` and `constexpr_lut_to_dense` (packed n-bit indices), iOS 18
`constexpr_blockwise_shift_scale` and `constexpr_lut_to_dense` (typed indices, grouped/vector LUTs), and
`constexpr_cast` — are decompressed once, when the program is loaded (Core ML too decompresses them at
load time or on the fly; either way the weights are the same), with the formulas of coremltools' op
definitions (`coremltools/converters/mil/mil/ops/defs/iOS16/constexpr_ops.py`, `iOS18/compression.py`),
and rounded to the op's output type. The activation `quantize` / `dequantize` ops (iOS 17) that
`linear_quantize_activations` inserts run per inference like any other op.

Only the ops edgeclick's graphs convert to are implemented; any other op raises UnsupportedMILOp naming
it, and callers report the numeric check as skipped rather than guess.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


class UnsupportedMILOp(NotImplementedError):
    """The program holds an op (or an op variant) this evaluator does not implement."""


_TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp16": torch.float32,  # stored as float32 rounded to float16 (see module docstring)
    "fp32": torch.float32,
    "int32": torch.int32,
    "int16": torch.int32,
    "int8": torch.int32,
    "uint8": torch.int32,
    "uint16": torch.int32,
    "bool": torch.bool,
}


def _round_fp16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float16).to(torch.float32)


def _to_tensor(value: Any) -> torch.Tensor | str:
    """A const value from the program (numpy array or scalar) as a torch tensor; strings stay strings."""
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return str(arr)
    if arr.dtype == np.float16 or arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and arr.dtype != np.int32:
        arr = arr.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _ints(t: Any) -> list[int]:
    return [int(v) for v in np.asarray(t.cpu().numpy() if isinstance(t, torch.Tensor) else t).reshape(-1)]


def _bools(t: Any) -> list[bool]:
    return [bool(v) for v in np.asarray(t.cpu().numpy() if isinstance(t, torch.Tensor) else t).reshape(-1)]


def _scalar(t: Any) -> Any:
    return t.item() if isinstance(t, torch.Tensor) else t


def _conv_padding(x: torch.Tensor, a: dict[str, Any], kernel: list[int], strides: list[int], dilations: list[int]) -> torch.Tensor:
    """Apply MIL's pad_type ("valid" / "custom" [top, bottom, left, right] / "same") to x explicitly."""
    pad_type = str(_scalar(a.get("pad_type", "valid")))
    if pad_type == "valid":
        return x
    if pad_type == "custom":
        top, bottom, left, right = _ints(a["pad"])
    elif pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            pads.append((large, small) if pad_type == "same_lower" else (small, large))
        (top, bottom), (left, right) = pads
    else:
        raise UnsupportedMILOp(f"conv pad_type {pad_type!r}")
    return F.pad(x, (left, right, top, bottom))


def _conv(a: dict[str, Any]) -> torch.Tensor:
    x, w = a["x"], a["weight"]
    if x.dim() != 4:
        raise UnsupportedMILOp(f"conv on rank-{x.dim()} input (only 2-D convolutions are implemented)")
    strides = _ints(a.get("strides", [1, 1]))
    dilations = _ints(a.get("dilations", [1, 1]))
    x = _conv_padding(x, a, list(w.shape[2:]), strides, dilations)
    return F.conv2d(x, w, a.get("bias"), stride=strides, dilation=dilations, groups=int(_scalar(a.get("groups", 1))))


def _conv_transpose(a: dict[str, Any]) -> torch.Tensor:
    """MIL conv_transpose: weight [C_in, C_out/groups, kH, kW] (torch's layout); the full transposed
    convolution is cropped by pad [top, bottom, left, right], or to output_shape when given."""
    x, w = a["x"], a["weight"]
    if x.dim() != 4:
        raise UnsupportedMILOp(f"conv_transpose on rank-{x.dim()} input")
    pad_type = str(_scalar(a.get("pad_type", "valid")))
    if pad_type not in ("valid", "custom"):
        raise UnsupportedMILOp(f"conv_transpose pad_type {pad_type!r}")
    strides = _ints(a.get("strides", [1, 1]))
    dilations = _ints(a.get("dilations", [1, 1]))
    full = F.conv_transpose2d(x, w, None, stride=strides, dilation=dilations, groups=int(_scalar(a.get("groups", 1))))
    top, bottom, left, right = _ints(a["pad"]) if pad_type == "custom" else (0, 0, 0, 0)
    if a.get("output_shape") is not None:
        out_h, out_w = _ints(a["output_shape"])[-2:]
    else:
        out_h, out_w = full.shape[2] - top - bottom, full.shape[3] - left - right
    out = full[:, :, top: top + out_h, left: left + out_w]
    # output_shape may ask for rows beyond the full result (torch's output_padding): they hold only bias.
    out = F.pad(out, (0, out_w - out.shape[3], 0, out_h - out.shape[2]))
    if a.get("bias") is not None:
        out = out + a["bias"].view(1, -1, 1, 1)
    return out


def _pool(a: dict[str, Any], kind: str) -> torch.Tensor:
    x = a["x"]
    kernel, strides = _ints(a["kernel_sizes"]), _ints(a["strides"])
    pad_type = str(_scalar(a.get("pad_type", "valid")))
    pad = _ints(a["pad"]) if pad_type == "custom" else [0, 0, 0, 0]
    if pad_type not in ("valid", "custom") or pad[0] != pad[1] or pad[2] != pad[3]:
        raise UnsupportedMILOp(f"{kind} with pad_type {pad_type!r} pad {pad}")
    ceil_mode = bool(_scalar(a.get("ceil_mode", False)))
    if kind == "max_pool":
        return F.max_pool2d(x, kernel, strides, (pad[0], pad[2]), ceil_mode=ceil_mode)
    exclude = bool(_scalar(a.get("exclude_padding_from_average", False)))
    return F.avg_pool2d(x, kernel, strides, (pad[0], pad[2]), ceil_mode=ceil_mode, count_include_pad=not exclude)


def _slice_by_index(a: dict[str, Any]) -> torch.Tensor:
    x = a["x"]
    rank = x.dim()
    begin, end = _ints(a["begin"]), _ints(a["end"])
    stride = _ints(a["stride"]) if a.get("stride") is not None else [1] * rank
    begin_mask = _bools(a["begin_mask"]) if a.get("begin_mask") is not None else [False] * rank
    end_mask = _bools(a["end_mask"]) if a.get("end_mask") is not None else [False] * rank
    squeeze = _bools(a["squeeze_mask"]) if a.get("squeeze_mask") is not None else [False] * rank
    index: list[Any] = []
    for axis in range(rank):
        if stride[axis] <= 0:
            raise UnsupportedMILOp(f"slice_by_index with stride {stride[axis]}")
        b = None if begin_mask[axis] else begin[axis]
        if squeeze[axis]:
            index.append(0 if b is None else b)
            continue
        e = None if end_mask[axis] else end[axis]
        index.append(slice(b, e, stride[axis]))
    return x[tuple(index)]


def _expand_dims(a: dict[str, Any]) -> torch.Tensor:
    x = a["x"]
    out_rank = x.dim() + len(_ints(a["axes"]))
    for axis in sorted(ax + out_rank if ax < 0 else ax for ax in _ints(a["axes"])):
        x = x.unsqueeze(axis)
    return x


def _reshape(a: dict[str, Any]) -> torch.Tensor:
    x = a["x"]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(_ints(a["shape"]))]  # 0 copies the input dim
    return x.reshape(shape)


def _reduce(fn: Callable[..., torch.Tensor]) -> Callable[[dict[str, Any]], torch.Tensor]:
    def run(a: dict[str, Any]) -> torch.Tensor:
        x = a["x"]
        axes = _ints(a["axes"]) if a.get("axes") is not None else list(range(x.dim()))
        keep = bool(_scalar(a.get("keep_dims", False)))
        return fn(x, dim=axes, keepdim=keep)
    return run


def _resize(a: dict[str, Any], out_h: int, out_w: int, align_corners: bool) -> torch.Tensor:
    return F.interpolate(a["x"], size=(out_h, out_w), mode="bilinear", align_corners=align_corners)


def _upsample_bilinear(a: dict[str, Any]) -> torch.Tensor:
    x = a["x"]
    sh, sw = float(_scalar(a.get("scale_factor_height", 1.0))), float(_scalar(a.get("scale_factor_width", 1.0)))
    align = bool(_scalar(a.get("align_corners", False)))
    half_pixel = bool(_scalar(a.get("half_pixel_centers", not align)))
    if not align and not half_pixel:
        raise UnsupportedMILOp("upsample_bilinear with align_corners=False and half_pixel_centers=False")
    return _resize(a, int(np.floor(x.shape[2] * sh)), int(np.floor(x.shape[3] * sw)), align)


def _resize_bilinear(a: dict[str, Any]) -> torch.Tensor:
    mode = str(_scalar(a.get("sampling_mode", "DEFAULT")))
    if mode not in ("ALIGN_CORNERS", "STRICT_ALIGN_CORNERS", "UNALIGN_CORNERS"):
        raise UnsupportedMILOp(f"resize_bilinear sampling_mode {mode!r}")
    h, w = int(_scalar(a["target_size_height"])), int(_scalar(a["target_size_width"]))
    return _resize(a, h, w, mode != "UNALIGN_CORNERS")


def _upsample_nearest(a: dict[str, Any]) -> torch.Tensor:
    x = a["x"]
    sh, sw = float(_scalar(a.get("scale_factor_height", 1.0))), float(_scalar(a.get("scale_factor_width", 1.0)))
    return F.interpolate(x, size=(int(x.shape[2] * sh), int(x.shape[3] * sw)), mode="nearest")


def _pad(a: dict[str, Any]) -> torch.Tensor:
    """MIL pad: pairs (before, after) for the last len(pad)/2 axes, outermost first; torch wants them
    innermost first."""
    pads = _ints(a["pad"])
    pairs = [pads[i: i + 2] for i in range(0, len(pads), 2)]
    torch_pad = [p for pair in reversed(pairs) for p in pair]
    mode = str(_scalar(a.get("mode", "constant")))
    if mode == "constant":
        return F.pad(a["x"], torch_pad, mode="constant", value=float(_scalar(a.get("constant_val", 0.0))))
    if mode in ("reflect", "replicate"):
        return F.pad(a["x"], torch_pad, mode=mode)
    raise UnsupportedMILOp(f"pad mode {mode!r}")


def _matmul(a: dict[str, Any]) -> torch.Tensor:
    x, y = a["x"], a["y"]
    if bool(_scalar(a.get("transpose_x", False))):
        x = x.transpose(-1, -2)
    if bool(_scalar(a.get("transpose_y", False))):
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


def _batch_norm(a: dict[str, Any]) -> torch.Tensor:
    return F.batch_norm(a["x"], a["mean"], a["variance"], a.get("gamma"), a.get("beta"), False, 0.0, float(_scalar(a.get("epsilon", 1e-5))))


def _cast(a: dict[str, Any]) -> torch.Tensor:
    dtype = str(_scalar(a["dtype"]))
    if dtype not in _TORCH_DTYPES:
        raise UnsupportedMILOp(f"cast to {dtype}")
    x = a["x"]
    if _TORCH_DTYPES[dtype] == torch.int32 and x.is_floating_point():
        x = torch.trunc(x)  # MIL casts float → int toward zero
    return x.to(_TORCH_DTYPES[dtype])


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[dict[str, Any]], torch.Tensor]:
    return lambda a: fn(a["x"], a["y"])


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict[str, Any]], torch.Tensor]:
    return lambda a: fn(a["x"])


def _gather(a: dict[str, Any]) -> torch.Tensor:
    if int(_scalar(a.get("batch_dims", 0))) != 0:
        raise UnsupportedMILOp("gather with batch_dims != 0")
    x, indices, axis = a["x"], a["indices"].to(torch.int64), int(_scalar(a.get("axis", 0)))
    axis = axis + x.dim() if axis < 0 else axis
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    out = torch.index_select(x, axis, indices.reshape(-1))
    return out.reshape(*x.shape[:axis], *indices.shape, *x.shape[axis + 1:])


_QUANT_RANGES: dict[str, tuple[int, int]] = {"int8": (-128, 127), "uint8": (0, 255)}


def _along_axis(param: torch.Tensor, x: torch.Tensor, axis: Any) -> torch.Tensor:
    """A scalar or vector quantisation parameter shaped to broadcast against x along `axis` (without an
    axis the parameter is per tensor: coremltools writes it as a scalar or a 1-element vector)."""
    if axis is None:
        if param.numel() != 1:
            raise UnsupportedMILOp(f"quantisation parameter of shape {tuple(param.shape)} without an axis")
        return param.reshape(())
    if param.dim() == 0:
        return param
    shape = [1] * x.dim()
    shape[int(_scalar(axis))] = -1
    return param.reshape(shape)


def _quantize(a: dict[str, Any]) -> torch.Tensor:
    """iOS 17 quantize: clip(round(input / scale) + zero_point) into int8 / uint8 (round half to even,
    as numpy's around in coremltools' value inference)."""
    x, dtype = a["input"].to(torch.float32), str(_scalar(a["output_dtype"]))
    if dtype not in _QUANT_RANGES:
        raise UnsupportedMILOp(f"quantize to {dtype}")
    q = torch.round(x / _along_axis(a["scale"], x, a.get("axis")))
    if a.get("zero_point") is not None:
        q = q + _along_axis(a["zero_point"], x, a.get("axis")).to(torch.float32)
    low, high = _QUANT_RANGES[dtype]
    return torch.clamp(q, low, high)


def _dequantize(a: dict[str, Any]) -> torch.Tensor:
    """iOS 17 dequantize: scale * (input - zero_point)."""
    x = a["input"].to(torch.float32)
    if a.get("zero_point") is not None:
        x = x - _along_axis(a["zero_point"], x, a.get("axis")).to(torch.float32)
    return x * _along_axis(a["scale"], x, a.get("axis"))


def _scatter_along_axis(a: dict[str, Any]) -> torch.Tensor:
    """MIL scatter_along_axis (the click rasteriser's run marks): torch.scatter_add for mode "add"."""
    data, updates = a["data"], a["updates"]
    axis = int(_scalar(a.get("axis", 0))) % data.dim()
    indices = a["indices"].long()
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    mode = str(_scalar(a.get("mode", "add")))
    if mode == "add":
        return data.scatter_add(axis, indices, updates.to(data.dtype))
    if mode == "update":
        return data.scatter(axis, indices, updates.to(data.dtype))
    raise UnsupportedMILOp(f"scatter_along_axis mode {mode!r}")


OPS: dict[str, Callable[[dict[str, Any]], torch.Tensor]] = {
    # shape arithmetic (graphs with enumerated decoder shapes compute sizes at run time)
    "shape": lambda a: torch.tensor(list(a["x"].shape), dtype=torch.int32),
    "gather": _gather,
    "scatter_along_axis": _scatter_along_axis,
    "range_1d": lambda a: torch.arange(_scalar(a["start"]), _scalar(a["end"]), _scalar(a["step"])),
    "fill": lambda a: torch.full(_ints(a["shape"]), float(_scalar(a.get("value", 0.0)))),
    "add": _binary(torch.add),
    "sub": _binary(torch.sub),
    "mul": _binary(torch.mul),
    "real_div": _binary(torch.div),
    "pow": _binary(torch.pow),
    "maximum": _binary(torch.maximum),
    "minimum": _binary(torch.minimum),
    "equal": _binary(torch.eq),
    "not_equal": _binary(torch.ne),
    "less": _binary(torch.lt),
    "less_equal": _binary(torch.le),
    "greater": _binary(torch.gt),
    "greater_equal": _binary(torch.ge),
    "logical_and": _binary(torch.logical_and),
    "logical_or": _binary(torch.logical_or),
    "logical_not": _unary(torch.logical_not),
    "abs": _unary(torch.abs),
    "ceil": _unary(torch.ceil),
    "floor": _unary(torch.floor),
    "round": _unary(torch.round),
    "sqrt": _unary(torch.sqrt),
    "rsqrt": _unary(torch.rsqrt),
    "exp": _unary(torch.exp),
    "log": _unary(torch.log),
    "sigmoid": _unary(torch.sigmoid),
    "tanh": _unary(torch.tanh),
    "relu": _unary(torch.relu),
    "identity": _unary(lambda x: x),
    "leaky_relu": lambda a: F.leaky_relu(a["x"], float(_scalar(a.get("alpha", 0.01)))),
    "clip": lambda a: torch.clamp(a["x"], float(_scalar(a["alpha"])), float(_scalar(a["beta"]))),
    "softmax": lambda a: torch.softmax(a["x"], dim=int(_scalar(a.get("axis", -1)))),
    "select": lambda a: torch.where(a["cond"], a["a"], a["b"]),
    "cast": _cast,
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "avg_pool": lambda a: _pool(a, "avg_pool"),
    "max_pool": lambda a: _pool(a, "max_pool"),
    "batch_norm": _batch_norm,
    "matmul": _matmul,
    "linear": lambda a: F.linear(a["x"], a["weight"], a.get("bias")),
    "upsample_bilinear": _upsample_bilinear,
    "resize_bilinear": _resize_bilinear,
    "upsample_nearest_neighbor": _upsample_nearest,
    "pad": _pad,
    "slice_by_index": _slice_by_index,
    "expand_dims": _expand_dims,
    "squeeze": lambda a: a["x"].squeeze(tuple(_ints(a["axes"]))) if a.get("axes") is not None else a["x"].squeeze(),
    "reshape": _reshape,
    "transpose": lambda a: a["x"].permute(_ints(a["perm"])),
    "tile": lambda a: a["x"].repeat(_ints(a["reps"])),
    "pixel_shuffle": lambda a: F.pixel_shuffle(a["x"], int(_scalar(a["upscale_factor"]))),
    "concat": lambda a: _concat(a),
    "stack": lambda a: torch.stack(list(a["values"]), dim=int(_scalar(a["axis"]))),
    "reduce_sum": _reduce(torch.sum),
    "reduce_mean": _reduce(torch.mean),
    "reduce_max": _reduce(torch.amax),
    "reduce_min": _reduce(torch.amin),
    "quantize": _quantize,
    "dequantize": _dequantize,
}


# -- compressed weights (constexpr ops) -------------------------------------------------------------------
# Each takes its inputs' raw numpy values (every input of a constexpr op is a compile-time constant) and
# returns the decompressed tensor in float32 (or the LUT's integer type); MILReference rounds it to the
# op's output type once, at load.

def _f32(value: Any) -> np.ndarray:
    return np.asarray(value).astype(np.float32)


def _along_axis_np(param: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A scalar or vector (length data.shape[axis]) parameter reshaped to broadcast along `axis`."""
    param = np.asarray(param)
    if param.ndim == 0:
        return param
    shape = [1] * rank
    shape[axis] = -1
    return param.reshape(shape)


def _affine_dequantize(a: dict[str, Any]) -> np.ndarray:
    """iOS 16 constexpr_affine_dequantize: scale * (quantized_data - zero_point), with scalar or per-axis
    (vector) scale and zero point."""
    data = np.asarray(a["quantized_data"])
    axis = int(a["axis"]) % data.ndim
    zero_point = _along_axis_np(_f32(a["zero_point"]), data.ndim, axis)
    scale = _along_axis_np(_f32(a["scale"]), data.ndim, axis)
    return (data.astype(np.float32) - zero_point) * scale


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """`count` n-bit unsigned values packed LSB first, one byte after another (iOS 16 LUT indices)."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")
    if bits.size < count * nbits:
        raise UnsupportedMILOp(f"packed indices hold {bits.size} bits, {count} values of {nbits} bits need {count * nbits}")
    bits = bits[: count * nbits].reshape(count, nbits).astype(np.int64)
    return (bits << np.arange(nbits, dtype=np.int64)).sum(axis=1)


def _block_index(indices_shape: tuple[int, ...], groups: tuple[int, ...]) -> np.ndarray:
    """For every element of a tensor of `indices_shape`, the flat index of its block when the axes are
    split into `groups` equal blocks (block size = dim // groups on each axis)."""
    flat = np.zeros(indices_shape, dtype=np.int64)
    for axis, (dim, n) in enumerate(zip(indices_shape, groups)):
        if dim % n:
            raise UnsupportedMILOp(f"axis {axis}: {dim} elements do not split into {n} blocks")
        shape = [1] * len(indices_shape)
        shape[axis] = dim
        flat = flat * n + (np.arange(dim) // (dim // n)).reshape(shape)
    return flat


def _lut_to_dense(a: dict[str, Any]) -> np.ndarray:
    """constexpr_lut_to_dense, both forms.

    iOS 16/17: indices uint8[M] (n-bit values packed LSB first), lut [2^n], shape → lut[index] reshaped.
    iOS 18: indices [d0..dk] (one value per element), lut [g0..gk, 2^n, V], optional vector_axis: each
    element reads the LUT of its block (block size d_i / g_i); with V > 1 each index stands for V
    consecutive elements along vector_axis.
    """
    lut = np.asarray(a["lut"])
    if a.get("shape") is not None:  # iOS 16 form
        shape = [int(v) for v in np.asarray(a["shape"]).reshape(-1)]
        nbits = int(np.log2(lut.size))
        return lut[_unpack_bits(a["indices"], nbits, int(np.prod(shape)))].reshape(shape)
    indices = np.asarray(a["indices"]).astype(np.int64)
    groups, vector = tuple(lut.shape[: indices.ndim]), int(lut.shape[-1])
    table = lut.reshape(-1, lut.shape[-2], vector)  # [blocks, palettes, V]
    values = table[_block_index(indices.shape, groups), indices]  # indices.shape + [V]
    if vector == 1:
        return values[..., 0]
    if a.get("vector_axis") is None:
        raise UnsupportedMILOp("constexpr_lut_to_dense with a vector LUT and no vector_axis")
    axis = int(a["vector_axis"]) % indices.ndim
    out_shape = list(indices.shape)
    out_shape[axis] *= vector
    return np.moveaxis(values, -1, axis + 1).reshape(out_shape)


def _blockwise_shift_scale(a: dict[str, Any]) -> np.ndarray:
    """iOS 18 constexpr_blockwise_shift_scale: scale * (data - offset), scale and offset given per block
    (same rank as data; block size data.shape[i] / scale.shape[i])."""
    data = np.asarray(a["data"]).astype(np.float32)

    def spread(param: np.ndarray) -> np.ndarray:
        for axis, (dim, n) in enumerate(zip(data.shape, param.shape)):
            if dim % n:
                raise UnsupportedMILOp(f"constexpr_blockwise_shift_scale: axis {axis} of {dim} is not {n} blocks")
            if n != dim:
                param = np.repeat(param, dim // n, axis=axis)
        return param

    if a.get("offset") is not None:
        data = data - spread(_f32(a["offset"]))
    return spread(_f32(a["scale"])) * data


CONSTEXPR_OPS: dict[str, Callable[[dict[str, Any]], np.ndarray]] = {
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_lut_to_dense": _lut_to_dense,
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
    "constexpr_cast": lambda a: _f32(a["source_val"]),
}
"""Weight decompression ops (all inputs constant), evaluated once when a program is loaded."""


def _concat(a: dict[str, Any]) -> torch.Tensor:
    if bool(_scalar(a.get("interleave", False))):
        raise UnsupportedMILOp("concat with interleave=True")
    return torch.cat(list(a["values"]), dim=int(_scalar(a["axis"])))


def load_program(package: str | Path) -> Any:
    """The MIL program (coremltools Program, weights loaded) stored in an `.mlpackage`, read on any OS."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    mlmodel = ct.models.MLModel(str(package), skip_model_load=True)
    spec = mlmodel.get_spec()
    return load(spec, spec.specificationVersion, mlmodel.weights_dir)


class MILReference:
    """Evaluate the `main` function of a saved ML Program on named numpy feeds.

        ref = MILReference("encoder.mlpackage")
        outputs = ref.run({contract.IMAGE: pixels})   # image inputs: float32 1×3×H×W in 0..255

    Image inputs take what Core ML hands the program for a pixel buffer: float pixels 0..255, NCHW; the
    ImageType's scale and bias are ops inside the program and run here like any other op.
    """

    def __init__(self, package: str | Path) -> None:
        self.package = Path(package)
        self.function = load_program(package).functions["main"]
        known = {"const", *OPS, *CONSTEXPR_OPS}
        missing = sorted({op.op_type for op in self.function.operations if op.op_type not in known})
        if missing:
            raise UnsupportedMILOp(f"{self.package.name}: ops without a reference implementation: {missing}")
        self.constants = materialize_constexpr(self.function)

    @property
    def input_names(self) -> list[str]:
        return list(self.function.inputs)

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.function.outputs]

    @torch.inference_mode()
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """feeds by input name → outputs by output name (float32 numpy)."""
        env: dict[str, torch.Tensor] = dict(self.constants)
        for name, var in self.function.inputs.items():
            if name not in feeds:
                raise KeyError(f"{self.package.name}: missing feed {name!r}; inputs are {self.input_names}")
            env[name] = self._typed(torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)), var)
        for op in self.function.operations:
            if op.op_type == "const" or op.op_type in CONSTEXPR_OPS:
                continue  # folded by coremltools / decompressed at load (self.constants)
            args = {key: self._value(arg, env) for key, arg in op.inputs.items()}
            out = OPS[op.op_type](args)
            env[op.outputs[0].name] = self._typed(out, op.outputs[0])
        return {name: env[name].to(torch.float32).numpy() for name in self.output_names}

    @staticmethod
    def _value(arg: Any, env: dict[str, torch.Tensor]) -> Any:
        if isinstance(arg, (list, tuple)):
            return [MILReference._value(a, env) for a in arg]
        if arg.val is not None:  # consts (and values coremltools folded at conversion)
            return _to_tensor(arg.val)
        return env[arg.name]

    @staticmethod
    def _typed(t: torch.Tensor, var: Any) -> torch.Tensor:
        """Bring an op result to its MIL type: fp16 values rounded, ints and bools as such."""
        from coremltools.converters.mil.mil import types

        dtype = types.builtin_to_string(var.dtype)
        if dtype == "fp16":
            return _round_fp16(t.to(torch.float32))
        if dtype == "fp32":
            return t.to(torch.float32)
        if dtype == "bool":
            return t.to(torch.bool)
        return t.to(torch.int32) if not t.is_floating_point() else torch.trunc(t).to(torch.int32)


def materialize_constexpr(function: Any) -> dict[str, torch.Tensor]:
    """Decompress every constexpr op of a MIL function: output name → tensor in the op's output type
    (fp16 values rounded, as MILReference keeps them). Chained constexpr ops (iOS 18 joint compression,
    e.g. an int8 LUT dequantised by constexpr_blockwise_shift_scale) read their producers' results."""
    constants: dict[str, torch.Tensor] = {}
    for op in function.operations:
        if op.op_type not in CONSTEXPR_OPS:
            continue
        if len(op.outputs) != 1:
            raise UnsupportedMILOp(f"{op.op_type} with {len(op.outputs)} outputs")
        args: dict[str, Any] = {}
        for key, var in op.inputs.items():
            if var.val is not None:
                args[key] = var.val
            elif var.name in constants:
                args[key] = constants[var.name].numpy()
            else:
                raise UnsupportedMILOp(f"{op.op_type} {op.outputs[0].name}: input {key} is not a constant")
        value = np.ascontiguousarray(CONSTEXPR_OPS[op.op_type](args))
        constants[op.outputs[0].name] = MILReference._typed(torch.from_numpy(_to_numeric(value)), op.outputs[0])
    return constants


def _to_numeric(value: np.ndarray) -> np.ndarray:
    """float16/float64 → float32 and small ints → int64, so torch.from_numpy takes it."""
    if value.dtype.kind == "f":
        return value.astype(np.float32)
    return value.astype(np.int64) if value.dtype.kind in "iu" else value

