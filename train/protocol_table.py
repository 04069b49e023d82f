"""One protocol for every model: a table per dataset of NoC@85/90 (IoU and Boundary IoU) and mIoU@1/3/5.

    python -m edgeclick.train.protocol_table --out models/reference/late_fusion.md \\
        --dataset "GrabCut (own size)" --dataset "GrabCut (256x384)" --dataset "held-out synthetic (256x384)" \\
        --row early_base runs/protocol/early_base/model.pt DIR DIR DIR --row late_a MODEL.pt DIR DIR DIR ...

Each DIR is an `edgeclick evaluate --out DIR` folder (its summary.json); the MODEL is read for its fusion and
its training facts (steps, minutes). Every folder of one dataset must share the click budget, or the rows
would not be comparable (refused). Below the tables: the best late row against the early rows on each dataset,
in NoC@90 clicks (the goal is within +1.0 click of the early base). A JSON copy is written next to the Markdown.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeclick.model.checkpoint import read_checkpoint
from edgeclick.train.ablation import write_table_files
from edgeclick.train.model_card import read_summary

MIOU_CLICKS: tuple[int, ...] = (1, 3, 5)
GOAL_CLICKS = 1.0
"""The best late model should be within this many clicks of NoC@90 of the early base."""


def model_facts(path: Path) -> dict[str, Any]:
    """Fusion, adapter / LoRA and training facts of a checkpoint (for the row's description)."""
    payload = read_checkpoint(path)
    config, meta = payload["config"], payload.get("meta") or {}
    train = meta.get("train_config") or {}
    return {"fusion": config["fusion"], "adapter": config.get("adapter") is not None, "lora": config.get("lora") is not None,
            "steps": meta.get("global_step"), "from_early": bool(train.get("from_early")),
            "freeze_encoder": bool(train.get("freeze_encoder"))}


def protocol_rows(datasets: list[str], rows: list[tuple[str, Path, list[Path]]]) -> list[dict[str, Any]]:
    """[{"label", "model": model_facts, "cells": [per dataset: noc85, noc90, noc85_b, noc90_b, miou@k, n, cap]}].

    Raises:
        ValueError: the folders of one dataset differ in click budget or sample count.
    """
    out = []
    for label, model, folders in rows:
        cells = []
        for folder in folders:
            s = read_summary(folder)
            cells.append({"noc85": float(s["noc"]["85"]), "noc90": float(s["noc"]["90"]),
                          "noc85_boundary": float(s["noc_boundary"]["85"]), "noc90_boundary": float(s["noc_boundary"]["90"]),
                          **{f"miou@{k}": float(s["miou"][k - 1]) for k in MIOU_CLICKS},
                          "n_samples": int(s["n_samples"]), "max_clicks": int(s.get("max_clicks", 20)),
                          "input_size": (s.get("settings") or {}).get("input_size"), "report": str(folder)})
        out.append({"label": label, "model": model_facts(model), "cells": cells})
    for i, name in enumerate(datasets):
        budgets = {(r["cells"][i]["max_clicks"], r["cells"][i]["n_samples"]) for r in out}
        if len(budgets) > 1:
            raise ValueError(f"{name}: the rows were evaluated with different click budgets / sample counts {sorted(budgets)}; "
                             "evaluate every row with the same protocol")
    return out


def _describe(model: dict[str, Any]) -> str:
    parts = [model["fusion"]]
    if model["from_early"]:
        parts.append("from early" + (", backbone frozen" if model["freeze_encoder"] else ""))
    if model["lora"]:
        parts.append("+ ConvLoRA")
    if model["adapter"]:
        parts.append("+ conv adapter")
    if model["steps"] is not None:
        parts.append(f"{model['steps']} steps")
    return ", ".join(parts)


def render(datasets: list[str], rows: list[dict[str, Any]]) -> str:
    """One Markdown table per dataset, then the goal check."""
    lines: list[str] = []
    for i, name in enumerate(datasets):
        first = rows[0]["cells"][i]
        lines += [f"## {name}", "", f"{first['n_samples']} samples, up to {first['max_clicks']} clicks.", "",
                  "| model | what | NoC@85 | NoC@90 | NoC@85 BIoU | NoC@90 BIoU | " + " | ".join(f"mIoU@{k}" for k in MIOU_CLICKS) + " |",
                  "|---|---|---:|---:|---:|---:|" + "---:|" * len(MIOU_CLICKS)]
        for r in rows:
            c = r["cells"][i]
            lines.append(f"| {r['label']} | {_describe(r['model'])} | {c['noc85']:.2f} | {c['noc90']:.2f} | "
                         f"{c['noc85_boundary']:.2f} | {c['noc90_boundary']:.2f} | "
                         + " | ".join(f"{c[f'miou@{k}']:.3f}" for k in MIOU_CLICKS) + " |")
        lines.append("")
    lines += ["## Late against early", ""] + goal_lines(datasets, rows)
    return "\n".join(lines)


def goal_lines(datasets: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """Per dataset: the best late row's NoC@90 minus the best early row's, and whether it is within the goal."""
    late = [r for r in rows if r["model"]["fusion"] == "late"]
    early = [r for r in rows if r["model"]["fusion"] == "early"]
    if not late or not early:
        return ["(needs at least one early and one late row)"]
    out = []
    for i, name in enumerate(datasets):
        best_late = min(late, key=lambda r: r["cells"][i]["noc90"])
        best_early = min(early, key=lambda r: r["cells"][i]["noc90"])
        delta = best_late["cells"][i]["noc90"] - best_early["cells"][i]["noc90"]
        verdict = "within the goal" if delta <= GOAL_CLICKS else f"goal missed by {delta - GOAL_CLICKS:.2f} clicks"
        out.append(f"- {name}: best late ({best_late['label']}) NoC@90 {best_late['cells'][i]['noc90']:.2f} vs "
                   f"{best_early['label']} {best_early['cells'][i]['noc90']:.2f}: {delta:+.2f} clicks ({verdict}, goal ≤ +{GOAL_CLICKS:g}).")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="Markdown file (a .json copy is written next to it)")
    parser.add_argument("--dataset", action="append", required=True, help="column label, in the order of each row's folders")
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar="LABEL MODEL DIR",
                        help="label, its checkpoint, then one evaluation folder per dataset")
    parser.add_argument("--title", default="Late fusion from an early checkpoint, one protocol for every row")
    args = parser.parse_args(argv)
    parsed = []
    for label, model, *folders in args.row:
        if len(folders) != len(args.dataset):
            parser.error(f"row {label!r} has {len(folders)} evaluation folders for {len(args.dataset)} datasets")
        parsed.append((label, Path(model), [Path(f) for f in folders]))
    rows = protocol_rows(args.dataset, parsed)
    write_table_files(args.out, args.title, render(args.dataset, rows), {"datasets": args.dataset, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
