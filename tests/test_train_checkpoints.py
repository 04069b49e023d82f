"""Training checkpoints: adapter-only files, base sha256 check, merge equality, atomic writes, resume."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import lightning as L
import pytest
import torch

from edgeclick.io import sha256_file
from edgeclick.model import create_model
from edgeclick.model.adapters import FIRST_CONV
from edgeclick.model.checkpoint import load_checkpoint, save_checkpoint
from edgeclick.model.lora import ConvLoRA
from edgeclick.train.checkpoints import (
    AtomicCheckpointIO,
    BaseMismatchError,
    is_adapter_tensor,
    load_adapter,
    max_logit_difference,
    merge,
    read_adapter,
)
from edgeclick.train.config import ConfigError, TrainConfig, load_config
from edgeclick.train.loop import build_trainer, check_out_dir, fit
from edgeclick.train.module import ClickTrainer

from .helpers import randomize_

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and fit() sets the config's thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _base(path: Path, seed: int) -> Path:
    save_checkpoint(randomize_(create_model("tiny"), seed=seed), path)
    return path


@pytest.fixture
def base_ckpt(tmp_path: Path) -> Path:
    return _base(tmp_path / "base.pt", seed=1)


def _adapter_module(base: Path, tmp_path: Path, *, adapter: bool, lora: bool, first_conv: bool = False) -> ClickTrainer:
    cfg = load_config(TINY, [f"out_dir={tmp_path / 'run'}", f"base_checkpoint={base}"])
    cfg = TrainConfig.from_dict({**cfg.to_dict(),
                                 "adapter": {"skip": True, "sobel": True} if adapter else None,
                                 "lora": {"rank": 2} if lora else None,
                                 "train_first_conv": first_conv})
    module = ClickTrainer(cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # trained-looking adapters: LoRA B and the zero-initialised convs non-zero
        for p in module.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return module


@pytest.mark.parametrize("adapter,lora,first_conv", [(True, True, True), (False, True, False), (True, False, False)])
def test_adapter_checkpoint_holds_only_adapter_tensors(base_ckpt: Path, tmp_path: Path, adapter: bool, lora: bool, first_conv: bool) -> None:
    module = _adapter_module(base_ckpt, tmp_path, adapter=adapter, lora=lora, first_conv=first_conv)
    path = module.export_weights(tmp_path / "a.adapter.pt")
    payload = read_adapter(path)
    names = set(payload["tensors"])
    assert names == set(module.trainable_names)
    assert all(is_adapter_tensor(n) or n == FIRST_CONV for n in names)
    assert (FIRST_CONV in names) == first_conv
    assert any("lora_B" in n for n in names) == lora
    assert ("up.weight" in names) == adapter
    total = sum(p.numel() for p in module.model.parameters())
    assert sum(t.numel() for t in payload["tensors"].values()) < 0.5 * total  # no base weights smuggled in
    assert payload["base_sha256"] == sha256_file(base_ckpt)
    assert payload["config"] == module.model.config.to_dict()
    assert payload["train_first_conv"] == first_conv
    assert payload["meta"]["train_config"]["base_checkpoint"] == str(base_ckpt)
    # Frozen base: exactly the saved names require grad.
    assert {n for n, p in module.model.named_parameters() if p.requires_grad} == names


def test_load_adapter_reproduces_the_trained_model(base_ckpt: Path, tmp_path: Path) -> None:
    module = _adapter_module(base_ckpt, tmp_path, adapter=True, lora=True, first_conv=True)
    path = module.export_weights(tmp_path / "a.adapter.pt")
    loaded = load_adapter(base_ckpt, path)
    assert max_logit_difference(module.model.eval(), loaded) == 0.0


def test_load_adapter_refuses_another_base(base_ckpt: Path, tmp_path: Path) -> None:
    module = _adapter_module(base_ckpt, tmp_path, adapter=True, lora=True)
    path = module.export_weights(tmp_path / "a.adapter.pt")
    other = _base(tmp_path / "other.pt", seed=2)
    with pytest.raises(BaseMismatchError) as info:
        load_adapter(other, path)
    message = str(info.value)
    assert sha256_file(base_ckpt) in message and sha256_file(other) in message
    with pytest.raises(BaseMismatchError):
        merge(other, path, tmp_path / "merged.pt")
    assert not (tmp_path / "merged.pt").exists()


@pytest.mark.parametrize("adapter", [False, True], ids=["lora", "conv+lora"])
def test_merge_equals_unmerged(base_ckpt: Path, tmp_path: Path, adapter: bool) -> None:
    module = _adapter_module(base_ckpt, tmp_path, adapter=adapter, lora=True)
    path = module.export_weights(tmp_path / "a.adapter.pt")
    out = merge(base_ckpt, path, tmp_path / "merged.pt")
    merged = load_checkpoint(out)
    assert merged.config.lora is None and (merged.config.adapter is not None) == adapter
    assert not any(isinstance(m, ConvLoRA) for m in merged.modules())
    unmerged = load_adapter(base_ckpt, path)
    base = load_checkpoint(base_ckpt)
    for seed in (1, 2):
        assert max_logit_difference(unmerged, merged, size=(96, 64), seed=seed) <= 1e-5
    # The adapters changed the model, so the equality above is not the base against itself.
    if not adapter:
        assert max_logit_difference(base, merged) > 1e-3


class _Crash(RuntimeError):
    pass


def _crashing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    f.write(b"PK\x03\x04 half a checkpoint")
    raise _Crash("killed mid-write")


def test_atomic_writes_leave_no_truncated_file(base_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _adapter_module(base_ckpt, tmp_path, adapter=True, lora=True)
    folder = tmp_path / "out"
    good = module.export_weights(folder / "a.adapter.pt")
    before = good.read_bytes()
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, folder / "last.ckpt")
    last_before = (folder / "last.ckpt").read_bytes()

    monkeypatch.setattr(torch, "save", _crashing_save)
    with pytest.raises(_Crash):
        module.export_weights(folder / "a.adapter.pt")
    with pytest.raises(_Crash):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, folder / "last.ckpt")
    with pytest.raises(_Crash):
        io.save_checkpoint({"state_dict": {}}, folder / "fresh.ckpt")
    monkeypatch.undo()

    assert good.read_bytes() == before  # the old complete file is untouched
    assert (folder / "last.ckpt").read_bytes() == last_before
    assert not (folder / "fresh.ckpt").exists()  # nothing rather than a truncated file
    assert sorted(p.name for p in folder.iterdir()) == ["a.adapter.pt", "last.ckpt"]  # no temp files left
    assert torch.load(folder / "last.ckpt", weights_only=True)["state_dict"]["w"].sum() == 3


class _StartState(L.Callback):
    """Records global_step and the optimizer state at the start of (resumed) training."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.global_step = trainer.global_step
        self.optimizer_state = {k: {n: v.clone() for n, v in s.items()} for k, s in trainer.optimizers[0].state_dict()["state"].items()}


def _small(tmp_path: Path, steps: int) -> TrainConfig:
    return load_config(TINY, [f"out_dir={tmp_path / 'run'}", f"max_steps={steps}", "checkpoint_every=2",
                              "val.samples=0", "batch_size=2", "max_num_next_clicks=1"])


def test_resume_continues_from_last_step(tmp_path: Path) -> None:
    fit(_small(tmp_path, 3))
    last = tmp_path / "run" / "last.ckpt"
    saved = torch.load(last, weights_only=False, map_location="cpu")
    assert saved["global_step"] == 3  # the final step is saved even off the checkpoint_every grid
    saved_state = saved["optimizer_states"][0]["state"]
    assert saved_state and all(float(s["step"]) == 3 for s in saved_state.values())

    cfg = _small(tmp_path, 5)
    ckpt = check_out_dir(cfg, resume=True)
    assert ckpt == last
    probe = _StartState()
    trainer = build_trainer(cfg)
    trainer.callbacks.append(probe)
    trainer.fit(ClickTrainer(cfg), ckpt_path=str(ckpt))
    assert probe.global_step == 3
    for key, state in saved_state.items():  # Adam moments restored, not re-initialised
        torch.testing.assert_close(probe.optimizer_state[key]["exp_avg"], state["exp_avg"])
        torch.testing.assert_close(probe.optimizer_state[key]["exp_avg_sq"], state["exp_avg_sq"])
    assert trainer.global_step == 5 > probe.global_step
    assert torch.load(last, weights_only=False, map_location="cpu")["global_step"] == 5


def test_out_dir_guards(tmp_path: Path) -> None:
    cfg = _small(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="resume"):
        check_out_dir(cfg, resume=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds a run"):
        check_out_dir(cfg, resume=False)
    (tmp_path / "run" / "config.yaml").write_text(cfg.to_yaml())
    changed = TrainConfig.from_dict({**cfg.to_dict(), "fusion": "late"})
    with pytest.raises(ConfigError, match="fusion"):
        check_out_dir(changed, resume=True)
    assert check_out_dir(cfg, resume=True) == tmp_path / "run" / "last.ckpt"


def test_lightning_checkpoint_io_is_atomic(tmp_path: Path) -> None:
    trainer = build_trainer(_small(tmp_path, 1))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_best_weights_break_noc_ties_by_miou(tmp_path: Path) -> None:
    """At the NoC cap (every from-scratch run's first hundreds of steps) better masks still count as better."""
    from types import SimpleNamespace

    from edgeclick.train.callbacks import RunOutputs
    from edgeclick.train.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml",
                      [f"out_dir={tmp_path}"])
    outputs = RunOutputs(cfg)
    written: list[float] = []
    module = SimpleNamespace(export_weights=lambda path, meta: written.append(meta["val/noc90"]))
    for noc, miou in ((10.0, 0.2), (10.0, 0.4), (10.0, 0.3), (9.0, 0.1), (9.0, 0.1)):
        trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True,
                                  callback_metrics={"val/noc90": torch.tensor(noc), "val/miou@3": torch.tensor(miou)})
        outputs.on_validation_end(trainer, module)  # type: ignore[arg-type]
    assert written == [10.0, 10.0, 9.0]  # 0.2, then 0.4 (tie broken), then NoC 9; equal scores keep the earlier
    restored = RunOutputs(cfg)
    restored.load_state_dict(outputs.state_dict())
    assert (restored.best_score, restored.best_tiebreak) == (9.0, pytest.approx(0.1))


class _Interrupt(L.Callback):
    """After optimizer step `step`: stop (Lightning then saves last.ckpt and counts the epoch as done) or crash
    (the run dies; last.ckpt is the periodic one, mid-epoch, as a kill -9 leaves it)."""

    def __init__(self, step: int, crash: bool) -> None:
        self.step = step
        self.crash = crash

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            if self.crash:
                raise RuntimeError("simulated kill")
            trainer.should_stop = True


@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "killed"])
def test_resume_mid_epoch_reaches_the_uninterrupted_weights(tmp_path: Path, crash: bool) -> None:
    """Data order, augmentation, simulated clicks and dropout depend only on (seed, step): interrupted at
    step 7 of a 12-step epoch (killed: resumed from the step-5 checkpoint) and resumed, the run ends with
    bit-identical weights (CPU, same thread count)."""
    from edgeclick.train.config import load_config
    from edgeclick.train.loop import build_trainer, fit
    from edgeclick.train.module import ClickTrainer

    tiny = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"
    torch.set_num_threads(1)

    def config(name: str) -> Any:
        return load_config(tiny, [f"out_dir={tmp_path / name}", "max_steps=20", "checkpoint_every=5", "val.every=6"])

    fit(config("whole"))
    cfg = config("cut")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer = build_trainer(cfg)
    trainer.callbacks.append(_Interrupt(7, crash))
    if crash:
        with pytest.raises(RuntimeError, match="simulated kill"):
            trainer.fit(ClickTrainer(cfg))
        assert torch.load(tmp_path / "cut" / "last.ckpt", weights_only=False)["global_step"] == 5
    else:
        trainer.fit(ClickTrainer(cfg))
        assert trainer.global_step == 7
    fit(cfg, resume=True)
    whole = load_checkpoint(tmp_path / "whole" / "last.pt").state_dict()
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt").state_dict()
    assert [k for k in whole if not torch.equal(whole[k], resumed[k])] == []
