"""Copy a trained checkpoint into the bundle (models/reference/) with the meta the demo reads.

    python -m edgeclick.train.bundle runs/photo_base_w18s/last.pt models/reference/base_w18s.pt --input-size 128x192
    python -m edgeclick.train.bundle runs/synthetic_base_w18s/last.pt models/reference/synthetic_base_w18s.pt \
        --input-size 128x192 --demo-data synthetic-holdout --float16

meta["input_size"]: the letterbox size the model was trained for (its pixel scale), the demo's default --size.
meta["demo_data"]: "synthetic-holdout" for a model trained on synthetic objects only (`edgeclick.export.demo`).
meta["protocol_row"]: the model's row in models/reference/late_fusion.json (`make late-table`), whose GrabCut
NoC@90 the demo's choice of default model reads (export/demo.py, DEMO_RULE).
--float16 stores the weights in half precision (half the file; `load_checkpoint` loads them into float32).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeclick.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

DEMO_DATA_CHOICES: tuple[str, ...] = ("synthetic-holdout",)


def bundle(src: str | Path, dst: str | Path, *, input_size: tuple[int, int] | None = None,
           demo_data: str | None = None, float16: bool = False, protocol_row: str | None = None) -> Path:
    """Write `src`'s model to `dst` (atomically) with the demo meta added; returns dst."""
    meta: dict[str, Any] = dict(read_checkpoint(src).get("meta") or {})
    if protocol_row is not None:
        meta["protocol_row"] = protocol_row
    if input_size is not None:
        meta["input_size"] = [int(input_size[0]), int(input_size[1])]
    if demo_data is not None:
        meta["demo_data"] = demo_data
    model = load_checkpoint(src)
    if float16:
        model = model.half()
        meta["stored_dtype"] = "float16"
    return save_checkpoint(model, dst, meta=meta)


def main(argv: list[str] | None = None) -> int:
    from edgeclick.args import parse_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--input-size", type=parse_size, default=None, help="HxW the model was trained for")
    parser.add_argument("--demo-data", choices=DEMO_DATA_CHOICES, default=None)
    parser.add_argument("--float16", action="store_true")
    parser.add_argument("--protocol-row", default=None, help="the model's row label in models/reference/late_fusion.json")
    args = parser.parse_args(argv)
    out = bundle(args.src, args.dst, input_size=args.input_size, demo_data=args.demo_data, float16=args.float16,
                 protocol_row=args.protocol_row)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
