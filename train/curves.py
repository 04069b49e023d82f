"""Learning curves of `edgeclick train` runs, read from their TensorBoard logs, as one PNG (and JSON).

    python -m edgeclick.train.curves runs/synthetic_base_w18s [runs/other ...] --out runs/synthetic_base_w18s/learning_curve.png

One panel per metric (train/loss smoothed over `SMOOTH` logged points, val/miou@1, val/miou@3, val/noc90),
one line per run, x = optimizer step. A JSON file beside the PNG holds the plotted numbers, so a note or a
model card quotes them without reading the picture.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgeclick.io import atomic_write, write_text_atomic

METRICS: tuple[str, ...] = ("train/loss", "val/miou@1", "val/miou@3", "val/noc90")
SMOOTH: int = 10
"""Moving-average window (logged points) for the training loss."""


def read_scalars(run_dir: str | Path, tags: tuple[str, ...] = METRICS) -> dict[str, list[tuple[int, float]]]:
    """tag → [(step, value)] from every TensorBoard event file under run_dir/tensorboard (resumed runs append)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for events in sorted(Path(run_dir).glob("tensorboard/events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in set(tags) & set(acc.Tags().get("scalars", [])):
            for event in acc.Scalars(tag):
                series[tag][int(event.step)] = float(event.value)  # a resumed run's later value wins
    return {tag: sorted(points.items()) for tag, points in series.items()}


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_runs(runs: dict[str, dict[str, list[tuple[int, float]]]], out: str | Path, title: str = "") -> Path:
    """One panel per metric, one line per run; written atomically to `out` (PNG) and `out` with .json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4))
    for ax, tag in zip(axes, METRICS):
        for label, series in runs.items():
            points = series.get(tag, [])
            if not points:
                continue
            steps, values = zip(*points)
            y = smooth(list(values), SMOOTH) if tag == "train/loss" else values
            ax.plot(steps, y, marker="" if tag == "train/loss" else "o", ms=3, label=label)
        ax.set_title(tag + (f" (mean of {SMOOTH})" if tag == "train/loss" else ""))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if tag.startswith("val/miou"):
            ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    write_text_atomic(out.with_suffix(".json"), json.dumps(runs, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (out_dir of edgeclick train)")
    parser.add_argument("--label", action="append", default=[], help="legend label per run, in order (default: folder name)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write (a .json with the numbers beside it)")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    labels = args.label + [r.name for r in args.runs[len(args.label):]]
    runs = {label: read_scalars(run) for label, run in zip(labels, args.runs)}
    missing = [str(r) for r, s in zip(args.runs, runs.values()) if not any(s.values())]
    if missing:
        raise SystemExit(f"curves: no TensorBoard scalars under {', '.join(missing)}/tensorboard; pass run folders of edgeclick train")
    print(f"wrote {plot_runs(runs, args.out, args.title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
