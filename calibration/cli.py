"""`edgeclick calibrate`: make fp16 / int8 variants of an export and gate them by NoC, parity and latency.

    edgeclick calibrate ARTIFACT_DIR --data DIR [--target onnx] [--calib-data DIR] [--methods minmax,entropy]
    edgeclick calibrate --checkpoint CKPT [--size 640x960] --data DIR ...

ARTIFACT_DIR is an fp32 export (its manifest names the checkpoint and size); with --checkpoint the fp32
export is made here. Variants go to <work>/variants/<name>/, the baseline and the passing variants are
copied to <work>/final/<name>/, the table to <out>/calibration.md (+ .json). Exit status 0 when the gate
ran (failed variants are the gate doing its job), 2 on bad input.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import CalibrationData
    from .variants import CalibrationPlan

DEFAULT_CALIB_SAMPLES = 16
DEFAULT_DECODER_SAMPLES = 300


def _size(text: str) -> tuple[int, int]:
    from edgeclick.args import parse_size

    return parse_size(text)


def register_cli(subparsers: Any) -> None:
    """Add the `calibrate` subcommand."""
    p = subparsers.add_parser(
        "calibrate", help="fp16 / int8 variants of an export, gated by ΔNoC against fp32, parity and latency",
        description="Export or quantise fp16 / int8 variants of an fp32 model, calibrated on simulated click "
                    "sessions, then evaluate each (NoC@85/90 IoU and bIoU, parity against PyTorch fp32, "
                    "latency) and write one table. A variant whose ΔNoC@90 exceeds --threshold, or whose "
                    "parity gate fails, is marked FAIL and not copied into the final artifact set.")
    p.add_argument("artifact", nargs="?", type=Path, default=None, metavar="ARTIFACT_DIR",
                   help="fp32 export to start from (or give --checkpoint)")
    p.add_argument("--checkpoint", type=Path, default=None, help="fp32 checkpoint to export and calibrate, or a registered weights name")
    p.add_argument("--size", type=_size, default=None, metavar="HxW", help="model input with --checkpoint (default: the checkpoint meta's input_size, else 640x960)")
    p.add_argument("--target", default=None, help="onnx | trt | coreml (default: the artifact's format, else onnx)")
    p.add_argument("--data", type=Path, required=True, help="evaluation dataset (NoC, parity), e.g. $EDGECLICK_DATA/grabcut")
    p.add_argument("--dataset-format", default="auto", help="layout of --data and --calib-data (default: detected)")
    p.add_argument("--calib-data", type=Path, default=None,
                   help="images + masks the click sessions are recorded on (default: --data; better a separate "
                        "set, e.g. $EDGECLICK_DATA/coco_mval_dev, so the gate is not judged on calibration images)")
    p.add_argument("--calib-samples", type=int, default=DEFAULT_CALIB_SAMPLES, help="images of the calibration sessions")
    p.add_argument("--calib-clicks", type=int, default=20, help="clicks per calibration session (1st to Nth)")
    p.add_argument("--calib-decoder-samples", type=int, default=DEFAULT_DECODER_SAMPLES,
                   help="decoder feeds kept (a seeded subsample of all recorded clicks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="minmax", help="int8 calibration methods, comma-separated: minmax,entropy,percentile")
    p.add_argument("--keep-float", action="append", default=[], metavar="NODE", help="extra node kept float in int8 graphs (onnx / trt: an ONNX node name; executorch: a submodule path such as feature_proj)")
    p.add_argument("--no-fp16", action="store_true", help="skip the fp16 variant")
    p.add_argument("--no-mixed", action="store_true",
                   help="skip the one-graph int8 variants (int8enc-<method>: int8 encoder + fp32 decoder; "
                        "int8dec-<method>: fp32 encoder + int8 decoder; onnx target)")
    p.add_argument("--search-keep-float", action="store_true",
                   help="measure which node groups hurt masks in int8 and add an int8-<method>-mixed variant keeping them float")
    p.add_argument("--min-gain", type=float, default=0.002,
                   help="mean mask IoU a node group must gain to be kept float by --search-keep-float")
    p.add_argument("--threshold", type=float, default=None, help="largest ΔNoC@90 a passing variant may cost (default 0.25)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples of --data")
    p.add_argument("--max-clicks", type=int, default=20, help="click budget of the NoC evaluation")
    p.add_argument("--workers", type=int, default=1, help="evaluation processes")
    p.add_argument("--threads", type=int, default=2, help="runtime threads for the latency measurement")
    p.add_argument("--bench-runs", type=int, default=10, help="timed runs per graph")
    p.add_argument("--no-bench", action="store_true", help="skip the latency measurement")
    p.add_argument("--parity-samples", type=int, default=5)
    p.add_argument("--work", type=Path, default=None, help="variants folder (default artifacts/calibration/<name>)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/calibration/<name>)")
    p.set_defaults(func=run_cli)


def resolve_plan(args: argparse.Namespace) -> "CalibrationPlan":
    """The checkpoint, size, target and folders from ARTIFACT_DIR or --checkpoint."""
    from edgeclick.manifest import read_manifest
    from edgeclick.runtimes.artifact import resolve_source

    from edgeclick import contract
    from edgeclick.model.checkpoint import load_payload, meta_input_size

    from .variants import TARGETS, CalibrationPlan

    if (args.artifact is None) == (args.checkpoint is None):
        raise ValueError("give either ARTIFACT_DIR (an fp32 export) or --checkpoint CKPT, not both or neither")
    baseline: Path | None = None
    if args.artifact is not None:
        if args.size is not None:
            raise ValueError("--size applies to --checkpoint; an artifact brings its own size")
        manifest = read_manifest(args.artifact)
        if manifest.precision != "fp32":
            raise ValueError(f"{args.artifact} is a {manifest.precision} export; calibrate from the fp32 export")
        target = args.target or manifest.format
        checkpoint, size = resolve_source(args.artifact).checkpoint, tuple(manifest.size)
        if manifest.format == target or (target == "trt" and manifest.format == "onnx"):
            baseline = args.artifact  # TensorRT int8 is built from the fp32 ONNX
        fusion = manifest.model["fusion"]
    else:
        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such file")
        target = args.target or "onnx"
        checkpoint = args.checkpoint
        payload = load_payload(checkpoint)
        # The model's own scale (its meta input_size, as `demo` uses), else the contract's default.
        size = args.size or meta_input_size(payload) or contract.DEFAULT_SIZE
        fusion = payload["config"]["fusion"]
    if target not in TARGETS:
        raise ValueError(f"--target {target!r}: calibration targets are {list(TARGETS)}")
    name = f"{checkpoint.stem}-{fusion}-{size[0]}x{size[1]}-{target}"
    work = args.work or Path("artifacts") / "calibration" / name
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    return CalibrationPlan(checkpoint, size, target, work, baseline=baseline, methods=methods,  # type: ignore[arg-type]
                           keep_float=tuple(args.keep_float), fp16=not args.no_fp16, mixed=not args.no_mixed,
                           search_keep_float=args.search_keep_float, min_gain=args.min_gain)


def calibration_samples(data: Path, fmt: str, count: int, seed: int) -> list[Any]:
    """`count` samples of the dataset at `data`, a seeded random choice (decode failures skipped)."""
    import numpy as np

    from edgeclick.data.datasets import load_dataset

    dataset = load_dataset(data, fmt)
    order = np.random.default_rng(seed).permutation(len(dataset))
    samples = []
    for i in order:
        if len(samples) == count:
            break
        try:
            samples.append(dataset[int(i)])
        except ValueError:
            continue
    if not samples:
        raise ValueError(f"--calib-data {data}: no usable sample")
    return samples


def cached_calibration_data(plan: "CalibrationPlan", args: argparse.Namespace) -> "CalibrationData":
    """Record (or read back) the click-session feeds; the cache file name hashes everything they depend on."""
    from edgeclick.io import sha256_file

    from .data import CalibrationData, collect_calibration_data

    source = args.calib_data or args.data
    key = {"checkpoint": sha256_file(plan.checkpoint), "size": list(plan.size), "data": str(Path(source).resolve()),
           "samples": args.calib_samples, "clicks_per_sample": args.calib_clicks, "decoder_feeds": args.calib_decoder_samples, "seed": args.seed}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    cache = plan.work_dir / f"calibration-data-{digest}.npz"
    if cache.is_file():
        print(f"calibrate: calibration data from {cache}", file=sys.stderr)
        return CalibrationData.load(cache)
    print(f"calibrate: recording {args.calib_samples} click sessions × {args.calib_clicks} clicks on {source}",
          file=sys.stderr, flush=True)
    samples = calibration_samples(Path(source), args.dataset_format, args.calib_samples, args.seed)
    data = collect_calibration_data(plan.checkpoint, samples, input_size=plan.size, clicks_per_sample=args.calib_clicks,
                                    max_decoder_samples=args.calib_decoder_samples, seed=args.seed)
    data.meta["source"] = str(source)
    data.save(cache)
    return data


def run_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick calibrate`."""
    from edgeclick.data.datasets import load_dataset
    from edgeclick.model.checkpoint import load_payload

    from .gate import (
        DEFAULT_THRESHOLD,
        GateConfig,
        publish_final,
        run_gate,
        write_gate_report,
    )
    from .variants import build_variants

    if args.calib_samples < 1 or args.calib_decoder_samples < 1:
        raise ValueError("--calib-samples and --calib-decoder-samples must be >= 1")
    config = GateConfig(threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold, limit=args.limit,
                        max_clicks=args.max_clicks, bench=not args.no_bench,
                        workers=args.workers, threads=args.threads, bench_runs=args.bench_runs,
                        parity_samples=args.parity_samples)
    if not Path(args.data).is_dir():
        raise FileNotFoundError(f"--data {args.data}: no dataset folder there (e.g. $EDGECLICK_DATA/grabcut)")
    dataset = load_dataset(args.data, args.dataset_format)
    plan = resolve_plan(args)
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    memo: dict[str, CalibrationData] = {}

    def calibration_data() -> "CalibrationData":
        if "data" not in memo:
            memo["data"] = cached_calibration_data(plan, args)
        return memo["data"]

    variants = build_variants(plan, calibration_data)
    model_cfg = load_payload(plan.checkpoint)["config"]
    settings = {"checkpoint": str(plan.checkpoint), "size": list(plan.size), "target": plan.target,
                "model": {"arch": model_cfg["arch"], "fusion": model_cfg["fusion"],
                          "adapter": model_cfg.get("adapter") is not None},
                "data": str(args.data), "calibration_data": str(args.calib_data or args.data),
                "calibration": memo["data"].meta if "data" in memo else None, "methods": list(plan.methods)}
    if args.calib_data is None:
        settings["warning"] = "calibrated on the evaluation data itself (--calib-data not given)"
    report = run_gate(variants, dataset, config, settings=settings)
    out = args.out or Path("reports") / "calibration" / plan.work_dir.name
    # The final set first, the report last: a run killed in between leaves no report claiming a final set
    # that is not there (each step is atomic on its own).
    final = publish_final(report, plan.work_dir / "final")
    files = write_gate_report(report, out)
    from .gate import markdown_table

    print(markdown_table(report))
    print(f"report: {files['report']}")
    print(f"final artifact set ({len(final)}): {plan.work_dir / 'final'}")
    return 0
