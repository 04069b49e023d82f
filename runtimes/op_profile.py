"""Where a graph's time goes: onnxruntime's profiler summed by operator type and by node, per run.

    python -m edgeclick.runtimes.op_profile ARTIFACT_DIR [ARTIFACT_DIR ...] [--graph decoder] [--threads 1] [--runs 30]

Each artifact's sessions are opened with profiling on (runtimes/ort.py `profile_prefix`), the encoder runs
once on the bench image, then the graph runs `runs` times on the bench's click rows (decoder) or image
(encoder). Several artifacts are run interleaved, call by call, so background load hits them alike and
their ratio holds on a shared machine. Printed: p50 wall time per run, kernel time per run by operator
type and the slowest nodes; `--json OUT` writes the same numbers.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeclick import contract


def summarise(events: list[dict[str, Any]], runs: int) -> dict[str, Any]:
    """Kernel time per run (ms) by operator type and by node from onnxruntime profile events."""
    by_op: dict[str, float] = collections.defaultdict(float)
    by_node: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            by_op[e["args"].get("op_name", "?")] += e["dur"] / 1e3 / runs
            by_node[e["name"][: -len("_kernel_time")]] += e["dur"] / 1e3 / runs
    ordered = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1]))  # noqa: E731
    return {"kernel_ms": sum(by_op.values()), "by_op_ms": ordered(by_op), "by_node_ms": ordered(by_node)}


def profile(artifacts: list[Path], graph: str, threads: int, runs: int, warmup: int = 3) -> list[dict[str, Any]]:
    """Profile `graph` of every artifact (same input size), interleaved; one summary per artifact."""
    from .bench import bench_image, click_rows_sequence
    from .ort import OrtBackend

    with tempfile.TemporaryDirectory(prefix="edgeclick-profile-") as tmp:
        backends = [OrtBackend(a, threads=threads, profile_prefix=str(Path(tmp) / f"p{i}")) for i, a in enumerate(artifacts)]
        size = backends[0].input_size
        if size is None or any(b.input_size != size for b in backends):
            raise ValueError("profile artifacts of one fixed input size (export without --dynamic)")
        image = bench_image(size)
        features = [b.run(contract.ENCODER, {contract.IMAGE: image}) for b in backends]
        rows = click_rows_sequence(size, runs + warmup)
        prev = np.zeros((1, 1, *size), dtype=np.float32)
        walls: list[list[float]] = [[] for _ in backends]
        for i in range(runs + warmup):
            for k, b in enumerate(backends):
                feeds = ({contract.IMAGE: image} if graph == contract.ENCODER
                         else {**features[k], contract.CLICKS: rows[i], contract.PREV_MASK: prev})
                t = time.perf_counter()
                b.run(graph, feeds)
                if i >= warmup:
                    walls[k].append(time.perf_counter() - t)
        out = []
        for k, (artifact, b) in enumerate(zip(artifacts, backends, strict=True)):
            path = b.end_profiling()[graph]
            events = json.loads(Path(path).read_text())
            # The encoder ran once more (features) and every graph ran `warmup` untimed times: count them all.
            calls = runs + warmup + (1 if graph == contract.ENCODER else 0)
            out.append({"artifact": str(artifact), "graph": graph, "threads": threads, "runs": runs,
                        "p50_ms": float(np.median(walls[k]) * 1e3), "min_ms": float(min(walls[k]) * 1e3),
                        "load_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                        **summarise(events, calls)})
    return out


def _print(results: list[dict[str, Any]], top: int) -> None:
    base = results[0]["p50_ms"]
    for r in results:
        print(f"{r['artifact']} {r['graph']} {r['threads']} thread(s): p50 {r['p50_ms']:.2f} ms (min {r['min_ms']:.2f}, "
              f"{r['p50_ms'] / base:.2f}x the first), kernels {r['kernel_ms']:.2f} ms/run")
        for op, ms in list(r["by_op_ms"].items())[:top]:
            print(f"    {op:28s} {ms:7.2f} ms")
        for node, ms in list(r["by_node_ms"].items())[:top]:
            print(f"      {node[:64]:64s} {ms:7.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT_DIR")
    parser.add_argument("--graph", default=contract.DECODER, choices=(contract.ENCODER, contract.DECODER))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--top", type=int, default=10, help="operator types and nodes printed per artifact")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    results = profile(args.artifacts, args.graph, args.threads, args.runs)
    _print(results, args.top)
    if args.json:
        from edgeclick.io import write_json_atomic

        write_json_atomic(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
