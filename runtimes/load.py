"""The bench's standard background load: one busy process per other core, bounded in time, always stopped.

    with background_load() as hog:          # os.cpu_count() - 1 busy processes (at least 1)
        result = spawn_worker(...)          # measured while the CPU is shared
    # here every hog has exited, also when the body raised

A hog is a plain Python busy loop in its own process (no numpy, no threads): it holds one core's worth of
runnable work, as a compile, a browser tab or a second model would. Each one exits on its own at its deadline
and when its parent process is gone (it polls getppid), so a bench killed with SIGKILL leaves nothing behind
for longer than a moment.

Each hog starts its own session (setsid), as another program would be: with Linux's scheduler autogroups
(sched_autogroup_enabled, on by default on desktop kernels) processes of one session share one group's CPU
share, so a hog in the bench's own session would take its CPU from the measured worker alone, as if it were
part of the app, instead of competing like the other program it stands for.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

IDLE, LOADED = "idle", "loaded"
LOADS: tuple[str, ...] = (IDLE, LOADED)
"""Bench conditions: nothing of ours beside the worker, or the standard background load."""

DEFAULT_DEADLINE_S = 3600.0
STOP_TIMEOUT_S = 5.0  # seconds a hog gets to exit after SIGTERM before SIGKILL

# The hog: spin until the deadline, checking every ~10 ms of work whether the parent is still there.
_HOG = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
parent = int(sys.argv[2])
n = 0
while time.monotonic() < end:
    n += 1
    if n % 100000 == 0 and os.getppid() != parent:
        break
"""


def standard_hogs(cores: int | None = None) -> int:
    """Busy processes of the standard load: one per core other than the measured one (at least 1)."""
    return max(1, (os.cpu_count() or 1) - 1 if cores is None else cores - 1)


@dataclass(frozen=True)
class Load:
    """A running background load.

    Attributes:
        processes: how many busy processes.
        pids: their process ids.
        deadline_s: seconds after start at which each exits on its own.
    """

    processes: int
    pids: tuple[int, ...]
    deadline_s: float


def parse_loads(text: str) -> tuple[str, ...]:
    """'idle,loaded' → (IDLE, LOADED) in that order; ValueError naming a bad item."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in LOADS]
    if bad or not items:
        raise ValueError(f"load {text!r}: use {', '.join(LOADS)} or both (idle,loaded)")
    return tuple(t for t in LOADS if t in items)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + STOP_TIMEOUT_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def background_load(processes: int | None = None, deadline_s: float = DEFAULT_DEADLINE_S) -> Iterator[Load]:
    """Run `processes` busy processes (default standard_hogs()) for the body; they are stopped when it ends,
    however it ends, and exit by themselves after `deadline_s` seconds or when this process dies."""
    n = standard_hogs() if processes is None else processes
    if n < 1 or deadline_s <= 0:
        raise ValueError(f"background load needs >= 1 process and a positive deadline, got {n} and {deadline_s} s")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", _HOG, repr(float(deadline_s)), str(os.getpid())],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        yield Load(n, tuple(p.pid for p in procs), deadline_s)
    finally:
        _stop(procs)
