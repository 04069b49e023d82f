"""Lightning callbacks that write a run's files into out_dir.

    out_dir/config.yaml            the resolved TrainConfig (written at fit start, rank 0)
    out_dir/last.ckpt              Lightning's resumable state (every `checkpoint_every` steps and at the end)
    out_dir/best.pt | best.adapter.pt   weights with the lowest val/noc90 so far, ties to the higher
                                   val/miou@3 (edgeclick formats)
    out_dir/last.pt | last.adapter.pt   weights at the end of training
    out_dir/trace/rank{r}.json     with record_samples: indices seen and parameter digest per rank

Everything is written atomically (temp file in the same folder, then os.replace).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from edgeclick.io import write_text_atomic
from edgeclick.train.config import TrainConfig

LAST_CKPT = "last.ckpt"
CONFIG_FILE = "config.yaml"
MONITOR = "val/noc90"
TIEBREAK = "val/miou@3"
"""Breaks MONITOR ties (higher wins): a model still at the NoC cap is better when its masks are better,
which is where every run from scratch spends its first hundreds of steps."""


def weights_names(cfg: TrainConfig) -> tuple[str, str]:
    """(best, last) file names of the exported weights for this kind of run."""
    if cfg.is_adapter_run:
        return "best.adapter.pt", "last.adapter.pt"
    return "best.pt", "last.pt"


class RunOutputs(Callback):
    """Writes the resolved config, the best weights (lowest val/noc90) and the final weights.

    Without any validation (val.samples 0, or val.every beyond max_steps) best = the final weights.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        self.best_name, self.last_name = weights_names(cfg)
        self.best_score = math.inf
        self.best_tiebreak = -math.inf
        self.best_written = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            write_text_atomic(self.out_dir / CONFIG_FILE, self.cfg.to_yaml())

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or MONITOR not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[MONITOR])
        metric = trainer.callback_metrics.get(TIEBREAK)
        tiebreak = float(metric) if metric is not None else -math.inf
        if (score, -tiebreak) < (self.best_score, -self.best_tiebreak):
            self.best_score, self.best_tiebreak = score, tiebreak
            self.best_written = True
            if trainer.is_global_zero:
                pl_module.export_weights(self.out_dir / self.best_name, meta={MONITOR: score})  # type: ignore[operator]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            pl_module.export_weights(self.out_dir / self.last_name)  # type: ignore[operator]
            if not self.best_written:
                pl_module.export_weights(self.out_dir / self.best_name, meta={MONITOR: None})  # type: ignore[operator]
        if self.cfg.record_samples:
            pl_module.write_trace(self.out_dir)  # type: ignore[operator]

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run killed after its final last.ckpt but before the weights files: `--resume` then finds no step
        # left, Lightning skips the train hooks, and on_train_end would never write them. The restored
        # weights are the final ones, so they are written here.
        if not trainer.is_global_zero or (self.out_dir / self.last_name).is_file():
            return
        pl_module.export_weights(self.out_dir / self.last_name)  # type: ignore[operator]
        if not (self.out_dir / self.best_name).is_file():
            pl_module.export_weights(self.out_dir / self.best_name, meta={MONITOR: None})  # type: ignore[operator]

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_tiebreak": self.best_tiebreak, "best_written": self.best_written}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = float(state_dict.get("best_score", math.inf))
        self.best_tiebreak = float(state_dict.get("best_tiebreak", -math.inf))
        self.best_written = bool(state_dict.get("best_written", False))


class ResumableCheckpoint(Callback):
    """Saves Lightning's full state to out_dir/last.ckpt every `every` optimizer steps and at the end.

    Uses `trainer.save_checkpoint` (all ranks call it, rank 0 writes through the trainer's
    CheckpointIO, which is AtomicCheckpointIO here). Resume with `trainer.fit(..., ckpt_path=that file)`.
    """

    def __init__(self, out_dir: str | Path, every: int) -> None:
        self.path = Path(out_dir) / LAST_CKPT
        self.every = max(1, int(every))
        self._saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self._saved_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: optimizer, loops, callbacks
            self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)
