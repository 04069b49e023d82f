"""`edgeclick parity` and `edgeclick bench`: exported artifacts against their PyTorch source.

    edgeclick parity ARTIFACT_DIR [...] --data DIR [--checkpoint CKPT] [--samples 10] [--clicks 10] [--power P] [--out DIR]
    edgeclick bench ARTIFACT_DIR [...] [--checkpoint CKPT] [--warmup 3] [--runs 20] [--sustain-seconds 60]
                    [--click-rate 5] [--threads 1,2,all] [--power all] [--load idle,loaded] [--out DIR]

The reference is always an eager TorchBackend over the checkpoint the artifact was exported from (the
manifest's checkpoint path, or --checkpoint), checked against the manifest's sha256, at the artifact's
input size. This module is glue: the measuring lives in parity.py and bench.py.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeclick.args import arg_type, parse_size

from .artifact import resolve_source
from .power import POWER_HELP, add_power_argument, apply_process_env, get_profile, powers_arg

if TYPE_CHECKING:  # keep `edgeclick --help` free of torch / onnxruntime imports
    from edgeclick.data.sample import Sample

    from .backend import Backend


def open_artifact(artifact_dir: Path, power: str | None = None) -> "Backend":
    """The artifact's runtime backend under a power profile (a seam: tests swap it to wrap a backend)."""
    from .artifact import open_backend

    return open_backend(artifact_dir, power=power)


def load_samples(data: Path, fmt: str, count: int) -> list["Sample"]:
    """The first `count` decodable samples of the dataset in `data`.

    Raises:
        FileNotFoundError / ValueError: naming --data, when the folder is missing or holds no dataset.
    """
    from edgeclick.data.datasets import load_dataset

    if not Path(data).is_dir():
        raise FileNotFoundError(f"--data {data}: no dataset folder there; point --data at a dataset root such as "
                                "$EDGECLICK_DATA/grabcut (data_GT/ + boundary_GT/)")
    try:
        dataset = load_dataset(data, fmt)
    except ValueError as exc:
        raise ValueError(f"--data {data}: {exc}") from exc
    samples: list[Sample] = []
    for sample in dataset:
        if len(samples) == count:
            break
        samples.append(sample)
    if not samples:
        raise ValueError(f"--data {data}: the {dataset.format} dataset yielded no usable sample (skipped: {dataset.skipped[:3]})")
    return samples


def _progress(total: int) -> Callable[[Any], None]:
    """on_sample callback printing "[i/total] name" to stderr."""
    count = itertools.count(1)
    return lambda result: print(f"  [{next(count)}/{total}] {result.name}", file=sys.stderr, flush=True)


def _out_dir(out: Path | None, default_root: str, name: str, several: bool) -> Path:
    base = out if out is not None else Path(default_root)
    return base / name if (several or out is None) else base


# ---------------------------------------------------------------------------------------------------
# parity
# ---------------------------------------------------------------------------------------------------


def run_parity_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick parity`: 0 when every artifact passes its gates, 1 when one fails."""
    apply_process_env(args.power)  # before torch is imported: the OpenMP wait policy is read once, at start
    from .parity import run_parity
    from .parity_report import write_parity_report
    from .torch_ref import TorchBackend

    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    samples = load_samples(args.data, args.dataset_format, args.samples)
    if getattr(args, "web_reference", None) is not None:
        return write_web_reference_cli(args, samples)
    references: dict[tuple[Path, Any], Backend] = {}
    failed: list[str] = []
    several = len(args.artifacts) > 1
    for artifact_dir in args.artifacts:
        source = resolve_source(artifact_dir, args.checkpoint)
        candidate = open_artifact(artifact_dir, power=args.power)
        key = (source.checkpoint.resolve(), candidate.input_size)
        if key not in references:  # several artifacts of one checkpoint share the reference model
            references[key] = TorchBackend.from_checkpoint(source.checkpoint, candidate.input_size,
                                                           power=get_profile(args.power))
        name = source.manifest.name
        print(f"parity {name} ({source.manifest.format}, {source.manifest.precision}): {len(samples)} samples × "
              f"{args.clicks} clicks vs torch over {source.checkpoint}", file=sys.stderr, flush=True)
        settings = {"artifact": str(artifact_dir), "format": source.manifest.format, "checkpoint": str(source.checkpoint),
                    "data": str(args.data), "samples": len(samples), "clicks_per_sample": args.clicks}
        report = run_parity(references[key], candidate, samples, args.clicks, source.manifest.precision,
                            settings=settings, on_sample=_progress(len(samples)))
        files = write_parity_report(report, _out_dir(args.out, "reports/parity", name, several))
        s = report.summary()
        print(f"{name}: {'PASS' if report.passed else 'FAIL'} — max |Δlogit| {s['max_abs_logit']:.3g}, mask IoU mean "
              f"{s['mean_mask_iou']:.6f} min {s['min_mask_iou']:.6f}, NoC@85/90 torch {s['noc85_reference']:.2f}/"
              f"{s['noc90_reference']:.2f} exported {s['noc85_candidate']:.2f}/{s['noc90_candidate']:.2f}; "
              f"report {files['report']}")
        for line in report.failures:
            print(f"{name}: {line}", file=sys.stderr)
        if not report.passed:
            failed.append(name)
    if failed:
        print(f"edgeclick parity: gate failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_web_reference_cli(args: argparse.Namespace, samples: list["Sample"]) -> int:
    """`edgeclick parity ARTIFACT_DIR --data DIR --web-reference OUT`: the bundle the page's parity mode replays."""
    from .torch_ref import TorchBackend
    from .web_reference import write_web_reference

    if len(args.artifacts) != 1:
        raise ValueError("--web-reference writes the bundle of one artifact; pass one ARTIFACT_DIR")
    source = resolve_source(args.artifacts[0], args.checkpoint)
    m = source.manifest
    reference = TorchBackend.from_checkpoint(source.checkpoint, m.size, power=get_profile(args.power))
    print(f"web reference {m.name}: {len(samples)} samples × {args.clicks} clicks of torch over {source.checkpoint}",
          file=sys.stderr, flush=True)
    path = write_web_reference(reference, samples, args.clicks, args.web_reference,
                               artifact={"name": m.name, "precision": m.precision, "size": list(m.size)})
    print(f"wrote {path}; replay it with: edgeclick web {args.artifacts[0]} --parity {args.web_reference}")
    return 0


# ---------------------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------------------


def bench_targets(artifacts: list[Path], checkpoint: Path | None) -> list[Any]:
    """One torch anchor per distinct (source checkpoint, input size), then one target per artifact."""
    from .bench import ARTIFACT, TORCH, BenchTarget

    sources = [resolve_source(a, checkpoint) for a in artifacts]
    anchors: dict[tuple[Path, tuple[int, int]], BenchTarget] = {}
    for s in sources:
        key = (s.checkpoint.resolve(), s.manifest.size)
        if key not in anchors:
            label = "torch" if not anchors else f"torch {s.manifest.size[0]}x{s.manifest.size[1]} {s.checkpoint.stem} #{len(anchors) + 1}"
            anchors[key] = BenchTarget(label, TORCH, str(s.checkpoint), s.manifest.size,
                                       files={"checkpoint": s.checkpoint.stat().st_size})
    targets = list(anchors.values())
    seen: set[str] = {t.label for t in targets}
    for artifact_dir, s in zip(artifacts, sources, strict=True):
        label = s.manifest.name
        while label in seen:
            label += "'"
        seen.add(label)
        targets.append(BenchTarget(label, ARTIFACT, str(artifact_dir), s.manifest.size,
                                   anchor=anchors[(s.checkpoint.resolve(), s.manifest.size)].label,
                                   files={role: e.bytes for role, e in s.manifest.files.items()}))
    return targets


def run_bench_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick bench`."""
    from .bench import BenchConfig, run_bench
    from .bench_report import write_bench_report

    config = BenchConfig(warmup=args.warmup, runs=args.runs, sustain_seconds=args.sustain_seconds,
                         click_rate=args.click_rate, threads=args.threads or (), powers=args.power, loads=args.load)
    peers = list(getattr(args, "peer", None) or [])
    if not args.artifacts and not peers:
        raise ValueError("nothing to bench: give ARTIFACT_DIR(s) and/or --peer NAME")
    if peers:
        from .peers import require_peer

        for name in peers:  # before any export or measurement: a missing package is one line at once
            require_peer(name)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    targets = bench_targets(list(args.artifacts), args.checkpoint) if args.artifacts else []
    if peers:
        from .peers import peer_bench_targets

        # Peers at the artifacts' input size (the bench's image); anchored to the first torch anchor, if any.
        size = targets[0].size if targets else (args.size or contract_default_size())
        anchor = targets[0].label if targets else None
        targets += peer_bench_targets(peers, size, args.peer_dir, anchor=anchor, log=log)
    report = run_bench(targets, config, progress=log)
    names = [t.label for t in targets if t.anchor is not None] or [t.label for t in targets]
    name = (names[0] if len(names) == 1 else f"{names[0]}+{len(names) - 1}").replace(" ", "-")
    out_dir = _out_dir(args.out, "reports/bench", name, False)
    files = write_bench_report(report, out_dir)
    from .side_by_side import side_by_side_markdown, write_side_by_side

    write_side_by_side(report, out_dir)
    for r in report.results:
        cpu_image = "-" if r.cpu_s_per_image is None else f"{r.cpu_s_per_image * 1e3:.1f}"
        print(f"{r.target:36s} {r.power:9s} {r.load:6s} threads {r.threads}: encoder p50 {r.encoder.p50_ms:8.1f} ms "
              f"({cpu_image} CPU-ms), decoder p50 {r.decoder.p50_ms:7.2f} ms ({r.cpu_s_per_click * 1e3:.2f} CPU-ms/click), "
              f"session {r.session_ms:.0f} ms, cold {r.cold.total_s:5.2f} s, peak RSS {r.peak_rss_mb:6.0f} MiB")
    for row in report.ratios():
        print(f"{row['target']} / {row['anchor']} ({row['power']}, {row['load']}, {row['threads']} threads): encoder "
              f"{row['encoder_p50']:.2f}x, decoder {row['decoder_p50']:.2f}x, CPU/click {row['cpu_s_per_click']:.2f}x")
    for row in report.load_ratios():
        print(f"{row['target']} {row['power']} ({row['threads']} threads): session {row['session_idle_ms']:.0f} ms idle, "
              f"{row['session_loaded_ms']:.0f} ms loaded ({row['session_loaded_over_idle']:.2f}x); CPU/wall per click "
              f"{row['cpu_over_wall_idle']:.2f} idle, {row['cpu_over_wall_loaded']:.2f} loaded")
    print(side_by_side_markdown(report))
    print(f"energy: {report.energy}")
    print(f"report: {files['report']}")
    return 0


def contract_default_size() -> tuple[int, int]:
    from edgeclick import contract

    return contract.DEFAULT_SIZE


def threads_arg(text: str) -> tuple[int, ...]:
    """argparse type for a thread sweep ('1,2,all'; 'profile': each power profile's own counts → ()); the bench
    module is imported only when parsing."""
    from .bench import parse_threads

    if text.strip().lower() == "profile":
        return ()
    return arg_type(parse_threads)(text)


def load_arg(text: str) -> tuple[str, ...]:
    """argparse type of `--load idle,loaded`."""
    from .load import parse_loads

    return arg_type(parse_loads)(text)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the `parity` and `bench` subcommands."""
    p = subparsers.add_parser("parity", help="compare exported artifacts with PyTorch click by click on real images (gated)")
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT_DIR")
    p.add_argument("--data", required=True, type=Path, help="dataset root folder, e.g. $EDGECLICK_DATA/grabcut")
    p.add_argument("--dataset-format", default="auto", help="dataset layout (default: detected)")
    p.add_argument("--checkpoint", type=Path, default=None, help="source checkpoint or registered weights name (default: the manifest's)")
    p.add_argument("--samples", type=int, default=10, help="number of samples (the dataset's first N)")
    p.add_argument("--clicks", type=int, default=10, help="simulated clicks per sample")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/parity/<artifact name>)")
    add_power_argument(p)
    p.add_argument("--web-reference", type=Path, default=None, metavar="OUT",
                   help="instead of comparing here, write the browser parity bundle (images, RITM click sequences, PyTorch "
                        "logits and masks per click) for `edgeclick web ARTIFACT_DIR --parity OUT`")
    p.set_defaults(func=run_parity_cli)

    p = subparsers.add_parser("bench", help="latency, cold start, memory, CPU and energy per click of artifacts vs PyTorch")
    p.add_argument("artifacts", nargs="*", type=Path, metavar="ARTIFACT_DIR")
    p.add_argument("--peer", action="append", default=[], metavar="NAME",
                   help="also measure a SAM-family peer built from its own package with random weights (repeatable): "
                        "sam-vit-b, mobilesam; needs `pip install -e .[peers]`")
    p.add_argument("--peer-dir", type=Path, default=Path("artifacts") / "peers",
                   help="where peer ONNX exports are made and reused (default artifacts/peers)")
    p.add_argument("--size", type=parse_size, default=None, metavar="HxW",
                   help="image size of a peer-only run (default 640x960; with artifacts, theirs)")
    p.add_argument("--checkpoint", type=Path, default=None, help="source checkpoint (or registered weights name) for the torch anchor (default: the manifest's)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per graph")
    p.add_argument("--runs", type=int, default=20, help="timed runs per graph")
    p.add_argument("--sustain-seconds", type=float, default=60.0, help="fixed-rate run length (0: skip)")
    p.add_argument("--click-rate", type=float, default=5.0, help="clicks per second of the fixed-rate run")
    p.add_argument("--threads", type=threads_arg, default=None,
                   help="thread counts, e.g. 1,2,all, each run under every --power profile's spinning (default: each "
                        "profile's own counts)")
    p.add_argument("--power", type=powers_arg, default=powers_arg("all"), metavar="PROFILE[,PROFILE]|all",
                   help="power profiles to measure (default all). " + POWER_HELP)
    p.add_argument("--load", type=load_arg, default=load_arg("idle,loaded"), metavar="idle,loaded",
                   help="measure idle and/or under the standard background load (one busy process per other core, "
                        "started and stopped by the bench); default both")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/bench/<artifact name>)")
    p.set_defaults(func=run_bench_cli)
