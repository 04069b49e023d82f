"""Static checks of a saved CoreML package, run on Linux right after conversion.

Nothing here needs Core ML itself: the package's spec (`MLModel(path, skip_model_load=True).get_spec()`)
gives the declared inputs, outputs, metadata, spec version and opset, and the MIL program read back from
the package (`mil_reference.load_program`) gives the ops with their types and shapes.

    check_package(package, spec, sizes, config, target)  → facts; ExportValidationError on a contract breach
    neural_engine_findings(program, precision)             → warnings (ops unlikely to run on the Neural Engine)
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeclick.runtimes.coreml import METADATA_KEYS, check_package_metadata, spec_sizes

from edgeclick import contract
from edgeclick.model.config import ModelConfig

from .formats import ExportValidationError


@dataclass(frozen=True)
class Target:
    """A deployment target: the coremltools enum member, the Core ML spec version and MIL opset it means."""

    name: str
    spec_version: int
    opset: str
    enumerated_inputs: int | None  # how many inputs may carry EnumeratedShapes (None: any number)


TARGETS: dict[str, Target] = {
    # coremltools 9 refuses more than one EnumeratedShapes input below iOS 18
    # (_validate_enumerated_shape_inputs in coremltools/converters/_converters_entry.py).
    "iOS16": Target("iOS16", 7, "CoreML6", 1),
    "macOS13": Target("macOS13", 7, "CoreML6", 1),
    "iOS17": Target("iOS17", 8, "CoreML7", 1),
    "macOS14": Target("macOS14", 8, "CoreML7", 1),
    "iOS18": Target("iOS18", 9, "CoreML8", None),
    "macOS15": Target("macOS15", 9, "CoreML8", None),
}

_ML_DTYPES = {"FLOAT16": "float16", "FLOAT32": "float32", "INT32": "int32", "DOUBLE": "float64"}  # spec enum → numpy


# -- the I/O contract --------------------------------------------------------------------------------------

def check_package(package: Any, program: Any, spec: contract.GraphSpec, sizes: Sequence[tuple[int, int]],
                  config: ModelConfig, target: Target, precision: str) -> dict[str, Any]:
    """Check one saved package against the contract; return what was checked and found.

    package: coremltools MLModel (loaded with skip_model_load=True); program: its MIL program.
    sizes: model input sizes (H, W) the graph must accept, default (export size) first.
    Raises ExportValidationError listing every difference.
    """
    mlspec = package.get_spec()
    problems: list[str] = []
    facts: dict[str, Any] = {}

    if mlspec.WhichOneof("Type") != "mlProgram":
        problems.append(f"model type {mlspec.WhichOneof('Type')}, expected mlProgram")
    opset = mlspec.mlProgram.functions["main"].opset if "main" in mlspec.mlProgram.functions else None
    facts["spec_version"], facts["opset"] = int(mlspec.specificationVersion), opset
    if mlspec.specificationVersion != target.spec_version or opset != target.opset:
        problems.append(f"spec version {mlspec.specificationVersion} / opset {opset}, {target.name} means "
                        f"{target.spec_version} / {target.opset}")

    io_problems = _io_problems(mlspec, program, spec, sizes)
    problems += io_problems
    if not io_problems:
        facts["sizes"] = [list(s) for s in spec_sizes(mlspec, spec.name)]

    metadata = dict(mlspec.description.metadata.userDefined)
    try:
        check_package_metadata(metadata, spec.name, f"{spec.name} package")
    except RuntimeError as exc:
        problems.append(str(exc))
    else:
        if metadata[contract.META_CONTRACT_VERSION] != contract.CONTRACT_VERSION:
            problems.append(f"contract version {metadata[contract.META_CONTRACT_VERSION]}, expected {contract.CONTRACT_VERSION}")
        if json.loads(metadata[contract.META_MODEL_CONFIG]) != config.to_dict():
            problems.append("embedded model config differs from the exported model's")
    facts["metadata"] = {k: metadata.get(k) for k in METADATA_KEYS if k != contract.META_MODEL_CONFIG}

    if spec.name == contract.ENCODER:
        scale, bias = image_preprocessing(program)
        want = contract.coreml_input_type(contract.IMAGE_SPEC)
        facts["image_scale"], facts["image_bias"] = scale, bias
        if scale is None or abs(scale - want["scale"]) > 1e-9 or any(abs(b - w) > 1e-9 for b, w in zip(bias, want["bias"])):
            problems.append(f"image preprocessing scale {scale} bias {bias}, contract says {want['scale']} / {want['bias']}")

    detected = compute_precision(program)
    facts["compute_precision"] = detected
    if detected != precision:
        problems.append(f"compute precision {detected}, requested {precision}")

    unsupported = ops_missing_from_target(program, target)
    if unsupported:
        problems.append(f"ops not in the {target.name} opset: {unsupported}")
    facts["ops"] = op_counts(program)

    if problems:
        raise ExportValidationError(f"CoreML {spec.name} package differs from the contract:\n  " + "\n  ".join(problems))
    return facts


def _io_problems(mlspec: Any, program: Any, spec: contract.GraphSpec, sizes: Sequence[tuple[int, int]]) -> list[str]:
    problems: list[str] = []
    desc = mlspec.description
    got_in, got_out = [f.name for f in desc.input], [f.name for f in desc.output]
    if got_in != spec.input_names():
        problems.append(f"inputs {got_in}, contract says {spec.input_names()}")
    if got_out != spec.output_names():
        problems.append(f"outputs {got_out}, contract says {spec.output_names()}")
    if problems:
        return problems
    for feature, want in zip(desc.input, spec.inputs):
        kind = feature.type.WhichOneof("Type")
        if want.name == contract.IMAGE:
            if kind != "imageType":
                problems.append(f"{want.name}: {kind}, contract says an image input")
                continue
            color = feature.type.imageType.colorSpace
            if color != feature.type.imageType.RGB:
                problems.append(f"{want.name}: color space {color}, contract says RGB")
            accepted = spec_sizes(mlspec, spec.name)
            if accepted != list(sizes):
                problems.append(f"{want.name}: sizes {accepted}, expected {list(sizes)}")
            continue
        problems += _array_problems(feature, want, [want.resolve(*s) for s in sizes])
    outputs = {v.name: v for v in program.functions["main"].outputs}
    for feature, want in zip(desc.output, spec.outputs):
        shapes = [want.resolve(*s) for s in sizes]
        problems += _array_problems(feature, want, shapes, output=True)
        # Flexible models declare no output shape in the spec; the program's shape (symbols on the axes
        # that vary) must still agree on every other axis.
        mil_shape = tuple(outputs[want.name].shape)
        varying = {axis for axis, _ in want.dynamic} if len(sizes) > 1 else set()
        if len(mil_shape) != len(shapes[0]) or any(
            axis not in varying and not (isinstance(d, (int, np.integer)) and d == shapes[0][axis])
            for axis, d in enumerate(mil_shape)
        ):
            problems.append(f"{want.name}: program output shape {mil_shape}, contract says {shapes[0]} at {sizes[0]}")
    return problems


def _array_problems(feature: Any, want: contract.TensorSpec, shapes: list[tuple[int, ...]], output: bool = False) -> list[str]:
    kind = feature.type.WhichOneof("Type")
    if kind != "multiArrayType":
        return [f"{want.name}: {kind}, contract says a {want.dtype} tensor"]
    shapes = list(dict.fromkeys(shapes))  # inputs without spatial axes (clicks) have one shape at every size
    array = feature.type.multiArrayType
    name = array.DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number[array.dataType].name
    dtype = _ML_DTYPES.get(name, name)
    if dtype != want.dtype:
        return [f"{want.name}: dtype {dtype}, contract says {want.dtype}"]
    declared = tuple(int(d) for d in array.shape)
    if output and not declared:
        return []  # flexible outputs: checked on the program instead
    if declared != shapes[0]:
        return [f"{want.name}: shape {declared}, contract says {shapes[0]}"]
    if array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
        enumerated = [tuple(int(d) for d in s.shape) for s in array.enumeratedShapes.shapes]
        if list(dict.fromkeys([declared] + enumerated)) != shapes:
            return [f"{want.name}: enumerated shapes {enumerated}, expected {shapes}"]
    elif len(shapes) > 1 and not output:
        return [f"{want.name}: fixed shape {declared}, expected enumerated {shapes}"]
    return []


# -- facts read from the MIL program ----------------------------------------------------------------------

def _function(program: Any) -> Any:
    return program.functions["main"]


def _dtype(var: Any) -> str:
    from coremltools.converters.mil.mil import types

    return types.builtin_to_string(var.dtype)


def op_counts(program: Any) -> dict[str, int]:
    """Non-const op types of the main function and how often each occurs."""
    return dict(Counter(op.op_type for op in _function(program).operations if op.op_type != "const"))


def compute_precision(program: Any) -> str:
    """"fp16" when the program's convolutions (or, without any, most of its ops) compute in fp16."""
    ops = [op for op in _function(program).operations if op.op_type not in ("const", "cast")]
    convs = [op for op in ops if op.op_type in ("conv", "conv_transpose", "matmul")] or ops
    fp16 = sum(_dtype(op.outputs[0]) == "fp16" for op in convs)
    return "fp16" if fp16 * 2 > len(convs) else "fp32"


def image_preprocessing(program: Any) -> tuple[float | None, list[float]]:
    """(scale, per-channel bias) the converter put in front of the image input, as ops of the program."""
    func = _function(program)
    image = func.inputs.get(contract.IMAGE)
    if image is None:
        return None, []
    scale, bias, current = None, [0.0, 0.0, 0.0], image
    for op in func.operations:
        if current in op.inputs.values() and op.op_type == "mul" and scale is None:
            other = op.inputs["y"] if op.inputs["x"] is current else op.inputs["x"]
            if other.val is not None:
                scale, current = float(other.val), op.outputs[0]
        elif current in op.inputs.values() and op.op_type == "add" and scale is not None:
            other = op.inputs["y"] if op.inputs["x"] is current else op.inputs["x"]
            if other.val is not None:
                import numpy as np

                bias = [float(v) for v in np.broadcast_to(np.asarray(other.val, dtype=np.float64).reshape(-1), (3,))]
            break
    return scale, bias


def ops_missing_from_target(program: Any, target: Target) -> list[str]:
    """Op types that the target's opset does not define (custom or dialect ops left behind)."""
    import coremltools as ct
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    version = getattr(ct.target, target.name)
    missing = set()
    for op in _function(program).operations:
        versions = SSAOpRegistry.core_ops.get(op.op_type)
        if not versions or min(versions) > version:
            missing.add(op.op_type)
    return sorted(missing)


# -- Neural Engine -----------------------------------------------------------------------------------------

# Sources (there is no official per-op Neural Engine support table):
#  [typed]  coremltools docs, "Typed Execution" and its workflow example: an fp16-typed ML Program "is
#           eligible to execute on a combination of the Neural Engine, GPU and CPU"; an fp32 one runs on
#           GPU and CPU.
#  [ane]    M. Hollemans, "The Neural Engine — what do we know about it?", docs/unsupported-layers.md and
#           16-bit.md (github.com/hollance/neural-engine): found by experiment — gather, dilated
#           convolutions, RNN layers and custom layers do not run on the ANE; the ANE computes in fp16.
#  [4d]     Apple ML Research, "Deploying Transformers on the Apple Neural Engine" (2022): the most
#           conducive data format for the ANE is 4-D channels-first; reshapes/transposes cost memory copies.
#  [shape]  coremltools docs, "Flexible Input Shapes": enumerated shapes let Core ML optimise for each
#           shape at compile time; ops that compute shapes at run time leave nothing to specialise.
ANE_RULES: dict[str, tuple[str, str]] = {
    "fp32-program": ("the program computes in fp32; the Neural Engine runs fp16 programs only", "typed"),
    "non-fp16-tensor": ("op on int/bool (or fp32) tensors; the Neural Engine computes in fp16, so these run on the CPU", "ane"),
    "gather-scatter": ("gather/scatter-type op, reported not to run on the Neural Engine", "ane"),
    "dilated-conv": ("dilated convolution, reported not to run on the Neural Engine", "ane"),
    "recurrent-or-control-flow": ("recurrent or control-flow op (lstm/gru/rnn/while_loop/cond)", "ane"),
    "dynamic-shape": ("shape computed at run time (shape/range_1d/non-constant reshape or fill)", "shape"),
    "rank-over-4": ("tensor of rank > 4; the Neural Engine's native layout is 4-D channels-first", "4d"),
}
ANE_SOURCES: dict[str, str] = {
    "typed": "https://apple.github.io/coremltools/docs-guides/source/typed-execution.html",
    "ane": "https://github.com/hollance/neural-engine/blob/master/docs/unsupported-layers.md",
    "4d": "https://machinelearning.apple.com/research/neural-engine-transformers",
    "shape": "https://apple.github.io/coremltools/docs-guides/source/flexible-inputs.html",
}
_GATHER = ("gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis")
_CONTROL = ("lstm", "gru", "rnn", "while_loop", "cond")
_SHAPE_OPS = ("shape", "range_1d")


def _io_boundary(func: Any, ops: list[Any]) -> set[Any]:
    """Ops that only adapt the graph's fp32 I/O: the chain from an input to its cast to fp16 (the image
    input's scale included) and the casts that produce the outputs."""
    outputs = set(func.outputs)
    reached = set(func.inputs.values())
    boundary = set()
    for op in ops:
        args = [v for arg in op.inputs.values() for v in (arg if isinstance(arg, (list, tuple)) else [arg]) if v.val is None]
        out = op.outputs[0]
        from_input = bool(args) and all(v in reached for v in args) and _dtype(out) in ("fp32", "fp16")
        if from_input or (op.op_type == "cast" and out in outputs):
            boundary.add(op)
            if from_input and _dtype(out) == "fp32":
                reached.add(out)  # keep following an fp32 prologue (image scale) up to its cast
    return boundary


def neural_engine_findings(program: Any) -> list[dict[str, Any]]:
    """Ops that static rules say will not run on the Neural Engine (warnings, not errors).

    Each finding: {"rule", "reason", "source", "count", "ops": [(op type, output name), ... up to 8]}.
    The casts at the graph boundary (fp32 inputs → fp16, fp16 → fp32 outputs) are not reported: every
    fp16 program with fp32 I/O has them and Core ML places them with the I/O copies.
    """
    func = _function(program)
    ops = [op for op in func.operations if op.op_type != "const"]
    boundary = _io_boundary(func, ops)
    hits: dict[str, list[tuple[str, str]]] = {}
    fp32_program = compute_precision(program) == "fp32"
    if fp32_program:
        hits["fp32-program"] = [(op.op_type, op.outputs[0].name) for op in ops]
    for op in ops:
        out = op.outputs[0]
        args = [v for arg in op.inputs.values() for v in (arg if isinstance(arg, (list, tuple)) else [arg])]
        tensors = [v for v in args if v.val is None] + [out]
        other = {_dtype(v) for v in tensors} - {"fp16"} - ({"fp32"} if fp32_program else set())
        if other and op not in boundary:
            hits.setdefault("non-fp16-tensor", []).append((op.op_type, out.name))
        if op.op_type in _GATHER:
            hits.setdefault("gather-scatter", []).append((op.op_type, out.name))
        if op.op_type in _CONTROL:
            hits.setdefault("recurrent-or-control-flow", []).append((op.op_type, out.name))
        dilations = op.inputs.get("dilations")
        if op.op_type in ("conv", "conv_transpose") and dilations is not None and any(int(d) != 1 for d in dilations.val):
            hits.setdefault("dilated-conv", []).append((op.op_type, out.name))
        shape_arg = any(k in op.inputs and op.inputs[k].val is None for k in ("shape", "reps"))
        if op.op_type in _SHAPE_OPS or (op.op_type in ("reshape", "fill", "tile") and shape_arg):
            hits.setdefault("dynamic-shape", []).append((op.op_type, out.name))
        if any(len(v.shape) > 4 for v in tensors):
            hits.setdefault("rank-over-4", []).append((op.op_type, out.name))
    return [
        {"rule": rule, "reason": ANE_RULES[rule][0], "source": ANE_SOURCES[ANE_RULES[rule][1]],
         "count": len(found), "ops": [list(x) for x in found[:8]]}
        for rule, found in hits.items()
    ]
