"""Training dataset: item layout and values, determinism, augmentation, photo-disjoint split, real data."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from edgeclick import contract
from edgeclick.train.data import (
    GT_KEY,
    POINTS_KEY,
    RGB_KEY,
    SDM_KEY,
    ClickTrainingDataset,
    DataConfig,
    RealSource,
    build_datasets,
    photo_key,
    split_by_photo,
)
from edgeclick.train.losses import signed_distance_map

SMALL = {"crop_size": (64, 96), "synthetic_size": 256}


def _check_item(item: dict[str, torch.Tensor], crop: tuple[int, int], n_points: int = 24) -> None:
    h, w = crop
    assert set(item) == {RGB_KEY, GT_KEY, POINTS_KEY, SDM_KEY}
    rgb, gt, points, sdm = item[RGB_KEY], item[GT_KEY], item[POINTS_KEY], item[SDM_KEY]
    assert rgb.shape == (3, h, w) and gt.shape == (1, h, w) and sdm.shape == (1, h, w) and points.shape == (n_points, 3)
    assert all(t.dtype == torch.float32 for t in (rgb, gt, points, sdm))
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert set(gt.unique().tolist()) <= {1.0, 0.0, -1.0}
    assert (gt == 1).any(), "every crop shows its object"
    labels = points[:, 2]
    assert set(labels.unique().tolist()) <= {contract.LABEL_POSITIVE, contract.LABEL_NEGATIVE, contract.LABEL_PADDING}
    assert (points[labels == contract.LABEL_PADDING] == contract.LABEL_PADDING).all()
    clicks = points[labels >= 0].long()
    assert (labels == contract.LABEL_POSITIVE).sum() >= 1
    assert ((clicks[:, 0] >= 0) & (clicks[:, 0] < w) & (clicks[:, 1] >= 0) & (clicks[:, 1] < h)).all()
    at = gt[0, clicks[:, 1], clicks[:, 0]]
    assert torch.equal(at, (clicks[:, 2] == contract.LABEL_POSITIVE).float())  # positives on object, negatives on background
    assert np.array_equal(sdm[0].numpy(), signed_distance_map(gt[0].numpy().astype(np.int8)))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def _found_at(image: np.ndarray, patch: np.ndarray) -> list[tuple[int, int]]:
    """(y, x) of every window of `image` equal to `patch` pixel for pixel. An exact comparison, unlike
    cv2.matchTemplate's SQDIFF, whose float correlation leaves ~3e-8 instead of 0 on some CPUs."""
    windows = np.lib.stride_tricks.sliding_window_view(image, patch.shape)
    return [tuple(int(v) for v in p) for p in np.argwhere((windows == patch).all(axis=(-3, -2, -1)))[:, :2]]


def test_synthetic_items() -> None:
    train, val = build_datasets(DataConfig(synthetic=5, **SMALL))
    assert len(train) == 5 and len(val) == 1
    for i in range(len(train)):
        _check_item(train[i], (64, 96))
    _check_item(val[0], (64, 96))
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=2)))
    assert batch[RGB_KEY].shape == (2, 3, 64, 96) and batch[POINTS_KEY].shape == (2, 24, 3)


def test_deterministic_per_seed_index_and_epoch() -> None:
    cfg = DataConfig(synthetic=3, **SMALL)
    a, _ = build_datasets(cfg)
    b, _ = build_datasets(cfg)
    first = a[1]
    assert _equal(first, a[1]) and _equal(first, b[1])
    assert not _equal(first, build_datasets(DataConfig(synthetic=3, seed=1, **SMALL))[0][1])
    assert not _equal(first, a[2])
    a.set_epoch(1)
    assert not _equal(first, a[1])
    a.set_epoch(0)
    assert _equal(first, a[1])


def _fake_coco(root: Path) -> Path:
    """A COCO_MVal-layout folder: 12 photos of 60×80, 1–3 instances each (named like COCO_MVal)."""
    folder = root / "coco_fake"
    (folder / "img").mkdir(parents=True)
    (folder / "gt").mkdir()
    rng = np.random.default_rng(0)
    for photo in range(12):
        image = cv2.GaussianBlur(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (5, 5), 1)
        for k in range(1 + photo % 3):
            name = f"thing{k:02d}_{photo + 1:012d}"
            mask = np.zeros((60, 80), np.uint8)
            mask[5 + 15 * k:18 + 15 * k, 10 + 20 * k:40 + 20 * k] = 255
            Image.fromarray(image).save(folder / "img" / f"{name}.jpg", quality=95)
            Image.fromarray(mask).save(folder / "gt" / f"{name}.png")
    return folder


def _photos_of(source: RealSource) -> set[str]:
    names = source.dataset.names
    return {photo_key(names[i]) for i in source.indices}


def test_split_is_disjoint_by_photo(tmp_path: Path) -> None:
    folder = _fake_coco(tmp_path)
    cfg = DataConfig(coco_dir=str(folder), val_fraction=0.3, copy_paste=2, synthetic=2, **SMALL)
    train, val = build_datasets(cfg)
    real_train, real_val = train.sources[0], val.sources[0]
    assert isinstance(real_train, RealSource) and isinstance(real_val, RealSource)
    train_photos, val_photos = _photos_of(real_train), _photos_of(real_val)
    assert train_photos and val_photos and not train_photos & val_photos
    assert len(train_photos | val_photos) == 12
    assert len(real_train) + len(real_val) == 24  # every instance on one side
    # Copy-paste and synthetic textures draw from training photos only.
    assert train.sources[1].indices == real_train.indices
    assert train.sources[2].photos.indices == real_train.indices
    assert len(train) == len(real_train) + 2 + 2
    for i in range(len(train)):
        _check_item(train[i], (64, 96))
    for i in range(len(val)):
        _check_item(val[i], (64, 96))


def test_split_rule_is_stable() -> None:
    names = [f"x{i:02d}_{p:012d}" for p in range(200) for i in range(2)]
    train, val = split_by_photo(names, 0.2)
    assert 0.1 < len(val) / len(names) < 0.3
    assert {photo_key(names[i]) for i in train}.isdisjoint({photo_key(names[i]) for i in val})
    more = names + [f"x00_{p:012d}" for p in range(200, 260)]
    _, val_more = split_by_photo(more, 0.2)
    assert [i for i in val_more if i < len(names)] == val  # adding photos moves none of the old ones
    assert split_by_photo(names, 0.2, seed=1) != (train, val)


def test_photo_key() -> None:
    assert photo_key("airplane00_000000281693") == "000000281693"
    assert photo_key("2008_000123_inst2") == "2008_000123"
    assert photo_key("banana1") == "banana1"


def test_other_instances_of_the_photo_become_negatives_source(tmp_path: Path) -> None:
    folder = _fake_coco(tmp_path)
    train, _ = build_datasets(DataConfig(coco_dir=str(folder), val_fraction=0.0, **SMALL))
    source = train.sources[0]
    names = source.dataset.names
    j = names.index("thing00_000000000003")  # photo 3 holds thing00, thing01 and thing02
    sample, others = source.draw(source.indices.index(j), np.random.default_rng(0))
    assert sample.name == "thing00_000000000003"
    assert others is not None and others.sum() == 2 * 13 * 30 and not (others & (sample.gt == 1)).any()
    lonely = source.indices.index(names.index("thing00_000000000001"))
    assert source.draw(lonely, np.random.default_rng(0))[1] is None


def test_val_items_are_plain_crops(tmp_path: Path) -> None:
    folder = _fake_coco(tmp_path)
    _, val = build_datasets(DataConfig(coco_dir=str(folder), val_fraction=0.5, **SMALL))
    for i in range(min(3, len(val))):
        sample, _, _ = val.raw(i)
        rgb = np.rint(val[i][RGB_KEY].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        # 60×80 padded into the 64×96 crop, untouched: the photo appears in the item pixel for pixel.
        found = _found_at(rgb, sample.image)
        assert found
        y, x = found[0]
        gt = val[i][GT_KEY][0].numpy()
        assert np.array_equal(gt[y:y + 60, x:x + 80], sample.gt.astype(np.float32))
        assert (np.delete(gt, np.s_[y:y + 60], axis=0) == 0).all()  # padding is background (RITM)


def test_val_scale_resizes_val_items_only(tmp_path: Path) -> None:
    folder = _fake_coco(tmp_path)
    plain_train, plain = build_datasets(DataConfig(coco_dir=str(folder), val_fraction=0.5, **SMALL))
    scaled_train, half = build_datasets(DataConfig(coco_dir=str(folder), val_fraction=0.5, val_scale=0.5, **SMALL))
    for i in range(min(3, len(plain))):
        area, half_area = float(plain[i][GT_KEY].sum()), float(half[i][GT_KEY].sum())
        assert area > 0 and half_area == pytest.approx(area / 4, rel=0.25)  # ½ per side → ¼ of the pixels
        rows, cols = np.nonzero(half[i][RGB_KEY].numpy().any(axis=0))
        assert np.ptp(rows) < 30 and np.ptp(cols) < 40  # the 60×80 photo is now 30×40, the rest padding
    assert _equal(plain_train[0], scaled_train[0])  # training items are not affected


def test_train_items_are_augmented(tmp_path: Path) -> None:
    folder = _fake_coco(tmp_path)
    train, _ = build_datasets(DataConfig(coco_dir=str(folder), val_fraction=0.0, crop_size=(32, 48)))
    sample, _, _ = train.raw(0)
    rgbs = []
    for epoch in range(4):
        train.set_epoch(epoch)
        rgbs.append(np.rint(train[0][RGB_KEY].numpy().transpose(1, 2, 0) * 255).astype(np.uint8))
    assert len({r.tobytes() for r in rgbs}) == 4
    # Scale/colour jitter: at least one crop is not a plain window of the photo (or its mirror).
    plain = [bool(_found_at(sample.image, r) or _found_at(sample.image[:, ::-1], r)) for r in rgbs]
    assert not all(plain)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="no training data"):
        build_datasets(DataConfig())
    with pytest.raises(ValueError, match="copy_paste needs coco_dir"):
        build_datasets(DataConfig(copy_paste=3))


def test_adapter_crop_size() -> None:
    train, _ = build_datasets(DataConfig(synthetic=1, crop_size=(128, 192), synthetic_size=384))
    _check_item(train[0], (128, 192))
    assert isinstance(train, ClickTrainingDataset) and train.min_object_area == round(100 * 128 * 192 / (320 * 480))


@pytest.mark.skipif(not os.environ.get("EDGECLICK_DATA"), reason="EDGECLICK_DATA is not set (path of ../shared/data)")
def test_real_coco_mval_dev() -> None:
    coco = Path(os.environ["EDGECLICK_DATA"]) / "coco_mval_dev"
    cfg = DataConfig(coco_dir=str(coco), copy_paste=2, synthetic=2, synthetic_size=512)
    train, val = build_datasets(cfg)
    real_train, real_val = train.sources[0], val.sources[0]
    assert len(real_train) + len(real_val) == 408
    assert 0.05 < len(real_val) / 408 < 0.2
    assert _photos_of(real_train).isdisjoint(_photos_of(real_val))
    assert len(train) == len(real_train) + 4
    for i in (0, 1, len(real_train) - 1, len(train) - 4, len(train) - 3, len(train) - 2, len(train) - 1):
        _check_item(train[i], cfg.crop_size)
    for i in (0, len(val) - 1):
        _check_item(val[i], cfg.crop_size)
