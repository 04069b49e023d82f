"""The "which configuration should I deploy" table from one deploy-table bench run (Markdown, JSON, PNG).

Per artifact (fusion × adapter × precision) and per peer: encoder p50 (ms per image) and decoder p50 (ms per
click), each at the thread count that was fastest for that graph in the sweep (a Session's backend takes
per-graph thread counts, runtimes/ort.py), a session of 1 image + 5 clicks from those, the artifact's files
(MB, 10⁶ bytes) and the worker's peak RSS (MiB, the largest over the sweep). A second table gives the whole
thread sweep per graph, so the gain of each extra thread is visible.
"""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from edgeclick import contract
from edgeclick.io import write_bytes_atomic, write_json_atomic, write_text_atomic

from edgeclick.runtimes.side_by_side import SESSION_CLICKS, session_ms

from edgeclick.runtimes.bench_report import plot_power, power_markdown
from edgeclick.runtimes.load import IDLE

from .deploy_accuracy import recommend

NOC_MARGIN = 1.0  # clicks: how much NoC@90 the recommendation gives up for speed (recommend's default)


def row_accuracy(cell: tuple[str, bool, str, str] | None,
                 accuracy: dict[tuple[str, bool, str, str], Any]) -> dict[str, Any] | None:
    """The gate numbers of a (fusion, adapter, precision, runtime) cell as a JSON-ready dict, or None."""
    return dataclasses.asdict(accuracy[cell]) if cell in accuracy else None


def provenance_line(command: str, day: str, machine: dict[str, Any], runs: int, loads: Sequence[float], note: str = "") -> str:
    """The line above the table in a doc: what measured it, when, where, and the load it ran under."""
    return (f"Measured by `{command}` on {day}{note}: {machine['cpu']}, {machine['cores']} cores, onnxruntime "
            f"{machine['versions'].get('onnxruntime')}, {runs} timed runs per graph (p50), 1-minute load average "
            f"{loads[0] if loads else '?'}–{loads[-1] if loads else '?'} while the workers ran.")


def deploy_rows(report: Any, entries: Sequence[Any],
                accuracy: dict[tuple[str, bool, str, str], Any] | None = None) -> list[dict[str, Any]]:
    """One row per target in the report's order (entries give the configuration of edgeclick artifacts;
    `accuracy` the gate numbers of configurations with trained weights, calibration/deploy_accuracy.py)."""
    accuracy = accuracy or {}
    by_label = {e.label: e for e in entries}
    rows = []
    # The table compares configurations under one condition: the first power profile, idle (the power
    # profiles and the loaded runs have their own section, bench_report.power_markdown).
    power = report.config.powers[0]
    for t in report.targets:
        results = [r for r in report.results if r.target == t.label and r.power == power and r.load == IDLE]
        if not results:
            continue
        enc = min(results, key=lambda r: r.encoder.p50_ms)
        dec = min(results, key=lambda r: r.decoder.p50_ms)
        e = by_label.get(t.label)
        cell = (e.fusion, e.adapter, e.precision, e.runtime) if e else None
        rows.append({
            "label": t.label, "kind": "edgeclick" if e else "peer",
            "fusion": e.fusion if e else None, "adapter": e.adapter if e else None,
            "precision": e.precision if e else "fp32", "runtime": e.runtime if e else "onnxruntime",
            "accuracy": row_accuracy(cell, accuracy),
            "encoder_ms": enc.encoder.p50_ms, "encoder_threads": enc.threads,
            "decoder_ms": dec.decoder.p50_ms, "decoder_threads": dec.threads,
            "session_ms": session_ms(enc.encoder.p50_ms, dec.decoder.p50_ms),
            "size_mb": sum(t.files.values()) / 1e6 if t.files else None,
            "peak_rss_mib": max(r.peak_rss_mb for r in results),
            "sweep": {str(r.threads): {"encoder_ms": r.encoder.p50_ms, "decoder_ms": r.decoder.p50_ms,
                                       "encoder_p90_ms": r.encoder.p90_ms, "decoder_p90_ms": r.decoder.p90_ms,
                                       "peak_rss_mib": r.peak_rss_mb, "load_1m": r.load_1m} for r in results},
        })
    return rows


def accuracy_cells(row: dict[str, Any]) -> tuple[str, str]:
    """(NoC@90, mIoU@5) cells of a row: the gate's numbers, "refused" marked; a row without any says why."""
    acc = row.get("accuracy")
    if row["kind"] != "edgeclick":
        return "-", "-"
    if acc is None:
        return "no trained weights", "-"
    refused = "" if acc["passed"] else " (refused by the gate)"
    miou = "-" if acc["miou5"] is None else f"{acc['miou5']:.3f}"
    return f"{acc['noc90']:.2f}{refused}", miou


def deploy_table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The main table: one line per configuration × precision, then the peers; the recommendation below it."""
    lines = [f"| configuration | precision | encoder ms/image | decoder ms/click | session 1 image + {SESSION_CLICKS} clicks ms "
             "| files MB | peak RSS MiB | NoC@90 | mIoU@5 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = r["label"].split(" · ")[0] if r["kind"] == "edgeclick" else f"**{r['label']}**"
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.1f}"
        noc, miou = accuracy_cells(r)
        lines.append(f"| {name} | {r['precision']} | {r['encoder_ms']:.0f} ({r['encoder_threads']} thr) "
                     f"| {r['decoder_ms']:.1f} ({r['decoder_threads']} thr) | {r['session_ms']:.0f} | {size} "
                     f"| {r['peak_rss_mib']:.0f} | {noc} | {miou} |")
    return "\n".join(lines + ["", recommendation_text(rows)])


def recommendation_text(rows: Sequence[dict[str, Any]]) -> str:
    """One paragraph: where the accuracy comes from, and the row chosen by accuracy and speed together."""
    judged = [r["accuracy"] for r in rows if r.get("accuracy")]
    if not judged:
        return ("Accuracy: no configuration here has trained weights with a calibrate report (pass `--accuracy "
                "reports/calibration/NAME/calibration.json`), so no row can be recommended on accuracy.")
    sources = sorted({f"{Path(a['checkpoint']).name} on {Path(a['dataset']).name} at {a['size'][0]}×{a['size'][1]}"
                      for a in judged})
    pick = recommend(rows)
    head = ("Accuracy (NoC@90 on IoU, mean IoU after 5 clicks) is `edgeclick calibrate`'s gate, through the exported "
            f"and quantised graphs: {'; '.join(sources)}.")
    if pick is None:
        return head + " No row with accuracy passed the gate."
    return (head + f" **Recommended: {pick['label'].replace(' · ', ', ')}** — the fastest session "
            f"({pick['session_ms']:.0f} ms) among gate-passed rows within {NOC_MARGIN:g} click of the best NoC@90.")


def sweep_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Thread sweep: p50 per graph at every thread count and the ratio of the last to the first count."""
    counts = sorted({int(k) for r in rows for k in r["sweep"]})
    head = " | ".join(f"{n} thr" for n in counts)
    lines = [f"| target | graph | {head} | {counts[-1]} thr / {counts[0]} thr |", "|---|---|" + "---:|" * (len(counts) + 1)]
    for r in rows:
        for graph, key in ((contract.ENCODER, "encoder_ms"), (contract.DECODER, "decoder_ms")):
            values = [r["sweep"].get(str(n), {}).get(key) for n in counts]
            cells = " | ".join("-" if v is None else f"{v:.1f}" for v in values)
            ratio = (values[-1] / values[0]) if values[0] and values[-1] else math.nan
            lines.append(f"| {r['label']} | {graph} | {cells} | {ratio:.2f} |")
    return "\n".join(lines)


def plot_sessions(rows: Sequence[dict[str, Any]]) -> bytes:
    """PNG: session time (1 image + 5 clicks) per target, encoder and clicks stacked, log-free bars."""
    from matplotlib.figure import Figure

    from edgeclick.render import png_bytes

    fig = Figure(figsize=(9, 0.35 * len(rows) + 1.5), dpi=100)
    ax = fig.subplots()
    labels = [r["label"] for r in rows][::-1]
    enc = [r["encoder_ms"] for r in rows][::-1]
    clicks = [SESSION_CLICKS * r["decoder_ms"] for r in rows][::-1]
    ax.barh(labels, enc, label="encoder (1 image)")
    ax.barh(labels, clicks, left=enc, label=f"decoder ({SESSION_CLICKS} clicks)")
    ax.set_xlabel("ms, p50 at each graph's fastest thread count")
    ax.set_title(f"session of 1 image + {SESSION_CLICKS} clicks")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def write_deploy_report(report: Any, entries: Sequence[Any], out_dir: str | Path, *, model: str, command: str,
                        doc: str | Path | None = None,
                        accuracy: dict[tuple[str, bool, str, str], Any] | None = None) -> dict[str, Path]:
    """deploy.md (+ table.md, the table alone), deploy.json and sessions.png in `out_dir`; with `doc`, the
    table also replaces that Markdown file's deploy-table block (update_doc; docs/deploy.md). `accuracy`: the
    gate numbers of configurations with trained weights (calibration/deploy_accuracy.py)."""
    out = Path(out_dir)
    rows = deploy_rows(report, entries, accuracy)
    m, c = report.machine, report.config
    measured_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    loads = sorted({round(r.load_1m, 2) for r in report.results if r.load_1m is not None})
    table = deploy_table_markdown(rows)
    text = "\n".join([
        "# Which configuration to deploy", "",
        f"`{command}` — {model} at {report.targets[0].size[0]}×{report.targets[0].size[1]}, untrained weights (latency "
        "does not depend on them), onnxruntime CPU (rows marked ExecuTorch: executorch.runtime, XNNPACK), each artifact and thread count in a fresh worker process "
        f"({c.warmup} warm-up + {c.runs} timed runs per graph, p50).",
        f"Machine: {m['cpu']}, {m['cores']} cores, " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ". "
        f"1-minute load average while the workers ran: {loads[0] if loads else '?'}–{loads[-1] if loads else '?'} "
        "(a load above the thread count means other work shared the CPU: compare rows, not absolute times).", "",
        "Each graph at its fastest thread count of the sweep (in parentheses); session = encoder + "
        f"{SESSION_CLICKS} × decoder. int8enc: int8 encoder + fp32 decoder; int8dec: fp32 encoder + int8 decoder.", "",
        table, "", "## Thread sweep (p50 ms)", "", sweep_markdown(rows), "", "![sessions](sessions.png)", "",
        f"## Power profiles ({', '.join(c.powers)}; {', '.join(c.loads)})", "", power_markdown(report), "",
        "![session time against CPU-seconds per profile](power.png)", ""])
    files = {
        "report": write_text_atomic(out / "deploy.md", text),
        "table": write_text_atomic(out / "table.md", table + "\n"),
        "json": write_json_atomic(out / "deploy.json", {"command": command, "model": model, "rows": rows,
                                                        "measured_at": measured_at,
                                                        "bench": report.to_json()}),
        "chart": write_bytes_atomic(out / "sessions.png", plot_sessions(rows)),
        "power_chart": write_bytes_atomic(out / "power.png", plot_power(report)),
    }
    if doc is not None:
        files["doc"] = update_doc(doc, table, provenance_line(command, measured_at, m, c.runs, loads))
    return files


TABLE_START, TABLE_END = "<!-- deploy-table:start -->", "<!-- deploy-table:end -->"


def update_doc(doc: str | Path, table: str, provenance: str) -> Path:
    """Replace the text between TABLE_START and TABLE_END in the Markdown file `doc` with `provenance` and `table`.

    Raises:
        ValueError: the markers are missing (the message says which lines to add).
    """
    path = Path(doc)
    text = path.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"--doc {path}: no {TABLE_START} … {TABLE_END} block; add the two lines where the table goes")
    block = f"{TABLE_START}\n{provenance}\n\n{table}\n"
    return write_text_atomic(path, text[:start] + block + text[end:])


def rerender_with_accuracy(deploy_json: str | Path, accuracy: dict[tuple[str, bool, str, str], Any],
                           doc: str | Path | None = None) -> dict[str, Path]:
    """Add gate accuracy to the rows of an earlier `deploy-table` run and rewrite its table, without measuring.

    Timing a table takes long and so does calibrating a trained model; they need not wait for each other.
    Rewrites deploy.json (rows with accuracy), table.md, the table inside deploy.md, and with `doc` that
    file's deploy-table block (the measurement's provenance kept: its command, machine, runs and loads).

    Raises:
        ValueError: `deploy_json` is not a deploy.json written by `edgeclick deploy-table`.
    """
    path = Path(deploy_json)
    try:
        saved = json.loads(path.read_text())
        rows, bench = saved["rows"], saved["bench"]
        machine, config = bench["machine"], bench["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--rerender {path}: not a deploy.json of `edgeclick deploy-table` ({type(exc).__name__}: {exc}); "
                         "pass reports/deploy/deploy.json of a finished run") from None
    old_table = deploy_table_markdown(rows)
    for row in rows:
        if row["kind"] != "edgeclick":
            continue
        row["accuracy"] = row_accuracy((row["fusion"], row["adapter"], row["precision"], row.get("runtime", "onnxruntime")),
                                       accuracy)
    table = deploy_table_markdown(rows)
    out = path.parent
    files = {"json": write_json_atomic(path, {**saved, "rows": rows}),
             "table": write_text_atomic(out / "table.md", table + "\n")}
    report = out / "deploy.md"
    if report.is_file() and old_table in (text := report.read_text()):
        files["report"] = write_text_atomic(report, text.replace(old_table, table))
    if doc is not None:
        loads = sorted({round(s["load_1m"], 2) for r in rows for s in r.get("sweep", {}).values()
                        if s.get("load_1m") is not None})
        day = saved.get("measured_at") or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        files["doc"] = update_doc(doc, table, provenance_line(saved.get("command", "edgeclick deploy-table"), day, machine,
                                                              config["runs"], loads,
                                                              note=" (accuracy added from calibrate reports afterwards)"))
    return files
