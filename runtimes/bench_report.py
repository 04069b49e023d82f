"""`edgeclick bench`'s report files: bench.json, report.md (Markdown tables), latency.png (p50/p99 bars) and
power.png (session wall time against CPU-seconds per power profile, idle and under the standard load).

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

from .bench import RATIO_METRICS, SESSION_CLICKS, BenchReport, Latency, RunResult
from .load import IDLE
from .power import get_profile


def _num(value: float | str | None, fmt: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):  # "unavailable: <reason>": the reason is stated once above the tables
        return "n/a"
    return format(value, fmt)


def plot_latency(report: BenchReport) -> bytes:
    """PNG: p50 bars (p99 as a whisker) of encoder and decoder latency per target and thread count."""
    from matplotlib.figure import Figure

    # One group of bars per (thread count, profile) measured idle, in the order run.
    groups = list(dict.fromkeys((r.threads, r.power) for r in report.results if r.load == IDLE))
    several = len({p for _, p in groups}) > 1
    labels = [t.label for t in report.targets]
    fig = Figure(figsize=(max(7.0, 2.2 * len(groups) * max(1, len(labels)) / 2 + 3), 4.2), dpi=100)
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(groups))
    graphs: tuple[tuple[str, Callable[[RunResult], Latency], str], ...] = (
        (contract.ENCODER, lambda r: r.encoder, "per image"), (contract.DECODER, lambda r: r.decoder, "per click"))
    for ax, (graph, latency, unit) in zip(axes, graphs, strict=True):
        for j, label in enumerate(labels):
            p50, p99 = [], []
            for n, power in groups:
                r = report.result(label, n, power, IDLE)
                p50.append(latency(r).p50_ms if r else math.nan)
                p99.append(latency(r).p99_ms if r else math.nan)
            # Plain float lists: matplotlib's errorbar warns on numpy arrays of length 1.
            whisker = [0.0 if math.isnan(b - a) else float(b - a) for a, b in zip(p50, p99, strict=True)]
            ax.bar(x + (j - (len(labels) - 1) / 2) * width, p50, width, label=label,
                   yerr=[[0.0] * len(p50), whisker], capsize=3)
        ax.set_xticks(x, [f"{n} thread{'s' if n > 1 else ''}" + (f"\n{p}" if several else "") for n, p in groups])
        ax.set_ylabel("ms (bar p50, whisker p99)")
        ax.set_title(f"{graph} ({unit})")
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


PROFILE_COLOURS = {"latency": "tab:red", "efficient": "tab:green", "shared": "tab:blue"}


def plot_power(report: BenchReport) -> bytes:
    """PNG: per target, session wall time (1 image + SESSION_CLICKS clicks, ms) against its CPU-seconds, one
    colour per power profile; filled = idle, hollow = under the standard background load. Down and left
    is better; a point right of the CPU = wall line burns more than one core."""
    from matplotlib.figure import Figure

    labels = [t.label for t in report.targets if any(r.target == t.label for r in report.results)]
    cols = min(3, max(1, len(labels)))
    rows = (len(labels) + cols - 1) // cols
    fig = Figure(figsize=(4.6 * cols, 3.9 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, label in zip(axes, labels):
        top = 0.0
        for r in (r for r in report.results if r.target == label and r.session_cpu_s is not None):
            colour = PROFILE_COLOURS.get(r.power, "tab:gray")
            cpu_s, wall = r.session_cpu_s, r.session_ms
            assert cpu_s is not None
            top = max(top, cpu_s * 1e3, wall)
            ax.scatter([cpu_s], [wall], s=55, color=colour if r.load == IDLE else "none", edgecolors=colour,
                       linewidths=1.6, label=f"{r.power}, {r.load}" + (f", {r.threads} thr" if report.config.threads else ""))
        ax.plot([0, top / 1e3 * 1.05], [0, top * 1.05], color="0.7", lw=0.8, ls="--", label="CPU-s = wall")
        ax.set_xlabel(f"CPU-seconds per session (1 image + {SESSION_CLICKS} clicks)")
        ax.set_ylabel("session wall time (ms)")
        ax.set_title(label, fontsize=9)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return png_bytes(fig)


def power_markdown(report: BenchReport) -> str:
    """The power-profile tables: per worker, wall and CPU ms per image and per click and the session; then
    loaded / idle ratios of back-to-back workers."""
    lines = [f"Session = 1 image + {SESSION_CLICKS} clicks (encoder p50 + {SESSION_CLICKS} × decoder p50; CPU: "
             f"CPU per image + {SESSION_CLICKS} × CPU per click). CPU counts every thread of the worker process, "
             "spinning ones included. Loaded = the standard background load: one busy process per other core, "
             "started before the worker and stopped after it.", "",
             "| target | profile | load | threads enc/dec | enc ms/image | CPU ms/image | dec ms/click | CPU ms/click "
             "| CPU/wall per click | session ms | session CPU ms | J/click |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report.results:
        by_graph = r.knobs.get("threads_by_graph") or {}
        threads = "/".join(str(v) for v in by_graph.values()) if by_graph else str(r.threads)
        load = r.load if r.load == IDLE else f"{r.load} ({r.background_processes} hog{'s' if r.background_processes != 1 else ''})"
        cpu_image = _num(None if r.cpu_s_per_image is None else r.cpu_s_per_image * 1e3, ".1f")
        session_cpu = _num(None if r.session_cpu_s is None else r.session_cpu_s * 1e3, ".0f")
        lines.append(f"| {r.target} | {r.power} | {load} | {threads} | {r.encoder.p50_ms:.1f} | {cpu_image} | "
                     f"{r.decoder.p50_ms:.2f} | {r.cpu_s_per_click * 1e3:.2f} | {r.cpu_s_per_click * 1e3 / r.decoder.mean_ms:.2f} | "
                     f"{r.session_ms:.0f} | {session_cpu} | {_num(r.energy_j_per_click)} |")
    ratios = report.load_ratios()
    if ratios:
        lines += ["", "Loaded / idle (back-to-back workers):", "",
                  "| target | profile | threads | session idle ms | session loaded ms | loaded / idle | CPU/wall per click idle | loaded |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in ratios:
            lines.append(f"| {row['target']} | {row['power']} | {row['threads']} | {row['session_idle_ms']:.0f} | "
                         f"{row['session_loaded_ms']:.0f} | {row['session_loaded_over_idle']:.2f} | "
                         f"{row['cpu_over_wall_idle']:.2f} | {row['cpu_over_wall_loaded']:.2f} |")
    lines += ["", "Profiles' knobs (runtimes/power.py), on this machine:", ""]
    for name in report.config.powers:
        d = get_profile(name).describe(report.machine.get("cores"))
        lines.append(f"- **{name}**: {d['summary']}. onnxruntime threads {d['ort_threads']}, config {d['ort_config']}; "
                     f"torch {d['torch_threads']} thread(s), OMP_WAIT_POLICY {d['omp_wait_policy'] or 'unset (runtime default)'}; "
                     f"browser WASM threads {d['wasm_threads']}.")
    return "\n".join(lines)


def _markdown(report: BenchReport) -> str:
    m, c = report.machine, report.config
    lines = [
        "# Runtime benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores available, {m['platform']}, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        f"Load average (1, 5, 15 min) at the end: {', '.join(f'{v:.2f}' for v in m['loadavg'] or []) or 'unknown'}.",
        f"Settings: {c.warmup} warm-up + {c.runs} timed runs per graph; threads {list(c.threads) or 'each profile its own'}; "
        f"power profiles {', '.join(c.powers)}; load {', '.join(c.loads)}; sustained run "
        f"{c.sustain_seconds:g} s at {c.click_rate:g} clicks/s (largest thread count, idle). Energy: {report.energy}.",
        "Each row is a fresh worker process; inputs are a synthetic image and seeded click rows at the model size.",
        "",
        "## Latency (ms) and CPU cost",
        "",
        "| target | profile | load | threads | enc p50 | enc p90 | enc p99 | dec p50 | dec p90 | dec p99 | CPU-s/click | clicks/CPU-s | J/click |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        th = f"{r.threads}" + ("" if r.threads_applied else " (not applied)")
        lines.append(f"| {r.target} | {r.power} | {r.load} | {th} | {r.encoder.p50_ms:.1f} | {r.encoder.p90_ms:.1f} | {r.encoder.p99_ms:.1f} "
                     f"| {r.decoder.p50_ms:.2f} | {r.decoder.p90_ms:.2f} | {r.decoder.p99_ms:.2f} | {r.cpu_s_per_click:.4f} "
                     f"| {r.clicks_per_cpu_s:.1f} | {_num(r.energy_j_per_click)} |")
    lines += ["", "## Cold start (s) and memory (MiB)", "",
              "| target | profile | load | threads | import | load | 1st encoder | 1st decoder | total | spawn → 1st mask | peak RSS | ru_maxrss | RSS before runtime | torch in process | load avg 1m |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in report.results:
        k = r.cold
        lines.append(f"| {r.target} | {r.power} | {r.load} | {r.threads} | {k.import_s:.2f} | {k.load_s:.2f} | {k.first_encoder_s:.2f} | "
                     f"{k.first_decoder_s:.3f} | {k.total_s:.2f} | {k.process_to_first_mask_s:.2f} | {r.peak_rss_mb:.0f} | "
                     f"{r.ru_maxrss_mb:.0f} | {_num(r.baseline_rss_mb, '.0f')} | {'yes' if r.torch_in_process else 'no'} | "
                     f"{_num(r.load_1m, '.2f')} |")
    ratios = report.ratios()
    if ratios:
        lines += ["", "## Ratios to the PyTorch anchor (backend / torch; < 1 is better)", "",
                  "| target | anchor | profile | load | threads | " + " | ".join(RATIO_METRICS) + " |",
                  "|---|---|---|---|---:|" + "---:|" * len(RATIO_METRICS)]
        for row in ratios:
            lines.append(f"| {row['target']} | {row['anchor']} | {row['power']} | {row['load']} | {row['threads']} | "
                         + " | ".join(_num(row[k], ".2f") for k in RATIO_METRICS) + " |")
    sustained = [r for r in report.results if r.sustained is not None]
    if sustained:
        lines += ["", "## Sustained click rate", "",
                  "| target | profile | threads | target rate | achieved | clicks | missed deadlines | max lateness ms | CPU cores busy | CPU per core | dec p50 ms | dec p99 ms | W | J/click |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sustained:
            s = r.sustained
            assert s is not None
            lines.append(f"| {r.target} | {r.power} | {r.threads} | {s.target_rate:g}/s | {s.achieved_rate:.2f}/s | {s.clicks} | "
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
    lines += ["", "## Power profiles: wall and CPU time, idle and under load", "", power_markdown(report), "",
              "![session time against CPU-seconds per profile](power.png)"]
    lines += ["", "Notes: CPU time counts every thread of the worker (runtime thread pools that spin count too). "
              "Peak RSS is VmHWM where /proc exists (ru_maxrss otherwise) and includes the Python interpreter and "
              "numpy; 'RSS before runtime' is that floor. On Linux ru_maxrss also carries the spawning parent's "
              "peak across exec, so it is shown but not used. "
              "Energy counters are machine-wide package counters.", "", "![latency](latency.png)", ""]
    return "\n".join(lines)


def write_bench_report(report: BenchReport, out_dir: str | Path) -> dict[str, Path]:
    """Write bench.json, report.md, latency.png and power.png into `out_dir` (created, each file atomically);
    return kind → path."""
    out = Path(out_dir)
    return {
        "json": write_json_atomic(out / "bench.json", report.to_json()),
        "report": write_text_atomic(out / "report.md", _markdown(report)),
        "chart": write_bytes_atomic(out / "latency.png", plot_latency(report)),
        "power_chart": write_bytes_atomic(out / "power.png", plot_power(report)),
    }
