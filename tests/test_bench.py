"""Runtime benchmark: worker processes, percentiles, ratios to the torch anchor, the sustained run, energy
(RAPL arithmetic on a fake powercap tree), report files, and `edgeclick bench` over a real ONNX artifact.

This module imports no torch at the top: bench workers import `fake_backend` from it, and a worker that
pulled torch in would report torch's memory as the fake backend's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.runtimes.bench import (
    ARTIFACT,
    FACTORY,
    TORCH,
    BenchConfig,
    BenchReport,
    BenchTarget,
    available_cores,
    parse_threads,
    run_bench,
)
from edgeclick.runtimes.bench_report import write_bench_report
from edgeclick.runtimes.energy import RaplMeter

SIZE = (64, 96)


class FakeBackend:
    """numpy only: the encoder returns zeros, the decoder a fixed logit map after sleeping `delay` seconds
    (sleep takes wall time but no CPU time)."""

    name = "fake"

    def __init__(self, size: tuple[int, int], delay: float) -> None:
        self.input_size = size
        self.contract_hash = contract.contract_hash()
        self.graphs = contract.graph_specs("late", False)
        self.delay = delay

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph == contract.ENCODER:
            spec = self.graphs[contract.ENCODER].outputs[0]
            return {spec.name: np.zeros(spec.resolve(*self.input_size), dtype=np.float32)}
        time.sleep(self.delay)
        return {contract.LOGITS: np.full((1, 1, *self.input_size), -3.0, dtype=np.float32)}


def fake_backend(size: tuple[int, int], threads: int, delay: float = 0.0) -> FakeBackend:
    """Bench factory (`tests.test_bench:fake_backend`)."""
    return FakeBackend(tuple(size), delay)  # type: ignore[arg-type]


FAKE = f"{__name__}:fake_backend"
SLOW_DELAY = 0.15  # s per click: slower than the 10 clicks/s of the sustained run below


@pytest.fixture(scope="module")
def report(tiny_onnx: tuple[Path, Path]) -> BenchReport:
    artifact, checkpoint = tiny_onnx
    targets = [
        BenchTarget("torch", TORCH, str(checkpoint), SIZE),
        BenchTarget("slow", FACTORY, FAKE, SIZE, anchor="torch", kwargs={"delay": SLOW_DELAY}),
        BenchTarget("onnx", ARTIFACT, str(artifact), SIZE, anchor="torch", files={"encoder": 10, "decoder": 20}),
    ]
    config = BenchConfig(warmup=1, runs=5, sustain_seconds=1.0, click_rate=10.0, threads=(1,))
    return run_bench(targets, config)


def test_percentiles_are_ordered(report: BenchReport) -> None:
    assert len(report.results) == 3
    for r in report.results:
        for lat in (r.encoder, r.decoder) + ((r.sustained.latency,) if r.sustained else ()):
            assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms
            assert lat.runs >= 5


def test_ratios_to_the_anchor(report: BenchReport) -> None:
    rows = {(row["target"], row["threads"]): row for row in report.ratios()}
    assert set(rows) == {("slow", 1), ("onnx", 1)}  # the anchor has no ratio to itself
    slow = report.result("slow", 1)
    torch_run = report.result("torch", 1)
    assert slow is not None and torch_run is not None
    assert rows[("slow", 1)]["decoder_p50"] == pytest.approx(slow.decoder.p50_ms / torch_run.decoder.p50_ms)
    assert rows[("slow", 1)]["decoder_p50"] > 1.0  # 150 ms of sleep vs a tiny model
    assert rows[("slow", 1)]["encoder_p50"] < 1.0  # the fake encoder only allocates zeros
    # Sleep costs wall time, not CPU time: CPU per click is far below the 150 ms latency.
    assert slow.decoder.p50_ms >= SLOW_DELAY * 1e3 and slow.cpu_s_per_click < 0.5 * SLOW_DELAY
    assert slow.clicks_per_cpu_s == pytest.approx(1 / slow.cpu_s_per_click)


def test_sustained_run(report: BenchReport) -> None:
    cores = available_cores()
    for r in report.results:
        s = r.sustained
        assert s is not None and s.clicks == 10 and s.target_rate == 10.0
        assert s.seconds >= 1.0 - 1e-3  # the window lasts at least the scheduled second
        assert 0.0 <= s.cpu_utilisation_cores <= cores and 0.0 <= s.cpu_utilisation_per_core <= 1.0
        assert s.achieved_rate == pytest.approx(s.clicks / s.seconds)
    slow = report.result("slow", 1)
    assert slow is not None and slow.sustained is not None
    # 150 ms per click cannot keep up with a 100 ms slot: every click is late, and the rate drops.
    assert slow.sustained.missed_deadlines == 10 and slow.sustained.achieved_rate < 7.0
    assert slow.sustained.max_lateness_ms > 0


def test_energy_cold_start_memory(report: BenchReport) -> None:
    for r in report.results:
        for value in (r.energy_j_per_click, r.sustained.energy_j_per_click if r.sustained else None):
            assert isinstance(value, float) or (isinstance(value, str) and value.startswith("unavailable: "))
        c = r.cold
        assert min(c.import_s, c.load_s, c.first_encoder_s, c.first_decoder_s) >= 0
        assert c.total_s == pytest.approx(c.import_s + c.load_s + c.first_encoder_s + c.first_decoder_s)
        assert c.process_to_first_mask_s >= c.total_s
        if r.vm_hwm_mb is not None and r.baseline_rss_mb is not None:  # Linux: VmHWM is the peak used
            assert r.peak_rss_mb == r.vm_hwm_mb >= r.baseline_rss_mb > 0
    assert report.energy.startswith(("available: ", "unavailable: "))
    by = {r.target: r for r in report.results}
    # Each runtime is measured in its own process: torch's libraries are not in the ONNX Runtime number.
    assert by["torch"].torch_in_process and not by["onnx"].torch_in_process and not by["slow"].torch_in_process
    assert by["torch"].peak_rss_mb > by["onnx"].peak_rss_mb


def test_report_files(report: BenchReport, tmp_path: Path) -> None:
    files = write_bench_report(report, tmp_path / "bench")
    data = json.loads(files["json"].read_text())
    assert len(data["results"]) == 3 and len(data["ratios"]) == 2 and data["machine"]["cores"] == available_cores()
    assert data["targets"][2]["files"] == {"encoder": 10, "decoder": 20}
    md = files["report"].read_text()
    assert "Ratios to the PyTorch anchor" in md and "Sustained click rate" in md and "Artifact sizes" in md
    with Image.open(files["chart"]) as png:
        png.verify()
    with Image.open(files["chart"]) as png:
        assert png.format == "PNG" and png.size[0] >= 600


def test_thread_sweep_sustains_only_at_the_largest_count() -> None:
    config = BenchConfig(warmup=0, runs=3, sustain_seconds=0.3, click_rate=20.0, threads=(1, 2))
    result = run_bench([BenchTarget("fake", FACTORY, FAKE, SIZE)], config)
    assert [(r.target, r.threads) for r in result.results] == [("fake", 1), ("fake", 2)]
    assert result.results[0].sustained is None and result.results[1].sustained is not None
    assert result.results[1].sustained.missed_deadlines == 0  # an instant backend keeps a 50 ms schedule
    assert all(r.threads_applied and r.backend == "fake" for r in result.results)


def test_worker_failure_is_reported() -> None:
    bad = BenchTarget("bad", FACTORY, f"{__name__}:no_such_factory", SIZE)
    with pytest.raises(RuntimeError, match="(?s)bench worker for .bad.*no_such_factory"):
        run_bench([bad], BenchConfig(warmup=0, runs=1, sustain_seconds=0, threads=(1,)))


def test_parse_threads() -> None:
    assert parse_threads("1,2,all") == tuple(sorted({1, 2, available_cores()}))
    assert parse_threads("2, 1,2") == (1, 2)
    for bad in ("0", "", "x"):
        with pytest.raises(ValueError):
            parse_threads(bad)


def _zone(root: Path, name: str, energy: int, max_range: int) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_rapl_sums_packages_and_unwraps(tmp_path: Path) -> None:
    pkg0 = _zone(tmp_path, "intel-rapl:0", 999_000_000, 1_000_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 5, 1_000_000_000)  # a sub-zone of package 0: must not be added again
    pkg1 = _zone(tmp_path, "intel-rapl:1", 10_000_000, 1_000_000_000)
    meter = RaplMeter(tmp_path)
    assert meter.available and [z.name for z in meter.zones] == ["intel-rapl:0", "intel-rapl:1"]
    token = meter.start()
    (pkg0 / "energy_uj").write_text("499999\n")  # wrapped: 1e9 − 999e6 + 499999 + 1 µJ = 1.5 J
    (pkg1 / "energy_uj").write_text("12000000\n")  # +2 J
    assert meter.stop(token) == pytest.approx(3.5)


def test_rapl_unavailable_says_why(tmp_path: Path) -> None:
    missing = RaplMeter(tmp_path / "absent")
    assert not missing.available and missing.reason.startswith("unavailable: ") and "absent" in missing.reason
    empty = RaplMeter(tmp_path)
    assert not empty.available and "no intel-rapl" in empty.reason


def test_cli_bench_onnx_artifact(tiny_onnx: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact, checkpoint = tiny_onnx
    out = tmp_path / "bench"
    rc = main(["bench", str(artifact), "--runs", "3", "--warmup", "1", "--sustain-seconds", "0.3", "--click-rate", "10",
               "--threads", "1", "--power", "shared", "--load", "idle", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "bench.json").read_text())
    anchor, target = data["targets"]
    assert anchor["kind"] == TORCH and anchor["path"] == str(checkpoint) and anchor["anchor"] is None
    assert target["kind"] == ARTIFACT and target["anchor"] == anchor["label"] and list(target["size"]) == list(SIZE)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert target["files"] == {role: e["bytes"] for role, e in manifest["files"].items()}
    assert [(r["target"], r["threads"]) for r in data["ratios"]] == [(target["label"], 1)]
    assert {"report.md", "bench.json", "latency.png"} <= {p.name for p in out.iterdir()}
    assert "energy:" in capsys.readouterr().out
