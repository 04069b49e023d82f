"""Training: config loading/overrides, and a 20-step smoke run of the tiny config."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from edgeclick.model import create_model
from edgeclick.model.checkpoint import load_checkpoint
from edgeclick.model.config import ConvAdapterConfig
from edgeclick.train.config import ConfigError, TrainConfig, load_config
from edgeclick.train.loop import build_trainer
from edgeclick.train.module import ClickTrainer, WarmupCosine

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "train" / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))


def test_unknown_keys_rejected_with_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"optim\.lrr.*known keys at optim.*'lr'"):
        load_config(TINY, ["optim.lrr=1e-4"])
    with pytest.raises(ConfigError, match=r"'max_step'\].*'max_steps'"):
        load_config(TINY, ["max_step=3"])
    with pytest.raises(ConfigError, match=r"adapter\.sobol.*'sobel'"):
        load_config(TINY, ["adapter.sobol=true", "base_checkpoint=x.pt"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TINY, ["max_steps"])


def test_overrides_applied_and_typed() -> None:
    cfg = load_config(TINY, ["optim.lr=1e-4", "data.crop_size=[32,64]", "adapter.sobel=true", "base_checkpoint=b.pt",
                             "loss.boundary=0.1", "max_steps=7"])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)  # YAML reads 1e-4 as a string
    assert cfg.data.crop_size == (32, 64)
    assert cfg.adapter == ConvAdapterConfig(sobel=True)
    assert cfg.loss.boundary == 0.1 and cfg.max_steps == 7
    assert cfg.model_config().adapter == ConvAdapterConfig(sobel=True)
    assert TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg  # the resolved YAML round-trips
    assert load_config(TINY, ["adapter=null"]).adapter is None


def test_invalid_combinations_rejected() -> None:
    with pytest.raises(ConfigError, match="base_checkpoint"):
        load_config(TINY, ["lora.rank=4"])
    with pytest.raises(ConfigError, match="train_first_conv"):
        load_config(TINY, ["train_first_conv=true"])
    with pytest.raises(ConfigError, match="unknown model"):
        load_config(TINY, ["model=hrnet99"])
    with pytest.raises(ConfigError, match="expected int"):
        load_config(TINY, ["batch_size=four"])


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONFIG_DIR)) for p in CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model_config().fusion in ("early", "late")
    # Adapter runs need their frozen base; a base run may start from one (photo_base_w18s: the synthetic base).
    assert not cfg.is_adapter_run or cfg.base_checkpoint is not None
    assert cfg.click_scale_init is None or cfg.base_checkpoint is None


def test_ablation_configs_extend_the_references() -> None:
    ref = load_config(CONFIG_DIR / "reference_conv_adapter.yaml")
    conv = load_config(CONFIG_DIR / "ablation" / "conv.yaml")
    assert conv.adapter == ConvAdapterConfig(skip=False, sobel=False, skip_channels=16)
    assert conv.loss.boundary == 0.0 and ref.loss.boundary == 0.1
    assert conv.data == ref.data and conv.train_first_conv and conv.out_dir == "runs/ablation/conv"
    full = load_config(CONFIG_DIR / "ablation" / "conv_skip_bl_sobel.yaml")
    assert TrainConfig.from_dict({**full.to_dict(), "out_dir": ref.out_dir}) == ref
    lora = load_config(CONFIG_DIR / "ablation" / "lora.yaml")
    assert lora.lora is not None and lora.lora.rank == 4 and lora.adapter is None and lora.loss.boundary == 0.0


def test_warmup_cosine_schedule() -> None:
    f = WarmupCosine(warmup=4, total=14, floor=0.1)
    assert f(0) == pytest.approx(0.2) and f(3) == pytest.approx(0.8)
    assert f(4) == pytest.approx(1.0) and f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


class _Losses(L.Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.values.append(float(outputs["loss"]))


def test_smoke_training_20_steps(tmp_path: Path) -> None:
    cfg = load_config(TINY, [f"out_dir={tmp_path / 'run'}", "max_steps=20", "val.every=10"])
    torch.set_num_threads(cfg.trainer.threads)
    L.seed_everything(cfg.seed, verbose=False)
    module = ClickTrainer(cfg)
    initial = {k: v.clone() for k, v in module.model.state_dict().items()}
    losses = _Losses()
    trainer = build_trainer(cfg)
    trainer.callbacks.append(losses)
    trainer.fit(module)

    assert trainer.global_step == 20 and len(losses.values) == 20
    assert all(math.isfinite(v) for v in losses.values)
    assert np.mean(losses.values[-5:]) < np.mean(losses.values[:5])  # learning, on average
    out = tmp_path / "run"
    assert TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text())) == cfg
    assert (out / "last.ckpt").is_file() and torch.load(out / "last.ckpt", weights_only=False)["global_step"] == 20
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    last = load_checkpoint(out / "last.pt")
    best = load_checkpoint(out / "best.pt")
    assert last.config == cfg.model_config() == best.config
    changed = [k for k, v in last.state_dict().items() if k in initial and not torch.equal(v, initial[k])]
    assert len(changed) > 0.5 * len(initial)  # the weights trained
    assert "val/noc90" in trainer.callback_metrics and 1 <= float(trainer.callback_metrics["val/noc90"]) <= cfg.val.max_clicks
    payload = torch.load(out / "best.pt", weights_only=True)
    assert payload["meta"]["train_config"] == cfg.to_dict() and payload["meta"]["val/noc90"] is not None


def test_adapter_run_keeps_base_frozen_and_in_eval(tmp_path: Path) -> None:
    """A few adapter steps: only adapter tensors change, BN statistics stay, the model stays in eval mode."""
    from edgeclick.model.checkpoint import save_checkpoint

    from .helpers import randomize_

    base = tmp_path / "base.pt"
    save_checkpoint(randomize_(create_model("tiny"), seed=3), base)
    cfg = load_config(TINY, [f"out_dir={tmp_path / 'run'}", f"base_checkpoint={base}", "adapter.skip=true",
                             "lora.rank=2", "max_steps=3", "val.samples=0", "batch_size=2", "data.crop_size=[64,96]"])
    torch.set_num_threads(1)
    module = ClickTrainer(cfg)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = build_trainer(cfg)
    trainer.fit(module)
    assert not module.model.training and not any(m.training for m in module.model.modules())
    after = module.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= set(module.trainable_names)
    assert any("lora_B" in k for k in changed) and "up.weight" in changed
    assert (tmp_path / "run" / "best.adapter.pt").is_file() and (tmp_path / "run" / "last.adapter.pt").is_file()


def test_bf16_mixed_precision_runs_on_cpu(tmp_path: Path) -> None:
    """The autocast path (losses and clicks in float32, weights saved float32) works end to end."""
    from edgeclick.train.loop import fit

    cfg = load_config(TINY, [f"out_dir={tmp_path / 'run'}", "max_steps=2", "val.every=2", "batch_size=2",
                             "trainer.precision=bf16-mixed"])
    fit(cfg)
    payload = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert all(t.dtype != torch.bfloat16 for t in payload["state_dict"].values())
    assert payload["meta"]["val/noc90"] is not None and 1 <= payload["meta"]["val/noc90"] <= cfg.val.max_clicks


class _FirstDraw:
    """A numpy Generator stand-in whose first integers() call returns `first` (the number of simulated clicks)."""

    def __init__(self, first: int, rng: np.random.Generator) -> None:
        self.first: int | None = first
        self.rng = rng

    def integers(self, *args: Any, **kwargs: Any) -> Any:
        if self.first is not None:
            value, self.first = self.first, None
            return value
        return self.rng.integers(*args, **kwargs)


def test_simulated_clicks_extend_rows_without_touching_the_model(tmp_path: Path) -> None:
    """RITM's simulation: n clicks from the model's own errors, eval mode, no grad, prev mask fed back."""
    from edgeclick.train.data import build_datasets

    cfg = load_config(TINY, [f"out_dir={tmp_path}", "max_num_next_clicks=3"])
    torch.manual_seed(0)
    module = ClickTrainer(cfg)
    train_ds, _ = build_datasets(cfg.data)
    items = [train_ds[i] for i in range(2)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    module.model.train()
    stats = {k: v.clone() for k, v in module.model.state_dict().items() if "running" in k}
    module.rng = _FirstDraw(2, np.random.default_rng(0))  # type: ignore[assignment]
    clicks, prev, n = module.simulate_clicks(batch["rgb"], batch["gt"], batch["points"])
    assert n == 2
    added = (clicks[..., 2] != -1).sum(dim=1) - (batch["points"][..., 2] != -1).sum(dim=1)
    assert added.tolist() == [2, 2]  # an untrained model errs on every sample
    assert not prev.requires_grad and 0 < float(prev.min()) and float(prev.max()) < 1  # sigmoid probabilities
    assert module.model.training  # mode restored
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in stats.items())  # eval: BN stats untouched

