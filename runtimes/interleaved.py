"""Session time of several artifacts, interleaved session by session, so their ratio holds on a busy CPU.

    python -m edgeclick.runtimes.interleaved LATE_ARTIFACT EARLY_ARTIFACT [--threads 1] [--rounds 5] [--clicks 5]
        [--out reports/bench/interleaved]

`edgeclick bench` times each artifact in its own worker process, one after another; on a machine that other
work shares, the load changes between workers, and the ratio of two rows can be off by 2x (measured here:
the late encoder timed at 2.3x the early model's whole per-click graph in one bench run, at 0.64x when
both ran interleaved in one process). This tool opens every artifact in one process with the same thread
count and runs one session (1 image + `clicks` clicks: encoder once, decoder per click, the previous mask
fed back) of each artifact in turn, round after round. Background load then hits all artifacts alike.

Reported per artifact: the session's wall ms (p50 over rounds), its encoder and per-click decoder wall ms,
the process CPU ms per session (all threads); and per round the ratio of every artifact's session to the
first one's, summarised by its median (the ratio is what carries across machines; the ms do not).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeclick import contract


def _session(backend: Any, image: np.ndarray, rows: Sequence[np.ndarray]) -> tuple[float, list[float], float]:
    """One session: (encoder s, decoder s per click, process CPU s of the whole session)."""
    size = image.shape[1:3]
    cpu0 = time.process_time()
    t = time.perf_counter()
    features = backend.run(contract.ENCODER, {contract.IMAGE: image})
    encoder_s = time.perf_counter() - t
    prev = np.zeros((1, 1, *size), dtype=np.float32)
    decoder_s: list[float] = []
    for clicks in rows:
        t = time.perf_counter()
        out = backend.run(contract.DECODER, {**features, contract.CLICKS: clicks, contract.PREV_MASK: prev})
        decoder_s.append(time.perf_counter() - t)
        prev = (np.asarray(out[contract.LOGITS]) > 0).astype(np.float32)
    return encoder_s, decoder_s, time.process_time() - cpu0


def measure(artifacts: Sequence[Path], threads: int = 1, rounds: int = 5, clicks: int = 5,
            warmup: int = 1) -> dict[str, Any]:
    """Interleaved sessions of `artifacts` (one fixed input size); the first artifact is the anchor.

    Returns a JSON-ready dict: settings, one entry per artifact (p50 ms of session / encoder / decoder per
    click, CPU ms per session) and `ratio_to_first` (median over rounds of session / the first's session).
    """
    from .artifact import open_backend
    from .bench import bench_image, click_rows_sequence

    if rounds < 1 or clicks < 1:
        raise ValueError("--rounds and --clicks must be at least 1")
    backends = [open_backend(a, threads=threads) for a in artifacts]
    sizes = {tuple(b.input_size) if b.input_size else None for b in backends}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"interleave artifacts of one fixed input size (got {sorted(map(str, sizes))}); "
                         "export them with the same --size and without --dynamic")
    size = next(iter(sizes))
    image = bench_image(size)  # type: ignore[arg-type]
    rows = click_rows_sequence(size, clicks)  # type: ignore[arg-type]
    sessions: list[list[tuple[float, list[float], float]]] = [[] for _ in backends]
    for r in range(warmup + rounds):
        for k, b in enumerate(backends):
            result = _session(b, image, rows)
            if r >= warmup:
                sessions[k].append(result)
    totals = [[e + sum(d) for e, d, _ in s] for s in sessions]
    out: dict[str, Any] = {"settings": {"threads": threads, "rounds": rounds, "clicks_per_session": clicks, "warmup": warmup,
                                        "size": list(size), "cpus": os.cpu_count(),
                                        "load_1m_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
                           "artifacts": []}
    for k, artifact in enumerate(artifacts):
        ratios = [t / t0 for t, t0 in zip(totals[k], totals[0], strict=True)]
        out["artifacts"].append({
            "artifact": str(artifact),
            "session_ms": float(np.median(totals[k]) * 1e3),
            "encoder_ms": float(np.median([e for e, _, _ in sessions[k]]) * 1e3),
            "decoder_ms_per_click": float(np.median([x for _, d, _ in sessions[k] for x in d]) * 1e3),
            "cpu_ms_per_session": float(np.median([c for _, _, c in sessions[k]]) * 1e3),
            "ratio_to_first": float(np.median(ratios)),
            "ratio_to_first_range": [float(min(ratios)), float(max(ratios))],
        })
    return out


def render(result: dict[str, Any]) -> str:
    """The Markdown table of `measure`'s result."""
    s = result["settings"]
    load = f", 1-minute load at the end {s['load_1m_end']:.2f}" if s["load_1m_end"] is not None else ""
    lines = [f"Interleaved sessions (1 image + {s['clicks_per_session']} clicks), {s['size'][0]}x{s['size'][1]}, {s['threads']} thread(s), "
             f"{s['rounds']} rounds after {s['warmup']} warm-up, {s['cpus']} CPUs{load}.", "",
             "| artifact | session ms | encoder ms | decoder ms/click | CPU ms/session | session / first (median, range) |",
             "|---|---:|---:|---:|---:|---|"]
    for a in result["artifacts"]:
        lo, hi = a["ratio_to_first_range"]
        lines.append(f"| {a['artifact']} | {a['session_ms']:.0f} | {a['encoder_ms']:.0f} | "
                     f"{a['decoder_ms_per_click']:.1f} | {a['cpu_ms_per_session']:.0f} | "
                     f"{a['ratio_to_first']:.3f} ({lo:.3f}–{hi:.3f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT_DIR", help="the first is the anchor")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write interleaved.json / interleaved.md here")
    args = parser.parse_args(argv)
    try:
        result = measure(args.artifacts, args.threads, args.rounds, args.clicks, args.warmup)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render(result)
    print(text, end="")
    if args.out:
        from edgeclick.io import write_json_atomic, write_text_atomic

        write_json_atomic(args.out / "interleaved.json", result)
        write_text_atomic(args.out / "interleaved.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
