"""`edgeclick` command line: one subcommand per job; Makefile targets are thin wrappers over these."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path


def parse_size(text: str) -> tuple[int, int]:
    """'640x960' → (640, 960): height × width in pixels."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HEIGHTxWIDTH, e.g. 640x960") from exc
    from edgeclick import contract

    try:
        contract.check_size(h, w)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return h, w


def _import_ritm(args: argparse.Namespace) -> int:
    from edgeclick.model.ritm_compat import import_ritm

    out = import_ritm(args.src, args.dst, trust_pickle=args.trust_pickle)
    print(f"wrote {out}")
    return 0


def _init(args: argparse.Namespace) -> int:
    import torch

    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    torch.manual_seed(args.seed)
    model = create_model(args.model, fusion=args.fusion, adapter="conv" if args.adapter else None)
    out = save_checkpoint(model, args.out, meta={"source": "init", "seed": args.seed, "trained": False})
    print(f"wrote untrained {args.model}/{args.fusion}{' +conv adapter' if args.adapter else ''} to {out}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from edgeclick.model import ARCHS

    for name, (width, ocr, small) in ARCHS.items():
        print(f"{name:10s} width={width:<3d} ocr_width={ocr:<4d} small={small}")
    return 0


def _contract(args: argparse.Namespace) -> int:
    from edgeclick import contract

    print(json.dumps(contract.describe(), indent=2, default=str))
    return 0


def _segment(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from edgeclick import contract
    from edgeclick.io import atomic_write
    from edgeclick.runtimes.session import open_session

    session = open_session(args.checkpoint, input_size=args.size)
    session.set_image(np.asarray(Image.open(args.image_file).convert("RGB")))
    prob = None
    for spec in args.click:
        x, y, sign = spec.split(",")
        prob = session.click(float(x), float(y), sign.strip() in ("+", "1", "pos", "positive"))
    if prob is None:
        print("no --click given", file=sys.stderr)
        return 2
    mask = Image.fromarray(((prob > contract.PROB_THRESHOLD) * 255).astype(np.uint8))
    atomic_write(args.out, lambda p: mask.save(p, format="PNG"))
    print(f"wrote {args.out} ({int((prob > contract.PROB_THRESHOLD).sum())} object pixels)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeclick", description="High-resolution interactive segmentation, from training to edge devices.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import-ritm", help="convert a RITM checkpoint ({'state_dict','config'}) to edgeclick's format")
    p.add_argument("src", type=Path, help="RITM .pth file")
    p.add_argument("dst", type=Path, help="edgeclick checkpoint to write")
    p.add_argument("--trust-pickle", action="store_true", help="allow arbitrary pickled objects (only for files you trust)")
    p.set_defaults(func=_import_ritm)

    p = sub.add_parser("init", help="write an untrained checkpoint of a registered model (for plumbing and tests)")
    p.add_argument("out", type=Path)
    p.add_argument("--model", default="hrnet18s")
    p.add_argument("--fusion", choices=("early", "late"), default="early")
    p.add_argument("--adapter", action="store_true", help="wrap in the conv adapter (input at 2x base resolution)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_init)

    p = sub.add_parser("models", help="list registered model configs")
    p.set_defaults(func=_models)

    p = sub.add_parser("contract", help="print the I/O contract (names, shapes, version, hash) as JSON")
    p.set_defaults(func=_contract)

    p = sub.add_parser("segment", help="segment one image from clicks and write the mask PNG")
    p.add_argument("checkpoint", type=Path, help="edgeclick checkpoint, or a registered weights name (edgeclick weights list)")
    p.add_argument("image_file", type=Path, help="RGB image (any format Pillow reads)")
    p.add_argument("--click", action="append", default=[], metavar="X,Y,+|-", help="click in image pixels; repeat")
    p.add_argument("--size", type=parse_size, default=None, help="model input HxW (default: the image's own size)")
    p.add_argument("--out", type=Path, default=Path("mask.png"))
    p.set_defaults(func=_segment)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register_cli(sub)
    return parser


# Subcommands that live next to the code they drive; each module has `register_cli(subparsers)` and keeps
# its heavy imports (torch, onnxruntime, coremltools) inside the handlers so `--help` stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "edgeclick.evaluate",
    "edgeclick.train.cli",
    "edgeclick.export.cli",
    "edgeclick.runtimes.cli",
    "edgeclick.runtimes.web_cli",
    "edgeclick.calibration.cli",
    "edgeclick.demo",
    "edgeclick.weights.cli",
)


def resolve_checkpoint_arg(args: argparse.Namespace) -> None:
    """Every subcommand's `checkpoint` argument (segment, evaluate, export, demo, calibrate, parity, bench)
    takes a path or a registered weights name (`edgeclick weights list`); resolved here, once, to a file.
    A name not in the cache is an error naming `edgeclick weights get NAME`: nothing downloads implicitly."""
    if getattr(args, "checkpoint", None) is not None:
        from edgeclick.weights import resolve_checkpoint

        args.checkpoint = resolve_checkpoint(args.checkpoint)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        resolve_checkpoint_arg(args)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"edgeclick {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
