"""`edgeclick train` and `edgeclick merge` subcommands.

    edgeclick train --config train/configs/NAME.yaml [key=value ...] [--devices N] [--num-nodes N]
                    [--accelerator cpu|gpu|auto] [--resume]
    edgeclick merge BASE.pt ADAPTER.pt OUT.pt

Overrides use dotted keys (`optim.lr=1e-4 data.crop_size=[640,960] adapter.sobel=true`) and come as
one group after --config. --devices / --num-nodes / --accelerator are recorded in the resolved config
(trainer.devices, ...), written to out_dir/config.yaml next to the checkpoints.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeclick.weights import resolve_checkpoint


def register_cli(subparsers: Any) -> None:
    """Add `train` and `merge` to an argparse subparsers object (handlers in `func`)."""
    p = subparsers.add_parser(
        "train",
        help="train a base model or adapters on a frozen base (RITM iterative training)",
        description="Train from a YAML config; dotted key=value overrides follow it. Writes out_dir/config.yaml, "
        "last.ckpt (resumable), best/last weights (.pt for base runs, .adapter.pt for adapter runs), tensorboard/.",
    )
    p.add_argument("--config", required=True, type=Path, help="YAML file (train/configs/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=1e-4")
    p.add_argument("--devices", type=int, default=None, help="processes (CPU) or GPUs per node; >1 runs DDP")
    p.add_argument("--num-nodes", type=int, default=None)
    p.add_argument("--accelerator", choices=("cpu", "gpu", "auto"), default=None)
    p.add_argument("--resume", action="store_true", help="continue the run in out_dir from its last.ckpt")
    p.set_defaults(func=run_train)

    p = subparsers.add_parser(
        "merge",
        help="fold an adapter checkpoint's LoRA into its base and write one plain edgeclick checkpoint",
        description="Refuses a base whose sha256 differs from the one the adapter recorded; checks that the merged "
        "model's logits equal the unmerged model's before writing.",
    )
    p.add_argument("base", type=Path, help="base edgeclick checkpoint the adapter was trained on (a path or a name from `edgeclick weights list`)")
    p.add_argument("adapter", type=Path, help="adapter checkpoint (*.adapter.pt)")
    p.add_argument("out", type=Path, help="merged checkpoint to write")
    p.set_defaults(func=run_merge)


def run_train(args: argparse.Namespace) -> int:
    from edgeclick.train.loop import fit

    overrides = list(args.overrides)
    for flag, key in (("devices", "trainer.devices"), ("num_nodes", "trainer.num_nodes"), ("accelerator", "trainer.accelerator")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = _load_config(args.config, overrides)
    if cfg.base_checkpoint:  # a published name (edgeclick weights) or a path
        cfg = replace(cfg, base_checkpoint=str(resolve_checkpoint(cfg.base_checkpoint)))
    out = fit(cfg, resume=args.resume)
    print(f"run in {out}")
    return 0


def _load_config(path: Path, overrides: list[str]) -> Any:
    """load_config, with a file that is not YAML text reported as a usage error naming --config."""
    import yaml

    from edgeclick.errors import UsageError
    from edgeclick.train.config import load_config

    try:
        return load_config(path, overrides)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: not a readable YAML text file ({type(exc).__name__}: {exc}); "
                         "fix it or start from one of train/configs/*.yaml") from None


def run_merge(args: argparse.Namespace) -> int:
    from edgeclick.train.checkpoints import merge

    out = merge(resolve_checkpoint(args.base), args.adapter, args.out)
    print(f"wrote {out}")
    return 0
