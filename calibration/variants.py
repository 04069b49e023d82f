"""Producing the variants the calibration gate judges, per deployment target.

    plan = CalibrationPlan(checkpoint, size=(640, 960), target="onnx", work_dir=Path("artifacts/calibration/m"))
    variants = build_variants(plan, calibration_data=lambda: collect(...))

Each target's variants are exported or quantised into `work_dir/variants/<name>/` (an earlier run's are
replaced); a variant that cannot be
made on this machine (TensorRT without a GPU, Core ML activation quantisation off macOS) is returned with
`skipped` set to the reason, so the table shows it instead of silently dropping it.

    onnx    fp32 (baseline) · fp16 · int8-<method> per calibration method (static QDQ, calibration/ort.py)
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeclick import contract

from .data import CalibrationData
from .gate import Variant

TARGETS: tuple[str, ...] = ("onnx",)


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
        keep_float: extra node names kept float in the int8 graphs.
        fp16: also make the fp16 variant.
    """

    checkpoint: Path
    size: tuple[int, int]
    target: str
    work_dir: Path
    baseline: Path | None = None
    methods: tuple[str, ...] = ("minmax",)
    keep_float: tuple[str, ...] = ()
    fp16: bool = True

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

    dest = plan.variant_dir(name)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
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
        variants.append(Variant(name, dest, note=f"static QDQ int8 (symmetric, per-channel weights), {method} "
                                                 "calibration on recorded click sessions"))
    return variants


BUILDERS: dict[str, Callable[[CalibrationPlan, Callable[[], CalibrationData]], list[Variant]]] = {
    "onnx": onnx_variants,
}


def build_variants(plan: CalibrationPlan, calibration_data: Callable[[], CalibrationData]) -> list[Variant]:
    """The plan's variants (exactly one baseline first); `calibration_data` is called only when needed."""
    return BUILDERS[plan.target](plan, calibration_data)
