"""Producing the variants the calibration gate judges, per deployment target.

    plan = CalibrationPlan(checkpoint, size=(640, 960), target="onnx", work_dir=Path("artifacts/calibration/m"))
    variants = build_variants(plan, calibration_data=lambda: collect(...))

Each target's variants are exported or quantised into `work_dir/variants/<name>/` (an earlier run's are
replaced); a variant that cannot be
made on this machine (TensorRT without a GPU, Core ML activation quantisation off macOS) is returned with
`skipped` set to the reason, so the table shows it instead of silently dropping it.

    onnx    fp32 (baseline) · fp16 · int8-<method> per calibration method (static QDQ, calibration/ort.py)
    trt     fp32 engine (baseline) · fp16 engine · int8-<method> engine from symmetric Q/DQ ONNX
            (calibration/trt.py). Where TensorRT or a GPU is missing the engines are reported as skipped,
            the fp32 ONNX in onnxruntime becomes the baseline, and each int8 Q/DQ ONNX is judged in
            onnxruntime as an accuracy proxy (its latency is onnxruntime's, not TensorRT's); the incomplete
            TensorRT artifact (Q/DQ ONNX + trtexec.sh, ready to build on the GPU) is what gets published.
    coreml  fp32 (baseline) · fp16 · w8 / palette6 / palette4 weight compression of the fp16 package
            (calibration/coreml.py) · w8a8 (activation calibration runs Core ML: macOS only, skipped
            elsewhere). Off macOS every package is run by the MIL reference evaluator
            (runtimes/coreml_reference.py: the converted program on torch kernels, not Core ML), so NoC
            and parity are measured and latency is not.
    executorch  fp32 .pte (baseline) · int8-xnnpack (XNNPACK PT2E quantizer, both graphs,
            calibration/executorch.py) · int8enc-xnnpack / int8dec-xnnpack (one graph int8, the other the
            fp32 program). All run by executorch.runtime here, so NoC, parity and latency are measured.
            No fp16 variant and no calibration methods: XNNPACK's observers are the quantizer's own.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeclick import contract
from edgeclick.io import publishing

from .data import CalibrationData
from .gate import DEFAULT_OPENER, Variant

TARGETS: tuple[str, ...] = ("onnx", "trt", "coreml", "executorch")
COREML_SCHEMES: tuple[str, ...] = ("w8", "palette6", "palette4", "w8a8")
MIL_REFERENCE_OPENER = "edgeclick.runtimes.coreml_reference:MilReferenceBackend"


@dataclass(frozen=True)
class CalibrationPlan:
    """What to calibrate and where the variants go.

    Attributes:
        checkpoint: the fp32 PyTorch checkpoint every variant comes from.
        size: model input (H, W), multiples of 32.
        target: one of TARGETS.
        work_dir: variants are written to work_dir/variants/<name>/.
        baseline: an existing fp32 export of `checkpoint` at `size` in the target's format, used as is
            (None: exported here).
        methods: onnxruntime calibration methods of the int8 variants ("minmax", "entropy", "percentile").
        keep_float: extra names kept float in the int8 graphs (ONNX node names; ExecuTorch submodule paths).
        fp16: also make the fp16 variant.
        search_keep_float: per method, also measure which node groups hurt masks when quantised
            (calibration/sensitivity.py) and, when some do, add an "int8-<method>-mixed" variant keeping
            them float; the measurements go to work_dir/sensitivity-<method>.md.
        min_gain: mean mask IoU a group must gain to be kept float.
        search_groups: the sensitivity.GROUPS tried (None: all of them).
        mixed: also make the one-graph int8 variants per method (onnx target): "int8enc-<method>" (int8
            encoder + fp32 decoder) and "int8dec-<method>" (fp32 encoder + int8 decoder). Late fusion gains
            mostly from an int8 encoder (the backbone runs per image), early fusion only from an int8
            decoder (the backbone runs per click), so which graph to quantise is a deployment choice.
    """

    checkpoint: Path
    size: tuple[int, int]
    target: str
    work_dir: Path
    baseline: Path | None = None
    methods: tuple[str, ...] = ("minmax",)
    keep_float: tuple[str, ...] = ()
    fp16: bool = True
    search_keep_float: bool = False
    min_gain: float = 0.002
    search_groups: tuple[str, ...] | None = None
    mixed: bool = True

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown calibration target {self.target!r}; expected one of {list(TARGETS)}")
        contract.check_size(*self.size)
        from .ort import METHODS

        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown calibration method(s) {bad}; expected some of {list(METHODS)}")

    def variant_dir(self, name: str) -> Path:
        return self.work_dir / "variants" / name


def _export(plan: CalibrationPlan, fmt: str, precision: str, name: str) -> Path:
    """Export the plan's checkpoint into variants/<name> (replacing an earlier run's)."""
    from edgeclick.export.run import export

    dest = plan.variant_dir(name)  # export publishes atomically: an earlier run's stays until this one is done
    return export(plan.checkpoint, fmt, size=plan.size, precision=precision, out_root=dest.parent, name=name)[0]


def onnx_variants(plan: CalibrationPlan, calibration_data: Callable[[], CalibrationData]) -> list[Variant]:
    """fp32 baseline, fp16 and one int8 variant per calibration method, all onnxruntime artifacts."""
    from .ort import quantize_onnx_artifact

    base = plan.baseline if plan.baseline is not None else _export(plan, "onnx", "fp32", "fp32")
    variants = [Variant("fp32", base, baseline=True, note="fp32 ONNX export in onnxruntime (the baseline)")]
    if plan.fp16:
        variants.append(Variant("fp16", _export(plan, "onnx", "fp16", "fp16"),
                                note="fp16 weights and activations, fp32 I/O and click rasteriser"))
    for method in plan.methods:
        name = f"int8-{method}"
        dest = plan.variant_dir(name)
        quantize_onnx_artifact(base, calibration_data(), dest, method=method, keep_float=plan.keep_float, overwrite=True)
        variants.append(Variant(name, dest, note=f"static QDQ: int8 symmetric per-channel weights, uint8 activations; "
                                                 f"{method} calibration on recorded click sessions"))
        if plan.search_keep_float:
            variants.extend(_mixed_variant(plan, base, calibration_data(), method))
        if plan.mixed:
            variants.extend(_one_graph_int8(plan, base, calibration_data, method))
    return variants


ONE_GRAPH_INT8: dict[str, tuple[str, str]] = {
    "int8enc": (contract.ENCODER, "int8 encoder + fp32 decoder"),
    "int8dec": (contract.DECODER, "fp32 encoder + int8 decoder"),
}


def _one_graph_int8(plan: CalibrationPlan, base: Path, calibration_data: Callable[[], CalibrationData],
                    method: str) -> list[Variant]:
    """The int8-<method> QDQ applied to one graph only, the other copied fp32 (ONE_GRAPH_INT8)."""
    import onnx

    from edgeclick.manifest import read_manifest

    from .ort import quantize_onnx_artifact

    variants = []
    for prefix, (graph, what) in ONE_GRAPH_INT8.items():
        name = f"{prefix}-{method}"
        nodes = {n.name for n in onnx.load(str(read_manifest(base).path(graph)), load_external_data=False).graph.node}
        dest = quantize_onnx_artifact(base, calibration_data(), plan.variant_dir(name), method=method,
                                      keep_float=tuple(n for n in plan.keep_float if n in nodes), graphs=(graph,),
                                      overwrite=True)
        variants.append(Variant(name, dest, note=f"{what}: static QDQ ({method}) on the {graph} only"))
    return variants


def _mixed_variant(plan: CalibrationPlan, base: Path, data: CalibrationData, method: str) -> list[Variant]:
    """The int8 variant with the measured harmful node groups kept float (none when no group helps)."""
    from edgeclick.io import write_text_atomic

    from .ort import quantize_onnx_artifact
    from .sensitivity import GROUPS, chosen_nodes, effects_table, measure_groups

    keep: list[str] = []
    tables: list[str] = []
    for graph in (contract.ENCODER, contract.DECODER):
        effects = measure_groups(base, data, graph, method=method, groups=plan.search_groups or tuple(GROUPS))
        tables.append(effects_table(effects, graph))
        keep += chosen_nodes(effects, plan.min_gain)
    chosen = [e for e in keep if e not in plan.keep_float]
    summary = (f"kept float (gain ≥ {plan.min_gain}): {len(chosen)} nodes" if chosen else
               f"no group gained ≥ {plan.min_gain} mean mask IoU: no mixed variant")
    write_text_atomic(plan.work_dir / f"sensitivity-{method}.md",
                      f"# int8 sensitivity ({method})\n\n" + "\n\n".join(tables) + f"\n\n{summary}\n")
    if not chosen:
        return []
    name = f"int8-{method}-mixed"
    dest = quantize_onnx_artifact(base, data, plan.variant_dir(name), method=method,
                                  keep_float=tuple(plan.keep_float) + tuple(chosen), overwrite=True)
    return [Variant(name, dest, note=f"int8-{method} with {len(chosen)} measured-sensitive nodes kept float "
                                     f"(sensitivity-{method}.md)")]


def qdq_onnx_artifact(trt_artifact: Path, out_dir: Path) -> Path:
    """An onnxruntime artifact (format "onnx") holding a TensorRT artifact's Q/DQ ONNX graphs unchanged."""
    import dataclasses

    from edgeclick.export.onnx import graph_filename
    from edgeclick.manifest import file_entries, read_manifest, write_manifest

    src = read_manifest(trt_artifact)
    with publishing(out_dir) as staging:
        files = {}
        for graph in (contract.ENCODER, contract.DECODER):
            shutil.copy2(src.root / graph_filename(graph), staging / graph_filename(graph))
            files[graph] = Path(graph_filename(graph))
        write_manifest(dataclasses.replace(
            src, root=staging, name=out_dir.name, format="onnx", complete=True, missing=None,
            files=file_entries(staging, files), validation={},
            options={**src.options, "proxy_for": str(trt_artifact)}))
    return out_dir


def trt_variants(plan: CalibrationPlan, calibration_data: Callable[[], CalibrationData]) -> list[Variant]:
    """TensorRT engines where TensorRT and a GPU are present; onnxruntime proxies of the Q/DQ ONNX elsewhere."""
    from edgeclick.export.formats import MissingRequirement
    from edgeclick.manifest import read_manifest

    from .trt import quantize_for_tensorrt

    base_onnx = plan.baseline if plan.baseline is not None else _export(plan, "onnx", "fp32", "fp32-onnx")
    if read_manifest(base_onnx).format != "onnx":
        raise ValueError(f"{base_onnx}: TensorRT int8 is built from the fp32 ONNX export; pass that (or --checkpoint)")
    variants: list[Variant] = []
    try:
        variants.append(Variant("fp32", _export(plan, "trt", "fp32", "fp32"), baseline=True, note="TensorRT fp32 engines"))
        no_trt = None
    except MissingRequirement as exc:
        no_trt = str(exc).splitlines()[0]
        variants.append(Variant("fp32 (onnxruntime)", base_onnx, baseline=True,
                                note=f"TensorRT unavailable here ({no_trt}): the fp32 ONNX in onnxruntime CPU is the "
                                     "baseline the Q/DQ proxies are judged against"))
    if plan.fp16:
        try:
            variants.append(Variant("fp16", _export(plan, "trt", "fp16", "fp16"), note="TensorRT fp16 engines"))
        except MissingRequirement as exc:
            variants.append(Variant("fp16", None, skipped=f"TensorRT engine not built: {str(exc).splitlines()[0]}"))
    for method in plan.methods:
        name = f"int8-{method}"
        dest = plan.variant_dir(name)
        try:
            quantize_for_tensorrt(base_onnx, calibration_data(), dest, method=method, keep_float=plan.keep_float,
                                  overwrite=True)
            variants.append(Variant(name, dest, note=f"TensorRT int8 engines from symmetric Q/DQ ONNX ({method})"))
        except MissingRequirement as exc:
            variants.append(Variant(name, None, skipped=f"TensorRT engine not built: {str(exc).splitlines()[0]}"))
            proxy = qdq_onnx_artifact(dest, plan.variant_dir(f"{name}-qdq-onnxruntime"))
            variants.append(Variant(f"{name} Q/DQ (onnxruntime)", proxy, publish=dest,
                                    note=f"the TensorRT Q/DQ ONNX ({method}) run by onnxruntime CPU: an accuracy proxy "
                                         "for the engine; its latency is onnxruntime's. Passing publishes the "
                                         "TensorRT artifact (Q/DQ ONNX + trtexec.sh) to build on the GPU"))
    return variants


def coreml_variants(plan: CalibrationPlan, calibration_data: Callable[[], CalibrationData]) -> list[Variant]:
    """CoreML fp32 / fp16 exports and the compressed fp16 packages; Core ML runs them on macOS only."""
    import sys

    from .coreml import (
        CoreMLCalibrationUnavailable,
        compress_coreml_artifact,
        get_scheme,
        require_coreml_prediction,
    )

    on_mac = sys.platform == "darwin"
    opener = DEFAULT_OPENER if on_mac else MIL_REFERENCE_OPENER
    where = "Core ML" if on_mac else "MIL reference evaluator (not Core ML; no latency)"
    base = plan.baseline if plan.baseline is not None else _export(plan, "coreml", "fp32", "fp32")
    variants = [Variant("fp32", base, baseline=True, note=f"fp32 ML program, {where}",
                        opener=opener, bench=on_mac)]
    fp16 = _export(plan, "coreml", "fp16", "fp16")
    variants.append(Variant("fp16", fp16, note=f"fp16 ML program (click arithmetic fp32), {where}",
                            opener=opener, bench=on_mac))
    for scheme in COREML_SCHEMES:
        dest = plan.variant_dir(scheme)
        needs_data = scheme == "w8a8"
        try:
            if needs_data:  # refused off macOS before the click sessions are recorded for nothing
                require_coreml_prediction(get_scheme(scheme))
            compress_coreml_artifact(fp16, dest, scheme, data=calibration_data() if needs_data else None, overwrite=True)
        except CoreMLCalibrationUnavailable as exc:
            variants.append(Variant(scheme, None, skipped=str(exc).splitlines()[0]))
            continue
        variants.append(Variant(scheme, dest, note=f"{scheme} compression of the fp16 package, {where}",
                                opener=opener, bench=on_mac))
    return variants


def executorch_variants(plan: CalibrationPlan, calibration_data: Callable[[], CalibrationData]) -> list[Variant]:
    """fp32 .pte baseline, int8 (both graphs) and, with `plan.mixed`, the one-graph int8 programs."""
    from .deploy import compose_one_graph
    from edgeclick.model.checkpoint import load_checkpoint

    from .executorch import METHOD, check_submodules, quantize_executorch_artifact

    check_submodules(load_checkpoint(plan.checkpoint), plan.keep_float)  # a wrong path fails before the export
    base = plan.baseline if plan.baseline is not None else _export(plan, "executorch", "fp32", "fp32")
    variants = [Variant("fp32", base, baseline=True, note="fp32 ExecuTorch programs (XNNPACK) in executorch.runtime (the baseline)")]
    name = f"int8-{METHOD}"
    int8 = quantize_executorch_artifact(base, calibration_data(), plan.variant_dir(name), overwrite=True, keep_float=plan.keep_float)
    kept = f"; kept float: {', '.join(plan.keep_float)}" if plan.keep_float else ""
    variants.append(Variant(name, int8, note="XNNPACK PT2E quantizer: int8 symmetric per-channel weights, int8 static "
                                             f"activations, calibrated on recorded click sessions; both graphs{kept}"))
    if plan.mixed:
        for prefix, (graph, what) in ONE_GRAPH_INT8.items():
            one = compose_one_graph(int8, base, graph, plan.variant_dir(f"{prefix}-{METHOD}"))
            variants.append(Variant(one.name, one, note=f"{what}: the int8-{METHOD} {graph} program with the fp32 other"))
    return variants


BUILDERS: dict[str, Callable[[CalibrationPlan, Callable[[], CalibrationData]], list[Variant]]] = {
    "executorch": executorch_variants,
    "coreml": coreml_variants,
    "onnx": onnx_variants,
    "trt": trt_variants,
}


def build_variants(plan: CalibrationPlan, calibration_data: Callable[[], CalibrationData]) -> list[Variant]:
    """The plan's variants (exactly one baseline first); `calibration_data` is called only when needed."""
    return BUILDERS[plan.target](plan, calibration_data)
