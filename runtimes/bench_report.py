"""`edgeclick bench`'s report files: bench.json, report.md (Markdown tables) and latency.png (p50/p99 bars).

The measuring is `bench.py`; this module only renders a `BenchReport`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from edgeclick import contract
from edgeclick.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgeclick.render import png_bytes

from .bench import RATIO_METRICS, BenchReport, Latency, RunResult


def _num(value: float | str | None, fmt: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):  # "unavailable: <reason>": the reason is stated once above the tables
        return "n/a"
    return format(value, fmt)


def plot_latency(report: BenchReport) -> bytes:
    """PNG: p50 bars (p99 as a whisker) of encoder and decoder latency per target and thread count."""
    from matplotlib.figure import Figure

    threads = list(report.config.threads)
    labels = [t.label for t in report.targets]
    fig = Figure(figsize=(max(7.0, 2.2 * len(threads) * max(1, len(labels)) / 2 + 3), 4.2), dpi=100)
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(threads))
    graphs: tuple[tuple[str, Callable[[RunResult], Latency], str], ...] = (
        (contract.ENCODER, lambda r: r.encoder, "per image"), (contract.DECODER, lambda r: r.decoder, "per click"))
    for ax, (graph, latency, unit) in zip(axes, graphs, strict=True):
        for j, label in enumerate(labels):
            p50, p99 = [], []
            for n in threads:
                r = report.result(label, n)
                p50.append(latency(r).p50_ms if r else math.nan)
                p99.append(latency(r).p99_ms if r else math.nan)
            # Plain float lists: matplotlib's errorbar warns on numpy arrays of length 1.
            whisker = [0.0 if math.isnan(b - a) else float(b - a) for a, b in zip(p50, p99, strict=True)]
            ax.bar(x + (j - (len(labels) - 1) / 2) * width, p50, width, label=label,
                   yerr=[[0.0] * len(p50), whisker], capsize=3)
        ax.set_xticks(x, [f"{n} thread{'s' if n > 1 else ''}" for n in threads])
        ax.set_ylabel("ms (bar p50, whisker p99)")
        ax.set_title(f"{graph} ({unit})")
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _markdown(report: BenchReport) -> str:
    m, c = report.machine, report.config
    lines = [
        "# Runtime benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores available, {m['platform']}, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        f"Load average (1, 5, 15 min) at the end: {', '.join(f'{v:.2f}' for v in m['loadavg'] or []) or 'unknown'}.",
        f"Settings: {c.warmup} warm-up + {c.runs} timed runs per graph; threads {list(c.threads)}; sustained run "
        f"{c.sustain_seconds:g} s at {c.click_rate:g} clicks/s (largest thread count). Energy: {report.energy}.",
        "Each row is a fresh worker process; inputs are a synthetic image and seeded click rows at the model size.",
        "",
        "## Latency (ms) and CPU cost",
        "",
        "| target | threads | enc p50 | enc p90 | enc p99 | dec p50 | dec p90 | dec p99 | CPU-s/click | clicks/CPU-s | J/click |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        th = f"{r.threads}" + ("" if r.threads_applied else " (not applied)")
        lines.append(f"| {r.target} | {th} | {r.encoder.p50_ms:.1f} | {r.encoder.p90_ms:.1f} | {r.encoder.p99_ms:.1f} "
                     f"| {r.decoder.p50_ms:.2f} | {r.decoder.p90_ms:.2f} | {r.decoder.p99_ms:.2f} | {r.cpu_s_per_click:.4f} "
                     f"| {r.clicks_per_cpu_s:.1f} | {_num(r.energy_j_per_click)} |")
    lines += ["", "## Cold start (s) and memory (MiB)", "",
              "| target | threads | import | load | 1st encoder | 1st decoder | total | spawn → 1st mask | peak RSS | ru_maxrss | RSS before runtime | torch in process | load avg 1m |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in report.results:
        k = r.cold
        lines.append(f"| {r.target} | {r.threads} | {k.import_s:.2f} | {k.load_s:.2f} | {k.first_encoder_s:.2f} | "
                     f"{k.first_decoder_s:.3f} | {k.total_s:.2f} | {k.process_to_first_mask_s:.2f} | {r.peak_rss_mb:.0f} | "
                     f"{r.ru_maxrss_mb:.0f} | {_num(r.baseline_rss_mb, '.0f')} | {'yes' if r.torch_in_process else 'no'} | "
                     f"{_num(r.load_1m, '.2f')} |")
    ratios = report.ratios()
    if ratios:
        lines += ["", "## Ratios to the PyTorch anchor (backend / torch; < 1 is better)", "",
                  "| target | anchor | threads | " + " | ".join(RATIO_METRICS) + " |",
                  "|---|---|---:|" + "---:|" * len(RATIO_METRICS)]
        for row in ratios:
            lines.append(f"| {row['target']} | {row['anchor']} | {row['threads']} | "
                         + " | ".join(_num(row[k], ".2f") for k in RATIO_METRICS) + " |")
    sustained = [r for r in report.results if r.sustained is not None]
    if sustained:
        lines += ["", "## Sustained click rate", "",
                  "| target | threads | target rate | achieved | clicks | missed deadlines | max lateness ms | CPU cores busy | CPU per core | dec p50 ms | dec p99 ms | W | J/click |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sustained:
            s = r.sustained
            assert s is not None
            lines.append(f"| {r.target} | {r.threads} | {s.target_rate:g}/s | {s.achieved_rate:.2f}/s | {s.clicks} | "
                         f"{s.missed_deadlines} | {s.max_lateness_ms:.1f} | {s.cpu_utilisation_cores:.3f} | "
                         f"{s.cpu_utilisation_per_core:.3f} | {s.latency.p50_ms:.2f} | {s.latency.p99_ms:.2f} | "
                         f"{_num(s.power_w)} | {_num(s.energy_j_per_click)} |")
    sized = [t for t in report.targets if t.files]
    if sized:
        lines += ["", "## Artifact sizes (from the manifest)", "", "| target | file role | MiB |", "|---|---|---:|"]
        for t in sized:
            for role, size in t.files.items():
                lines.append(f"| {t.label} | {role} | {size / 2**20:.2f} |")
            lines.append(f"| {t.label} | **total** | {sum(t.files.values()) / 2**20:.2f} |")
    lines += ["", "Notes: CPU time counts every thread of the worker (runtime thread pools that spin count too). "
              "Peak RSS is VmHWM where /proc exists (ru_maxrss otherwise) and includes the Python interpreter and "
              "numpy; 'RSS before runtime' is that floor. On Linux ru_maxrss also carries the spawning parent's "
              "peak across exec, so it is shown but not used. "
              "Energy counters are machine-wide package counters.", "", "![latency](latency.png)", ""]
    return "\n".join(lines)


def write_bench_report(report: BenchReport, out_dir: str | Path) -> dict[str, Path]:
    """Write bench.json, report.md and latency.png into `out_dir` (created); return kind → path."""
    out = Path(out_dir)
    return {
        "json": write_json_atomic(out / "bench.json", report.to_json()),
        "report": write_text_atomic(out / "report.md", _markdown(report)),
        "chart": write_bytes_atomic(out / "latency.png", plot_latency(report)),
    }
