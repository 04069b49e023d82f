"""`edgeclick web`: serve the browser runtime for one artifact, or drive it headless for bench / parity.

    edgeclick web ARTIFACT_DIR [--host 127.0.0.1] [--port 8000] [--reference BUNDLE] [--power PROFILE]
    edgeclick web ARTIFACT_DIR --bench OUT.json [--threads 1,2] [--ep wasm,webgpu] [--runs 20] [--sustain-seconds 10]
    edgeclick web ARTIFACT_DIR --parity BUNDLE [--out OUT.json]

--power picks the page's power profile (runtimes/power.py): its WASM thread count (of the browser's cores)
and onnxruntime session config entries; --threads, where given, overrides the count.

The bundle comes from `edgeclick parity ARTIFACT_DIR --data DIR --web-reference BUNDLE`.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

from edgeclick.io import write_json_atomic

from .power import add_power_argument, get_profile


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@contextmanager
def _browser(browser: Any | None) -> Iterator[Any]:
    """The given browser, or a new headless Chromium for the duration (Playwright's sync API allows one
    running instance per thread, so callers that hold one pass it in)."""
    if browser is not None:
        yield browser
        return
    from .web_browser import headless_browser

    with headless_browser() as launched:
        yield launched


def run_web_bench(artifact: Path, out: Path, threads: list[int | None], eps: list[str], runs: int, warmup: int,
                  sustain_seconds: float, click_rate: float, browser: Any | None = None,
                  power: str | None = None) -> dict[str, Any]:
    """Bench mode in headless Chromium, one fresh browser context per (ep, threads); writes and returns the JSON.

    threads: WASM thread counts; None in the list = the power profile's count for the browser's cores.
    browser: a running Playwright Browser to reuse (tests), else one is launched and closed here.
    """
    from .web import BackgroundServer, WebSite
    from .web_browser import chromium_path, run_page_mode

    results = []
    profile = get_profile(power).name
    with BackgroundServer(WebSite.for_artifact(artifact, power=profile)) as server, _browser(browser) as browser:
        for ep in eps:
            for n in threads:
                query = urlencode({"mode": "bench", "ep": ep, "power": profile, "runs": runs, "warmup": warmup,
                                   "sustain": sustain_seconds, "rate": click_rate, **({"threads": n} if n else {})})
                print(f"web bench: {ep} {n or profile} thread(s)…", file=sys.stderr, flush=True)
                result = run_page_mode(browser, f"{server.url}/?{query}")
                result["requested"] = {"ep": ep, "threads": n, "power": profile}
                results.append(result)
                print(f"  {result['backend']} {result['threads']} thread(s): encoder p50 {result['encoder_latency']['p50_ms']:.1f} ms, "
                      f"decoder p50/p90/p99 {result['decoder_latency']['p50_ms']:.2f}/{result['decoder_latency']['p90_ms']:.2f}/"
                      f"{result['decoder_latency']['p99_ms']:.2f} ms, page→first mask {result['cold']['page_to_first_mask_ms']:.0f} ms",
                      file=sys.stderr, flush=True)
        version = browser.version
    report = {"artifact": str(artifact), "browser": f"chromium {version} ({chromium_path()}, headless)", "results": results}
    write_json_atomic(out, report)
    return report


def run_web_parity(artifact: Path, bundle: Path, out: Path | None, threads: int | None, ep: str,
                   browser: Any | None = None, power: str | None = None) -> dict[str, Any]:
    """Parity mode in headless Chromium over a bundle (threads None: the power profile's); writes (when
    `out`) and returns the JSON."""
    from .web import BackgroundServer, WebSite
    from .web_browser import run_page_mode

    profile = get_profile(power).name
    query = {"mode": "parity", "ep": ep, "power": profile, **({"threads": threads} if threads else {})}
    with BackgroundServer(WebSite.for_artifact(artifact, reference_dir=bundle, power=profile)) as server, \
            _browser(browser) as browser:
        result = run_page_mode(browser, f"{server.url}/?{urlencode(query)}")
    if out is not None:
        write_json_atomic(out, result)
    return result


def run_web_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick web`: serve (default), or --bench / --parity headless (exit 1 on a failed gate)."""
    from .web import WebSetupError, WebSite, serve

    try:
        if args.bench is not None:
            threads: list[int | None] = [int(t) for t in _list(args.threads)] if args.threads else [None]
            report = run_web_bench(args.artifact, args.bench, threads, _list(args.ep), args.runs, args.warmup,
                                   args.sustain_seconds, args.click_rate, power=args.power)
            print(f"wrote {args.bench} ({len(report['results'])} runs)")
            return 0
        if args.parity is not None:
            count = int(_list(args.threads)[-1]) if args.threads else None
            result = run_web_parity(args.artifact, args.parity, args.out, count, _list(args.ep)[0], power=args.power)
            s = result["summary"]
            print(f"web parity {result['artifact']} ({result['precision']}, {result['backend']} {result['threads']} thread(s)): "
                  f"{'PASS' if result['passed'] else 'FAIL'} — mean mask IoU {s['mean_mask_iou']:.6f}, min {s['min_mask_iou']:.6f}, "
                  f"max |Δlogit| {s['max_abs_logit']:.3g} over {s['n_clicks']} clicks")
            for gate in result["gates"]:
                if not gate["passed"]:
                    print(f"  gate {gate['name']} failed: {gate['value']} (threshold {gate['threshold']}) {gate['where']}", file=sys.stderr)
            if args.out:
                print(f"wrote {args.out}")
            return 0 if result["passed"] else 1
        site = WebSite.for_artifact(args.artifact, reference_dir=args.reference, power=args.power)
        return serve(site, args.host, args.port)
    except WebSetupError as exc:
        print(f"edgeclick web: error: {exc}", file=sys.stderr)
        return 2


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the `web` subcommand."""
    p = subparsers.add_parser("web", help="serve the browser runtime (onnxruntime-web page) for an ONNX artifact; "
                                          "--bench / --parity run it in headless Chromium")
    p.add_argument("artifact", type=Path, metavar="ARTIFACT_DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback; 0.0.0.0 to reach it from a phone)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--reference", type=Path, default=None, help="also serve a parity bundle (open /?mode=parity)")
    p.add_argument("--bench", type=Path, default=None, metavar="OUT.json", help="run bench mode headless and write the JSON")
    p.add_argument("--parity", type=Path, default=None, metavar="BUNDLE", help="run parity mode headless over a bundle")
    p.add_argument("--out", type=Path, default=None, help="--parity: write the result JSON here")
    p.add_argument("--threads", default=None, help="WASM thread counts for --bench, e.g. 1,2 (--parity uses the last); "
                                                  "default: the power profile's count for the browser's cores")
    add_power_argument(p)
    p.add_argument("--ep", default="wasm", help="execution providers for --bench, e.g. wasm,webgpu")
    p.add_argument("--runs", type=int, default=20, help="--bench: timed runs per graph")
    p.add_argument("--warmup", type=int, default=3, help="--bench: untimed runs per graph")
    p.add_argument("--sustain-seconds", type=float, default=10.0, help="--bench: fixed-rate run length (0: skip)")
    p.add_argument("--click-rate", type=float, default=5.0, help="--bench: clicks per second of the fixed-rate run")
    p.set_defaults(func=run_web_cli)
