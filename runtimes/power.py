"""Power profiles: how hard a runtime may work the CPU — thread counts and whether idle threads spin.

    profile = get_profile("shared")                     # or DEFAULT_PROFILE; unknown names: one-line ValueError
    OrtBackend(artifact, power="shared")                # onnxruntime: spinning + threads, per graph
    open_session("model.pt", power="efficient")         # torch: OpenMP wait policy (before torch starts) + threads
    env = worker_env("latency", os.environ)             # what a bench worker process starts with

Spinning threads answer fastest when the machine is idle and lose badly when it is shared: a thread that
busy-waits for the next parallel region stays runnable, so the scheduler cannot tell it from real work, and
a parallel region of OpenMP's static schedule waits for its slowest thread. The three profiles:

- `latency`: every core, spinning (onnxruntime's default, libgomp's default brief spin): today's behaviour.
- `efficient`: one thread, nothing spins: the fewest CPU-seconds per click (no wake-ups, no busy-waiting).
- `shared`: no spinning; onnxruntime uses every core with dynamic block sizing (the calling thread takes
  the work of a worker that the scheduler has not run yet), torch half the cores with sleeping waits.

This module is the one home of the profile names and their knobs; `edgeclick bench` measures each one
(`runtimes/bench.py`), and the README says which is the default and why.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from edgeclick import contract

# onnxruntime SessionOptions config keys (onnxruntime_session_options_config_keys.h).
ORT_INTRA_SPINNING = "session.intra_op.allow_spinning"
ORT_INTER_SPINNING = "session.inter_op.allow_spinning"
ORT_DYNAMIC_BLOCK_BASE = "session.dynamic_block_base"
"""Positive: a parallel loop is split into blocks that shrink as it progresses, so a thread the OS has not
scheduled yet leaves less work behind for the others to wait on (onnxruntime >= 1.11)."""

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"
"""OpenMP's wait policy: read once when the OpenMP runtime loads (with `import torch`), never again."""


def available_cores() -> int:
    """CPU cores this process may run on (affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadRule:
    """A thread count as a function of the cores available: clamp(floor(cores × per_core), minimum, maximum).

    Attributes:
        per_core: threads per available core (1.0 = all cores, 0.5 = half, 0 = none beyond `minimum`).
        minimum: at least this many threads (>= 1).
        maximum: at most this many (None: no cap).
    """

    per_core: float
    minimum: int = 1
    maximum: int | None = None

    def count(self, cores: int | None = None) -> int:
        """Threads for `cores` available cores (default: this process's)."""
        n = max(self.minimum, math.floor((available_cores() if cores is None else cores) * self.per_core))
        return n if self.maximum is None else min(n, self.maximum)


@dataclass(frozen=True)
class PowerProfile:
    """One profile's knobs, per backend.

    Attributes:
        name: registry key (`--power NAME`).
        summary: one line for --help and the reports.
        ort_threads: onnxruntime intra-op threads per graph (contract.ENCODER / contract.DECODER).
        ort_spinning: whether onnxruntime's intra- and inter-op pool threads busy-wait for work.
        ort_dynamic_block_base: onnxruntime's session.dynamic_block_base (0: off, onnxruntime's default).
        torch_threads: torch.set_num_threads (one pool per process: torch has no per-graph count).
        omp_wait_policy: "ACTIVE" (spin), "PASSIVE" (sleep at once) or None: the OpenMP runtime's own
            default (libgomp: spin for about 300,000 iterations, then sleep). Set in the environment before
            torch is imported; a process that imported torch earlier keeps the policy it started with.
        wasm_threads: onnxruntime-web `ort.env.wasm.numThreads` of the browser's navigator.hardwareConcurrency.
        executorch_threads: ExecuTorch's threadpool size (XNNPACK and portable kernels), set when the profile
            is named for an ExecuTorch artifact (runtimes/artifact.POOL_FORMATS); ExecuTorch exposes no
            spinning knob.
    """

    name: str
    summary: str
    ort_threads: Mapping[str, ThreadRule]
    ort_spinning: bool
    ort_dynamic_block_base: int
    torch_threads: ThreadRule
    omp_wait_policy: str | None
    wasm_threads: ThreadRule
    executorch_threads: ThreadRule | None = None

    def ort_thread_counts(self, cores: int | None = None) -> dict[str, int]:
        """Intra-op threads per graph on a machine with `cores` cores (default: this process's)."""
        return {graph: rule.count(cores) for graph, rule in self.ort_threads.items()}

    def ort_config_entries(self) -> dict[str, str]:
        """onnxruntime SessionOptions config entries (key → value) this profile sets on every graph."""
        spin = "1" if self.ort_spinning else "0"
        entries = {ORT_INTRA_SPINNING: spin, ORT_INTER_SPINNING: spin}
        if self.ort_dynamic_block_base > 0:
            entries[ORT_DYNAMIC_BLOCK_BASE] = str(self.ort_dynamic_block_base)
        return entries

    def describe(self, cores: int | None = None) -> dict[str, Any]:
        """JSON-friendly knobs, thread counts resolved for `cores` (default: this process's) — for reports."""
        return {"name": self.name, "summary": self.summary, "cores": cores or available_cores(),
                "ort_threads": self.ort_thread_counts(cores), "ort_config": self.ort_config_entries(),
                "torch_threads": self.torch_threads.count(cores), "omp_wait_policy": self.omp_wait_policy,
                "wasm_threads": asdict(self.wasm_threads)}


ORT_KEYS: tuple[str, ...] = (ORT_INTRA_SPINNING, ORT_INTER_SPINNING, ORT_DYNAMIC_BLOCK_BASE)


def ort_config_entries(options: Any) -> dict[str, str]:
    """The power-related config entries an onnxruntime SessionOptions holds (read back, for reports/tests)."""
    found = {}
    for key in ORT_KEYS:
        try:
            found[key] = options.get_session_config_entry(key)
        except RuntimeError:  # onnxruntime raises for a key that was never set
            continue
    return found


def _both(rule: ThreadRule) -> dict[str, ThreadRule]:
    return {contract.ENCODER: rule, contract.DECODER: rule}


ALL_CORES, ONE, HALF = ThreadRule(1.0), ThreadRule(0.0), ThreadRule(0.5)
PROFILES: dict[str, PowerProfile] = {
    p.name: p for p in (
        PowerProfile("latency", "every core, threads spin between work: fastest on an idle machine, slow and "
                     "CPU-hungry when it is shared", ort_threads=_both(ALL_CORES), ort_spinning=True,
                     ort_dynamic_block_base=0, torch_threads=ALL_CORES, omp_wait_policy=None,
                     wasm_threads=ThreadRule(1.0, maximum=4), executorch_threads=ALL_CORES),
        PowerProfile("efficient", "one thread, nothing spins: the fewest CPU-seconds (battery) per click",
                     ort_threads=_both(ONE), ort_spinning=False, ort_dynamic_block_base=0, torch_threads=ONE,
                     omp_wait_policy="PASSIVE", wasm_threads=ONE, executorch_threads=ONE),
        PowerProfile("shared", "nothing spins, work is handed to whichever thread runs: robust when other work "
                     "shares the CPU", ort_threads=_both(ALL_CORES), ort_spinning=False, ort_dynamic_block_base=4,
                     torch_threads=HALF, omp_wait_policy="PASSIVE", wasm_threads=ThreadRule(0.5, maximum=4),
                     executorch_threads=HALF),
    )
}
DEFAULT_PROFILE = "shared"
"""The profile every command and API uses unless told otherwise; why, with the numbers: docs/runtimes.md."""


def get_profile(name: "str | PowerProfile | None" = None) -> PowerProfile:
    """The registered profile `name` (None: DEFAULT_PROFILE; a PowerProfile passes through).

    Raises:
        ValueError: an unknown name; the message lists the registered ones.
    """
    if isinstance(name, PowerProfile):
        return name
    key = DEFAULT_PROFILE if name is None else str(name).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown power profile {name!r}; choose one of {', '.join(PROFILES)} (e.g. --power {DEFAULT_PROFILE})")
    return PROFILES[key]


def parse_profiles(text: str) -> tuple[str, ...]:
    """'latency,shared' or 'all' → registered names in registry order; ValueError naming a bad one."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"no power profile in {text!r}; e.g. {DEFAULT_PROFILE} or all")
    if items == ["all"]:
        return tuple(PROFILES)
    names = {get_profile(item).name for item in items}
    return tuple(n for n in PROFILES if n in names)


# ---------------------------------------------------------------------------------------------------
# torch / OpenMP: process-wide knobs
# ---------------------------------------------------------------------------------------------------


def omp_environment(profile: "str | PowerProfile | None", base: Mapping[str, str]) -> dict[str, str]:
    """`base` with the profile's OpenMP wait policy: set, or removed where the profile keeps the runtime's
    default (an inherited value would otherwise decide instead of the profile)."""
    env = dict(base)
    policy = get_profile(profile).omp_wait_policy
    if policy is None:
        env.pop(OMP_WAIT_POLICY, None)
    else:
        env[OMP_WAIT_POLICY] = policy
    return env


def worker_env(profile: "str | PowerProfile | None", base: Mapping[str, str]) -> dict[str, str]:
    """The environment a fresh worker process (bench) starts with under `profile`."""
    return omp_environment(profile, base)


def torch_started() -> bool:
    """Whether torch (and with it the OpenMP runtime) is already loaded in this process."""
    return "torch" in sys.modules


_WARNED: set[tuple[str | None, str | None]] = set()


def apply_process_env(profile: "str | PowerProfile | None") -> bool:
    """Put the profile's OpenMP wait policy into os.environ while torch is not yet imported.

    Returns True when it takes effect; False when torch was imported before (the OpenMP runtime read its
    environment then), with a one-line warning when that policy differs from the profile's."""
    p = get_profile(profile)
    if not torch_started():
        if p.omp_wait_policy is None:
            os.environ.pop(OMP_WAIT_POLICY, None)
        else:
            os.environ[OMP_WAIT_POLICY] = p.omp_wait_policy
        return True
    current = os.environ.get(OMP_WAIT_POLICY)
    if current != p.omp_wait_policy and (current, p.omp_wait_policy) not in _WARNED:
        _WARNED.add((current, p.omp_wait_policy))  # once per process and mismatch, not at every Session
        warnings.warn(f"power profile {p.name!r}: torch was imported before it was applied, so OpenMP keeps wait policy "
                      f"{current or 'default'} instead of {p.omp_wait_policy or 'default'}; start Python with "
                      f"OMP_WAIT_POLICY={p.omp_wait_policy or ''} set, or apply the profile before importing torch",
                      RuntimeWarning, stacklevel=2)
    return False


def apply_torch(profile: "str | PowerProfile | None", threads: int | None = None) -> int:
    """Set torch's intra-op threads (the profile's, or `threads`) and, if still possible, the OpenMP wait
    policy; returns the thread count set. Imports torch."""
    p = get_profile(profile)
    apply_process_env(p)
    import torch

    n = p.torch_threads.count() if threads is None else threads
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


def web_profiles() -> dict[str, Any]:
    """What the browser page needs (contract.json's page.power): per profile its WASM thread rule and
    onnxruntime-web session config entries; the page resolves the rule with navigator.hardwareConcurrency."""
    return {name: {"summary": p.summary, "wasm_threads": asdict(p.wasm_threads), "ort_config": p.ort_config_entries()}
            for name, p in PROFILES.items()}


# ---------------------------------------------------------------------------------------------------
# command line: one option, the same on every command that runs graphs
# ---------------------------------------------------------------------------------------------------

POWER_HELP = (f"power profile: {', '.join(f'{n} ({p.summary})' for n, p in PROFILES.items())}; default {DEFAULT_PROFILE} "
              "(docs/runtimes.md#power-profiles)")


def power_arg(text: str) -> str:
    """argparse type of `--power NAME`: the registered name, or a one-line error listing them."""
    from edgeclick.args import arg_type

    return arg_type(lambda t: get_profile(t).name)(text)


def powers_arg(text: str) -> tuple[str, ...]:
    """argparse type of `--power NAME[,NAME...]|all` (bench, deploy-table)."""
    from edgeclick.args import arg_type

    return arg_type(parse_profiles)(text)


def add_power_argument(parser: Any) -> None:
    """`--power NAME` on a command that runs graphs in this process (segment, parity, evaluate, web, demo)."""
    parser.add_argument("--power", type=power_arg, default=None, metavar="PROFILE", help=POWER_HELP)
