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


OPS: dict[str, Callable[[dict[str, Any]], torch.Tensor]] = {
    # shape arithmetic (graphs with enumerated decoder shapes compute sizes at run time)
    "shape": lambda a: torch.tensor(list(a["x"].shape), dtype=torch.int32),
    "gather": _gather,
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
}


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
        missing = sorted({op.op_type for op in self.function.operations if op.op_type != "const" and op.op_type not in OPS})
        if missing:
            raise UnsupportedMILOp(f"{self.package.name}: ops without a reference implementation: {missing}")

    @property
    def input_names(self) -> list[str]:
        return list(self.function.inputs)

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.function.outputs]

    @torch.inference_mode()
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """feeds by input name → outputs by output name (float32 numpy)."""
        env: dict[str, torch.Tensor] = {}
        for name, var in self.function.inputs.items():
            if name not in feeds:
                raise KeyError(f"{self.package.name}: missing feed {name!r}; inputs are {self.input_names}")
            env[name] = self._typed(torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)), var)
        for op in self.function.operations:
            if op.op_type == "const":
                continue
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
