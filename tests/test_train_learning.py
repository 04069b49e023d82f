"""Does `edgeclick train` learn? A memorisation test through the real ClickTrainer, and a learning test.

Memorisation: two images, each holding two objects of the same colour; four items ask for each object in
turn, so only the clicks say which one is wanted. Every step draws fresh random first clicks inside the
object (RITM's MultiPointSampler) and simulates 0–3 corrective clicks from the model's own errors; after
training, the RITM evaluation clicker (deepest point of the error) must give IoU ≥ 0.9 on every item
within 3 clicks.
It fails when the loss, the labels, the click encoding (disks at the wrong place → the object cannot be
told apart) or the click simulation break; `test_memorisation_fails_when_clicks_are_ignored` shows
the check can fail.

Learning (slow): the tiny model on a stream of fresh synthetic crops, held-out mIoU@3 measured before and
after; it must rise well above where it started.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from edgeclick.data.sample import Sample
from edgeclick.model import disks
from edgeclick.train.config import TrainConfig, load_config
from edgeclick.train.data import GT_KEY, RGB_KEY, ClickTrainingDataset, build_datasets
from edgeclick.train.loop import build_trainer
from edgeclick.train.module import ClickTrainer, IndexedDataset
from edgeclick.train.validate import click_scores

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"
CROP = (64, 96)
MEMORISE_STEPS = 200


def two_object_images() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Two 64×96 images, each (image H×W×3 uint8, object A bool, object B bool), A and B of one colour."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:CROP[0], 0:CROP[1]]
    out = []
    for left, right, colour in (((16, 20, 12), (44, 70, 14), (220, 60, 40)), ((30, 24, 10), (20, 72, 13), (40, 90, 230))):
        image = rng.integers(60, 120, size=(*CROP, 3)).astype(np.uint8)  # textured grey background
        a = (yy - left[0]) ** 2 + (xx - left[1]) ** 2 <= left[2] ** 2  # a disk
        b = (np.abs(yy - right[0]) <= right[2]) & (np.abs(xx - right[1]) <= right[2])  # a square
        image[a | b] = colour
        out.append((image, a, b))
    return out


class FixedSource:
    """The four (image, wanted object, other object) items; `draw` ignores the generator (no augmentation)."""

    def __init__(self) -> None:
        self.items: list[tuple[Sample, np.ndarray]] = []
        for k, (image, a, b) in enumerate(two_object_images()):
            for i, (wanted, other) in enumerate(((a, b), (b, a))):
                self.items.append((Sample(f"fixed{k}_{i}", image, wanted.astype(np.int8)), other))

    def __len__(self) -> int:
        return len(self.items)

    def draw(self, index: int, rng: np.random.Generator) -> tuple[Sample, np.ndarray | None]:
        return self.items[index]


class FixedCropsTrainer(ClickTrainer):
    """The real ClickTrainer (steps, click simulation, losses, optimiser) on FixedSource, no validation."""

    def setup(self, stage: str) -> None:
        data = ClickTrainingDataset([FixedSource()], crop_size=CROP, scale_range=(1.0, 1.0), max_num_points=24,
                                    augment=False, seed=self.cfg.seed)
        self._train_ds = IndexedDataset(data)
        self._val_ds = None


def memorisation_config(tmp_path: Path, steps: int = MEMORISE_STEPS) -> TrainConfig:
    return load_config(TINY, [f"out_dir={tmp_path / 'run'}", f"max_steps={steps}", "batch_size=4", "val.samples=0",
                              "optim.lr=3e-3", "click_scale_init=1.0", "optim.warmup_steps=5", "optim.min_lr_ratio=0.1",
                              f"checkpoint_every={steps}", "trainer.log_every=50"])


def fixed_items() -> tuple[torch.Tensor, torch.Tensor]:
    """rgb 4×3×H×W in [0, 1] and gt 4×1×H×W of the four items, as the training dataset makes them."""
    data = ClickTrainingDataset([FixedSource()], crop_size=CROP, scale_range=(1.0, 1.0), max_num_points=24,
                                augment=False, seed=0)
    items = [data[i] for i in range(len(data))]
    return torch.stack([it[RGB_KEY] for it in items]), torch.stack([it[GT_KEY] for it in items])


def memorise(tmp_path: Path) -> np.ndarray:
    """Train FixedCropsTrainer; returns the 4×3 IoU after clicks 1..3 of the RITM clicker (eval mode)."""
    cfg = memorisation_config(tmp_path)
    torch.set_num_threads(1)
    L.seed_everything(cfg.seed, verbose=False)
    module = FixedCropsTrainer(cfg)
    build_trainer(cfg).fit(module)
    module.model.eval()
    rgb, gt = fixed_items()
    ious, _ = click_scores(module.model, rgb, gt, 3)
    return ious


def test_memorisation_through_click_trainer(tmp_path: Path) -> None:
    ious = memorise(tmp_path)
    # Each image's two objects share a colour, so IoU ≥ 0.9 on all four items needs the clicks.
    assert ious[:, 2].min() >= 0.9, f"IoU after clicks 1..3 per item: {ious.round(3).tolist()}"


@pytest.mark.slow
def test_memorisation_fails_when_clicks_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same run with the click maps blanked cannot tell the two objects apart: the check can fail."""
    real = disks.click_disks
    monkeypatch.setattr("edgeclick.model.ritm.click_disks",
                        lambda clicks, h, w, r, s=1.0: torch.zeros_like(real(clicks, h, w, r, s)))
    ious = memorise(tmp_path)
    assert ious[:, 2].min() < 0.9, f"fitted without clicks: {ious.round(3).tolist()}"


@pytest.mark.slow
def test_held_out_iou_rises_on_synthetic_objects(tmp_path: Path) -> None:
    """The tiny model from scratch (from-scratch recipe) on fresh synthetic crops: held-out mIoU@3 rises from
    ~0 to ≥ 0.3 in 600 steps (a probe of the same setup measured 0.37 after 300 steps at constant lr)."""
    cfg = load_config(TINY, [f"out_dir={tmp_path / 'run'}", "max_steps=600", "batch_size=8", "val.samples=0",
                             "data.synthetic=4800", "data.synthetic_size=128", "optim.lr=3e-3", "click_scale_init=1.0",
                             "optim.warmup_steps=10", "checkpoint_every=600", "trainer.log_every=50"])
    torch.set_num_threads(1)
    L.seed_everything(cfg.seed, verbose=False)
    _, val = build_datasets(cfg.data)
    items = [val[i] for i in range(min(24, len(val)))]
    rgb, gt = torch.stack([it[RGB_KEY] for it in items]), torch.stack([it[GT_KEY] for it in items])
    module = ClickTrainer(cfg)
    module.model.eval()
    before = click_scores(module.model, rgb, gt, 3)[0][:, 2].mean()
    build_trainer(cfg).fit(module)
    module.model.eval()
    after = click_scores(module.model, rgb, gt, 3)[0][:, 2].mean()
    print(f"held-out mIoU@3 {before:.3f} → {after:.3f}")
    assert after >= 0.3 and after > before + 0.25, f"held-out mIoU@3 {before:.3f} → {after:.3f}"
