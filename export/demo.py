"""`edgeclick demo` (`make demo`): the whole deployment path on real images, in a few minutes.

1. checkpoint: the one given, else the bundled model DEMO_RULE picks (the fastest that is accurate enough),
   else an untrained hrnet18s (said loudly: its masks are meaningless, its timings are real);
2. export it to ONNX (fp32) and CoreML (fp16) (`edgeclick export`);
3. parity of every artifact that can run here against PyTorch, with RITM click sessions on GrabCut
   samples (`edgeclick parity`);
4. latency / CPU / memory of the runnable artifacts against the eager PyTorch anchor (`edgeclick bench`);
5. masks.png: RITM click sessions through the first runnable artifact, the mask after 1, 3 and 5 clicks;
6. one summary table.
Reports land under reports/demo/. It lives in export/ because it starts from an export and checks it with the
runtimes (export may use runtimes; runtimes never import export).

A checkpoint may say in its meta how it should be shown: `input_size` [H, W] (the letterbox size it was
trained for; --size overrides) and `demo_data: "synthetic-holdout"` for a model trained on synthetic
objects only, which the demo then runs on freshly generated held-out synthetic images (the generator's
held-out seed, never used in training) instead of GrabCut, and says so.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgeclick import contract
from edgeclick.io import write_bytes_atomic

# What `make bundle-reference` writes (train/train.mk): the reference base, hrnet18s trained on this CPU.
REFERENCE = Path(__file__).resolve().parents[1] / "models" / "reference"
BUNDLED = REFERENCE / "base_w18s.pt"
PROTOCOL_TABLE = REFERENCE / "late_fusion.json"
"""`make late-table`'s numbers: every bundled row evaluated with one protocol (train/protocol_table.py)."""
EARLY_ROW, RULE_DATASET, RULE_CLICKS = "early_base", 0, 1.0
DEMO_RULE = ("the demo's default is the fastest bundled model whose GrabCut NoC@90 (each image at its own size, "
             f"RITM's protocol) is within +{RULE_CLICKS:g} click of the bundled early base's, both from "
             "models/reference/late_fusion.json; late fusion is the faster (a click runs the decoder alone), "
             "and among late models the lower NoC@90 wins; when none qualifies, the early base")
DEFAULT_DATA = Path("../shared/data/grabcut")
SYNTHETIC_HOLDOUT = "synthetic-holdout"
"""meta["demo_data"] of a checkpoint trained on synthetic objects only."""
MASK_CLICKS: tuple[int, ...] = (1, 3, 5)
"""Clicks after which masks.png shows the mask."""


def _checkpoint(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """The checkpoint to demo and a note on where it came from."""
    if args.checkpoint is not None:
        return args.checkpoint, "given"
    if BUNDLED.is_file():
        return choose_bundled(REFERENCE, BUNDLED)
    import torch

    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = save_checkpoint(create_model("hrnet18s", fusion="late"), work / "hrnet18s_late_untrained.pt",
                           meta={"source": "demo", "trained": False})
    print("NOTE: no --checkpoint and no bundled reference model (models/reference/) yet: using an UNTRAINED\n"
          "      hrnet18s late-fusion model. Masks are meaningless; export, parity plumbing and timings are real.",
          file=sys.stderr)
    return path, "untrained hrnet18s (no reference model bundled yet)"


def choose_bundled(folder: Path, early: Path) -> tuple[Path, str]:
    """(checkpoint, why) by DEMO_RULE among folder's bundled *.pt files that name their protocol row."""
    import json

    from edgeclick.model.checkpoint import read_checkpoint

    table = folder / PROTOCOL_TABLE.name
    if not table.is_file():
        return early, "bundled reference model (no late_fusion.json to judge faster ones by)"
    rows = {r["label"]: r for r in json.loads(table.read_text())["rows"]}
    if EARLY_ROW not in rows:
        return early, f"bundled reference model ({table.name} has no {EARLY_ROW} row)"
    limit = rows[EARLY_ROW]["cells"][RULE_DATASET]["noc90"] + RULE_CLICKS
    qualified = []
    for path in sorted(folder.glob("*.pt")):
        payload = read_checkpoint(path)
        row = rows.get((payload.get("meta") or {}).get("protocol_row"))
        if row is not None and payload["config"]["fusion"] == "late" and row["cells"][RULE_DATASET]["noc90"] <= limit:
            qualified.append((row["cells"][RULE_DATASET]["noc90"], path))
    if not qualified:
        return early, f"bundled early base: no bundled late model within +{RULE_CLICKS:g} click NoC@90 of it"
    noc, path = min(qualified)
    return path, f"bundled late model (GrabCut NoC@90 {noc:.2f}, within +{RULE_CLICKS:g} of the early base's {limit - RULE_CLICKS:.2f})"


def _demo_data(args: argparse.Namespace, meta: dict[str, Any], out: Path) -> tuple[Path, str | None]:
    """(dataset folder, note): --data when given; held-out synthetic images for synthetic-only models."""
    if args.data is not None:
        return args.data, None
    if meta.get("demo_data") != SYNTHETIC_HOLDOUT:
        return DEFAULT_DATA, None
    from edgeclick.data.holdout import write_holdout

    folder = write_holdout(out / "holdout_synthetic", n=args.samples, size=1024)
    return folder, (f"this model was trained on synthetic objects only: the demo runs on {args.samples} held-out "
                    f"synthetic 1024-px images generated into {folder} (pass --data DIR for others)")


def plot_click_sessions(backend: Any, samples: list[Any], clicks: tuple[int, ...] = MASK_CLICKS) -> bytes:
    """PNG: per sample (rows), the mask after each number of RITM clicks in `clicks` (columns)."""
    from edgeclick.clicks import Clicker
    from edgeclick.metrics import iou
    from edgeclick.report import plot_worst
    from edgeclick.results import make_preview
    from edgeclick.runtimes.session import Session

    session = Session(backend)
    previews = []
    for sample in samples:
        session.set_image(sample.image)
        clicker = Clicker(sample.gt)
        pred = np.zeros(sample.gt.shape, dtype=bool)
        for k in range(1, max(clicks) + 1):
            click = clicker.make_next_click(pred)
            pred = session.click(click.x, click.y, click.positive) > contract.PROB_THRESHOLD
            if k in clicks:
                previews.append(make_preview(sample, pred, list(clicker.clicks), iou(pred, sample.gt)))
    return plot_worst(previews, columns=len(clicks))


def _export(checkpoint: Path, size: tuple[int, int], out: Path) -> tuple[list[Path], list[str]]:
    """Export to ONNX and CoreML; return the artifacts written and one line per format that failed."""
    from .run import export

    artifacts, problems = [], []
    # ONNX in fp32 (the parity anchor), CoreML in fp16 (what the Neural Engine runs).
    for target, precision in (("onnx", "fp32"), ("coreml", "fp16")):
        try:  # the export logs its own "exporting" and "wrote … in N s" lines
            artifacts += export(checkpoint, target, size=size, precision=precision, out_root=out)
        except Exception as exc:  # the demo goes on and reports what failed
            problems.append(f"{target}: {exc}")
    return artifacts, problems


def _runnable(artifact: Path) -> bool:
    """Whether this machine can run the artifact (CoreML predicts on macOS only)."""
    from edgeclick.manifest import read_manifest

    return read_manifest(artifact).format != "coreml" or sys.platform == "darwin"


def run(args: argparse.Namespace) -> int:
    from edgeclick.runtimes.power import apply_process_env, get_profile

    apply_process_env(args.power)  # before torch is imported: the OpenMP wait policy is read once, at start
    args.power = get_profile(args.power).name
    from tqdm import tqdm

    from edgeclick.model.checkpoint import meta_input_size, read_checkpoint
    from edgeclick.runtimes.artifact import resolve_source
    from edgeclick.runtimes.bench import BenchConfig, run_bench
    from edgeclick.runtimes.bench_report import write_bench_report
    from edgeclick.runtimes.cli import bench_targets, load_samples, open_artifact
    from edgeclick.runtimes.parity import run_parity
    from edgeclick.runtimes.parity_report import write_parity_report
    from edgeclick.runtimes.torch_ref import TorchBackend

    # Read once, first: a bad file is the user's error (exit 2), before anything is written.
    given = read_checkpoint(args.checkpoint) if args.checkpoint is not None else None
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, origin = _checkpoint(args, out)
    payload = given if given is not None else read_checkpoint(checkpoint)
    meta = dict(payload.get("meta") or {})
    args.size = args.size or meta_input_size(payload) or contract.DEFAULT_SIZE
    args.data, data_note = _demo_data(args, meta, out)
    if data_note:
        print(f"NOTE: {data_note}", file=sys.stderr)
    artifacts, problems = _export(checkpoint, args.size, out / "artifacts")
    runnable = [a for a in artifacts if _runnable(a)]
    skipped = [f"{a.name}: spec checked at export; prediction needs macOS" for a in artifacts if a not in runnable]

    rows: list[dict[str, Any]] = []
    samples = load_samples(args.data, "auto", args.samples) if args.data.is_dir() else []
    if not samples:
        problems.append(f"parity skipped: no dataset at {args.data} (pass --data)")
    for artifact in runnable:
        source = resolve_source(artifact)
        row: dict[str, Any] = {"artifact": artifact.name}
        if samples:
            reference = TorchBackend.from_checkpoint(source.checkpoint, source.manifest.size, power=args.power)
            with tqdm(total=len(samples), desc=f"parity {artifact.name}", unit="sample", file=sys.stderr) as bar:
                report = run_parity(reference, open_artifact(artifact, power=args.power), samples, args.clicks, source.manifest.precision,
                                    on_sample=lambda _: bar.update(1))
            write_parity_report(report, out / "parity" / artifact.name)
            summary = report.summary()
            row.update(parity="pass" if report.passed else "FAIL", max_dlogit=summary.get("max_abs_logit"),
                       min_mask_iou=summary.get("min_mask_iou"), noc90_diff=summary.get("noc90_difference"))
        rows.append(row)
    if samples and runnable:
        masks = write_bytes_atomic(out / "masks.png", plot_click_sessions(open_artifact(runnable[0], power=args.power), samples))
        print(f"masks after {', '.join(map(str, MASK_CLICKS))} clicks ({runnable[0].name}): {masks}", file=sys.stderr)

    bench = None
    if runnable:
        config = BenchConfig(warmup=2, runs=args.runs, sustain_seconds=args.sustain_seconds,
                             threads=(args.threads,) if args.threads else (), powers=(args.power,))
        bench = run_bench(bench_targets(runnable, None), config, progress=lambda m: print(m, file=sys.stderr, flush=True))
        write_bench_report(bench, out / "bench")
        for row in rows:
            result = bench.result(row["artifact"], args.threads)
            anchor = bench.result("torch", args.threads)
            if result is not None:
                row["threads"] = result.threads
            if result is not None:
                row.update(encoder_ms=result.encoder.p50_ms, decoder_ms=result.decoder.p50_ms,
                           peak_rss_mb=result.peak_rss_mb, cpu_ms_per_click=result.cpu_s_per_click * 1e3)
            if anchor is not None:
                row.update(torch_encoder_ms=anchor.encoder.p50_ms, torch_decoder_ms=anchor.decoder.p50_ms)

    print(summary_table(checkpoint, origin, args, rows, skipped, problems))
    return 0 if not problems and all(r.get("parity", "pass") == "pass" for r in rows) else 1


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(checkpoint: Path, origin: str, args: argparse.Namespace, rows: list[dict[str, Any]],
                  skipped: list[str], problems: list[str]) -> str:
    lines = [
        "",
        f"edgeclick demo — checkpoint {checkpoint.name} ({origin}), input {args.size[0]}x{args.size[1]}, "
        f"{args.samples} samples × {args.clicks} clicks from {args.data}, power profile {args.power}"
        + (f", {args.threads} threads" if args.threads else " (its own thread counts)"),
        "",
        "| artifact | parity | max |Δlogit| | min mask IoU | ΔNoC@90 | enc p50 ms (torch) | dec p50 ms/click (torch) | CPU ms/click | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['artifact']} | {r.get('parity', '-')} | {_fmt(r.get('max_dlogit'), '.2e')} | {_fmt(r.get('min_mask_iou'), '.4f')} "
            f"| {_fmt(r.get('noc90_diff'), '+.2f')} | {_fmt(r.get('encoder_ms'), '.0f')} ({_fmt(r.get('torch_encoder_ms'), '.0f')}) "
            f"| {_fmt(r.get('decoder_ms'), '.1f')} ({_fmt(r.get('torch_decoder_ms'), '.1f')}) | {_fmt(r.get('cpu_ms_per_click'), '.1f')} "
            f"| {_fmt(r.get('peak_rss_mb'), '.0f')} |")
    lines += [f"- not run here: {s}" for s in skipped]
    lines += [f"- problem: {p}" for p in problems]
    lines.append(f"reports: {args.out}/parity, {args.out}/bench; artifacts: {args.out}/artifacts")
    return "\n".join(lines)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    from edgeclick.args import parse_size
    from edgeclick.runtimes.power import add_power_argument

    p = subparsers.add_parser("demo", help="export → parity on real images → bench, with one summary table")
    p.add_argument("--checkpoint", type=Path, default=None, help="edgeclick checkpoint or registered weights name, e.g. ritm-hrnet18s (default: bundled reference model)")
    p.add_argument("--data", type=Path, default=None, help=f"dataset folder for parity and masks.png (default: {DEFAULT_DATA}, "
                   "or held-out synthetic images for a model trained on synthetic objects only)")
    p.add_argument("--size", type=parse_size, default=None, help="model input HxW (default: the checkpoint's meta "
                   f"input_size, else {contract.DEFAULT_SIZE[0]}x{contract.DEFAULT_SIZE[1]})")
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--clicks", type=int, default=10)
    p.add_argument("--runs", type=int, default=10, help="timed runs per graph in the bench")
    p.add_argument("--sustain-seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=None, help="bench thread count (default: the power profile's)")
    add_power_argument(p)
    p.add_argument("--out", type=Path, default=Path("reports/demo"))
    p.set_defaults(func=run)
