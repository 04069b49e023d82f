"""The LightningModule for base and adapter training: RITM's iterative training with mask guidance.

One training step (RITM's ISTrainer.batch_forward):

1. start from the dataset's click rows and an all-zero previous mask;
2. without gradients and with the model in eval mode, draw n ∈ {0..max_num_next_clicks}; n times run the
   model, add one click per sample from its own errors (`next_training_clicks`) and feed
   sigmoid(logits) back as the previous mask;
3. run the model with gradients on the final clicks and previous mask;
4. loss = w_nfl · NFL(logits) + w_aux · BCE(aux logits) [models with AUX_LOGITS] + w_bl · BL(logits, sdm).

Adapter runs (adapter or lora set) load the base checkpoint, freeze everything but the adapter tensors
(`freeze_base`) and keep the whole model in eval mode even while training: the frozen base's BatchNorm
statistics and dropout stay fixed, and the adapters have neither.

Late from early (`from_early`): the late model is built from an early checkpoint
(`edgeclick.model.convert.late_from_early`); with `freeze_encoder` its click-free encoder stays fixed (eval
mode) and the click-dependent steps 2–3 run the decoder alone on one encoder output per crop, which
`cache_encoder` keeps across epochs (`FeatureCache`).

Validation (`edgeclick.train.validate`) runs the RITM clicker on the first `val.samples` val items and
logs val/noc85, val/noc90 (early stopping and best-weights selection), val/noc90_boundary, val/nof90 and
val/miou@k.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from edgeclick import contract
from edgeclick.io import sha256_file, write_text_atomic
from edgeclick.metrics import nof, summarize
from edgeclick.model import build_model
from edgeclick.model.base import AUX_LOGITS, ClickModel
from edgeclick.model.blocks import ScaleLayer
from edgeclick.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from edgeclick.model.convert import late_from_early
from edgeclick.train.checkpoints import adapter_parameter_names, attach_base, is_adapter_tensor, save_adapter
from edgeclick.train.config import ConfigError, TrainConfig
from edgeclick.train.data import GT_KEY, POINTS_KEY, RGB_KEY, SDM_KEY, build_datasets
from edgeclick.train.losses import BoundaryLoss, NormalizedFocalLoss, SigmoidBCELoss
from edgeclick.train.points import next_training_clicks
from edgeclick.train.validate import click_scores

INDEX_KEY = "index"
"""Batch key added by IndexedDataset: the item's index in the underlying dataset."""

MIOU_CLICKS: tuple[int, ...] = (1, 3, 5, 10, 20)
"""k of the logged val/miou@k."""


class IndexedDataset(Dataset):
    """Wraps a dataset of dict items and adds INDEX_KEY (the item's index), to trace sharding."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        item[INDEX_KEY] = index
        return item


class EpochPermutationSampler(Sampler[int]):
    """Shuffled dataset indices that depend only on (seed, epoch), able to start part-way through an epoch.

    The owner sets `epoch` and `skip` before each iteration (`ClickTrainer._position_data`, from the
    optimizer step): the order then follows the step, not Lightning's epoch counter, which a stopped and
    resumed run advances differently. `skip` drops the first indices of the next iteration only.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        start, self.skip = self.skip, 0
        return iter(order[start:].tolist())


class WarmupCosine:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine from 1 to `floor` at `total` steps."""

    def __init__(self, warmup: int, total: int, floor: float) -> None:
        self.warmup = max(0, int(warmup))
        self.total = max(1, int(total))
        self.floor = float(floor)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + float(np.cos(np.pi * progress)))


def build_training_model(cfg: TrainConfig) -> tuple[ClickModel, list[str], str | None]:
    """(model, names of the parameters that train, sha256 of the base checkpoint or None).

    Adapter runs: the base checkpoint's weights under fresh adapters, base frozen. Base runs: a fresh
    model, initialised from base_checkpoint when one is given; every parameter trains.
    """
    config = cfg.model_config()
    if cfg.from_early:
        assert cfg.base_checkpoint is not None  # TrainConfig checks it
        model, _ = late_from_early(cfg.base_checkpoint, config)
        names = [n for n, p in model.named_parameters()
                 if not (cfg.freeze_encoder and is_encoder_parameter(model, n))]
        for n, p in model.named_parameters():
            p.requires_grad_(n in names)
        return model, names, sha256_file(cfg.base_checkpoint)
    if cfg.is_adapter_run:
        assert cfg.base_checkpoint is not None  # TrainConfig checks it
        model = attach_base(config, cfg.base_checkpoint)
        names = adapter_parameter_names(model, cfg.train_first_conv)
        return model, names, sha256_file(cfg.base_checkpoint)
    model = build_model(config)
    if cfg.click_scale_init is not None:
        set_click_scale(model, cfg.click_scale_init)
    if cfg.base_checkpoint:
        init = load_checkpoint(cfg.base_checkpoint)
        if init.config != config:
            raise CheckpointError(f"{cfg.base_checkpoint}: config {init.config.to_dict()} differs from the run's "
                                  f"model {config.to_dict()}")
        model.load_state_dict(init.state_dict())
    return model, [n for n, _ in model.named_parameters()], None


ENCODER_MODULES: tuple[str, ...] = ("feature_extractor", "feature_proj")
"""The late model's click-free encoder (edgeclick.model.late): what freeze_encoder fixes."""


def encoder_modules(model: ClickModel) -> list[torch.nn.Module]:
    """The late model's encoder submodules, inside a conv adapter's `base` where there is one."""
    inner = getattr(model, "base", model)
    return [getattr(inner, name) for name in ENCODER_MODULES]


def is_encoder_parameter(model: ClickModel, name: str) -> bool:
    """True for a frozen-encoder parameter of a late model; LoRA and adapter tensors always train."""
    if is_adapter_tensor(name):
        return False
    inner = name.removeprefix("base.") if getattr(model, "base", None) is not None else name
    return inner.split(".", 1)[0] in ENCODER_MODULES


class FeatureCache:
    """Encoder outputs of training crops by dataset index, kept in memory for the whole run.

    With a frozen encoder a crop's encoder output never changes, so it is computed once: the decoder-only
    steps that follow cost a fraction of a full forward. Holds float32 copies on the CPU
    (hrnet18s at 192×288: 96×48×72 floats, 1.3 MB per crop).
    """

    def __init__(self) -> None:
        self.items: dict[int, dict[str, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.items)

    @torch.no_grad()
    def lookup(self, model: ClickModel, rgb: torch.Tensor, indices: list[int]) -> dict[str, torch.Tensor]:
        """Encoder outputs of a batch (B×… per name), computing and storing the crops not yet seen."""
        todo = [k for k, i in enumerate(indices) if i not in self.items]
        self.misses += len(todo)
        self.hits += len(indices) - len(todo)
        if todo:
            fresh = model.encode(rgb[todo])
            for j, k in enumerate(todo):
                self.items[indices[k]] = {name: t[j].detach().clone() for name, t in fresh.items()}
        names = self.items[indices[0]].keys()
        return {name: torch.stack([self.items[i][name] for i in indices]).to(rgb.device) for name in names}


def set_click_scale(model: ClickModel, value: float) -> None:
    """Set |scale| of the click branch: the model's one ScaleLayer (early: maps_transform; late: the click encoder)."""
    scales = [m for m in model.modules() if isinstance(m, ScaleLayer)]
    if len(scales) != 1:
        raise ConfigError(f"click_scale_init: expected one click-branch ScaleLayer in {type(model).__name__}, "
                          f"found {len(scales)}")
    with torch.no_grad():
        scales[0].scale.fill_(value)


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's name and float32 bytes (buffers excluded: BN statistics are per rank)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ClickTrainer(L.LightningModule):
    """Base or adapter training of an edgeclick model (see the module docstring)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.model, self.trainable_names, self.base_sha256 = build_training_model(cfg)
        if cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.nfl = NormalizedFocalLoss(alpha=0.5, gamma=2.0)
        self.bce = SigmoidBCELoss()
        self.boundary = BoundaryLoss()
        self.rng = np.random.default_rng(cfg.seed)
        self.seen_indices: list[int] = []
        self._train_ds: Dataset | None = None
        self._val_ds: Dataset | None = None
        self._sampler: EpochPermutationSampler | None = None
        self.feature_cache = FeatureCache() if cfg.cache_encoder else None

    # -- modes -------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "ClickTrainer":
        """Adapter runs keep the model in eval mode: the frozen base's BN statistics and dropout stay fixed."""
        super().train(mode)
        if self.cfg.is_adapter_run:
            self.model.eval()
        elif self.cfg.freeze_encoder:
            for module in encoder_modules(self.model):
                module.eval()
        return self

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Lightning 2.x does not call .train() when fitting starts (it keeps the mode the module has and
        # restores per-submodule modes after validation), so the mode is set here, every batch.
        self.train()
        # Every random draw of a step (simulated clicks; dropout in the OCR head) depends only on
        # (seed, rank, step), so a run resumed anywhere continues exactly as the uninterrupted one.
        seeds = np.random.SeedSequence([self.cfg.seed, self.global_rank, self.global_step]).generate_state(2)
        self.rng = np.random.default_rng(seeds[0])
        torch.manual_seed(int(seeds[1]))

    # -- data --------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Build the datasets once per process (the same split on every rank: split_seed 0)."""
        if self._train_ds is None:
            train_ds, val_ds = build_datasets(self.cfg.data, split_seed=0)
            train_ds.fix_crops = self.cfg.cache_encoder  # the cached encoder outputs are of these crops
            self._train_ds = IndexedDataset(train_ds)
            n_val = min(len(val_ds), self.cfg.val.samples)
            self._val_ds = IndexedDataset(Subset(val_ds, range(n_val))) if n_val > 0 else None

    def train_dataloader(self) -> DataLoader:
        workers = self.cfg.trainer.num_workers
        # Not persistent: workers must see set_epoch (a fresh copy of the dataset each epoch).
        if self.trainer.world_size > 1:  # Lightning shards through its DistributedSampler (shuffled per epoch)
            return DataLoader(self._train_ds, batch_size=self.cfg.batch_size, shuffle=True, drop_last=True,
                              num_workers=workers, persistent_workers=False)
        self._sampler = EpochPermutationSampler(len(self._train_ds), self.cfg.seed)  # type: ignore[arg-type]
        return DataLoader(self._train_ds, batch_size=self.cfg.batch_size, sampler=self._sampler, drop_last=True,
                          num_workers=workers, persistent_workers=False)

    def val_dataloader(self) -> DataLoader | list:
        if self._val_ds is None:
            return []
        return DataLoader(self._val_ds, batch_size=self.cfg.val.batch_size, shuffle=False,
                          num_workers=self.cfg.trainer.num_workers)

    def _position_data(self) -> None:
        """Point the data at the current optimizer step, before the epoch's iterator is made.

        Single process: epoch = step // steps per epoch gives the augmentations and synthetic objects
        (ClickTrainingDataset.set_epoch) and the order; a run resumed mid-epoch skips the batches already
        trained. So a resumed run sees the batches the uninterrupted one would, whether it was killed after
        a periodic checkpoint or stopped early (Lightning then counts the cut epoch as done). Under DDP the
        DistributedSampler shuffles per Lightning epoch, and the dataset follows that epoch.
        """
        dataset = self._train_ds.dataset if isinstance(self._train_ds, IndexedDataset) else self._train_ds
        epoch = self.current_epoch
        if self._sampler is not None:
            steps_per_epoch = len(self._sampler) // self.cfg.batch_size  # drop_last: every epoch the same
            epoch, step_in_epoch = divmod(self.global_step, steps_per_epoch)
            self._sampler.epoch, self._sampler.skip = epoch, step_in_epoch * self.cfg.batch_size
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def on_train_start(self) -> None:
        self._position_data()  # a resume mid-epoch does not call on_train_epoch_start
        if self.cfg.record_samples:
            self._initial_digest = parameter_digest(self.model)

    def on_train_epoch_start(self) -> None:
        self._position_data()

    # -- training ----------------------------------------------------------------------------------
    @torch.no_grad()
    def simulate_clicks(self, rgb: torch.Tensor, gt: torch.Tensor, clicks: torch.Tensor,
                        features: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """RITM's click simulation without gradient.

        Args:
            rgb: B×3×H×W in [0, 1]; gt: B×1×H×W {1, 0, −1}; clicks: B×N×3 initial rows;
            features: the encoder outputs of rgb when they are fixed (frozen encoder): only the decoder runs.

        Returns:
            (clicks B×N×3 with n more rows, prev_mask B×1×H×W probabilities, n).
        """
        prev = torch.zeros_like(rgb[:, :1])
        n = int(self.rng.integers(0, self.cfg.max_num_next_clicks + 1))
        if n == 0:
            return clicks, prev, 0
        was_training = self.model.training
        self.model.eval()
        try:
            for _ in range(n):
                out = self.model(rgb, clicks, prev) if features is None else self.model.decode(features, clicks, prev)
                prob = torch.sigmoid(out[contract.LOGITS].float()).to(rgb.dtype)
                new = next_training_clicks(prob, gt, clicks, self.rng)
                clicks = torch.as_tensor(new, dtype=clicks.dtype, device=clicks.device)
                prev = prob
        finally:
            self.model.train(was_training)
        return clicks, prev, n

    def loss_terms(self, out: dict[str, torch.Tensor], gt: torch.Tensor, sdm: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted loss terms (float32) and their sum under "loss"."""
        w = self.cfg.loss
        logits = out[contract.LOGITS].float()
        terms: dict[str, torch.Tensor] = {}
        if w.nfl:
            terms["nfl"] = self.nfl(logits, gt)
        if w.aux_bce and AUX_LOGITS in out:
            terms["aux_bce"] = self.bce(out[AUX_LOGITS].float(), gt)
        if w.boundary:
            terms["boundary"] = self.boundary(logits, sdm)
        weights = {"nfl": w.nfl, "aux_bce": w.aux_bce, "boundary": w.boundary}
        terms["loss"] = sum(weights[k] * v for k, v in terms.items())
        return terms

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        rgb, gt = batch[RGB_KEY], batch[GT_KEY]
        if self.cfg.trainer.channels_last:
            rgb = rgb.contiguous(memory_format=torch.channels_last)
        features = self.encoder_outputs(rgb, batch)
        clicks, prev, n = self.simulate_clicks(rgb, gt, batch[POINTS_KEY], features)
        out = self.model(rgb, clicks, prev) if features is None else self.model.decode(features, clicks, prev)
        terms = self.loss_terms(out, gt, batch[SDM_KEY])
        size = rgb.shape[0]
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=size)
        for key in ("nfl", "aux_bce", "boundary"):
            if key in terms:
                self.log(f"train/{key}", terms[key], batch_size=size)
        self.log("train/simulated_clicks", float(n), batch_size=size)
        if self.cfg.record_samples and INDEX_KEY in batch:
            self.seen_indices.extend(int(i) for i in batch[INDEX_KEY].tolist())
        return terms["loss"]

    def encoder_outputs(self, rgb: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """The batch's encoder outputs when the encoder is frozen (from the cache when there is one), else None."""
        if not self.cfg.freeze_encoder:
            return None
        if self.feature_cache is None or INDEX_KEY not in batch:
            with torch.no_grad():
                return self.model.encode(rgb)
        outputs = self.feature_cache.lookup(self.model, rgb, [int(i) for i in batch[INDEX_KEY].tolist()])
        self.log("train/cached_crops", float(len(self.feature_cache)), batch_size=rgb.shape[0])
        return outputs

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else max(1, self.cfg.max_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(o.warmup_steps, total, o.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- validation --------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        k = self.cfg.val.max_clicks
        ious, bious = click_scores(self.model, batch[RGB_KEY], batch[GT_KEY], k)
        s = summarize(ious, bious, 0.0, thresholds=(0.85, 0.90), max_clicks=k)
        size = len(ious)
        log = dict(batch_size=size, sync_dist=True)
        self.log("val/noc85", s.noc[0.85], **log)
        self.log("val/noc90", s.noc[0.90], prog_bar=True, **log)
        self.log("val/noc90_boundary", s.noc_boundary[0.90], **log)
        self.log("val/nof90", float(nof(ious, 0.90)), reduce_fx="sum", batch_size=size, sync_dist=True)
        for clicks in MIOU_CLICKS:
            if clicks <= k:
                self.log(f"val/miou@{clicks}", s.miou[clicks - 1], **log)

    # -- outputs -----------------------------------------------------------------------------------
    def export_weights(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write the run's weights: a full edgeclick checkpoint (base runs) or an adapter checkpoint."""
        info = {"source": "edgeclick train", "global_step": int(self.global_step), "train_config": self.cfg.to_dict(),
                **(meta or {})}
        if self.cfg.is_adapter_run:
            assert self.base_sha256 is not None and self.cfg.base_checkpoint is not None
            return save_adapter(self.model, path, names=self.trainable_names, base_sha256=self.base_sha256,
                                base_checkpoint=self.cfg.base_checkpoint, train_first_conv=self.cfg.train_first_conv,
                                meta=info)
        return save_checkpoint(self.model, path, meta=info)

    def write_trace(self, out_dir: str | Path) -> Path:
        """out_dir/trace/rank{r}.json: dataset indices this rank trained on, its parameter digest at the start
        of training (after DDP's broadcast from rank 0) and at the end."""
        record = {"rank": self.global_rank, "world_size": self.trainer.world_size, "global_step": int(self.global_step),
                  "indices": self.seen_indices, "param_sha256": parameter_digest(self.model),
                  "initial_param_sha256": getattr(self, "_initial_digest", None)}
        return write_text_atomic(Path(out_dir) / "trace" / f"rank{self.global_rank}.json", json.dumps(record))
