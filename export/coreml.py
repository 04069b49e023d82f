"""CoreML export: the encoder and the decoder as ML Program packages (.mlpackage), iOS 17 / macOS 14.

    export_coreml(request) → ExportResult        ("edgeclick.export.coreml:export_coreml")

1. Both graphs of `split_model` are traced with torch.jit.trace and converted by coremltools 9 to ML
   Programs (`convert_to="mlprogram"`, `minimum_deployment_target`, fp16 compute precision unless the
   request says fp32; the decoder's click-coordinate ops stay fp32, see `fp16_op_selector`), saved as
   work_dir/encoder.mlpackage and work_dir/decoder.mlpackage. Inputs and outputs are declared float32 as
   the contract says (coremltools >= 7 would make them fp16 for iOS 16+ fp16 programs). Every package
   embeds the contract version and hash, the model config and its graph name in `user_defined_metadata`.
2. The encoder's input is an RGB image input (ct.ImageType, scale 1/255, bias 0 as
   `contract.coreml_input_type` says). Core ML hands the program float pixels 0..255 in NCHW and the
   scale is the program's first op, so the traced module is `ImageEncoder`, which starts at the [0, 1]
   image — exactly where split.Encoder's `uint8 NHWC → / 255` ends — and the normalisation that follows
   stays in the graph as on every other backend.
3. Sizes. Without `request.dynamic` both graphs are fixed at `request.size`. With it the encoder takes
   enumerated sizes (the request's size first, then `enumerated_sizes`, default `STANDARD_SIZES`);
   the decoder does too from iOS 18 on, but below iOS 18 coremltools 9 allows EnumeratedShapes on one
   input only and the decoder has two or three spatial inputs (features [, skip_image], prev_mask) that
   must change together, so it stays fixed at `request.size` (said in the result's metadata).
4. Checks on any OS (coremltools cannot predict on Linux): the saved spec and MIL program against the
   contract (`coreml_checks.check_package`), Neural Engine warnings (`coreml_checks.neural_engine_findings`),
   and the numbers — the MIL program read back from each package is evaluated op by op with torch kernels
   (`mil_reference.MILReference`) and compared end to end with the torch model (`numeric_check`, gates
   `contract.GATED` over `contract.TOLERANCES[precision]`).

What coremltools 9.0 needs on torch 2.13 (it is tested up to torch 2.7):
- The model resizes feature maps to sizes read from tensors (`F.interpolate(size=ref.shape[-2:])`).
  Traced, those are aten::size ops; for a fixed input shape coremltools folds them, but for enumerated
  shapes its `torch_upsample_to_core_upsample` pass fails ("Unable to map torch_upsample_bilinear to core
  upsample"). `static_resize_scales` turns each such call into the same resize with a constant
  `scale_factor` while tracing (values unchanged: with align_corners=True the sampling grid depends only
  on the input and output sizes), and `check_resize_scales` refuses enumerated sizes whose scale factors
  differ from the traced ones (e.g. 96-pixel sides with the conv adapter, whose half-resolution base
  rounds a 1/32 branch up: use multiples of 64 there).
- Nothing else: the graphs trace and convert as they are. `check_trace=False`, since step 4 compares
  values anyway and a second trace doubles the time; torch 2.13's deprecation warning for
  torch.jit.trace is silenced in `trace` (TorchScript is the path coremltools 9 converts here).
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from edgeclick.runtimes.coreml import package_path
from edgeclick.runtimes.coreml_reference import mil_runner
from torch import nn

from edgeclick import contract
from edgeclick.clicks import click_rows
from edgeclick.log import quiet_bars
from edgeclick.model.base import ClickModel
from edgeclick.model.split import Decoder, model_graph_specs

from .formats import (
    ExportRequest,
    ExportResult,
    ExportValidationError,
    MissingRequirement,
)
from .options import CoreMLOptions, parse_sizes  # noqa: F401 - parse_sizes: part of this format's API

COREMLTOOLS_BARS: tuple[str, ...] = (
    "coremltools.converters.mil.frontend.torch.ops:_tqdm",  # "Converting PyTorch Frontend ==> MIL Ops"
    "coremltools.converters.mil.mil.passes.pass_pipeline:tqdm",  # "Running MIL ... pipeline"
    "coremltools.optimize.coreml._post_training_quantization:tqdm",  # weight compression (calibration)
    "coremltools.optimize.coreml._quantization_passes:tqdm",
)
"""The progress bars coremltools 9 draws (one per op or pass, several per graph), silenced by `log.quiet_bars`."""
STANDARD_SIZES: tuple[tuple[int, int], ...] = ((512, 512), (640, 960), (960, 640), (768, 1024), (1024, 768))
"""Extra enumerated encoder sizes (H, W) for dynamic exports: square, 2:3 and 3:4 both ways. Multiples
of 64, so they share resize scales with any export size that is a multiple of 32 (of 64 with the conv
adapter, whose base runs at half resolution)."""


def graph_sizes(request: ExportRequest, opts: CoreMLOptions) -> tuple[dict[str, list[tuple[int, int]]], str | None]:
    """Model input sizes per graph (default first) and, when the decoder stays fixed, why."""
    from .coreml_checks import TARGETS

    if not request.dynamic:
        if opts.enumerated_sizes is not None:
            raise ValueError("enumerated_sizes needs a dynamic export (--dynamic); without it both graphs are fixed at --size")
        size = (request.size[0], request.size[1])
        return {contract.ENCODER: [size], contract.DECODER: [size]}, None
    extra = opts.enumerated_sizes if opts.enumerated_sizes is not None else STANDARD_SIZES
    default = (request.size[0], request.size[1])
    sizes = list(dict.fromkeys([default, *extra]))
    if TARGETS[opts.minimum_deployment_target].enumerated_inputs is None:
        return {contract.ENCODER: sizes, contract.DECODER: sizes}, None
    reason = (f"decoder fixed at {request.size[0]}x{request.size[1]}: below iOS 18 coremltools 9 allows EnumeratedShapes "
              "on one input only, and the decoder's spatial inputs must change together; export with "
              "minimum_deployment_target=iOS18 for an enumerated decoder")
    return {contract.ENCODER: sizes, contract.DECODER: [default]}, reason


# -- export-only modules and tracing ------------------------------------------------------------------------

class ImageEncoder(nn.Module):
    """Export-only encoder for an image input: image01 float32 1×3×H×W RGB in [0, 1] → encoder outputs
    (a tuple in contract order).

    Core ML gives the program float pixels 0..255; the image input's scale 1/255 (its first op) brings
    them to [0, 1], so this is split.Encoder after its `permute / 255`, with the same model code after it.
    """

    def __init__(self, model: ClickModel) -> None:
        super().__init__()
        self.model = model
        self.output_names = model_graph_specs(model)[contract.ENCODER].output_names()

    def forward(self, image01: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.encode(image01)
        return tuple(features[name] for name in self.output_names)


@contextlib.contextmanager
def static_resize_scales() -> Iterator[list[tuple[float, float]]]:
    """Within the block, `F.interpolate(x, size=...)` runs as `F.interpolate(x, scale_factor=...)` with the
    ratio of the concrete output and input sizes; every ratio (h, w) is appended to the yielded list.

    Why: see the module docstring — coremltools 9 cannot convert resizes to traced sizes once the input
    shape is enumerated, while a constant scale factor becomes a static `upsample_bilinear`. The patch is
    on the torch.nn.functional module attribute (what `F.interpolate` looks up), for the block only.
    """
    original = F.interpolate
    scales: list[tuple[float, float]] = []

    def interpolate(x: torch.Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                    align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                    antialias: bool = False) -> torch.Tensor:
        if size is None or scale_factor is not None or x.dim() != 4:
            return original(x, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias)
        # int(): traced sizes arrive as 0-d tensors; turning them into constants is the point.
        (in_h, in_w), (out_h, out_w) = (int(v) for v in x.shape[-2:]), (int(v) for v in size)
        scale = (out_h / in_h, out_w / in_w)
        out = original(x, scale_factor=scale, mode=mode, align_corners=align_corners, antialias=antialias)
        if tuple(out.shape[-2:]) != (out_h, out_w):
            raise RuntimeError(f"resize {in_h}x{in_w}→{out_h}x{out_w} has no exact scale factor ({scale})")
        scales.append(scale)
        return out

    F.interpolate = interpolate
    try:
        yield scales
    finally:
        F.interpolate = original


def example_inputs(model: ClickModel, graph: str, size: tuple[int, int], device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """Trace inputs at model size (H, W): the encoder's [0, 1] image, or the decoder's features (zeros of
    the contract's shapes), click rows (two clicks, the rest padding) and a prev mask."""
    spec = model_graph_specs(model)[graph]
    if graph == contract.ENCODER:
        return (torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device),)
    h, w = size
    clicks = torch.from_numpy(click_rows([(0.5 * w, 0.5 * h, True), (0.25 * w, 0.25 * h, False)]))
    features = [torch.zeros(t.resolve(h, w)) for t in spec.inputs if t.name not in (contract.CLICKS, contract.PREV_MASK)]
    return tuple(t.to(device) for t in (*features, clicks, torch.zeros(1, 1, h, w)))


def export_module(model: ClickModel, graph: str) -> nn.Module:
    """The module traced for `graph`: ImageEncoder (image input) or split.Decoder, in eval mode."""
    return (ImageEncoder(model) if graph == contract.ENCODER else Decoder(model)).eval()


def check_resize_scales(model: ClickModel, graph: str, sizes: Sequence[tuple[int, int]]) -> list[tuple[float, float]]:
    """The resize scale factors `graph` uses at sizes[0]; ValueError if another size needs other ones
    (one traced program serves every enumerated size). Shape-only run on the meta device: no compute."""
    meta = export_module(copy.deepcopy(model).to("meta"), graph)
    found: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for size in sizes:
        with static_resize_scales() as scales, torch.no_grad():
            meta(*example_inputs(model, graph, size, device="meta"))
        found[(size[0], size[1])] = scales
    first = found[(sizes[0][0], sizes[0][1])]
    bad = [f"{h}x{w}" for (h, w), s in found.items() if s != first]
    if bad:
        raise ValueError(
            f"{graph}: enumerated sizes {bad} resize by other factors than {sizes[0][0]}x{sizes[0][1]} (the model's "
            "branches round odd sizes up), so one traced program cannot serve them; drop them or use multiples of "
            f"{2 * contract.PAD_MULTIPLE if model.config.adapter is not None else contract.PAD_MULTIPLE}"
        )
    return first


def trace(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    """torch.jit.trace with constant resize scales (see static_resize_scales)."""
    with static_resize_scales(), torch.no_grad(), warnings.catch_warnings():
        # The int() of traced sizes warns that they become constants — intended here. torch 2.13 also
        # deprecates jit.trace, but it is the TorchScript path coremltools 9 converts (DESIGN.md).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated", category=DeprecationWarning)
        return torch.jit.trace(module, inputs, check_trace=False)


# -- conversion --------------------------------------------------------------------------------------------

def coreml_inputs(spec: contract.GraphSpec, sizes: Sequence[tuple[int, int]]) -> list[Any]:
    """ct.ImageType / ct.TensorType for each input, fixed (one size) or enumerated (several)."""
    import coremltools as ct

    def shape(resolve: Any) -> Any:
        shapes = [resolve(*s) for s in sizes]
        return shapes[0] if len(shapes) == 1 else ct.EnumeratedShapes(shapes=shapes, default=shapes[0])

    inputs: list[Any] = []
    for t in spec.inputs:
        kind = contract.coreml_input_type(t)
        if kind["kind"] == "tensor":
            varies = bool(t.dynamic) and len(sizes) > 1
            inputs.append(ct.TensorType(name=t.name, shape=shape(t.resolve) if varies else t.resolve(*sizes[0]),
                                        dtype=np.dtype(kind["dtype"]).type))
        else:  # the image input, declared NCHW: Core ML hands the program 1×3×H×W pixels
            inputs.append(ct.ImageType(name=t.name, shape=shape(lambda h, w: (1, 3, h, w)), scale=kind["scale"],
                                       bias=kind["bias"], color_layout=getattr(ct.colorlayout, kind["color_layout"])))
    return inputs


def fp16_op_selector() -> Callable[[Any], bool]:
    """op_selector for ct.transform.FP16ComputePrecision: fp16 for every op except those computed from
    the click rows alone (coordinates, distances, comparisons), which stay fp32.

    Why: fp16 has a spacing of 0.25–0.5 px for coordinates of 256–1024 px, so fp16 click arithmetic moves
    disk boundaries — measured at 640×960, about 3 of the ~80 pixels of each radius-5 disk differ from
    torch. In fp32 the disks are the torch model's bit for bit. Those ops compare values and produce bool
    tensors, which the Neural Engine does not run anyway, so fp32 costs no placement. The disks' matmul and
    what follows it stay fp16: its operands are 0/1 and its sums at most N·K, all exact in fp16.
    """
    lineage: dict[int, bool] = {}

    def from_clicks_only(op: Any) -> bool:
        if not lineage:  # ops arrive in block order, but fill the table once for the whole block
            for other in op.enclosing_block.operations:
                args = [v for arg in other.inputs.values() for v in (arg if isinstance(arg, (list, tuple)) else [arg])]
                lineage[id(other)] = other.op_type != "matmul" and all(
                    v.val is not None or (v.op is None and v.name == contract.CLICKS) or lineage.get(id(v.op), False)
                    for v in args
                )
        return lineage.get(id(op), False)

    return lambda op: not from_clicks_only(op)


def convert_graph(model: ClickModel, graph: str, sizes: Sequence[tuple[int, int]], target: str, precision: str,
                  fp32_clicks: bool = True) -> Any:
    """Trace and convert one graph; returns the coremltools MLModel (not loaded)."""
    import coremltools as ct

    spec = model_graph_specs(model)[graph]
    if precision == "fp32":
        compute_precision: Any = ct.precision.FLOAT32
    elif fp32_clicks and contract.CLICKS in spec.input_names():
        compute_precision = ct.transform.FP16ComputePrecision(op_selector=fp16_op_selector())
    else:
        compute_precision = ct.precision.FLOAT16
    traced = trace(export_module(model, graph), example_inputs(model, graph, sizes[0]))
    with quiet_bars(*COREMLTOOLS_BARS):  # our "coreml: exporting" line says what runs; --verbose shows them
        return ct.convert(
            traced,
            inputs=coreml_inputs(spec, sizes),
            outputs=[ct.TensorType(name=t.name, dtype=np.dtype(t.dtype).type) for t in spec.outputs],
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, target),
            compute_precision=compute_precision,
            skip_model_load=True,  # nothing predicts at export time; on Linux Core ML is absent anyway
        )


def embed_metadata(mlmodel: Any, model: ClickModel, graph: str, sizes: Sequence[tuple[int, int]]) -> None:
    """Contract version/hash, model config and graph name in user_defined_metadata; descriptions."""
    cfg = model.config
    mlmodel.user_defined_metadata.update({
        contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
        contract.META_CONTRACT_HASH: contract.contract_hash(),
        contract.META_MODEL_CONFIG: json.dumps(cfg.to_dict(), sort_keys=True),
        contract.META_GRAPH: graph,
    })
    size_text = ", ".join(f"{h}x{w}" for h, w in sizes)
    mlmodel.short_description = (f"edgeclick {graph} ({cfg.arch}, {cfg.fusion} fusion"
                                 f"{', conv adapter' if cfg.adapter else ''}); model input {size_text} (H x W)")
    for t in model_graph_specs(model)[graph].inputs:
        if t.name == contract.IMAGE:
            mlmodel.input_description[t.name] = "RGB image, letterboxed (fit, pad bottom/right with 0) to the model size"
        elif t.name == contract.CLICKS:
            mlmodel.input_description[t.name] = (f"{contract.NUM_CLICKS} rows (x, y, label) in model pixels; label "
                                                 f"{contract.LABEL_POSITIVE} positive, {contract.LABEL_NEGATIVE} negative, "
                                                 f"{contract.LABEL_PADDING} padding")
        elif t.name == contract.PREV_MASK:
            mlmodel.input_description[t.name] = "previous mask probabilities in [0, 1] (zeros before the first click)"
        else:
            mlmodel.input_description[t.name] = f"encoder output {t.name}"


# -- numeric check -----------------------------------------------------------------------------------------

def numeric_check(model: ClickModel, packages: dict[str, Path], precision: str,
                  sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Converted programs vs torch on validation.reference_feeds at each size, end to end (program
    encoder → program decoder) and decoder alone (torch features); or why it was skipped.

    fp32: the gates of contract.GATED["fp32"] (max |Δlogit| and mask IoU within
    contract.TOLERANCES) — the same graph, so a failure is a conversion error and raises.
    fp16: the evaluator only emulates fp16 (Core ML's Neural Engine rounds differently) and parity's fp16
    gate (`min_mean_mask_iou`) is defined over click sessions on the device, so here it is a warning; the
    error gate is `min_mask_iou_per_click` (0.95): a conversion error lands far below it, fp16 noise on one
    image far above it. An absolute logit gate cannot hold in fp16 for logits ~100 (fp16 spacing 0.06).
    max |Δlogit| and its ratio to max |logit| are reported either way. Raises ExportValidationError.
    """
    from edgeclick.metrics import iou

    from edgeclick.runtimes.mil_reference import UnsupportedMILOp
    from .validation import reference_feeds, torch_reference

    try:
        run = mil_runner(packages)
    except UnsupportedMILOp as exc:
        return {"skipped": f"the reference evaluator cannot run this program: {exc}"}
    tol = contract.TOLERANCES[precision]
    gated = contract.GATED[precision] if precision == "fp32" else ("min_mask_iou_per_click",)
    warned = tuple(k for k in contract.GATED[precision] if k not in gated)
    threshold = float(np.log(contract.PROB_THRESHOLD / (1.0 - contract.PROB_THRESHOLD)))  # on logits
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "evaluator": ("MIL program read back from each .mlpackage, evaluated with torch kernels, fp16 op outputs "
                      "rounded (not Core ML's runtime: prediction needs macOS)"),
        "reference": "torch split model (float32) on validation.reference_feeds",
        "gated": {k: getattr(tol, k) for k in gated}, "warned": {k: getattr(tol, k) for k in warned}, "sizes": {},
    }
    failures: list[str] = []
    warnings_: list[str] = []
    for size in sizes:
        feeds = reference_feeds(size)
        ref_features, ref_logits = torch_reference(model, feeds)
        clicks = {contract.CLICKS: feeds[contract.CLICKS], contract.PREV_MASK: feeds[contract.PREV_MASK]}
        features = run(contract.ENCODER, {contract.IMAGE: feeds[contract.IMAGE]})
        logits = run(contract.DECODER, {**features, **clicks})[contract.LOGITS]
        decoder_only = run(contract.DECODER, {**ref_features, **clicks})[contract.LOGITS]
        max_abs = float(np.abs(logits - ref_logits).max())
        entry = {
            "max_abs_logit": max_abs,
            "relative_max_abs_logit": max_abs / max(float(np.abs(ref_logits).max()), 1e-12),
            "decoder_only_max_abs_logit": float(np.abs(decoder_only - ref_logits).max()),
            "encoder_max_abs": {k: float(np.abs(features[k] - v).max()) for k, v in ref_features.items()},
            "mask_iou": iou(logits[0, 0] > threshold, (ref_logits[0, 0] > threshold).astype(np.int8)),
            "logit_range": [float(ref_logits.min()), float(ref_logits.max())],
        }
        key = f"{size[0]}x{size[1]}"
        report["sizes"][key] = entry
        if not np.isfinite(logits).all():
            failures.append(f"{key}: logits hold NaN/inf")
        for field in (*gated, *warned):
            if field == "max_abs_logit":
                ok, text = max_abs <= tol.max_abs_logit, (f"max |Δlogit| {max_abs:.3g} > {tol.max_abs_logit} (decoder alone "
                                                         f"{entry['decoder_only_max_abs_logit']:.3g}, encoder {entry['encoder_max_abs']})")
            else:
                ok, text = entry["mask_iou"] >= getattr(tol, field), f"mask IoU {entry['mask_iou']:.4f} < {getattr(tol, field)} ({field})"
            if not ok:
                (failures if field in gated else warnings_).append(f"{key}: {text}")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if failures:
        raise ExportValidationError(f"converted CoreML programs differ from PyTorch ({precision}):\n  " + "\n  ".join(failures))
    report["warnings"] = warnings_
    report["passed"] = True
    return report


# -- entry point -------------------------------------------------------------------------------------------

def require_coremltools() -> Any:
    try:
        import coremltools as ct
    except ImportError as exc:
        raise MissingRequirement(f"coreml export needs coremltools==9.0 (pip install coremltools==9.0): {exc}") from exc
    if tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 4):
        raise MissingRequirement(f"coremltools 9.0 breaks on numpy {np.__version__}; install numpy<2.4")
    return ct


def export_coreml(request: ExportRequest) -> ExportResult:
    """Convert, save and check both graphs; see the module docstring."""
    ct = require_coremltools()
    from .coreml_checks import TARGETS, check_package, neural_engine_findings
    from edgeclick.runtimes.mil_reference import load_program

    opts = CoreMLOptions.from_dict(request.options)
    target = TARGETS[opts.minimum_deployment_target]
    sizes, decoder_note = graph_sizes(request, opts)
    model = request.model.eval()
    specs = model_graph_specs(model)

    files: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    scales: dict[str, list[list[float]]] = {}
    for graph in (contract.ENCODER, contract.DECODER):
        scales[graph] = [list(s) for s in check_resize_scales(model, graph, sizes[graph])]
        t0 = time.perf_counter()
        mlmodel = convert_graph(model, graph, sizes[graph], target.name, request.precision, opts.fp32_clicks)
        seconds[graph] = round(time.perf_counter() - t0, 2)
        embed_metadata(mlmodel, model, graph, sizes[graph])
        files[graph] = package_path(request.work_dir, graph)
        mlmodel.save(str(files[graph]))

    spec_facts: dict[str, Any] = {}
    findings: dict[str, Any] = {}
    for graph, path in files.items():
        program = load_program(path)
        package = ct.models.MLModel(str(path), skip_model_load=True)
        spec_facts[graph] = check_package(package, program, specs[graph], sizes[graph], model.config, target, request.precision)
        findings[graph] = neural_engine_findings(program)

    common = [s for s in sizes[contract.ENCODER] if s in sizes[contract.DECODER]]
    numeric_sizes = common[:2]  # the export size, and one other when both graphs are enumerated
    numbers = (numeric_check(model, files, request.precision, numeric_sizes) if opts.numeric_check
               else {"skipped": "numeric_check=false"})

    metadata: dict[str, Any] = {
        "tools": {"coremltools": ct.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "model_type": "mlprogram",
        "minimum_deployment_target": target.name,
        "spec_version": target.spec_version,
        "opset": target.opset,
        "compute_precision": request.precision,
        "sizes": {g: [list(s) for s in v] for g, v in sizes.items()},
        "image_input": contract.coreml_input_type(contract.IMAGE_SPEC),
        "resize_scales": scales,
        "convert_seconds": seconds,
        "ops": {g: facts["ops"] for g, facts in spec_facts.items()},
        "fp32_clicks": opts.fp32_clicks and request.precision == "fp16",
        "workarounds": [("F.interpolate(size=...) traced as constant scale_factor (static_resize_scales): coremltools 9 "
                         "cannot map resizes to traced sizes under enumerated shapes")],
    }
    if decoder_note:
        metadata["decoder_fixed"] = decoder_note
    validation: dict[str, Any] = {
        "spec": {g: {k: v for k, v in facts.items() if k != "ops"} for g, facts in spec_facts.items()},
        "neural_engine_warnings": findings,
        "numeric": numbers,
        "prediction": "not run: Core ML prediction needs macOS (tests marked macos run it there)",
    }
    return ExportResult(files=files, metadata=metadata, validation=validation)


__all__ = [
    "STANDARD_SIZES",
    "CoreMLOptions",
    "ImageEncoder",
    "check_resize_scales",
    "convert_graph",
    "export_coreml",
    "fp16_op_selector",
    "static_resize_scales",
]
