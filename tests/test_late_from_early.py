"""Late fusion from an early checkpoint: the carried weights, the click-free encoder, the global decoder,
and training on cached encoder outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from edgeclick import contract
from edgeclick.model import create_model, model_config
from edgeclick.model.checkpoint import CheckpointError, save_checkpoint
from edgeclick.model.convert import late_from_early
from edgeclick.train.config import load_config
from edgeclick.train.data import POINTS_KEY, RGB_KEY, build_datasets
from edgeclick.train.module import ClickTrainer, IndexedDataset, is_encoder_parameter

from .helpers import click_rows, randomize_

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"


@pytest.fixture(scope="module")
def early_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("early") / "tiny_early.pt"
    save_checkpoint(randomize_(create_model("tiny", fusion="early"), seed=3), path)
    return path


def test_conversion_keeps_carried_weights_exactly(early_ckpt: Path) -> None:
    early = torch.load(early_ckpt, weights_only=True)["state_dict"]
    late, carried = late_from_early(early_ckpt)
    state = late.state_dict()
    renames = {"feature_proj.": "feature_extractor.conv3x3_ocr.", "ocr_distri_head.": "feature_extractor.ocr_distri_head."}
    trunk = [k for k in carried if k.startswith("feature_extractor.")]
    assert len(trunk) > 100 and "feature_proj.0.weight" in carried and "ocr_distri_head.conv_bn_dropout.0.weight" in carried
    for name in carried:
        if name.startswith("head."):
            continue
        source = next((old + name.removeprefix(new) for new, old in renames.items() if name.startswith(new)), name)
        assert torch.equal(state[name], early[source]), name
    # The early model's one logit becomes the logit of each of the 16 sub-pixels of a 4×4 cell.
    assert torch.equal(state["head.weight"], early["feature_extractor.cls_head.weight"].repeat(16, 1, 1, 1))
    assert torch.equal(state["head.bias"], early["feature_extractor.cls_head.bias"].repeat(16))
    # What cannot carry keeps its fresh initialisation: the click encoder and the region head.
    assert not any(k.startswith(("click_encoder.", "region_head.", "fusion.")) for k in carried)


def test_converted_encoder_is_the_early_backbone_without_clicks(early_ckpt: Path) -> None:
    from edgeclick.model.checkpoint import load_checkpoint

    early = load_checkpoint(early_ckpt)
    late, _ = late_from_early(early_ckpt)
    image = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        fx = early.feature_extractor
        trunk = fx.features_from_stem(fx.stem(early.normalize(image)), None)  # the early backbone, no click features
        expected = fx.conv3x3_ocr(trunk)
        got = late.eval().encode(image)[contract.FEATURES]
    assert torch.equal(got, expected)  # the same modules on the same input, in one process


def test_conversion_refuses_late_adapters_and_misfits(early_ckpt: Path, tmp_path: Path) -> None:
    late_path = tmp_path / "late.pt"
    save_checkpoint(create_model("tiny", fusion="late"), late_path)
    with pytest.raises(CheckpointError, match="already late fusion") as info:
        late_from_early(late_path)
    assert "\n" not in str(info.value)
    lora_path = tmp_path / "lora.pt"
    save_checkpoint(create_model("tiny", fusion="early", lora=True), lora_path)
    with pytest.raises(CheckpointError, match="holds a LoRA.*edgeclick merge"):
        late_from_early(lora_path)
    with pytest.raises(CheckpointError, match="is tiny.*set model=tiny") as info:
        late_from_early(early_ckpt, model_config("hrnet18s", "late"))
    assert "\n" not in str(info.value)
    # A decoder of another width still takes the backbone; the OCR head then does not fit and starts fresh.
    narrow, carried = late_from_early(early_ckpt, model_config("tiny", "late", late_channels=8))
    assert any(k.startswith("feature_extractor.") for k in carried) and not any(k.startswith("ocr_") for k in carried)


def test_a_click_reaches_every_part_of_the_image() -> None:
    """The late decoder is global: moving one click changes logits far beyond any local receptive field.

    A trained-shape model has a strong click branch and confident regions; a fresh model has neither, so
    they are set here as training leaves them (click scale 20, region logits ×20) on the default init.
    The first late head (two 3×3 depthwise blocks at stride 4) changed nothing beyond 21 px of a click.
    """
    torch.manual_seed(0)
    model = create_model("tiny", fusion="late").eval()
    with torch.no_grad():
        model.click_encoder[3].scale.fill_(20.0)
        model.region_head.weight.mul_(20.0)
        h, w = 320, 480
        features = model.encode(torch.rand(1, 3, h, w))
        prev = torch.zeros(1, 1, h, w)
        a = model.decode(features, click_rows([(240, 160, 1)]), prev)[contract.LOGITS][0, 0]
        b = model.decode(features, click_rows([(20, 20, 1)]), prev)[contract.LOGITS][0, 0]
    changed = (a - b).abs() > 1e-5
    rows, cols = torch.nonzero(changed, as_tuple=True)
    far = torch.sqrt((rows - 20.0) ** 2 + (cols - 20.0) ** 2).min(torch.sqrt((rows - 160.0) ** 2 + (cols - 240.0) ** 2))
    assert changed.float().mean() > 0.5, "a click must move most of the image's logits"
    assert far.max() > 250, "pixels far from both clicks must change"
    assert bool(changed[-1, -1]) and bool(changed[0, -1]) and bool(changed[-1, 0])


def _trainer(ckpt: Path, cache: bool) -> ClickTrainer:
    cfg = load_config(TINY, [f"base_checkpoint={ckpt}", "fusion=late", "from_early=true", "freeze_encoder=true",
                             f"cache_encoder={str(cache).lower()}", "max_num_next_clicks=2"])
    module = ClickTrainer(cfg)
    module.train()
    return module


def _batch(cfg_trainer: ClickTrainer) -> dict[str, torch.Tensor]:
    train_ds, _ = build_datasets(cfg_trainer.cfg.data, split_seed=0)
    train_ds.fix_crops = True
    ds = IndexedDataset(train_ds)
    return default_collate([ds[i] for i in range(4)])


def test_a_step_on_cached_encoder_outputs_equals_the_uncached_step(early_ckpt: Path) -> None:
    cached, uncached = _trainer(early_ckpt, True), _trainer(early_ckpt, False)
    uncached.model.load_state_dict(cached.model.state_dict())
    batch = _batch(cached)
    assert cached.feature_cache is not None
    first = cached.encoder_outputs(batch[RGB_KEY], batch)  # fills the cache, as the run's first epoch does
    assert first is not None and len(cached.feature_cache) == 4 and cached.feature_cache.misses == 4
    results = []
    for module in (cached, uncached):
        module.rng = np.random.default_rng(7)  # the same simulated clicks
        torch.manual_seed(7)  # the same dropout in the OCR head
        module.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    assert cached.feature_cache.hits == 4  # the step above read every crop from the cache
    (loss_c, grads_c), (loss_u, grads_u) = results
    torch.testing.assert_close(loss_c, loss_u, rtol=1e-5, atol=1e-6)
    assert grads_c.keys() == grads_u.keys() and grads_c
    for name in grads_c:
        torch.testing.assert_close(grads_c[name], grads_u[name], rtol=1e-4, atol=1e-6)
    # Only the decoder trains: no encoder parameter has a gradient.
    assert not any(is_encoder_parameter(cached.model, n) for n in grads_c)
    assert {n.split(".")[0] for n in grads_c} >= {"click_encoder", "fusion", "region_head", "ocr_distri_head", "head"}


def test_fixed_crops_keep_the_crop_and_redraw_the_clicks(early_ckpt: Path) -> None:
    module = _trainer(early_ckpt, True)
    train_ds, _ = build_datasets(module.cfg.data, split_seed=0)
    train_ds.fix_crops = True
    items = []
    for epoch in (0, 1):
        train_ds.set_epoch(epoch)
        items.append(train_ds[5])
    assert torch.equal(items[0][RGB_KEY], items[1][RGB_KEY])
    assert not torch.equal(items[0][POINTS_KEY], items[1][POINTS_KEY])
