"""Runtime benchmark: latency, cold start, memory, CPU cost, energy and a sustained click rate per backend.

    report = run_bench([anchor, target], BenchConfig(threads=(1, 2, 4)))
    report = run_bench([anchor, target], BenchConfig(threads=(), powers=("latency", "shared"), loads=("idle", "loaded")))
    write_bench_report(report, "reports/bench/w18s_late")   # bench_report.py: report.md, bench.json, *.png

Every (target, thread count) runs in a fresh worker process (`python -m edgeclick.runtimes.bench
--worker SPEC --result OUT`), so cold start sees cold allocators and runtime caches, and peak RSS belongs to
that runtime alone (the worker does not import torch unless the backend does; the report says whether it
did). The OS page cache is not cleared: artifact files read earlier are served from memory.

In a worker: load the backend → first encoder run → first decoder run (cold start); `warmup` + `runs`
encoder runs and `warmup` + `runs` decoder runs (p50/p90/p99); process CPU time (every thread of the
worker, spinning ones included) over the timed encoder and decoder runs (CPU-seconds per image and per
click) and package energy over the decoder runs (joules per click); and, idle and for the largest thread
count only, a sustained run of decoder calls at a fixed click rate (CPU utilisation, achieved rate, missed
deadlines).

Power profiles and load (runtimes/power.py, runtimes/load.py): every worker runs under one power profile —
its OpenMP wait policy is in the worker's environment before torch starts, its onnxruntime spinning and
thread counts in the session options — idle or under the standard background load (one busy process per
other core, started before the worker and stopped after it). The idle and loaded runs of one (target,
profile, thread count) are back to back, so their ratio holds while other work on the machine drifts.
`threads=()` runs each profile at its own thread counts; explicit counts override the profile's counts
(its spinning stays).

The PyTorch anchor (eager TorchBackend over the source checkpoint at the same input size) is measured the
same way, and every backend number is also given as a ratio to it, which holds up better than absolute
times on a shared machine.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeclick import contract
from edgeclick.clicks import click_rows
from edgeclick.io import write_json_atomic

from .energy import energy_meter, energy_status
from .load import IDLE, LOADED, LOADS, background_load, standard_hogs
from .power import DEFAULT_PROFILE, PROFILES, apply_torch, available_cores, get_profile, ort_config_entries, worker_env

TORCH, ARTIFACT, FACTORY = "torch", "artifact", "factory"
SESSION_CLICKS = 5
"""A session of the reports: 1 image + this many clicks (runtimes/side_by_side.py uses the same)."""
KINDS = (TORCH, ARTIFACT, FACTORY)



def parse_threads(text: str) -> tuple[int, ...]:
    """'1,2,all' → (1, 2, cores) without duplicates, ascending."""
    values: set[int] = set()
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        n = available_cores() if item == "all" else int(item)
        if n < 1:
            raise ValueError(f"thread count must be >= 1 or 'all', got {item!r}")
        values.add(n)
    if not values:
        raise ValueError(f"no thread counts in {text!r}; e.g. 1,2,all")
    return tuple(sorted(values))


# ---------------------------------------------------------------------------------------------------
# What to measure
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchTarget:
    """What one worker loads.

    Attributes:
        label: row name in the report (unique within a run).
        kind: "torch" (eager TorchBackend over a checkpoint), "artifact" (an exported artifact folder,
            opened with edgeclick.runtimes.artifact.open_backend) or "factory" (a "module:function" called as
            function(size=(H, W), threads=n, **kwargs) -> Backend; for tests and custom runtimes).
        path: checkpoint file, artifact folder or "module:function".
        size: model input (H, W) in pixels.
        anchor: label of the torch target this one is compared to; None for an anchor.
        files: artifact file sizes in bytes by role (from the manifest), reported as they are.
        kwargs: extra keyword arguments of a factory (JSON-serialisable).
    """

    label: str
    kind: str
    path: str
    size: tuple[int, int]
    anchor: str | None = None
    files: dict[str, int] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown bench target kind {self.kind!r}; expected one of {KINDS}")
        contract.check_size(*self.size)


@dataclass(frozen=True)
class BenchConfig:
    """How long and how hard to measure.

    Attributes:
        warmup: untimed runs of each graph before the timed ones.
        runs: timed runs of each graph (percentiles over these).
        sustain_seconds: duration of the fixed-rate run (0 disables it).
        click_rate: clicks per second of the fixed-rate run.
        threads: thread counts of the sweep; the sustained run uses the largest. Empty: each power
            profile's own counts (runtimes/power.py).
        powers: power profiles to measure (names in runtimes.power.PROFILES).
        loads: "idle" and/or "loaded" (the standard background load, runtimes/load.py).
        timeout_s: wall-clock limit of one worker process.
    """

    warmup: int = 3
    runs: int = 20
    sustain_seconds: float = 60.0
    click_rate: float = 5.0
    threads: tuple[int, ...] = (1, 2)
    timeout_s: float = 3600.0
    powers: tuple[str, ...] = (DEFAULT_PROFILE,)
    loads: tuple[str, ...] = (IDLE,)

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0:
            raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={self.runs} warmup={self.warmup}")
        if self.sustain_seconds < 0 or self.click_rate <= 0:
            raise ValueError("sustain_seconds must be >= 0 and click_rate > 0")
        if self.threads and min(self.threads) < 1:
            raise ValueError(f"threads must be positive counts, got {self.threads}")
        if not self.powers:
            raise ValueError(f"name at least one power profile ({', '.join(PROFILES)})")
        for name in self.powers:
            get_profile(name)
        bad = [load for load in self.loads if load not in LOADS]
        if bad or not self.loads:
            raise ValueError(f"loads {list(self.loads)}: use {', '.join(LOADS)}")

    def thread_counts(self) -> tuple[int | None, ...]:
        """The sweep's counts; (None,) = each profile's own."""
        return self.threads or (None,)


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Percentiles of one graph's wall time per run, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    runs: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "Latency":
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()), float(ms.min()), int(ms.size))


@dataclass(frozen=True)
class ColdStart:
    """First use in a fresh process, in seconds.

    Attributes:
        import_s: importing the runtime's Python modules (edgeclick's backend module and what it pulls in).
        load_s: constructing the backend (reading the artifact, building sessions / loading weights).
        first_encoder_s / first_decoder_s: the first run of each graph.
        total_s: import + load + first encoder + first decoder.
        process_to_first_mask_s: from the parent's spawn call to the first decoder output, interpreter
            start-up included.
    """

    import_s: float
    load_s: float
    first_encoder_s: float
    first_decoder_s: float
    total_s: float
    process_to_first_mask_s: float


@dataclass(frozen=True)
class Sustained:
    """Decoder calls at a fixed click rate for a fixed time.

    Attributes:
        target_rate: clicks per second asked for.
        seconds: wall time of the run (s), at least the scheduled duration.
        clicks: clicks run.
        achieved_rate: clicks / seconds.
        missed_deadlines: clicks that finished after the end of their slot (start + 1/rate).
        max_lateness_ms: the worst finish time past a slot's end (0 when none was late).
        cpu_utilisation_cores: process CPU time / wall time (0..cores; all threads counted).
        cpu_utilisation_per_core: the same divided by the available cores (0..1).
        latency: decoder wall time per click under this load.
        energy_j_per_click: package energy per click over the run, or "unavailable: <reason>".
        power_w: mean package power over the run, or "unavailable: <reason>".
    """

    target_rate: float
    seconds: float
    clicks: int
    achieved_rate: float
    missed_deadlines: int
    max_lateness_ms: float
    cpu_utilisation_cores: float
    cpu_utilisation_per_core: float
    latency: Latency
    energy_j_per_click: float | str
    power_w: float | str


@dataclass(frozen=True)
class RunResult:
    """One worker: one target at one thread count.

    Attributes:
        target: BenchTarget.label.
        threads: intra-op thread count used (the encoder's, where graphs differ; see `knobs`);
            `threads_applied` says whether the backend took it.
        backend: the backend's own name.
        cold: cold start.
        encoder / decoder: latency per image / per click after warm-up.
        cpu_s_per_click: process CPU seconds per timed decoder run (all threads).
        cpu_s_per_image: process CPU seconds per timed encoder run (all threads).
        clicks_per_cpu_s: its inverse.
        energy_j_per_click: package energy per timed decoder run (J), or "unavailable: <reason>".
        peak_rss_mb: the worker's peak resident memory (MiB): VmHWM where /proc exists, else ru_maxrss.
        ru_maxrss_mb: getrusage(RUSAGE_SELF).ru_maxrss (MiB). On Linux it is not reset by exec: the kernel
            carries the forking parent's peak into it, so a large parent inflates it; VmHWM is per address
            space and starts afresh at exec.
        vm_hwm_mb: /proc/self/status VmHWM (MiB), None where there is no /proc.
        baseline_rss_mb: VmRSS after importing edgeclick's basics, before the runtime (MiB), None without /proc.
        torch_in_process: torch was imported in the worker (its libraries then count in the RSS).
        sustained: the fixed-rate run (largest thread count only), else None.
        load_1m: the machine's 1-minute load average when the worker finished (None where unknown): other
            work on the machine makes every number here slower and noisier.
        power: the power profile the worker ran under.
        load: "idle" or "loaded" (the standard background load ran beside the worker).
        background_processes: busy processes of that load (0 when idle).
        knobs: what the worker applied: threads per graph, onnxruntime config entries, OMP_WAIT_POLICY as
            the worker's environment had it, torch threads.
    """

    target: str
    threads: int
    threads_applied: bool
    backend: str
    cold: ColdStart
    encoder: Latency
    decoder: Latency
    cpu_s_per_click: float
    clicks_per_cpu_s: float
    energy_j_per_click: float | str
    peak_rss_mb: float
    ru_maxrss_mb: float
    vm_hwm_mb: float | None
    baseline_rss_mb: float | None
    torch_in_process: bool
    sustained: Sustained | None
    load_1m: float | None = None
    cpu_s_per_image: float | None = None
    power: str = DEFAULT_PROFILE
    load: str = IDLE
    background_processes: int = 0
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def session_ms(self) -> float:
        """Wall time of 1 image + SESSION_CLICKS clicks from the p50s (ms)."""
        return self.encoder.p50_ms + SESSION_CLICKS * self.decoder.p50_ms

    @property
    def session_cpu_s(self) -> float | None:
        """CPU seconds of 1 image + SESSION_CLICKS clicks (None without the per-image CPU time)."""
        if self.cpu_s_per_image is None:
            return None
        return self.cpu_s_per_image + SESSION_CLICKS * self.cpu_s_per_click

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunResult":
        data = dict(data)
        for f in fields(cls):  # reports written before a field existed
            if f.name not in data and f.default is not MISSING:
                data[f.name] = f.default
            elif f.name not in data and f.default_factory is not MISSING:
                data[f.name] = f.default_factory()
        data["cold"] = ColdStart(**data["cold"])
        for f in fields(cls):
            if f.type == "Latency":  # annotations are strings here (postponed evaluation)
                data[f.name] = Latency(**data[f.name])
        if data.get("sustained") is not None:
            s = dict(data["sustained"])
            s["latency"] = Latency(**s["latency"])
            data["sustained"] = Sustained(**s)
        return cls(**{f.name: data[f.name] for f in fields(cls)})


RATIO_METRICS: dict[str, Callable[[RunResult], float | None]] = {
    "encoder_p50": lambda r: r.encoder.p50_ms,
    "decoder_p50": lambda r: r.decoder.p50_ms,
    "decoder_p99": lambda r: r.decoder.p99_ms,
    "cpu_s_per_click": lambda r: r.cpu_s_per_click,
    "cold_start": lambda r: r.cold.total_s,
    "peak_rss": lambda r: r.peak_rss_mb,
    "sustained_cpu": lambda r: r.sustained.cpu_utilisation_cores if r.sustained else None,
}
"""Metrics given as backend / anchor ratios (lower is better for all of them)."""


@dataclass
class BenchReport:
    """All workers' results plus where they ran."""

    targets: list[BenchTarget]
    config: BenchConfig
    results: list[RunResult]
    machine: dict[str, Any]
    energy: str  # "available: <source>" or "unavailable: <reason>"

    def result(self, target: str, threads: int | None = None, power: str | None = None,
               load: str | None = None) -> RunResult | None:
        """The first result of `target` matching every criterion given (None: any)."""
        for r in self.results:
            if (r.target == target and (threads is None or r.threads == threads) and (power is None or r.power == power)
                    and (load is None or r.load == load)):
                return r
        return None

    def ratios(self) -> list[dict[str, Any]]:
        """Per non-anchor result: backend metric / the anchor's at the same thread count, profile and load
        (None where undefined)."""
        rows = []
        labels = {t.label: t for t in self.targets}
        for mine in self.results:
            t = labels.get(mine.target)
            if t is None or t.anchor is None:
                continue
            anchor = self.result(t.anchor, mine.threads, mine.power, mine.load)
            if anchor is None:
                continue
            row: dict[str, Any] = {"target": t.label, "anchor": t.anchor, "threads": mine.threads,
                                   "power": mine.power, "load": mine.load}
            for name, metric in RATIO_METRICS.items():
                a, b = metric(mine), metric(anchor)
                row[name] = (a / b) if (a is not None and b) else None
            rows.append(row)
        return rows

    def load_ratios(self) -> list[dict[str, Any]]:
        """Per (target, threads, profile) measured both ways: loaded / idle session wall time, and CPU/wall
        per click, from back-to-back workers."""
        rows = []
        for idle in self.results:
            if idle.load != IDLE:
                continue
            loaded = next((r for r in self.results if r.load == LOADED and r.target == idle.target
                           and r.threads == idle.threads and r.power == idle.power), None)
            if loaded is None:
                continue
            rows.append({"target": idle.target, "threads": idle.threads, "power": idle.power,
                         "session_idle_ms": idle.session_ms, "session_loaded_ms": loaded.session_ms,
                         "session_loaded_over_idle": loaded.session_ms / idle.session_ms,
                         "cpu_over_wall_idle": idle.cpu_s_per_click * 1e3 / idle.decoder.mean_ms,
                         "cpu_over_wall_loaded": loaded.cpu_s_per_click * 1e3 / loaded.decoder.mean_ms})
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "energy": self.energy,
            "config": asdict(self.config),
            "targets": [asdict(t) for t in self.targets],
            "results": [asdict(r) for r in self.results],
            "ratios": self.ratios(),
            "load_ratios": self.load_ratios(),
            "power_profiles": {name: get_profile(name).describe() for name in self.config.powers},
        }


# ---------------------------------------------------------------------------------------------------
# The worker (runs in its own process)
# ---------------------------------------------------------------------------------------------------


def _proc_status_mb(key: str) -> float | None:
    """A `VmRSS` / `VmHWM` line of /proc/self/status in MiB, None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _ru_maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def bench_image(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """1×H×W×3 uint8 encoder input: smooth gradients, a bright object and noise (not a constant image)."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], axis=-1)
    image[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = (230, 200, 40)
    image = image + rng.integers(0, 24, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)[None]


def click_rows_sequence(size: tuple[int, int], count: int = contract.NUM_CLICKS, seed: int = 0) -> list[np.ndarray]:
    """`count` 1×N×3 click-row arrays with 1, 2, ... clicks (wrapping at NUM_CLICKS), positions seeded."""
    h, w = size
    rng = np.random.default_rng(seed)
    xy = rng.uniform([0, 0], [w - 1, h - 1], size=(contract.NUM_CLICKS, 2))
    out = []
    for i in range(count):
        k = i % contract.NUM_CLICKS + 1
        out.append(click_rows([(x, y, j % 3 != 1) for j, (x, y) in enumerate(xy[:k])]))
    return out


def _load_backend(target: BenchTarget, threads: int | None, power: str) -> tuple[Any, bool, float, dict[str, Any]]:
    """(backend, threads applied, import seconds, knobs applied); runtime modules are imported here, timed.

    threads None: the power profile's own counts."""
    profile = get_profile(power)
    knobs: dict[str, Any] = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    start = time.perf_counter()
    if target.kind == TORCH:
        import torch  # noqa: F401 - timed: the OpenMP runtime starts here, with the worker's environment

        from .torch_ref import TorchBackend

        imported = time.perf_counter() - start
        n = apply_torch(profile, threads)
        knobs["torch_threads"] = n
        return TorchBackend.from_checkpoint(target.path, target.size), True, imported, knobs
    if target.kind == ARTIFACT:
        from edgeclick.manifest import read_manifest

        from .artifact import POOL_FORMATS, POWER_FORMATS, open_backend

        imported = time.perf_counter() - start
        fmt = read_manifest(target.path).format
        if fmt in POOL_FORMATS:  # ExecuTorch: a thread count (this worker's pool), no spinning knob
            return open_backend(target.path, threads=threads, power=profile), True, imported, knobs
        if fmt not in POWER_FORMATS:  # CoreML, TensorRT: no thread knobs
            return open_backend(target.path), False, imported, knobs
        backend = open_backend(target.path, threads=threads, power=profile)
        knobs.update(_ort_knobs(backend))
        return backend, True, imported, knobs
    module_name, _, function = target.path.partition(":")
    factory = getattr(importlib.import_module(module_name), function)
    imported = time.perf_counter() - start
    kwargs = dict(target.kwargs)
    if "power" in inspect.signature(factory).parameters:
        kwargs["power"] = profile.name
    n = threads if threads is not None else profile.ort_thread_counts()[contract.ENCODER]
    backend = factory(size=target.size, threads=n, **kwargs)
    knobs.update(_ort_knobs(backend))
    return backend, True, imported, knobs


def _ort_knobs(backend: Any) -> dict[str, Any]:
    """Threads and config entries per graph read back from onnxruntime sessions, where the backend has them."""
    sessions = getattr(backend, "sessions", None)
    if not isinstance(sessions, dict):
        return {}
    out: dict[str, Any] = {"threads_by_graph": {}, "ort_config": {}}
    for graph, session in sessions.items():
        opts = session.get_session_options()
        out["threads_by_graph"][graph] = opts.intra_op_num_threads
        out["ort_config"][graph] = ort_config_entries(opts)
    return out


def _timed(fn: Callable[[int], Any], n: int, meter: Any | None = None) -> tuple[list[float], float, float | str]:
    """Run fn(0..n-1); return per-call wall seconds, process CPU seconds over all calls, energy (J or reason)."""
    energy_start = meter.start() if meter is not None and meter.available else None
    cpu0 = time.process_time()
    walls = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        walls.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    energy: float | str = meter.reason if meter is not None and not meter.available else "unavailable: not measured"
    if energy_start is not None:
        energy = meter.stop(energy_start)
    return walls, cpu, energy


def _sustained(run_click: Callable[[int], Any], rate: float, seconds: float, cores: int, meter: Any) -> Sustained:
    """Run clicks on a fixed schedule (slot i starts at i/rate); a late click starts at once, none are dropped."""
    period = 1.0 / rate
    n = max(1, round(seconds * rate))
    energy_start = meter.start() if meter.available else None
    cpu0 = time.process_time()
    start = time.perf_counter()
    walls, missed, worst_late = [], 0, 0.0
    for i in range(n):
        due = start + i * period
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        t = time.perf_counter()
        run_click(i)
        end = time.perf_counter()
        walls.append(end - t)
        late = end - (due + period)
        if late > 0:
            missed += 1
            worst_late = max(worst_late, late)
    # The window ends with the last slot (or the last click, if later), so idle time in it counts.
    remaining = start + n * period - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    if energy_start is not None:
        joules = meter.stop(energy_start)
        energy_click: float | str = joules / n
        power: float | str = joules / wall
    else:
        energy_click = power = meter.reason
    return Sustained(rate, wall, n, n / wall, missed, worst_late * 1e3, cpu / wall, cpu / wall / cores,
                     Latency.of(walls), energy_click, power)


def run_worker(target: BenchTarget, threads: int | None, config: BenchConfig, sustain: bool, spawned_at: float,
               power: str = DEFAULT_PROFILE, load: str = IDLE, background_processes: int = 0) -> RunResult:
    """Measure one target at one thread count (None: the profile's) under `power` in this process (meant to
    be a fresh one, started with power.worker_env)."""
    baseline = _proc_status_mb("VmRSS")
    meter = energy_meter()
    t0 = time.perf_counter()
    backend, applied, import_s, knobs = _load_backend(target, threads, power)
    if threads is None:
        threads = int(knobs.get("torch_threads") or knobs.get("threads_by_graph", {}).get(contract.ENCODER) or 1)
    load_s = time.perf_counter() - t0 - import_s

    image = bench_image(target.size)
    t = time.perf_counter()
    features = backend.run(contract.ENCODER, {contract.IMAGE: image})
    first_encoder_s = time.perf_counter() - t
    rows = click_rows_sequence(target.size)
    prev = np.zeros((1, 1, *target.size), dtype=np.float32)
    t = time.perf_counter()
    logits = backend.run(contract.DECODER, {**features, contract.CLICKS: rows[0], contract.PREV_MASK: prev})[contract.LOGITS]
    first_decoder_s = time.perf_counter() - t
    ready = time.time() - spawned_at
    cold = ColdStart(import_s, load_s, first_encoder_s, first_decoder_s,
                     import_s + load_s + first_encoder_s + first_decoder_s, ready)

    # A realistic fed-back mask, computed once so the timed loops hold backend calls only.
    prev = (1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))).astype(np.float32)

    def encode(i: int) -> Any:
        return backend.run(contract.ENCODER, {contract.IMAGE: image})

    def decode(i: int) -> Any:
        return backend.run(contract.DECODER, {**features, contract.CLICKS: rows[i % len(rows)], contract.PREV_MASK: prev})

    _timed(encode, config.warmup)
    enc_walls, enc_cpu, _ = _timed(encode, config.runs)
    _timed(decode, config.warmup)
    dec_walls, dec_cpu, energy = _timed(decode, config.runs, meter)
    energy_click: float | str = energy / config.runs if isinstance(energy, float) else energy

    sustained = None
    if sustain and config.sustain_seconds > 0:
        sustained = _sustained(decode, config.click_rate, config.sustain_seconds, available_cores(), meter)
    cpu_click = dec_cpu / config.runs
    hwm, maxrss = _proc_status_mb("VmHWM"), _ru_maxrss_mb()
    return RunResult(
        target=target.label, threads=threads, threads_applied=applied, backend=str(getattr(backend, "name", "?")),
        cold=cold, encoder=Latency.of(enc_walls), decoder=Latency.of(dec_walls),
        cpu_s_per_click=cpu_click, clicks_per_cpu_s=(1.0 / cpu_click) if cpu_click > 0 else math.inf,
        energy_j_per_click=energy_click, peak_rss_mb=hwm if hwm is not None else maxrss, ru_maxrss_mb=maxrss,
        vm_hwm_mb=hwm,
        baseline_rss_mb=baseline, torch_in_process="torch" in sys.modules, sustained=sustained,
        load_1m=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        cpu_s_per_image=enc_cpu / config.runs, power=get_profile(power).name, load=load,
        background_processes=background_processes, knobs=knobs,
    )


def _target_from_json(data: dict[str, Any]) -> BenchTarget:
    data = dict(data)
    data["size"] = tuple(data["size"])
    return BenchTarget(**data)


def _config_from_json(data: dict[str, Any]) -> BenchConfig:
    data = dict(data)
    for key in ("threads", "powers", "loads"):
        if key in data:
            data[key] = tuple(data[key])
    return BenchConfig(**data)


def _worker_cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one edgeclick bench worker (started by run_bench)")
    parser.add_argument("--worker", required=True, type=Path, help="JSON spec written by run_bench")
    parser.add_argument("--result", required=True, type=Path, help="where to write the RunResult JSON")
    args = parser.parse_args(argv)
    spec = json.loads(args.worker.read_text())
    result = run_worker(_target_from_json(spec["target"]), spec["threads"], _config_from_json(spec["config"]),
                        spec["sustain"], spec["spawned_at"], spec.get("power", DEFAULT_PROFILE), spec.get("load", IDLE),
                        spec.get("background_processes", 0))
    write_json_atomic(args.result, asdict(result))
    return 0


# ---------------------------------------------------------------------------------------------------
# The parent: one worker per target and thread count
# ---------------------------------------------------------------------------------------------------


def spawn_worker(target: BenchTarget, threads: int | None, config: BenchConfig, sustain: bool,
                 power: str = DEFAULT_PROFILE, load: str = IDLE, background_processes: int = 0) -> RunResult:
    """Run `run_worker` in a fresh Python process, its environment set by the power profile (the OpenMP
    wait policy must be there before torch starts), and return its result. `load` and
    `background_processes` only label the result: the caller runs the load (run_bench).

    Raises:
        RuntimeError: the worker failed or timed out (its stderr tail is in the message).
    """
    with tempfile.TemporaryDirectory(prefix="edgeclick-bench-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spawned_at = time.time()
        spec = {"target": asdict(target), "threads": threads, "config": asdict(config), "sustain": sustain,
                "spawned_at": spawned_at, "power": power, "load": load, "background_processes": background_processes}
        spec_path.write_text(json.dumps(spec))
        env = worker_env(power, os.environ)
        # Factories ("tests.x:f") import from the caller's working directory, like `python -m` would.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "edgeclick.runtimes.bench", "--worker", str(spec_path), "--result", str(result_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=config.timeout_s, env=env)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"bench worker for {target.label!r} ({_how(threads, power, load)}) exceeded "
                               f"{config.timeout_s:.0f} s") from exc
        if proc.returncode != 0 or not result_path.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"bench worker for {target.label!r} ({_how(threads, power, load)}) failed "
                               f"(exit {proc.returncode}):\n{tail}")
        return RunResult.from_json(json.loads(result_path.read_text()))


def _how(threads: int | None, power: str, load: str) -> str:
    """'2 threads, shared, loaded' for progress lines and errors."""
    return f"{'profile' if threads is None else threads} threads, {power}, {load}"


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU, cores, OS, Python and runtime versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for module in ("torch", "onnxruntime", "numpy"):
        try:
            versions[module] = importlib.import_module(module).__version__
        except ImportError:
            versions[module] = None
    return {"cpu": cpu, "cores": available_cores(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def run_bench(
    targets: Sequence[BenchTarget],
    config: BenchConfig,
    *,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure every target at every thread count, each in a fresh worker process.

    Anchors (targets with `anchor=None`) should be in `targets`; every other target's `anchor` must name one.

    Raises:
        ValueError: duplicate labels or an anchor label that is not a target.
        RuntimeError: a worker failed.
    """
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise ValueError(f"bench target labels must be unique, got {labels}")
    for t in targets:
        if t.anchor is not None and t.anchor not in labels:
            raise ValueError(f"target {t.label!r} is compared to anchor {t.anchor!r}, which is not among the targets")
    results = []
    counts = config.thread_counts()
    top = counts[-1]
    hogs = standard_hogs(available_cores())
    # Thread count and profile outer, targets inner, idle and loaded innermost: an anchor and the backends
    # compared to it, and a worker's idle and loaded runs, are back to back, so a change in other work on
    # the machine hits both sides of a ratio alike.
    for threads in counts:
        for power in config.powers:
            for t in targets:
                for load in config.loads:
                    if progress:
                        progress(f"bench {t.label}: {_how(threads, power, load)}")
                    sustain = threads == top and load == IDLE
                    if load == LOADED:
                        # A fresh load per worker, bounded by the worker's own time limit (+1 min to start).
                        with background_load(hogs, deadline_s=config.timeout_s + 60.0):
                            results.append(spawn_worker(t, threads, config, sustain, power, load, hogs))
                    else:
                        results.append(spawn_worker(t, threads, config, sustain, power, load, 0))
    return BenchReport(list(targets), config, results, machine_info(), energy_status())


if __name__ == "__main__":
    sys.exit(_worker_cli())
