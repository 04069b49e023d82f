"""Energy per click: RAPL counters on Linux (/sys/class/powercap), powermetrics on macOS.

Where neither is readable (e.g. inside a VM) the meters say so, and the bench reports energy as
"unavailable: <reason>" rather than a number.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

POWERCAP_ROOT = Path("/sys/class/powercap")


class RaplMeter:
    """Package energy from Linux powercap RAPL zones (intel-rapl:N, also used by AMD's driver).

    Only top-level package zones are summed (intel-rapl:0, intel-rapl:1, ...); their sub-zones (core,
    uncore, dram: intel-rapl:0:0) are parts of the package and would be counted twice. The counters are
    machine-wide: other processes' energy is included.
    """

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.zones: list[Path] = []
        self.reason = ""
        if not root.is_dir():
            self.reason = f"unavailable: {root} does not exist (no RAPL powercap interface; typical inside a VM)"
            return
        zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1 and (p / "energy_uj").exists())
        if not zones:
            self.reason = f"unavailable: no intel-rapl:N package zone with energy_uj under {root}"
            return
        try:
            for z in zones:
                int((z / "energy_uj").read_text())
                int((z / "max_energy_range_uj").read_text())
        except PermissionError as exc:
            self.reason = (f"unavailable: permission denied reading {exc.filename} (energy_uj is root-only since "
                           "Linux 5.10; run as root or chmod it)")
            return
        except (OSError, ValueError) as exc:
            self.reason = f"unavailable: cannot read RAPL counters: {exc}"
            return
        self.zones = zones
        self._ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def read(self) -> list[int]:
        """Current energy_uj of each zone (µJ)."""
        return [int((z / "energy_uj").read_text()) for z in self.zones]

    def joules(self, start: Sequence[int], end: Sequence[int]) -> float:
        """Energy between two readings (J); a counter that wrapped once is unwrapped with its range."""
        total = 0
        for s, e, r in zip(start, end, self._ranges, strict=True):
            total += e - s if e >= s else e + (r - s) + 1  # wraps from max_energy_range_uj to 0
        return total / 1e6

    def start(self) -> list[int]:
        return self.read()

    def stop(self, token: list[int]) -> float:
        """Joules since `start`."""
        return self.joules(token, self.read())


class PowermetricsMeter:
    """Package energy on macOS from `powermetrics --samplers cpu_power` (root only), sampled every 100 ms.

    Energy = mean sampled power × duration, using "Combined Power" (CPU + GPU + ANE) when the tool prints
    it, else "CPU Power". Not verified on a Mac in this project.
    """

    def __init__(self) -> None:
        self.reason = ""
        if shutil.which("powermetrics") is None:
            self.reason = "unavailable: powermetrics not found"
        elif os.geteuid() != 0:
            self.reason = "unavailable: powermetrics needs root (run the bench with sudo)"

    @property
    def available(self) -> bool:
        return not self.reason

    def start(self) -> tuple[subprocess.Popen[bytes], str, float]:
        """Start sampling; the token is (process, log file, start time)."""
        fd, log = tempfile.mkstemp(suffix=".powermetrics")
        os.close(fd)
        proc = subprocess.Popen(["powermetrics", "--samplers", "cpu_power", "-i", "100", "-o", log],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, log, time.perf_counter()

    def stop(self, token: tuple[subprocess.Popen[bytes], str, float]) -> float:
        """Stop sampling; joules since `start` (NaN when no sample was written)."""
        import re

        proc, log, started = token
        seconds = time.perf_counter() - started
        proc.terminate()
        proc.wait(timeout=10)
        text = Path(log).read_text(errors="replace")
        Path(log).unlink(missing_ok=True)
        mw = [float(v) for v in re.findall(r"Combined Power[^:]*:\s*([0-9.]+)\s*mW", text)]
        mw = mw or [float(v) for v in re.findall(r"CPU Power[^:]*:\s*([0-9.]+)\s*mW", text)]
        return float(np.mean(mw)) / 1e3 * seconds if mw else math.nan


def energy_meter() -> RaplMeter | PowermetricsMeter:
    """The meter for this platform; check `.available` and `.reason`."""
    if sys.platform == "darwin":
        return PowermetricsMeter()
    return RaplMeter()


def energy_status() -> str:
    meter = energy_meter()
    if meter.available:
        return "available: " + ("RAPL package counters" if isinstance(meter, RaplMeter) else "powermetrics cpu_power")
    return meter.reason
