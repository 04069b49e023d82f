"""The held-out synthetic high-resolution evaluation set, written in the HQ layout (im/ + gt/).

Samples come from `edgeclick.data.synthetic.SyntheticDataset` with procedural textures and a seed that
training never uses (training draws synthetic items from `[data.seed, stream, epoch, index]` generators),
so no held-out object was seen in training. `edgeclick evaluate --data DIR --dataset-format hq` reads it;
`python -m edgeclick.train.holdout` is its command line, `edgeclick demo` writes one for synthetic-only models.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgeclick.data.synthetic import SyntheticDataset
from edgeclick.io import atomic_write

HOLDOUT_SEED = 9001
"""Default seed of the held-out set ([seed, index] generators; training items use 4-element seeds)."""


def write_holdout(out: str | Path, n: int = 30, size: int = 2048, seed: int = HOLDOUT_SEED) -> Path:
    """Write `n` samples of long side `size` px as out/im/NAME.png (RGB) and out/gt/NAME.png (0 / 255)."""
    out = Path(out)
    dataset = SyntheticDataset(n, size=size, seed=seed)
    for sample in dataset:
        mask = Image.fromarray(np.where(sample.gt == 1, 255, 0).astype(np.uint8))
        image = Image.fromarray(sample.image)
        atomic_write(out / "im" / f"{sample.name}.png", lambda p, im=image: im.save(p, format="PNG"))
        atomic_write(out / "gt" / f"{sample.name}.png", lambda p, m=mask: m.save(p, format="PNG"))
    return out
