"""Time training steps of a config on this machine, to size a run: `python -m edgeclick.train.bench_steps`.

    python -m edgeclick.train.bench_steps --config train/configs/reference_base_w18s.yaml --steps 20 [key=value ...]

Runs `steps` optimizer steps through the real Trainer (validation off, files in a temporary folder) and
prints JSON: mean / median wall seconds per step over the steps after the first (warm-up), the CPU
seconds of the training process per step (all its threads; on a shared machine the wall time inflates,
the CPU time much less), the wait for data, and the projected wall time of max_steps (validation excluded).
Steps vary with the 0..max_num_next_clicks simulated clicks (each an extra forward pass without
gradient), so the mean over enough steps is the number to size a run with.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from edgeclick.train.config import load_config
from edgeclick.train.loop import build_trainer
from edgeclick.train.module import ClickTrainer


class StepTimer(L.Callback):
    """Wall time of each training batch (data fetch excluded) and of each gap between batches (data fetch)."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose  # one stderr line per step
        self.step: list[float] = []
        self.cpu: list[float] = []
        self.data: list[float] = []
        self._start = 0.0
        self._cpu_start = 0.0
        self._end: float | None = None

    def seconds_per_step(self, skip: int = 1) -> dict[str, float | int]:
        """Means over the steps after the first `skip` (warm-up): compute, data wait, their sum, CPU.

        Falls back to every step when no more than `skip` were timed.
        """
        compute = self.step[skip:] or self.step
        data = self.data[skip:] or self.data or [0.0]
        return {"steps_timed": len(compute), "compute_s_per_step_mean": statistics.mean(compute),
                "compute_s_per_step_median": statistics.median(compute),
                "cpu_s_per_step_mean": statistics.mean(self.cpu[skip:] or self.cpu),
                "data_s_per_step_mean": statistics.mean(data),
                "s_per_step_mean": statistics.mean(compute) + statistics.mean(data)}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        if self._end is not None:
            self.data.append(self._start - self._end)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._end = time.perf_counter()
        self.step.append(self._end - self._start)
        self.cpu.append(time.process_time() - self._cpu_start)
        if not self.verbose:
            return
        data = f", data wait {self.data[-1]:.2f} s" if self.data else ""
        print(f"step {len(self.step)}: {self.step[-1]:.2f} s wall, {self.cpu[-1]:.2f} s CPU{data}", file=sys.stderr, flush=True)


def bench(config: str | Path, steps: int, overrides: list[str]) -> dict[str, Any]:
    """Seconds per step of `config` (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [*overrides, f"out_dir={tmp}/run", f"max_steps={steps}", "val.samples=0",
                                   f"checkpoint_every={steps + 1}"])
        if cfg.trainer.threads > 0:
            torch.set_num_threads(cfg.trainer.threads)
        L.seed_everything(cfg.seed, verbose=False)
        timer = StepTimer()
        trainer = build_trainer(cfg)
        trainer.callbacks.append(timer)
        trainer.fit(ClickTrainer(cfg))
    timing = timer.seconds_per_step(skip=1)
    return {
        "config": str(config), "overrides": overrides, "model": cfg.model, "adapter": cfg.adapter is not None,
        "lora": cfg.lora is not None, "crop_size": list(cfg.data.crop_size), "batch_size": cfg.batch_size,
        "threads": torch.get_num_threads(), **timing,
        "projected_minutes_for_max_steps": timing["s_per_step_mean"] * load_config(config, overrides).max_steps / 60.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    print(json.dumps(bench(args.config, args.steps, list(args.overrides)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
