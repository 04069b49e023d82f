"""DDP on CPU: 2 processes (gloo) through the real CLI; disjoint data shards, identical replicas."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from edgeclick.model.checkpoint import load_checkpoint
from edgeclick.train.module import parameter_digest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train" / "configs" / "tiny_smoke.yaml"


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    steps = 3
    cmd = [sys.executable, "-m", "edgeclick", "train", "--config", str(TINY),
           f"out_dir={out}", f"max_steps={steps}", "val.samples=0", "batch_size=2", "record_samples=true",
           "max_num_next_clicks=1", "--devices", "2", "--accelerator", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ranks = [json.loads((out / "trace" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["global_step"] for r in ranks] == [steps, steps]
    seen = [r["indices"] for r in ranks]
    assert all(len(s) == steps * 2 for s in seen)  # batch_size is per process
    assert not set(seen[0]) & set(seen[1])  # each rank read its own DistributedSampler shard
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"]  # gradients all-reduced: identical replicas
    assert ranks[0]["initial_param_sha256"] == ranks[1]["initial_param_sha256"] != ranks[0]["param_sha256"]

    # The saved weights are those replicas.
    trained = load_checkpoint(out / "last.pt")
    assert parameter_digest(trained) == ranks[0]["param_sha256"]
    resolved = (out / "config.yaml").read_text()
    assert "devices: 2" in resolved and "accelerator: cpu" in resolved
    saved = torch.load(out / "last.ckpt", weights_only=False, map_location="cpu")
    assert saved["global_step"] == steps
