"""`edgeclick weights list | get NAME | add NAME FILE` (`make weights NAME=...`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .cache import CachePaths, Record, cache_root
from .registry import REGISTRY, URL_BASE_ENV


def register_cli(subparsers: Any) -> None:
    """Add the `weights` subcommand (with list / get / add) to an argparse subparsers object."""
    p = subparsers.add_parser(
        "weights", help="RITM's published checkpoints by name: list, download (get) or add a file you downloaded",
        description="Registered names work wherever a checkpoint is taken (segment, evaluate, export, demo, "
        "calibrate, parity, bench --checkpoint) once `edgeclick weights get NAME` put them in the cache.")
    sub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    q = sub.add_parser("list", help="registered names, URL, size, published NoC, what is cached, where the cache is")
    q.set_defaults(func=_list)

    q = sub.add_parser("get", help="download NAME into the cache (resumable, checked), then import it")
    q.add_argument("name", metavar="NAME", help="a registered name (`edgeclick weights list`)")
    q.add_argument("--force", action="store_true", help="download again even if the file is cached")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_get)

    q = sub.add_parser("add", help="put a file downloaded elsewhere into the cache under NAME (same checks)")
    q.add_argument("name", metavar="NAME", help="a registered name (`edgeclick weights list`)")
    q.add_argument("file", type=Path, help="the RITM .pth file")
    q.set_defaults(func=_add)


def _list(args: argparse.Namespace) -> int:
    for entry in REGISTRY.values():
        paths = CachePaths.of(entry)
        record = Record.read(paths.record)
        state = f"cached: {paths.imported}" if paths.imported.is_file() else "not cached"
        exact = f"; recorded {record.size} bytes, sha256 {record.sha256[:16]}…" if record else ""
        print(f"{entry.name:18s} {entry.model}, {entry.train_data}, {entry.published_size}{exact} — {state}\n"
              f"{'':18s} {entry.url()}\n"
              f"{'':18s} published NoC: {entry.noc_text()}")
    print(f"cache: {cache_root()} (set EDGECLICK_CACHE to move it; {URL_BASE_ENV} replaces the URL base)\n"
          "RITM publishes rounded sizes and no checksums: the exact size and sha256 are recorded at the first "
          "download and checked after.")
    return 0


def _get(args: argparse.Namespace) -> int:
    from .install import get

    _report(get(args.name, force=args.force, progress=not args.no_progress))
    return 0


def _add(args: argparse.Namespace) -> int:
    from .install import add

    _report(add(args.name, args.file))
    return 0


def _report(outcome: Any) -> None:
    """One line: what happened, the checkpoint to use, and how to use it by name."""
    rec = outcome.record
    print(f"{outcome.entry.name}: {outcome.action} {outcome.paths.original.name} ({rec.size} bytes, sha256 "
          f"{rec.sha256[:16]}…); edgeclick checkpoint {outcome.paths.imported} — use it by name, e.g. "
          f"edgeclick segment {outcome.entry.name} IMAGE --click X,Y,+")
