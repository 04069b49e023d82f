"""Power profiles (runtimes/power.py) and the bench's standard background load (runtimes/load.py): every profile
sets the knobs it names — onnxruntime session options per graph, the environment and torch threads of a bench
worker — the load always stops, and an unknown profile is one line.

No torch import at the top: bench workers import `omp_backend` from this module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from edgeclick import contract
from edgeclick.runtimes import bench as bench_module
from edgeclick.runtimes import load as load_module
from edgeclick.runtimes.bench import FACTORY, TORCH, BenchConfig, BenchTarget, run_bench
from edgeclick.runtimes.load import IDLE, LOADED, background_load, standard_hogs
from edgeclick.runtimes.power import (DEFAULT_PROFILE, OMP_WAIT_POLICY, PROFILES, ThreadRule, get_profile,
                                      ort_config_entries, parse_profiles, worker_env)

from .test_bench import FakeBackend

SIZE = (64, 96)
ROOT = Path(__file__).resolve().parents[1]


def omp_backend(size: tuple[int, int], threads: int, power: str | None = None) -> FakeBackend:
    """Bench factory: a fake backend whose name reports the worker's OpenMP wait policy, threads and profile."""
    backend = FakeBackend(tuple(size), 0.0)  # type: ignore[arg-type]
    backend.name = json.dumps({"omp": os.environ.get(OMP_WAIT_POLICY), "threads": threads, "power": power})
    return backend


OMP = f"{__name__}:omp_backend"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------------


def test_registry_and_thread_rules() -> None:
    assert set(PROFILES) == {"latency", "efficient", "shared"} and DEFAULT_PROFILE in PROFILES
    assert get_profile(None).name == DEFAULT_PROFILE and get_profile(" Shared ").name == "shared"
    assert ThreadRule(1.0).count(8) == 8 and ThreadRule(0.5).count(2) == 1 and ThreadRule(0.0).count(16) == 1
    assert ThreadRule(1.0, maximum=4).count(16) == 4 and ThreadRule(0.5, minimum=2).count(2) == 2
    assert parse_profiles("all") == tuple(PROFILES) and parse_profiles("shared,latency") == ("latency", "shared")
    assert get_profile("efficient").ort_thread_counts(16) == {contract.ENCODER: 1, contract.DECODER: 1}
    assert get_profile("latency").ort_thread_counts(16) == {contract.ENCODER: 16, contract.DECODER: 16}
    # ExecuTorch (issue 19) has its named place in every profile.
    assert all(p.executorch_threads is not None for p in PROFILES.values())


@pytest.mark.parametrize("bad", ["turbo", "", "latency,"])
def test_unknown_profile_is_one_line(bad: str, tiny_onnx: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError) as info:
        get_profile(bad)
    message = str(info.value)
    assert "\n" not in message and "unknown power profile" in message and all(name in message for name in PROFILES)
    from edgeclick.runtimes.ort import OrtBackend

    with pytest.raises(ValueError, match="unknown power profile"):
        OrtBackend(tiny_onnx[0], power=bad)


def test_unknown_profile_on_the_command_line(tiny_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    artifact, checkpoint = tiny_onnx
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(tmp_path / "im.png")
    for argv in (["segment", str(checkpoint), str(tmp_path / "im.png"), "--click", "3,3,+", "--power", "turbo"],
                 ["bench", str(artifact), "--power", "latency,turbo"]):
        proc = subprocess.run([sys.executable, "-m", "edgeclick", *argv], capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "unknown power profile 'turbo'" in lines[0] and "latency, efficient, shared" in lines[0]


# ---------------------------------------------------------------------------------------------------
# onnxruntime: session options per graph
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROFILES))
def test_ort_sessions_get_the_profile_knobs(name: str, tiny_onnx: tuple[Path, Path]) -> None:
    from edgeclick.runtimes.artifact import open_backend
    from edgeclick.runtimes.session import open_artifact_session

    profile = PROFILES[name]
    backend = open_backend(tiny_onnx[0], power=name)
    for graph, session in backend.sessions.items():
        opts = session.get_session_options()
        assert opts.intra_op_num_threads == profile.ort_thread_counts()[graph]
        assert ort_config_entries(opts) == profile.ort_config_entries()
    spin = "1" if profile.ort_spinning else "0"
    assert profile.ort_config_entries()["session.intra_op.allow_spinning"] == spin
    assert profile.ort_config_entries()["session.inter_op.allow_spinning"] == spin
    # An explicit thread count overrides the profile's count and keeps its spinning.
    session = open_artifact_session(tiny_onnx[0], threads={contract.DECODER: 3}, power=name)
    opts = session.backend.sessions[contract.DECODER].get_session_options()
    assert opts.intra_op_num_threads == 3 and ort_config_entries(opts) == profile.ort_config_entries()
    session.set_image(np.zeros((40, 50, 3), dtype=np.uint8))
    assert session.click(10, 10, True).shape == (40, 50)


def test_default_profile_is_used_when_none_is_named(tiny_onnx: tuple[Path, Path]) -> None:
    from edgeclick.runtimes.ort import OrtBackend

    backend = OrtBackend(tiny_onnx[0])
    assert backend.power.name == DEFAULT_PROFILE
    opts = backend.sessions[contract.ENCODER].get_session_options()
    assert ort_config_entries(opts) == get_profile(None).ort_config_entries()


# ---------------------------------------------------------------------------------------------------
# torch / OpenMP: what a bench worker starts with
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROFILES))
def test_worker_env_sets_or_clears_the_wait_policy(name: str) -> None:
    env = worker_env(name, {OMP_WAIT_POLICY: "ACTIVE", "KEEP": "1"})
    assert env["KEEP"] == "1" and env.get(OMP_WAIT_POLICY) == PROFILES[name].omp_wait_policy


@pytest.mark.parametrize("name", list(PROFILES))
def test_bench_workers_run_under_the_profile(name: str, tiny_onnx: tuple[Path, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch worker's environment (before torch starts) and thread count, and a factory worker's
    environment, threads and profile, are the profile's — whatever this process's environment says."""
    monkeypatch.setenv(OMP_WAIT_POLICY, "ACTIVE")
    profile = PROFILES[name]
    targets = [BenchTarget("torch", TORCH, str(tiny_onnx[1]), SIZE), BenchTarget("omp", FACTORY, OMP, SIZE)]
    report = run_bench(targets, BenchConfig(warmup=0, runs=2, sustain_seconds=0, threads=(), powers=(name,)))
    torch_run, omp_run = report.results
    assert torch_run.power == omp_run.power == name and torch_run.load == IDLE
    assert torch_run.knobs["omp_wait_policy"] == profile.omp_wait_policy
    assert torch_run.knobs["torch_threads"] == torch_run.threads == profile.torch_threads.count()
    seen = json.loads(omp_run.backend)
    assert seen == {"omp": profile.omp_wait_policy, "threads": profile.ort_thread_counts()[contract.ENCODER], "power": name}


def test_cli_applies_the_wait_policy_before_torch_starts(tiny_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    """`edgeclick segment --power efficient`: OMP_WAIT_POLICY is in the environment when torch is first imported
    (the OpenMP runtime reads it then and never again), and building the parser imports no torch."""
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(tmp_path / "im.png")
    probe = f"""
import os, sys, json
class Probe:
    seen = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and Probe.seen is None:
            Probe.seen = os.environ.get("OMP_WAIT_POLICY", "<unset>")
        return None
sys.meta_path.insert(0, Probe())
from edgeclick.cli import build_parser, main
build_parser()
assert "torch" not in sys.modules, "building the parser imported torch"
rc = main(["segment", {str(tiny_onnx[1])!r}, {str(tmp_path / 'im.png')!r}, "--click", "3,3,+", "--power", "efficient",
           "--out", {str(tmp_path / 'mask.png')!r}])
import torch
print(json.dumps({{"rc": rc, "seen": Probe.seen, "threads": torch.get_num_threads()}}))
"""
    env = {k: v for k, v in os.environ.items() if k != OMP_WAIT_POLICY}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"rc": 0, "seen": "PASSIVE", "threads": 1}


# ---------------------------------------------------------------------------------------------------
# the standard background load
# ---------------------------------------------------------------------------------------------------


def test_standard_load_size() -> None:
    assert standard_hogs(1) == 1 and standard_hogs(2) == 1 and standard_hogs(8) == 7
    assert standard_hogs() == max(1, (os.cpu_count() or 1) - 1)


def test_load_stops_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with background_load(2, deadline_s=60) as hog:
            pids = hog.pids
            assert len(pids) == 2 and all(_alive(p) for p in pids)
            raise RuntimeError("boom")
    assert not any(_alive(p) for p in pids)


def test_hog_exits_on_its_own_at_the_deadline_and_when_its_parent_dies() -> None:
    start = time.monotonic()
    with background_load(1, deadline_s=0.5) as hog:
        proc_pid = hog.pids[0]
        while _alive(proc_pid) and time.monotonic() - start < 10:
            # reaped by the context manager at exit; here only check it stopped burning: /proc state
            state = Path(f"/proc/{proc_pid}/stat").read_text().split()[2] if Path(f"/proc/{proc_pid}/stat").exists() else "X"
            if state == "Z":
                break
            time.sleep(0.05)
    assert time.monotonic() - start < 10
    # A parent killed with SIGKILL cannot stop its hogs: they notice and exit by themselves.
    code = ("import sys, os, time\nfrom edgeclick.runtimes.load import background_load\n"
            "cm = background_load(1, deadline_s=120)\nhog = cm.__enter__()\nprint(hog.pids[0], flush=True)\n"
            "time.sleep(0.3)\nos.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    orphan = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(orphan), "the hog outlived its killed parent"


def test_hogs_stop_when_the_bench_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[int, ...]] = []
    real = load_module.background_load

    from contextlib import contextmanager

    @contextmanager
    def recording(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with real(*args, **kwargs) as hog:
            started.append(hog.pids)
            yield hog

    monkeypatch.setattr(bench_module, "background_load", recording)
    bad = BenchTarget("bad", FACTORY, f"{__name__}:no_such_factory", SIZE)
    with pytest.raises(RuntimeError, match="(?s)bench worker for .bad.*loaded.*no_such_factory"):
        run_bench([bad], BenchConfig(warmup=0, runs=1, sustain_seconds=0, threads=(1,), loads=(LOADED,)))
    assert started and len(started[0]) == standard_hogs(bench_module.available_cores())
    assert not any(_alive(p) for p in started[0])


# ---------------------------------------------------------------------------------------------------
# the report: every profile, idle and loaded
# ---------------------------------------------------------------------------------------------------


def test_bench_measures_every_profile_idle_and_loaded(tmp_path: Path) -> None:
    from edgeclick.runtimes.bench_report import write_bench_report

    config = BenchConfig(warmup=0, runs=3, sustain_seconds=0, threads=(), powers=tuple(PROFILES), loads=(IDLE, LOADED))
    report = run_bench([BenchTarget("omp", FACTORY, OMP, SIZE)], config)
    assert [(r.power, r.load) for r in report.results] == [(p, load) for p in PROFILES for load in (IDLE, LOADED)]
    assert all(r.background_processes == (0 if r.load == IDLE else standard_hogs(bench_module.available_cores()))
               for r in report.results)
    assert all(r.cpu_s_per_image is not None and r.session_cpu_s is not None for r in report.results)
    ratios = report.load_ratios()
    assert [row["power"] for row in ratios] == list(PROFILES) and all(row["session_loaded_over_idle"] > 0 for row in ratios)
    files = write_bench_report(report, tmp_path / "bench")
    md = files["report"].read_text()
    assert "## Power profiles" in md and "Loaded / idle" in md and "OMP_WAIT_POLICY" in md
    with Image.open(files["power_chart"]) as png:
        assert png.format == "PNG" and png.size[0] >= 400
    data = json.loads(files["json"].read_text())
    assert set(data["power_profiles"]) == set(PROFILES) and len(data["load_ratios"]) == len(PROFILES)


def test_web_page_gets_every_profile() -> None:
    """contract.json carries each profile's WASM thread rule and config entries; the server's --power is the default."""
    from edgeclick.runtimes.web import web_contract

    power = web_contract("efficient")["page"]["power"]
    assert power["default"] == "efficient" and set(power["profiles"]) == set(PROFILES)
    for name, entry in power["profiles"].items():
        assert entry["wasm_threads"] == {"per_core": PROFILES[name].wasm_threads.per_core,
                                         "minimum": PROFILES[name].wasm_threads.minimum,
                                         "maximum": PROFILES[name].wasm_threads.maximum}
        assert entry["ort_config"] == PROFILES[name].ort_config_entries()
    assert web_contract()["page"]["power"]["default"] == DEFAULT_PROFILE


@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_named_profile_sizes_the_executorch_pool_and_no_profile_leaves_it(profile: str, monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    """open_backend hands ExecuTorch the profile's pool size only when a profile is named (no import of ExecuTorch)."""
    from edgeclick.runtimes import artifact

    seen: list[dict] = []

    class FakeBackend:
        def __init__(self, artifact_dir: Path, **kwargs: object) -> None:
            seen.append(kwargs)

    class FakeManifest:
        complete, format, root, missing = True, "executorch", tmp_path, None

    monkeypatch.setattr(artifact, "read_manifest", lambda _: FakeManifest())
    monkeypatch.setattr(artifact.importlib, "import_module", lambda _: type("M", (), {"ExecuTorchBackend": FakeBackend}))
    artifact.open_backend(tmp_path, power=profile)
    artifact.open_backend(tmp_path)
    artifact.open_backend(tmp_path, power=profile, threads=3)
    assert seen == [{"threads": PROFILES[profile].executorch_threads.count()}, {}, {"threads": 3}]
