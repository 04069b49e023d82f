"""One time-boxed training run on a GPU machine, with a throughput report and a small copy of the weights.

    python -m edgeclick.train.gpu_run --config train/configs/gpu_base_w18s.yaml --out $OUT [key=value ...]

Runs `edgeclick train`'s `fit` with a step timer attached, then writes into --out:

    throughput.json   crops/s over the timed steps (the first `WARMUP_STEPS` excluded: cuDNN autotuning,
                      worker start-up), steps, batch, wall time, device name, precision
    weights.pt        the run's final weights; stored in float16 when the float32 file would exceed
                      `--max-mib` (the device tool brings back files of at most 16 MiB), which
                      `edgeclick.model.checkpoint.load_checkpoint` reads back into float32 models
    config.yaml       the resolved config

The run folder itself (last.ckpt, tensorboard) stays under the config's out_dir unless it is overridden.
Evaluate the weights on the CPU afterwards (`edgeclick evaluate --checkpoint weights.pt --data grabcut`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from edgeclick.io import write_text_atomic
from edgeclick.train.bench_steps import StepTimer
from edgeclick.train.bundle import bundle
from edgeclick.train.callbacks import weights_names
from edgeclick.train.config import TrainConfig, load_config
from edgeclick.train.loop import build_trainer, check_out_dir
from edgeclick.train.module import ClickTrainer

WARMUP_STEPS: int = 20
"""Steps left out of the throughput figure."""


def crops_per_second(timer: StepTimer, batch_size: int) -> dict[str, float | int]:
    """Throughput over the steps after WARMUP_STEPS: compute time plus the wait for data, per crop."""
    timing = timer.seconds_per_step(skip=WARMUP_STEPS)
    return {"steps_timed": timing["steps_timed"], "s_per_step": timing["s_per_step_mean"],
            "data_wait_s_per_step": timing["data_s_per_step_mean"], "crops_per_s": batch_size / timing["s_per_step_mean"]}


def write_small_weights(src: Path, dst: Path, max_mib: float) -> str:
    """Copy `src` to `dst`, in float16 when the float32 file is over `max_mib`; returns the dtype written."""
    if src.stat().st_size <= max_mib * 2**20:
        shutil.copyfile(src, dst)
        return "float32"
    bundle(src, dst, float16=True)
    return "float16"


def run(cfg: TrainConfig, out: Path, max_mib: float) -> dict[str, Any]:
    """Train `cfg` (resuming when its out_dir holds a run), then write the report and weights into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    resume_from = check_out_dir(cfg, resume=(Path(cfg.out_dir) / "last.ckpt").is_file())
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    timer = StepTimer(verbose=False)
    trainer = build_trainer(cfg)
    trainer.callbacks.append(timer)
    start = time.perf_counter()
    trainer.fit(ClickTrainer(cfg), ckpt_path=str(resume_from) if resume_from else None)
    wall = time.perf_counter() - start
    _, last_name = weights_names(cfg)
    dtype = write_small_weights(Path(cfg.out_dir) / last_name, out / "weights.pt", max_mib)
    report = {
        "config": cfg.to_dict(), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "precision": cfg.trainer.precision, "batch_size": cfg.batch_size, "crop_size": list(cfg.data.crop_size),
        "global_step": int(trainer.global_step), "wall_s": wall, "weights_dtype": dtype,
        **crops_per_second(timer, cfg.batch_size),
    }
    write_text_atomic(out / "throughput.json", json.dumps(report, indent=2))
    write_text_atomic(out / "config.yaml", cfg.to_yaml())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="folder for throughput.json, weights.pt, config.yaml")
    parser.add_argument("--max-mib", type=float, default=15.5, help="largest float32 weights file copied as is")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    report = run(load_config(args.config, args.overrides), args.out, args.max_mib)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
