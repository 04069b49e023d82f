"""`edgeclick deploy-table`: which configuration to deploy — fusion × adapter × precision measured in one run.

    edgeclick deploy-table [--model hrnet18s] [--size 640x960] [--threads 1,2|profile] [--runs 10]
                           [--precisions fp32,int8,int8enc,int8dec] [--peer sam-vit-b ...] [--out reports/deploy]
                           [--power shared|all] [--load idle,loaded]

For every (fusion, adapter) of `CONFIGS` an untrained model of `--model` is made (seeded; latency does not
depend on the weights), exported to ONNX at `--size`, and quantised: "int8" (both graphs, static QDQ as
`edgeclick calibrate` makes it, calibrated on click sessions over seeded synthetic images), "int8enc" (int8
encoder + fp32 decoder) and "int8dec" (fp32 encoder + int8 decoder), the one-graph ones assembled from the
int8 and fp32 graphs. Every artifact, and any `--peer`, is then timed by runtimes.bench (a fresh worker
per artifact and thread count, onnxruntime CPU) and the table is written by calibration/deploy_render.py.
Rows of configurations with trained weights get their accuracy from `--accuracy` calibrate reports
(calibration/deploy_accuracy.py), and the recommendation weighs accuracy and speed together.

Artifacts go to `--work` (default artifacts/deploy) and are reused by a later run when their manifest
names the same checkpoint, size and precision, so a re-measurement skips the exports.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeclick import contract
from edgeclick.runtimes.load import IDLE
from edgeclick.runtimes.power import DEFAULT_PROFILE

CONFIGS: tuple[tuple[str, bool], ...] = (("late", False), ("late", True), ("early", False), ("early", True))
RUNTIMES: dict[str, str] = {"onnxruntime": "onnx", "executorch": "executorch"}
"""Runtime of a row → the export target its artifacts come from (int8: calibration/ort.py or calibration/executorch.py)."""
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "int8enc", "int8dec")
ONE_GRAPH = {"int8enc": contract.ENCODER, "int8dec": contract.DECODER}


@dataclass(frozen=True)
class DeployEntry:
    """One measured artifact: its configuration and where it is."""

    label: str
    fusion: str
    adapter: bool
    precision: str
    artifact: Path
    runtime: str = "onnxruntime"


def config_label(fusion: str, adapter: bool, runtime: str = "onnxruntime") -> str:
    """The table's configuration cell: "late + conv adapter"; rows of another runtime than onnxruntime name it."""
    return f"{fusion}{' + conv adapter' if adapter else ''}{'' if runtime == 'onnxruntime' else ' (ExecuTorch)'}"


def _stem(model: str, fusion: str, adapter: bool, size: tuple[int, int]) -> str:
    return f"{model}-{fusion}{'-adapter' if adapter else ''}-{size[0]}x{size[1]}"


def _checkpoint(work: Path, model: str, fusion: str, adapter: bool, seed: int) -> Path:
    """work/checkpoints/<model>-<fusion>[-adapter].pt: untrained, seeded; made once and reused."""
    path = work / "checkpoints" / f"{model}-{fusion}{'-adapter' if adapter else ''}.pt"
    if path.is_file():
        return path
    import torch

    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(create_model(model, fusion=fusion, adapter="conv" if adapter else None), path,
                           meta={"untrained": True, "seed": seed, "made_by": "edgeclick deploy-table"})


def _reusable(artifact: Path, checkpoint: Path, size: tuple[int, int], precision: str) -> bool:
    """An earlier run's artifact of the same checkpoint (sha256), size and precision, intact."""
    from edgeclick.manifest import read_manifest
    from edgeclick.io import sha256_file

    if not (artifact / "manifest.json").is_file():
        return False
    try:
        m = read_manifest(artifact)
    except Exception:  # a damaged leftover is rebuilt, not trusted
        return False
    return (m.complete and tuple(m.size) == tuple(size) and m.precision == precision
            and m.checkpoint.get("sha256") == sha256_file(checkpoint))


def compose_one_graph(int8: Path, fp32: Path, graph: str, out: Path) -> Path:
    """An artifact with `graph` from the int8 artifact and the other graph from the fp32 one (same model,
    format, calibration and contract); manifest from the int8 one with calibration.graphs = [graph]. Atomic."""
    from edgeclick.manifest import file_entries, read_manifest, write_manifest

    q, f = read_manifest(int8), read_manifest(fp32)
    if q.format != f.format:
        raise ValueError(f"{int8} is {q.format!r}, {fp32} is {f.format!r}; one-graph int8 takes two artifacts of one format")
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        files = {}
        for g in (contract.ENCODER, contract.DECODER):
            src = q.path(g) if g == graph else f.path(g)
            shutil.copy2(src, staging / src.name)
            files[g] = Path(src.name)
        calibration = {**q.options.get("calibration", {}), "graphs": [graph]}
        write_manifest(dataclasses.replace(q, root=staging, name=out.name, files=file_entries(staging, files),
                                           options={**q.options, "calibration": calibration}))
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def synthetic_samples(count: int, seed: int) -> list[Any]:
    """`count` seeded synthetic images with masks (calibration sessions; no dataset needed for speed)."""
    import numpy as np

    from edgeclick.data.synthetic import generate

    rng = np.random.default_rng(seed)
    return [dataclasses.replace(generate(rng, size=512), name=f"synthetic{i}") for i in range(count)]


def build_artifacts(model: str, size: tuple[int, int], work: Path, *, configs: tuple[tuple[str, bool], ...] = CONFIGS,
                    precisions: tuple[str, ...] = PRECISIONS, seed: int = 0, calib_samples: int = 2,
                    calib_clicks: int = 3, runtimes: tuple[str, ...] = ("onnxruntime",),
                    log: Callable[[str], None] = print) -> list[DeployEntry]:
    """Export / quantise (or reuse) every configuration × runtime × precision; returns them in table order."""
    from edgeclick.export.run import export

    entries: list[DeployEntry] = []
    for fusion, adapter in configs:
        ckpt = _checkpoint(work, model, fusion, adapter, seed)
        for runtime in runtimes:
            target = RUNTIMES[runtime]
            # onnxruntime keeps the names of earlier runs (reused); other runtimes' artifacts carry their target
            stem = _stem(model, fusion, adapter, size) + ("" if runtime == "onnxruntime" else f"-{target}")
            fp32 = work / f"{stem}-fp32"
            if not _reusable(fp32, ckpt, size, "fp32"):
                log(f"deploy-table: exporting {stem} (fp32 {target})")
                shutil.rmtree(fp32, ignore_errors=True)
                export(ckpt, target, size=size, out_root=work, name=fp32.name)
            made = {"fp32": fp32}
            if any(p != "fp32" for p in precisions):
                int8 = work / f"{stem}-int8"
                if not _reusable(int8, ckpt, size, "int8"):
                    from edgeclick.calibration.data import collect_calibration_data

                    log(f"deploy-table: int8 {stem}: recording {calib_samples} synthetic click sessions × {calib_clicks} clicks")
                    data = collect_calibration_data(ckpt, synthetic_samples(calib_samples, seed), input_size=size,
                                                    clicks_per_sample=calib_clicks,
                                                    max_decoder_samples=calib_samples * calib_clicks, seed=seed)
                    _quantize(runtime, fp32, data, int8)
                made["int8"] = int8
                for name, graph in ONE_GRAPH.items():
                    if name in precisions:
                        made[name] = compose_one_graph(int8, fp32, graph, work / f"{stem}-{name}")
            for precision in precisions:
                entries.append(DeployEntry(f"{config_label(fusion, adapter, runtime)} · {precision}", fusion, adapter,
                                           precision, made[precision], runtime))
    return entries


def _quantize(runtime: str, fp32: Path, data: Any, out: Path) -> Path:
    """The int8 artifact of `fp32` for `runtime`, as `edgeclick calibrate` makes it (static QDQ / XNNPACK PT2E)."""
    if runtime == "executorch":
        from edgeclick.calibration.executorch import quantize_executorch_artifact

        return quantize_executorch_artifact(fp32, data, out, overwrite=True)
    from edgeclick.calibration.ort import quantize_onnx_artifact

    return quantize_onnx_artifact(fp32, data, out, overwrite=True)


def run_deploy_table(args: argparse.Namespace) -> int:
    """Handler of `edgeclick deploy-table`."""
    from edgeclick.manifest import read_manifest

    from edgeclick.runtimes.bench import ARTIFACT, BenchConfig, BenchTarget, run_bench
    from .deploy_accuracy import read_gate_accuracy
    from .deploy_render import write_deploy_report

    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ValueError(f"--precisions {args.precisions!r}: choose from {','.join(PRECISIONS)}")
    configs = CONFIGS if args.configs is None else tuple(_parse_config(c) for c in args.configs.split(","))
    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    if not runtimes or [r for r in runtimes if r not in RUNTIMES]:
        raise ValueError(f"--runtimes {args.runtimes!r}: choose from {','.join(RUNTIMES)}")
    if "executorch" in runtimes:
        from edgeclick.export.executorch import require_executorch

        require_executorch()  # one line before any export
    peers = list(args.peer or [])
    if peers:
        from edgeclick.runtimes.peers import require_peer

        for name in peers:  # a missing package is one line before any export
            require_peer(name)
    contract.check_size(*args.size)
    accuracy = read_gate_accuracy(args.accuracy)  # a bad report is one line, before anything is measured
    if args.rerender is not None:
        from .deploy_render import rerender_with_accuracy

        files = rerender_with_accuracy(args.rerender, accuracy, doc=args.doc)
        print(files["table"].read_text())
        return 0
    if args.doc is not None:  # before the measurement, not after it
        from .deploy_render import TABLE_END, TABLE_START

        text = Path(args.doc).read_text() if Path(args.doc).is_file() else ""
        if TABLE_START not in text or TABLE_END not in text:
            raise ValueError(f"--doc {args.doc}: no {TABLE_START} … {TABLE_END} block; add the two lines "
                             "where the table goes")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    entries = build_artifacts(args.model, args.size, args.work, configs=configs, precisions=precisions, seed=args.seed,
                              calib_samples=args.calib_samples, calib_clicks=args.calib_clicks, runtimes=runtimes, log=log)
    targets = [BenchTarget(e.label, ARTIFACT, str(e.artifact), args.size,
                           files={role: f.bytes for role, f in read_manifest(e.artifact).files.items()}) for e in entries]
    if peers:
        from edgeclick.runtimes.peers import peer_bench_targets

        targets += peer_bench_targets(peers, args.size, args.peer_dir, log=log)
    config = BenchConfig(warmup=args.warmup, runs=args.runs, sustain_seconds=0.0, threads=args.threads,
                         powers=args.power, loads=args.load)
    report = run_bench(targets, config, progress=log)
    files = write_deploy_report(report, entries, args.out, model=args.model, command=_command(args), doc=args.doc,
                                accuracy=accuracy)
    print(files["table"].read_text())
    print(f"report: {files['report']}")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this table (defaults left out)."""
    parts = ["edgeclick deploy-table"]
    if args.model != "hrnet18s":
        parts.append(f"--model {args.model}")
    if tuple(args.size) != tuple(contract.DEFAULT_SIZE):
        parts.append(f"--size {args.size[0]}x{args.size[1]}")
    if args.configs:
        parts.append(f"--configs {args.configs}")
    if args.precisions != ",".join(PRECISIONS):
        parts.append(f"--precisions {args.precisions}")
    if args.runtimes != "onnxruntime":
        parts.append(f"--runtimes {args.runtimes}")
    parts.append(f"--threads {','.join(map(str, args.threads)) or 'profile'} --runs {args.runs}")
    if tuple(args.power) != (DEFAULT_PROFILE,):
        parts.append(f"--power {','.join(args.power)}")
    if tuple(args.load) != (IDLE,):
        parts.append(f"--load {','.join(args.load)}")
    parts += [f"--peer {p}" for p in args.peer or []]
    parts += [f"--accuracy {p}" for p in args.accuracy or []]
    return " ".join(parts)


def _parse_config(text: str) -> tuple[str, bool]:
    """'late', 'late+adapter', 'early', 'early+adapter' → (fusion, adapter)."""
    fusion, _, rest = text.strip().partition("+")
    if fusion not in ("late", "early") or rest not in ("", "adapter"):
        raise ValueError(f"--configs item {text!r}: use late, late+adapter, early or early+adapter")
    return fusion, rest == "adapter"


def register_cli(subparsers: Any) -> None:
    """Add the `deploy-table` subcommand."""
    from edgeclick.args import parse_size
    from edgeclick.runtimes.cli import load_arg, threads_arg
    from edgeclick.runtimes.power import POWER_HELP, powers_arg

    p = subparsers.add_parser(
        "deploy-table", help="which configuration to deploy: fusion × adapter × precision (and SAM peers) measured in one run",
        description="Export untrained models of every fusion × adapter configuration, quantise them (int8, int8 encoder "
                    "only, int8 decoder only), time every artifact with the bench harness over a thread sweep, and write "
                    "one table (Markdown + JSON + PNG): encoder ms, ms/click, a 1 image + 5 clicks session, size, peak RSS.")
    p.add_argument("--model", default="hrnet18s", help="registered model (default hrnet18s)")
    p.add_argument("--size", type=parse_size, default=contract.DEFAULT_SIZE, metavar="HxW", help="model input (default 640x960)")
    p.add_argument("--configs", default=None, help="subset, e.g. late,late+adapter (default: all four)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help=f"subset of {','.join(PRECISIONS)}")
    p.add_argument("--runtimes", default="onnxruntime",
                   help=f"runtimes of the rows, of {','.join(RUNTIMES)} (default onnxruntime; executorch: its .pte "
                        "programs, XNNPACK, int8 by its PT2E quantizer; needs the executorch extra)")
    p.add_argument("--threads", type=threads_arg, default="1,2",
                   help="thread counts of the sweep (default 1,2), or 'profile': each power profile's own counts")
    p.add_argument("--power", type=powers_arg, default=(DEFAULT_PROFILE,), metavar="PROFILE[,PROFILE]|all",
                   help=f"power profiles to time (default {DEFAULT_PROFILE}); the main table uses the first, idle. " + POWER_HELP)
    p.add_argument("--load", type=load_arg, default=(IDLE,), metavar="idle,loaded",
                   help="idle and/or under the standard background load (one busy process per other core); default idle")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per graph")
    p.add_argument("--runs", type=int, default=10, help="timed runs per graph")
    p.add_argument("--peer", action="append", default=[], metavar="NAME",
                   help="also time a SAM-family peer (sam-vit-b, mobilesam; needs `pip install -e .[peers]`)")
    p.add_argument("--peer-dir", type=Path, default=Path("artifacts") / "peers", help="peer ONNX exports (made once)")
    p.add_argument("--rerender", type=Path, default=None, metavar="DEPLOY_JSON",
                   help="measure nothing: add --accuracy to the rows of an earlier run's deploy.json and rewrite its "
                        "table (and --doc); for calibrate reports that finish after the timing run")
    p.add_argument("--accuracy", action="append", default=[], metavar="CALIBRATION_JSON",
                   help="accuracy of a trained configuration: the calibration.json of `edgeclick calibrate --target onnx` "
                        "(onnxruntime rows) or `--target executorch` (ExecuTorch rows), its gate's NoC@90 and mIoU@5 "
                        "per precision; repeat for several")
    p.add_argument("--calib-samples", type=int, default=2, help="synthetic images of the int8 calibration sessions")
    p.add_argument("--calib-clicks", type=int, default=3, help="clicks per calibration session")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("artifacts") / "deploy", help="artifacts (reused by later runs)")
    p.add_argument("--out", type=Path, default=Path("reports") / "deploy", help="report folder")
    # --readme: the flag's name while the table lived in README.md
    p.add_argument("--doc", "--readme", dest="doc", type=Path, default=None, metavar="MARKDOWN",
                   help="also put the table into this Markdown file (docs/deploy.md) between "
                        "<!-- deploy-table:start --> and <!-- deploy-table:end -->")
    p.set_defaults(func=run_deploy_table)
