"""`edgeclick segment CKPT IMAGE --click X,Y,+ ... --out mask.png`: one image, a few clicks, a mask (torch Session)."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgeclick import contract
from edgeclick.args import parse_click, parse_size, read_image_arg
from edgeclick.errors import UsageError
from edgeclick.io import atomic_write

from .power import add_power_argument

# `segment` without --size runs the model at the image's own size; above this a phone photo would take
# gigabytes of activations, so the user is asked for --size instead.
MAX_NATIVE_PIXELS = 8_000_000


def run_segment(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from .power import apply_process_env

    apply_process_env(args.power)  # before torch is imported: the OpenMP wait policy is read once, at start
    from .session import open_session

    if not args.click:
        raise UsageError("no --click given; add at least one, e.g. --click 120,80,+")
    rgb = read_image_arg(args.image_file)
    if args.size is None and rgb.shape[0] * rgb.shape[1] > MAX_NATIVE_PIXELS:
        raise UsageError(f"image {args.image_file} is {rgb.shape[1]}x{rgb.shape[0]} ({rgb.shape[0] * rgb.shape[1] / 1e6:.0f} MP), "
                         f"too large to run at its own size; pass --size, e.g. --size 640x960")
    session = open_session(args.checkpoint, input_size=args.size, power=args.power)
    session.set_image(rgb)
    for x, y, positive in args.click:
        prob = session.click(x, y, positive)
    mask = Image.fromarray(((prob > contract.PROB_THRESHOLD) * 255).astype(np.uint8))
    atomic_write(args.out, lambda p: mask.save(p, format="PNG"))
    print(f"wrote {args.out} ({int((prob > contract.PROB_THRESHOLD).sum())} object pixels)")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the `segment` subcommand."""
    p = subparsers.add_parser("segment", help="segment one image from clicks and write the mask PNG")
    p.add_argument("checkpoint", type=Path, help="edgeclick checkpoint, or a registered weights name (edgeclick weights list)")
    p.add_argument("image_file", type=Path, help="RGB image (any format Pillow reads)")
    p.add_argument("--click", action="append", default=[], type=parse_click, metavar="X,Y,+|-",
                   help="click in image pixels (x = column, y = row), + positive or - negative; repeat")
    p.add_argument("--size", type=parse_size, default=None, help="model input HxW (default: the image's own size)")
    p.add_argument("--out", type=Path, default=Path("mask.png"))
    add_power_argument(p)
    p.set_defaults(func=run_segment)
