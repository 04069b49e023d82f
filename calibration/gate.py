"""The calibration gate: what each fp16 / int8 variant costs in clicks, in mask agreement and in time.

    variants = [Variant("fp32", fp32_dir, baseline=True), Variant("int8-minmax", int8_dir),
                Variant("w8a8", None, skipped="needs macOS")]
    report = run_gate(variants, dataset, GateConfig(threshold=0.25))
    write_gate_report(report, "reports/calibration/m")      # calibration.md + calibration.json
    publish_final(report, "artifacts/m-final")              # copies of the baseline and the passing variants

For every runnable variant the gate measures, against the baseline (the fp32 export, same format):
  * NoC@85/90 for IoU and Boundary IoU on the evaluation dataset (edgeclick.evaluate, RITM protocol),
    and ΔNoC = variant − baseline;
  * parity against PyTorch fp32 (runtimes.parity over the artifact's source checkpoint): mask IoU per
    click, gated by contract.TOLERANCES[the variant's precision];
  * latency (runtimes.bench, each graph in a fresh process, p50) and its ratio to the baseline measured
    in the same run (absolute times on a shared machine are noisy, ratios much less so).
A variant fails when ΔNoC@90 (IoU) exceeds the threshold, when its parity gate fails, or when it cannot
be opened or run; failed and skipped variants are not published.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeclick import contract
from edgeclick.io import publishing, write_json_atomic, write_text_atomic
from edgeclick.metrics import Summary
from edgeclick.runtimes.side_by_side import session_ms

BASELINE, PASSED, FAILED, SKIPPED = "baseline", "pass", "FAIL", "skipped"
DEFAULT_THRESHOLD = 0.25  # clicks of ΔNoC@90 a variant may cost
DEFAULT_OPENER = "edgeclick.runtimes.artifact:open_backend"


@dataclass(frozen=True)
class Variant:
    """One candidate of the gate.

    Attributes:
        name: row label, unique within a run (e.g. "int8-minmax").
        artifact: the exported artifact folder; None when the variant could not be produced.
        baseline: True for the fp32 reference variant (exactly one per run).
        skipped: why the variant cannot be produced or measured here (e.g. "needs macOS"); None otherwise.
        opener: "module:function" taking (artifact_dir, threads=n) and returning a runtimes Backend;
            the default opens the artifact with its own runtime. A stand-in runtime (e.g. the MIL
            reference evaluator for CoreML on Linux) is named here and in `note`.
        bench: measure latency (False where the opener is not the real runtime, whose times would mislead).
        note: shown in the table (how it was measured, what it is).
        publish: what `publish_final` copies when the variant passes (None: `artifact`); a proxy
            measurement names the real deployment artifact here.
    """

    name: str
    artifact: Path | None
    baseline: bool = False
    skipped: str | None = None
    opener: str = DEFAULT_OPENER
    bench: bool = True
    note: str = ""
    publish: Path | None = None


@dataclass(frozen=True)
class GateConfig:
    """How the gate measures.

    Attributes:
        threshold: the largest ΔNoC@90 (IoU, clicks) a passing variant may have.
        limit: evaluate only the first N samples of the dataset (None: all).
        max_clicks: click budget of the NoC evaluation.
        workers: evaluation processes (each opens its own backend).
        parity_samples / parity_clicks: the parity run (the dataset's first samples).
        bench_runs / bench_warmup / threads: latency measurement (one thread count).
        eval_threads: runtime threads per evaluation process (None: the runtime's default).
        bench: measure latency at all (False leaves the latency columns empty).
    """

    threshold: float = DEFAULT_THRESHOLD
    limit: int | None = None
    max_clicks: int = 20
    workers: int = 1
    parity_samples: int = 5
    parity_clicks: int = 10
    bench_runs: int = 10
    bench_warmup: int = 2
    threads: int = 2
    eval_threads: int | None = None
    bench: bool = True

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0 clicks, got {self.threshold}")
        if self.parity_samples < 1 or not 1 <= self.parity_clicks <= contract.NUM_CLICKS:
            raise ValueError(f"parity needs samples >= 1 and clicks in 1..{contract.NUM_CLICKS}")
        if self.bench_runs < 1 or self.threads < 1:
            raise ValueError("bench_runs and threads must be >= 1")


@dataclass
class VariantResult:
    """One row of the table.

    Attributes:
        name / format / precision / note: what the variant is.
        status: BASELINE, PASSED, FAILED or SKIPPED.
        reasons: why it failed or was skipped (empty for a pass).
        size_mb: artifact files in MiB (None when there is no artifact).
        encoder_ms / decoder_ms: p50 latency per image / per click (ms), None when not measured.
        encoder_ratio / decoder_ratio: latency / the baseline's in the same bench run.
        session_ms / session_ratio: one image + 5 clicks, encoder_ms + 5 × decoder_ms (ms), and / the baseline's.
        noc: "noc85", "noc90", "noc85_boundary", "noc90_boundary" → mean clicks.
        delta_noc: the same keys → variant − baseline (clicks).
        miou: "miou@1", "miou@3", "miou@5" → mean IoU after that many clicks (what deploy-table quotes).
        mask_iou_mean / mask_iou_min: parity against PyTorch fp32, over every compared click.
        parity_passed: the contract gate for the variant's precision.
    """

    name: str
    format: str | None = None
    precision: str | None = None
    note: str = ""
    status: str = SKIPPED
    reasons: list[str] = field(default_factory=list)
    artifact: str | None = None
    publish: str | None = None
    size_mb: float | None = None
    encoder_ms: float | None = None
    decoder_ms: float | None = None
    encoder_ratio: float | None = None
    decoder_ratio: float | None = None
    session_ms: float | None = None
    session_ratio: float | None = None
    noc: dict[str, float] = field(default_factory=dict)
    delta_noc: dict[str, float] = field(default_factory=dict)
    miou: dict[str, float] = field(default_factory=dict)
    mask_iou_mean: float | None = None
    mask_iou_min: float | None = None
    parity_passed: bool | None = None


@dataclass
class GateReport:
    """Every variant's row plus how they were measured."""

    dataset: str
    config: GateConfig
    rows: list[VariantResult]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> VariantResult:
        return next(r for r in self.rows if r.status == BASELINE)

    def passed(self) -> list[VariantResult]:
        """The baseline and every variant that passed, in table order."""
        return [r for r in self.rows if r.status in (BASELINE, PASSED)]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "config": asdict(self.config), "settings": self.settings,
                "rows": [asdict(r) for r in self.rows]}


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


def noc_numbers(summary: Summary) -> dict[str, float]:
    """The table's NoC columns from an evaluation summary (mean clicks)."""
    return {"noc85": summary.noc[0.85], "noc90": summary.noc[0.90],
            "noc85_boundary": summary.noc_boundary[0.85], "noc90_boundary": summary.noc_boundary[0.90]}


MIOU_CLICKS: tuple[int, ...] = (1, 3, 5)


def miou_numbers(summary: Summary) -> dict[str, float]:
    """Mean IoU after 1, 3 and 5 clicks (those within the evaluation's click budget)."""
    return {f"miou@{k}": summary.miou[k - 1] for k in MIOU_CLICKS if k <= len(summary.miou)}


def judge(baseline: dict[str, float], variant: dict[str, float], threshold: float,
          parity_passed: bool | None, parity_failures: Sequence[str] = ()) -> tuple[str, list[str], dict[str, float]]:
    """(status, reasons, ΔNoC) of one variant against the baseline's NoC numbers.

    Fails on ΔNoC@90 (IoU) > threshold — a NaN difference fails too — and on a failed parity gate.
    """
    delta = {k: variant[k] - baseline[k] for k in baseline if k in variant}
    reasons: list[str] = []
    d90 = delta.get("noc90", math.nan)
    if not d90 <= threshold:
        reasons.append(f"ΔNoC@90 {d90:+.2f} clicks exceeds the threshold {threshold:g}")
    if parity_passed is False:
        reasons.extend([f"parity: {f}" for f in parity_failures] or ["parity gate failed"])
    return (FAILED if reasons else PASSED), reasons, delta


def resolve_callable(spec: str) -> Callable[..., Any]:
    """"module:function" → the function."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"opener {spec!r} is not of the form 'module:function'")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class ArtifactPredictorFactory:
    """Picklable recipe for an evaluation predictor: a Session over an artifact's backend."""

    artifact: str
    opener: str = DEFAULT_OPENER
    threads: int | None = None

    def __call__(self) -> Any:
        from edgeclick.runtimes.session import Session

        return Session(open_variant(self.artifact, self.opener, self.threads))


def artifact_size_mb(manifest: Any) -> float:
    """Bytes of the artifact's graph files (every manifest entry) in MiB."""
    return sum(entry.bytes for entry in manifest.files.values()) / 2**20


def _evaluate(variant: Variant, dataset: Any, config: GateConfig, progress: bool) -> Summary:
    from edgeclick.evaluate import evaluate_dataset

    factory = ArtifactPredictorFactory(str(variant.artifact), variant.opener, config.eval_threads)
    run = evaluate_dataset(dataset, factory, limit=config.limit, workers=config.workers, max_clicks=config.max_clicks,
                           progress=progress)
    assert run is not None  # the gate runs outside torchrun: this process is rank 0
    return run.summary()


def _parity(variant: Variant, manifest: Any, samples: Sequence[Any], config: GateConfig,
            references: dict[Any, Any]) -> Any:
    from edgeclick.runtimes.artifact import resolve_source
    from edgeclick.runtimes.parity import run_parity
    from edgeclick.runtimes.torch_ref import TorchBackend

    assert variant.artifact is not None
    source = resolve_source(variant.artifact)
    candidate = open_variant(variant.artifact, variant.opener)
    key = (source.checkpoint.resolve(), candidate.input_size)
    if key not in references:
        references[key] = TorchBackend.from_checkpoint(source.checkpoint, candidate.input_size)
    return run_parity(references[key], candidate, samples, config.parity_clicks, manifest.precision,
                      settings={"artifact": str(variant.artifact), "variant": variant.name})


def _bench(variants: Sequence[Variant], config: GateConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """p50 latency of each benchable variant, every one compared to the baseline in the same run."""
    from edgeclick.manifest import read_manifest
    from edgeclick.runtimes.bench import (
        ARTIFACT,
        FACTORY,
        BenchConfig,
        BenchTarget,
        run_bench,
    )

    runnable = [v for v in variants if v.bench and v.skipped is None and v.artifact is not None]
    base = next((v for v in runnable if v.baseline), None)
    if base is None:
        return {}
    targets = []
    for v in [base] + [v for v in runnable if not v.baseline]:
        manifest = read_manifest(v.artifact)  # type: ignore[arg-type]
        files = {role: e.bytes for role, e in manifest.files.items()}
        anchor = None if v.baseline else base.name
        if v.opener == DEFAULT_OPENER:
            targets.append(BenchTarget(v.name, ARTIFACT, str(v.artifact), manifest.size, anchor=anchor, files=files))
        else:
            targets.append(BenchTarget(v.name, FACTORY, "edgeclick.calibration.gate:open_for_bench", manifest.size,
                                       anchor=anchor, files=files, kwargs={"artifact": str(v.artifact), "opener": v.opener}))
    bench_config = BenchConfig(warmup=config.bench_warmup, runs=config.bench_runs, sustain_seconds=0.0,
                               threads=(config.threads,))
    report = run_bench(targets, bench_config, progress=log)
    return {r.target: r for r in report.results}


def open_variant(artifact: str | Path, opener: str = DEFAULT_OPENER, threads: int | None = None) -> Any:
    """The variant's Backend; `threads` is passed only to runtimes that take it (onnxruntime, torch)."""
    open_fn = resolve_callable(opener)
    if threads is None:
        return open_fn(str(artifact))
    try:
        return open_fn(str(artifact), threads=threads)
    except TypeError as exc:  # TensorRT / Core ML backends schedule their own threads
        if "threads" not in str(exc):
            raise
        return open_fn(str(artifact))


def open_for_bench(size: tuple[int, int], threads: int, artifact: str, opener: str = DEFAULT_OPENER) -> Any:
    """Bench factory for a stand-in runtime (runtimes.bench's FACTORY signature)."""
    return open_variant(artifact, opener, threads)


def run_gate(variants: Sequence[Variant], dataset: Any, config: GateConfig = GateConfig(), *,
             settings: dict[str, Any] | None = None, progress: bool = True,
             log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)) -> GateReport:
    """Measure every variant (see the module docstring) and judge it against the baseline.

    dataset: an edgeclick dataset (anything with len() and iteration over Sample; random access is used
        when present) — the NoC evaluation set. Parity uses its first `config.parity_samples` samples.

    Raises:
        ValueError: not exactly one baseline, duplicate names, or a baseline that cannot run (without it
            nothing can be judged).
    """
    from edgeclick.manifest import read_manifest

    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    baselines = [v for v in variants if v.baseline]
    if len(baselines) != 1:
        raise ValueError(f"the gate needs exactly one baseline variant (the fp32 export), got {len(baselines)}")
    if baselines[0].skipped is not None or baselines[0].artifact is None:
        raise ValueError(f"the baseline {baselines[0].name!r} cannot run here ({baselines[0].skipped}); "
                         "nothing can be judged against it")
    samples = _first_samples(dataset, config.parity_samples)
    references: dict[Any, Any] = {}
    rows: dict[str, VariantResult] = {}
    parity_failures: dict[str, list[str]] = {}
    runnable: list[Variant] = []
    for v in variants:
        row = VariantResult(v.name, note=v.note)
        rows[v.name] = row
        if v.skipped is not None or v.artifact is None:
            row.status, row.reasons = SKIPPED, [v.skipped or "no artifact"]
            continue
        try:
            manifest = read_manifest(v.artifact)
            row.format, row.precision, row.artifact = manifest.format, manifest.precision, str(v.artifact)
            row.publish = str(v.publish or v.artifact)
            row.size_mb = artifact_size_mb(manifest)
            log(f"calibrate: NoC of {v.name} on {getattr(dataset, 'name', 'the dataset')}")
            summary = _evaluate(v, dataset, config, progress)
            row.noc, row.miou = noc_numbers(summary), miou_numbers(summary)
            log(f"calibrate: parity of {v.name} against PyTorch fp32")
            parity = _parity(v, manifest, samples, config, references)
        except Exception as exc:  # one broken variant must not sink the table; the baseline must run
            if v.baseline:
                raise
            row.status, row.reasons = FAILED, [f"could not run: {type(exc).__name__}: {exc}"]
            continue
        s = parity.summary()
        row.mask_iou_mean, row.mask_iou_min = float(s["mean_mask_iou"]), float(s["min_mask_iou"])
        row.parity_passed = bool(parity.passed)
        if v.baseline:
            row.status = BASELINE
            row.reasons = [] if parity.passed else [f"parity: {f}" for f in parity.failures]
        runnable.append(v)
        parity_failures[v.name] = list(parity.failures)
    base_row = rows[baselines[0].name]
    for v in runnable:
        if v.baseline:
            continue
        row = rows[v.name]
        row.status, row.reasons, row.delta_noc = judge(base_row.noc, row.noc, config.threshold, row.parity_passed,
                                                       parity_failures[v.name])
    bench = _bench(runnable, config, log) if config.bench else {}
    base_bench = bench.get(baselines[0].name)
    for name, result in bench.items():
        row = rows[name]
        row.encoder_ms, row.decoder_ms = result.encoder.p50_ms, result.decoder.p50_ms
        row.session_ms = session_ms(row.encoder_ms, row.decoder_ms)
        if base_bench is not None:
            row.encoder_ratio = row.encoder_ms / base_bench.encoder.p50_ms
            row.decoder_ratio = row.decoder_ms / base_bench.decoder.p50_ms
            row.session_ratio = row.session_ms / session_ms(base_bench.encoder.p50_ms, base_bench.decoder.p50_ms)
    return GateReport(getattr(dataset, "name", "dataset"), config, [rows[n] for n in names], dict(settings or {}))


def _first_samples(dataset: Any, n: int) -> list[Any]:
    samples = []
    for sample in dataset:
        if len(samples) == n:
            break
        samples.append(sample)
    if not samples:
        raise ValueError("the evaluation dataset yielded no sample")
    return samples


# --------------------------------------------------------------------------------------------------
# Report and publication
# --------------------------------------------------------------------------------------------------


def _f(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:{fmt}}{suffix}"


def markdown_table(report: GateReport) -> str:
    """The gate's table: one row per variant (sizes MiB, p50 ms, NoC in clicks)."""
    header = ("| variant | status | size MB | encoder ms | decoder ms | session 1 image + 5 clicks ms | NoC@85 | NoC@90 "
              "| NoC@85 bIoU | NoC@90 bIoU | ΔNoC@90 | ΔNoC@90 bIoU | mask IoU vs PyTorch (mean / min) |")
    lines = [header, "|" + "---|" * 13]
    for r in report.rows:
        enc = _f(r.encoder_ms, ".1f") + (f" ({r.encoder_ratio:.2f}×)" if r.encoder_ratio is not None and r.status != BASELINE else "")
        dec = _f(r.decoder_ms, ".1f") + (f" ({r.decoder_ratio:.2f}×)" if r.decoder_ratio is not None and r.status != BASELINE else "")
        ses = _f(r.session_ms, ".0f") + (f" ({r.session_ratio:.2f}×)" if r.session_ratio is not None and r.status != BASELINE else "")
        iou = "—" if r.mask_iou_mean is None else f"{r.mask_iou_mean:.4f} / {r.mask_iou_min:.4f}"
        lines.append(
            f"| {r.name} | {r.status} | {_f(r.size_mb, '.1f')} | {enc} | {dec} | {ses} | {_f(r.noc.get('noc85'))} "
            f"| {_f(r.noc.get('noc90'))} | {_f(r.noc.get('noc85_boundary'))} | {_f(r.noc.get('noc90_boundary'))} "
            f"| {_f(r.delta_noc.get('noc90'), '+.2f')} | {_f(r.delta_noc.get('noc90_boundary'), '+.2f')} | {iou} |")
    return "\n".join(lines)


def _markdown(report: GateReport) -> str:
    c = report.config
    lines = [f"# Calibration gate — {report.dataset}", "",
             (f"A variant passes when ΔNoC@90 (IoU) ≤ {c.threshold:g} clicks against the fp32 baseline and its parity "
             f"gate (contract tolerances for its precision, {c.parity_samples} samples × {c.parity_clicks} clicks against "
             f"PyTorch fp32) holds. NoC over {'all' if c.limit is None else f'the first {c.limit}'} samples, "
             f"{c.max_clicks} clicks. Latency: p50 of {c.bench_runs} runs, {c.threads} thread(s), each graph in a fresh "
             "process; (×) is the ratio to the baseline in the same bench run."), "", markdown_table(report), ""]
    notes = [f"- **{r.name}**: {r.note}" for r in report.rows if r.note]
    reasons = [f"- **{r.name}** ({r.status}): " + "; ".join(r.reasons) for r in report.rows if r.reasons]
    if notes:
        lines += ["## Variants", "", *notes, ""]
    if reasons:
        lines += ["## Failed and skipped", "", *reasons, ""]
    if report.settings:
        lines += ["## Settings", "", "```json", json.dumps(report.settings, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def write_gate_report(report: GateReport, out_dir: str | Path) -> dict[str, Path]:
    """calibration.md and calibration.json in `out_dir` (each written atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"report": write_text_atomic(out / "calibration.md", _markdown(report)),
            "json": write_json_atomic(out / "calibration.json", report.to_json())}


def publish_final(report: GateReport, final_dir: str | Path) -> list[Path]:
    """Copy the baseline and the passing variants into `final_dir/<variant>/`; return the copies.

    The folder is rebuilt from scratch in a staging folder and swapped in, so it never mixes an old run's
    variants with this one's and a failure leaves the previous set untouched.
    """
    final = Path(final_dir)
    with publishing(final) as staging:
        for r in report.passed():
            assert r.publish is not None
            shutil.copytree(r.publish, staging / _folder_name(r.name))
    return [final / _folder_name(r.name) for r in report.passed()]


def _folder_name(variant: str) -> str:
    """A variant label as a folder name ("int8-minmax Q/DQ (onnxruntime)" → "int8-minmax_Q_DQ_onnxruntime")."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in variant).replace("__", "_").strip("_")
