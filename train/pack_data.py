"""Copy the training photos of an img/ + gt/ dataset into a size-capped folder that can travel to a GPU machine.

    python -m edgeclick.train.pack_data ../shared/data/coco_mval_dev runs/gpu_data/coco_train --max-mib 50

Only items of the training side of `split_by_photo(names, val_fraction)` are copied, in name order, until
the next pair would pass the cap, so a run on the packed folder never sees the photos that CPU runs
validate on. The copy is written to a staging folder and renamed into place (atomic); an existing
destination is left alone (delete it to pack again).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from edgeclick.data.imread import is_image_file
from edgeclick.io import publishing
from edgeclick.train.data import split_by_photo


def pack(src: Path, dst: Path, max_mib: float, val_fraction: float = 0.1) -> tuple[int, int]:
    """Copy training pairs (img/NAME.*, gt/NAME.png) of `src` into `dst`; returns (pairs, bytes)."""
    if dst.exists():
        raise SystemExit(f"pack_data: {dst} already exists; delete it to pack again")
    images = {p.stem: p for p in sorted((src / "img").iterdir()) if is_image_file(p)}
    masks = {p.stem: p for p in sorted((src / "gt").iterdir()) if is_image_file(p)}
    names = sorted(images.keys() & masks.keys())
    if not names:
        raise SystemExit(f"pack_data: {src} holds no img/ + gt/ pairs with the same stem")
    train, _ = split_by_photo(names, val_fraction)
    budget = int(max_mib * 2**20)

    with publishing(dst) as stage:
        (stage / "img").mkdir()
        (stage / "gt").mkdir()
        count = used = 0
        for i in train:
            pair = (images[names[i]], masks[names[i]])
            size = sum(p.stat().st_size for p in pair)
            if used + size > budget:
                break
            shutil.copyfile(pair[0], stage / "img" / pair[0].name)
            shutil.copyfile(pair[1], stage / "gt" / pair[1].name)
            count, used = count + 1, used + size
    return count, used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--max-mib", type=float, default=50.0)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="as the CPU configs' data.val_fraction")
    args = parser.parse_args(argv)
    count, used = pack(args.src, args.dst, args.max_mib, args.val_fraction)
    print(f"packed {count} training pairs, {used / 2**20:.1f} MiB, into {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
