"""The ablation table in the paper's layout: NoC@90 as "IoU / Boundary IoU" per dataset, from eval reports.

    python -m edgeclick.train.ablation --out models/reference/ablation.md --dataset GrabCut --dataset "Synthetic HR" \
        --row "RITM base" DIR_GRABCUT DIR_HOLDOUT --row "+LoRA" DIR DIR ...

Each DIR is an `edgeclick evaluate --out DIR` folder (its summary.json). The lowest value of each column
is bold. A second table gives mean IoU / Boundary IoU after `AFTER_CLICKS` clicks (highest bold): when
weak models all sit at the click cap on Boundary IoU, NoC@90 cannot tell them apart and this still can.
A JSON copy of the numbers is written next to the Markdown file.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeclick.io import write_json_atomic, write_text_atomic
from edgeclick.train.model_card import read_summary


AFTER_CLICKS: int = 5
"""Clicks after which the second table reads mean IoU and mean Boundary IoU."""


def ablation_rows(rows: list[tuple[str, list[Path]]]) -> list[dict[str, Any]]:
    """[{"label", "cells": [(noc90 IoU, noc90 Boundary IoU, n_samples) per dataset],
    "after": [(mean IoU, mean Boundary IoU) after AFTER_CLICKS clicks per dataset], "max_clicks"}]."""
    out = []
    for label, folders in rows:
        cells, after = [], []
        clicks = 20
        for folder in folders:
            s = read_summary(folder)
            cells.append((float(s["noc"]["90"]), float(s["noc_boundary"]["90"]), int(s["n_samples"])))
            after.append((float(s["miou"][AFTER_CLICKS - 1]), float(s["mbiou"][AFTER_CLICKS - 1])))
            clicks = int(s.get("max_clicks", 20))
        out.append({"label": label, "cells": cells, "after": after, "max_clicks": clicks})
    return out


def render_table(datasets: list[str], rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per method, one "NoC@90 (IoU / BIoU)" column per dataset; column minima bold."""
    best = [(min(r["cells"][i][0] for r in rows), min(r["cells"][i][1] for r in rows)) for i in range(len(datasets))]

    def mark(value: float, best_value: float, fmt: str = ".2f") -> str:
        return f"**{value:{fmt}}**" if value == best_value else f"{value:{fmt}}"

    header = "| Method | " + " | ".join(f"{d} NoC@90 (IoU / BIoU)" for d in datasets) + " |"
    lines = [header, "|---|" + "---|" * len(datasets)]
    for r in rows:
        cells = [f"{mark(iou, best[i][0])} / {mark(biou, best[i][1])}" for i, (iou, biou, _) in enumerate(r["cells"])]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{d}: {rows[0]['cells'][i][2]} samples" for i, d in enumerate(datasets)) if rows else ""
    cap = rows[0]["max_clicks"] if rows else 20
    lines += ["", f"NoC@90: mean clicks to reach IoU (or Boundary IoU) 0.90, capped at {cap} ({counts}). Lower is better."]
    top = [(max(r["after"][i][0] for r in rows), max(r["after"][i][1] for r in rows)) for i in range(len(datasets))]

    lines += ["", "| Method | " + " | ".join(f"{d} after {AFTER_CLICKS} clicks (mIoU / mBIoU)" for d in datasets) + " |",
              "|---|" + "---|" * len(datasets)]
    for r in rows:
        cells = [f"{mark(iou, top[i][0], '.3f')} / {mark(biou, top[i][1], '.3f')}" for i, (iou, biou) in enumerate(r["after"])]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean IoU and mean Boundary IoU after {AFTER_CLICKS} clicks. Higher is better."]
    return "\n".join(lines)


def write_table_files(out: Path, title: str, markdown: str, data: dict[str, Any]) -> Path:
    """`out` (Markdown: the title, then the tables) and its .json copy next to it, each written atomically."""
    write_text_atomic(out, f"# {title}\n\n{markdown}\n")
    write_json_atomic(out.with_suffix(".json"), data)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="Markdown file (a .json copy is written next to it)")
    parser.add_argument("--dataset", action="append", required=True, help="column label, in the order of each row's folders")
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar="LABEL DIR", help="label, then one report folder per dataset")
    parser.add_argument("--title", default="Ablation: adapters on the frozen reference base")
    args = parser.parse_args(argv)
    parsed = []
    for label, *folders in args.row:
        if len(folders) != len(args.dataset):
            parser.error(f"row {label!r} has {len(folders)} report folders for {len(args.dataset)} datasets")
        parsed.append((label, [Path(f) for f in folders]))
    rows = ablation_rows(parsed)
    write_table_files(args.out, args.title, render_table(args.dataset, rows), {"datasets": args.dataset, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
