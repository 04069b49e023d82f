"""Build the Lightning Trainer for a TrainConfig and run (or resume) a training run.

    out_dir = fit(load_config("train/configs/tiny_smoke.yaml"), resume=False)

devices × num_nodes > 1 runs DDP: Lightning re-launches the current command once per extra local
process (the `edgeclick train ...` command line), gloo on CPU, NCCL on GPU. Each rank reads its own
DistributedSampler shard; batch_size is per process.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy, Strategy

from edgeclick.train.callbacks import CONFIG_FILE, LAST_CKPT, MONITOR, ResumableCheckpoint, RunOutputs
from edgeclick.train.checkpoints import AtomicCheckpointIO
from edgeclick.train.config import ConfigError, TrainConfig, diff_configs
from edgeclick.train.module import ClickTrainer


def build_trainer(cfg: TrainConfig) -> L.Trainer:
    """The Lightning Trainer for `cfg`: callbacks, logger, strategy, precision, step budget."""
    t = cfg.trainer
    out = Path(cfg.out_dir)
    world = t.devices * t.num_nodes
    strategy: Strategy | str = DDPStrategy(find_unused_parameters=t.find_unused_parameters) if world > 1 else "auto"
    validate = cfg.val.samples > 0
    callbacks: list[L.Callback] = [RunOutputs(cfg), ResumableCheckpoint(out, cfg.checkpoint_every),
                                   LearningRateMonitor(logging_interval="step")]
    if validate and cfg.early_stopping_patience > 0:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="min", patience=cfg.early_stopping_patience,
                                       check_on_train_epoch_end=False))
    steps_mode = cfg.max_steps > 0
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,  # type: ignore[arg-type]
        sync_batchnorm=t.sync_batchnorm,
        max_steps=cfg.max_steps if steps_mode else -1,
        max_epochs=-1 if steps_mode else cfg.max_epochs,
        max_time=None if t.max_minutes is None else timedelta(minutes=t.max_minutes),
        val_check_interval=cfg.val.every if validate else None,
        check_val_every_n_epoch=None if validate else 1,
        limit_val_batches=None if validate else 0,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.optim.grad_clip,
        log_every_n_steps=t.log_every,
        logger=TensorBoardLogger(save_dir=str(out), name="", version="tensorboard"),
        callbacks=callbacks,
        enable_checkpointing=False,  # ResumableCheckpoint and RunOutputs write the files
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out),
        enable_model_summary=False,
    )


def check_out_dir(cfg: TrainConfig, resume: bool) -> Path | None:
    """The checkpoint to resume from (None for a fresh run), after checking out_dir agrees.

    Raises:
        FileNotFoundError: --resume without out_dir/last.ckpt.
        ConfigError: a fresh run into a folder holding a run, or a resume that changes the model.
    """
    out = Path(cfg.out_dir)
    last = out / LAST_CKPT
    if not resume:
        if last.exists():
            raise ConfigError(f"{out} already holds a run ({last}); pass --resume to continue it or choose another out_dir")
        return None
    if not last.is_file():
        raise FileNotFoundError(f"--resume: there is no {last} to resume from")
    saved = out / CONFIG_FILE
    if saved.is_file():
        changes = diff_configs(TrainConfig.from_dict(yaml.safe_load(saved.read_text())), cfg)
        if changes:
            raise ConfigError(f"--resume would change the model of the run in {out}: " + "; ".join(changes))
    return last


def fit(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Train (or resume) the run `cfg` describes; returns out_dir."""
    ckpt = check_out_dir(cfg, resume)
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = ClickTrainer(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(module, ckpt_path=str(ckpt) if ckpt is not None else None)
    return Path(cfg.out_dir)
