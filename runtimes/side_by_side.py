"""One table per bench run: every target (edgeclick artifacts, the torch anchor, SAM-family peers) side by side.

    rows = side_by_side_rows(report)               # report: runtimes.bench.BenchReport
    write_side_by_side(report, "reports/bench/x")  # side_by_side.md + side_by_side.json

Columns, per target and thread count: encoder p50 (ms per image), decoder p50 (ms per click), a session of
1 image + 5 clicks (encoder p50 + 5 × decoder p50, ms), model files (MB, 10⁶ bytes), peak RSS of the worker
(MiB) and the session time relative to the fastest session at that thread count in the same run (ratios
hold up on a shared machine where absolute times drift).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeclick.io import write_json_atomic, write_text_atomic

from .bench import SESSION_CLICKS  # noqa: F401 - one home; re-exported for calibration/deploy_render.py


def session_ms(encoder_ms: float, decoder_ms: float, clicks: int = SESSION_CLICKS) -> float:
    """Wall time of one image + `clicks` clicks from per-graph p50s (ms)."""
    return encoder_ms + clicks * decoder_ms


def side_by_side_rows(report: Any) -> list[dict[str, Any]]:
    """One dict per (target, threads, power profile, load) in the report's order, with the columns of the
    module docstring; "× fastest" compares rows of the same thread count, profile and load."""
    targets = {t.label: t for t in report.targets}
    rows: list[dict[str, Any]] = []
    for r in report.results:
        t = targets[r.target]
        kind = "peer" if r.target.startswith("peer ") else ("torch" if t.anchor is None and t.kind == "torch" else "edgeclick")
        rows.append({"target": r.target, "kind": kind, "threads": r.threads, "power": r.power, "load": r.load,
                     "encoder_ms": r.encoder.p50_ms,
                     "decoder_ms": r.decoder.p50_ms, "session_ms": session_ms(r.encoder.p50_ms, r.decoder.p50_ms),
                     "size_mb": sum(t.files.values()) / 1e6 if t.files else None, "peak_rss_mib": r.peak_rss_mb,
                     "load_1m": r.load_1m})
    for key in {(row["threads"], row["power"], row["load"]) for row in rows}:
        same = [row for row in rows if (row["threads"], row["power"], row["load"]) == key]
        best = min(row["session_ms"] for row in same)
        for row in same:
            row["session_vs_best"] = row["session_ms"] / best
    return rows


def side_by_side_markdown(report: Any) -> str:
    """The table as Markdown (one line per target and thread count)."""
    lines = [f"| target | kind | profile | load | threads | encoder ms/image | decoder ms/click | session 1 image + {SESSION_CLICKS} clicks ms "
             "| × fastest session | files MB | peak RSS MiB |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in side_by_side_rows(report):
        size = "-" if row["size_mb"] is None else f"{row['size_mb']:.1f}"
        lines.append(f"| {row['target']} | {row['kind']} | {row['power']} | {row['load']} | {row['threads']} | {row['encoder_ms']:.1f} | {row['decoder_ms']:.2f} "
                     f"| {row['session_ms']:.0f} | {row['session_vs_best']:.2f} | {size} | {row['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def write_side_by_side(report: Any, out_dir: str | Path) -> dict[str, Path]:
    """side_by_side.md and side_by_side.json in `out_dir`; returns kind → path."""
    out = Path(out_dir)
    text = ("# Side by side\n\nSession = encoder p50 + " f"{SESSION_CLICKS} × decoder p50 (same run, same worker rules).\n\n"
            + side_by_side_markdown(report) + "\n")
    return {"side_by_side": write_text_atomic(out / "side_by_side.md", text),
            "side_by_side_json": write_json_atomic(out / "side_by_side.json", side_by_side_rows(report))}
