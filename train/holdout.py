"""Write a held-out synthetic high-resolution evaluation set in the HQ layout (im/ + gt/).

    python -m edgeclick.train.holdout runs/holdout_synthetic_hr --n 30 --size 2048 --seed 9001

The command line over `edgeclick.data.holdout.write_holdout` (the set itself is described there).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from edgeclick.data.holdout import HOLDOUT_SEED, write_holdout


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
