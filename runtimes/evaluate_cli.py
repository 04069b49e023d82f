"""`edgeclick evaluate`: RITM-protocol NoC of a checkpoint on a dataset, through torch-reference Sessions.

    edgeclick evaluate --checkpoint CKPT --data DIR [--size HxW] [--zoom-in] [--flip] [--workers K]

The protocol lives in `edgeclick.evaluate`, the report in `edgeclick.report`; this module is glue: a
picklable Session recipe per worker, the arguments, the report folder.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeclick.args import parse_size
from edgeclick.evaluate import DATASET_FORMATS, PRED_THRESHOLD, evaluate_dataset
from edgeclick.metrics import MAX_CLICKS
from edgeclick.predictors import Predictor, wrap_predictor
from edgeclick.report import results_table, write_report

from .power import add_power_argument, apply_process_env, get_profile


def open_session(checkpoint: str, **kwargs: Any) -> Any:
    """runtimes.session.open_session, imported on first use (it imports torch, which `edgeclick --help` must not;
    a seam: tests swap it)."""
    from .session import open_session as open_torch_session

    return open_torch_session(checkpoint, **kwargs)


@dataclass(frozen=True)
class SessionFactory:
    """Picklable recipe for a predictor: an edgeclick Session on a checkpoint, with optional transforms.

    With flip a second session holds the mirrored image, so neither re-encodes at every click.
    """

    checkpoint: str
    zoom_in: bool = False
    flip: bool = False
    device: str | None = None  # None: open_session's own default
    input_size: tuple[int, int] | None = None  # model input (H, W); None: each image at its own size (RITM)
    power: str | None = None  # power profile (runtimes/power.py); None: the default

    def __call__(self) -> Predictor:
        apply_process_env(self.power)  # a fresh worker process: before its first torch import
        kwargs: dict[str, Any] = {"input_size": self.input_size, "power": self.power}
        if self.device is not None:
            kwargs["device"] = self.device
        base = open_session(self.checkpoint, **kwargs)
        mirror = open_session(self.checkpoint, **kwargs) if self.flip else None
        return wrap_predictor(base, zoom_in=self.zoom_in, flip=self.flip, mirror=mirror)


def register_cli(subparsers: Any) -> None:
    """Add the `evaluate` subcommand to an argparse subparsers object (handler in `func`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="RITM-protocol NoC evaluation of a checkpoint on a dataset",
        description="Simulate up to --max-clicks clicks per sample (RITM's clicker) and report "
        "NoC@85/90/95 for IoU and Boundary IoU, NoF, mIoU per click and seconds per click.",
    )
    p.add_argument("--checkpoint", required=True, help="model file opened with edgeclick's open_session, or a registered weights name (edgeclick weights list)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset-format", choices=DATASET_FORMATS, default="auto")
    p.add_argument("--max-clicks", type=int, default=MAX_CLICKS)
    p.add_argument("--zoom-in", action="store_true", help="RITM ZoomIn (crop long side 400 px)")
    p.add_argument("--flip", action="store_true", help="average with the horizontally mirrored prediction")
    p.add_argument("--workers", type=int, default=1, help="processes per rank (each opens its own session)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--out", default=None, help="report folder (default reports/eval/<dataset>_<checkpoint>)")
    p.add_argument("--device", default=None, help="passed to open_session (e.g. cpu, cuda); default: its own")
    p.add_argument("--size", type=parse_size, default=None, metavar="HxW",
                   help="model input size, images letterboxed into it as an exported graph sees them "
                        "(default: each image at its own size, padded to a multiple of 32, as RITM)")
    add_power_argument(p)
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick evaluate`; returns the exit status."""
    apply_process_env(args.power)  # before torch is imported here or in a worker process (inherited environment)
    from edgeclick.data.datasets import load_dataset

    dataset = load_dataset(args.data, args.dataset_format)
    factory = SessionFactory(str(args.checkpoint), zoom_in=args.zoom_in, flip=args.flip, device=args.device,
                             input_size=args.size, power=args.power)
    run = evaluate_dataset(dataset, factory, limit=args.limit, workers=args.workers, max_clicks=args.max_clicks)
    if run is None:  # a torchrun rank other than 0: rank 0 writes the report
        return 0
    name = f"{dataset.name}_{Path(args.checkpoint).stem}" + ("_zoom" if args.zoom_in else "") + ("_flip" if args.flip else "")
    out = Path(args.out) if args.out else Path("reports") / "eval" / name
    settings = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "dataset_format": args.dataset_format,
        "zoom_in": args.zoom_in,
        "flip": args.flip,
        "pred_threshold": PRED_THRESHOLD,
        "limit": args.limit,
        "device": args.device,
        "input_size": list(args.size) if args.size else None,
        "power": get_profile(args.power).name,
    }
    files = write_report(run, out, dataset.name, settings=settings, skipped=run.skipped)
    summary = run.summary()
    print(results_table(dataset.name, summary, run.wall_seconds))
    print(f"seconds per click: {summary.seconds_per_click:.4f} s; total wall time: {run.wall_seconds:.1f} s")
    print(f"report: {files['report']}")
    return 0
