"""Evaluation reports: per-sample JSON, summary, a Markdown table like RITM's, the mIoU curve and a grid
of the worst samples. Every file is written atomically."""
from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeclick.io import write_bytes_atomic
from edgeclick.metrics import Summary
from edgeclick.render import pct, png_bytes
from edgeclick.results import EvalRun, Preview


def results_table(dataset: str, summary: Summary, wall_seconds: float) -> str:
    """Markdown table in RITM's layout: one row per score (IoU, Boundary IoU)."""
    ts = list(summary.noc)
    header = (
        ["Dataset", "Metric"]
        + [f"NoC@{pct(t)}" for t in ts]
        + [f"NoF@{pct(t)}" for t in ts]
        + ["SPC, s", "Time"]
    )
    elapsed = str(timedelta(seconds=int(wall_seconds)))
    rows = []
    for metric, noc_, nof_ in (
        ("IoU", summary.noc, summary.nof),
        ("Boundary IoU", summary.noc_boundary, summary.nof_boundary),
    ):
        rows.append(
            [dataset, metric]
            + [f"{noc_[t]:.2f}" for t in ts]
            + [str(nof_[t]) for t in ts]
            + [f"{summary.seconds_per_click:.3f}", elapsed]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def plot_miou(summary: Summary, title: str) -> bytes:
    """PNG of mean IoU and mean Boundary IoU against the number of clicks."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    k = np.arange(1, len(summary.miou) + 1)
    ax.plot(k, summary.miou, marker="o", markersize=3, label="mIoU")
    ax.plot(k, summary.mbiou, marker="s", markersize=3, label="mean Boundary IoU")
    for t in summary.noc:
        ax.axhline(t, color="grey", linewidth=0.5, linestyle=":")
    ax.set(xlabel="number of clicks", ylabel="score", title=title, ylim=(0, 1), xlim=(0.5, k[-1] + 0.5 if k.size else 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return png_bytes(fig)


def plot_worst(previews: Sequence[Preview], columns: int = 4) -> bytes:
    """PNG grid of previews: mask in blue, object outline in yellow, clicks green (+) and red (−)."""
    from matplotlib.figure import Figure

    n = max(1, len(previews))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows), dpi=100)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i >= len(previews):
            continue
        p = previews[i]
        ax.imshow(p.image)
        overlay = np.zeros((*p.mask.shape, 4), dtype=np.float32)
        overlay[p.mask] = (0.1, 0.4, 1.0, 0.5)
        ax.imshow(overlay)
        obj = (p.gt == 1).astype(np.float32)
        if 0 < obj.sum() < obj.size:
            ax.contour(obj, levels=[0.5], colors="yellow", linewidths=0.8)
        for positive, color in ((True, "lime"), (False, "red")):
            pts = np.array([(c.x, c.y) for c in p.clicks if c.positive == positive], dtype=np.float64).reshape(-1, 2)
            ax.scatter(pts[:, 0], pts[:, 1], s=18, c=color, edgecolors="white", linewidths=0.5)
        ax.set_title(f"{p.name}\nIoU {p.final_iou:.3f}, {len(p.clicks)} clicks", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def write_report(
    run: EvalRun,
    out_dir: str | Path,
    dataset: str,
    *,
    settings: dict[str, Any] | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> dict[str, Path]:
    """Write samples.json, summary.json, report.md, miou.png and worst.png into `out_dir`.

    Args:
        run: the evaluation results.
        out_dir: output folder (created).
        dataset: dataset name for the table and titles.
        settings: how the run was made (checkpoint, zoom-in, flip, …), copied into the files.
        skipped: (file, reason) the dataset loader skipped, listed in the report.

    Returns:
        File kind → path.
    """
    out = Path(out_dir)
    summary = run.summary()
    settings = dict(settings or {})
    files: dict[str, Path] = {}
    files["samples"] = write_bytes_atomic(
        out / "samples.json",
        json.dumps({"dataset": dataset, "settings": settings, "samples": [r.to_json() for r in run.results]}),
    )
    summary_json = {
        "dataset": dataset,
        "settings": settings,
        "n_samples": summary.n_samples,
        "max_clicks": run.max_clicks,
        "noc": {pct(t): v for t, v in summary.noc.items()},
        "nof": {pct(t): v for t, v in summary.nof.items()},
        "noc_boundary": {pct(t): v for t, v in summary.noc_boundary.items()},
        "nof_boundary": {pct(t): v for t, v in summary.nof_boundary.items()},
        "miou": summary.miou,
        "mbiou": summary.mbiou,
        "seconds_per_click": summary.seconds_per_click,
        "wall_seconds": run.wall_seconds,
        "skipped": [list(s) for s in skipped],
    }
    files["summary"] = write_bytes_atomic(out / "summary.json", json.dumps(summary_json, indent=2))

    ks = [k for k in (1, 2, 3, 5, 10, 20) if k <= len(summary.miou)]
    lines = [
        f"# Evaluation: {dataset}",
        "",
        results_table(dataset, summary, run.wall_seconds),
        "",
        "mIoU@k: " + ", ".join(f"{k}: {summary.miou[k - 1]:.4f}" for k in ks),
        "",
        "mean Boundary IoU@k: " + ", ".join(f"{k}: {summary.mbiou[k - 1]:.4f}" for k in ks),
        "",
        f"Samples: {summary.n_samples}; max clicks: {run.max_clicks}; NoF counts samples that never reach the "
        f"threshold; SPC counts set_image + predict time.",
    ]
    if settings:
        lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())]
    if skipped:
        lines += ["", f"Skipped by the loader ({len(skipped)}):", ""]
        lines += [f"- {name}: {reason}" for name, reason in skipped]
    lines += ["", "![mIoU vs clicks](miou.png)", "", "![worst samples](worst.png)", ""]
    files["report"] = write_bytes_atomic(out / "report.md", "\n".join(lines))
    files["miou_plot"] = write_bytes_atomic(out / "miou.png", plot_miou(summary, f"{dataset}: score vs clicks"))
    files["worst_plot"] = write_bytes_atomic(out / "worst.png", plot_worst(run.previews))
    return files


