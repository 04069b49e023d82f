"""Write a held-out synthetic high-resolution evaluation set in the HQ layout (im/ + gt/).

    python -m edgeclick.train.holdout runs/holdout_synthetic_hr --n 30 --size 2048 --seed 9001

Samples come from `edgeclick.data.synthetic.SyntheticDataset` with procedural textures and a seed that
training never uses (training draws synthetic items from `[data.seed, stream, epoch, index]` generators),
so no held-out object was seen in training. `edgeclick evaluate --data DIR --dataset-format hq` reads it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from edgeclick.data.synthetic import SyntheticDataset
from edgeclick.io import atomic_write

HOLDOUT_SEED = 9001
"""Default seed of the held-out set ([seed, index] generators; training items use 4-element seeds)."""


def write_holdout(out: str | Path, n: int = 30, size: int = 2048, seed: int = HOLDOUT_SEED) -> Path:
    """Write `n` samples of long side `size` px as out/im/NAME.png and out/gt/NAME.png (0 / 255)."""
    out = Path(out)
    dataset = SyntheticDataset(n, size=size, seed=seed)
    for sample in dataset:
        mask = Image.fromarray(np.where(sample.gt == 1, 255, 0).astype(np.uint8))
        image = Image.fromarray(sample.image)
        atomic_write(out / "im" / f"{sample.name}.png", lambda p, im=image: im.save(p, format="PNG"))
        atomic_write(out / "gt" / f"{sample.name}.png", lambda p, m=mask: m.save(p, format="PNG"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--size", type=int, default=2048, help="long side in pixels")
    parser.add_argument("--seed", type=int, default=HOLDOUT_SEED)
    args = parser.parse_args(argv)
    print(f"wrote {write_holdout(args.out, args.n, args.size, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
