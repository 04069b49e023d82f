"""Synthetic generator: exact masks, thin parts, determinism, sizes, copy-paste, photo folders."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeclick.data import shapes
from edgeclick.data.sample import Sample
from edgeclick.data.synthetic import (
    TEMPLATES,
    FolderPhotos,
    SyntheticDataset,
    copy_paste,
    draw_object,
    generate,
    generate_layers,
)
from edgeclick.data.textures import soft_alpha

OPEN5 = np.ones((5, 5), np.uint8)


def _photos(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (7, 7), 2) for _ in range(n)]


def _thin_pixels(mask: np.ndarray) -> np.ndarray:
    """Pixels of parts narrower than 5 px: what a 5×5 opening removes."""
    m = (mask == 1).astype(np.uint8)
    return m.astype(bool) & ~cv2.morphologyEx(m, cv2.MORPH_OPEN, OPEN5).astype(bool)


@pytest.mark.parametrize("seed", range(6))
def test_mask_is_exact(seed: int) -> None:
    textures = _photos() if seed % 2 else None
    layers = generate_layers(np.random.default_rng(seed), 384, textures, textures)
    img, gt, alpha = layers.sample.image, layers.sample.gt, layers.alpha
    assert gt.dtype == np.int8 and set(np.unique(gt)) <= {0, 1} and gt.any()
    assert np.array_equal(gt == 1, alpha > 0.5)
    untouched = alpha == 0
    assert np.array_equal(img[untouched], layers.background[untouched])
    # The object only reaches one pixel beyond its mask (the anti-aliased halo).
    halo = cv2.dilate(gt.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (alpha > 0)[~halo].any()
    # And it is visible: the image differs from the background on the object.
    assert (img[gt == 1] != layers.background[gt == 1]).any()


def test_thin_parts_present() -> None:
    for seed in range(8):
        gt = generate(np.random.default_rng(100 + seed), 512).gt
        thin = _thin_pixels(gt)
        assert thin.sum() >= 100, f"seed {seed}: only {thin.sum()} px in parts narrower than 5 px"
    # The check itself tells thin from thick: a filled ellipse has almost no such pixels.
    ellipse = np.zeros((200, 200), np.int8)
    cv2.ellipse(ellipse, (100, 100), (60, 40), 20, 0, 360, 1, -1)
    assert _thin_pixels(ellipse).sum() < 20


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_has_thin_parts(name: str) -> None:
    mask, thin = draw_object(np.random.default_rng(3), 300, 400, name)
    assert thin.any() and not (thin & ~mask).any()
    assert _thin_pixels(mask).sum() >= 50
    # The parts drawn as thin really are 1–4 px wide (only crossings and junctions survive the opening).
    survivors = cv2.morphologyEx(thin, cv2.MORPH_OPEN, OPEN5).sum()
    assert survivors < 0.5 * thin.sum()


@pytest.mark.parametrize("width", [1, 2, 3, 4, 7])
def test_stroke_width_is_geometric(width: int) -> None:
    mask = np.zeros((60, 200), np.uint8)
    shapes.draw_stroke(mask, np.array([[10.0, 30.3], [190.0, 30.3]]), width)
    assert mask[:, 100].sum() == width
    diagonal = np.zeros((200, 200), np.uint8)
    shapes.draw_stroke(diagonal, np.array([[10.2, 10.7], [190.1, 150.3]]), width)
    length = np.hypot(179.9, 139.6)
    assert diagonal.sum() / length == pytest.approx(width, abs=0.3)


def test_deterministic() -> None:
    a = generate(np.random.default_rng(5), 256)
    b = generate(np.random.default_rng(5), 256)
    c = generate(np.random.default_rng(6), 256)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.gt, b.gt)
    assert not np.array_equal(a.image, c.image) or not np.array_equal(a.gt, c.gt)
    ds = SyntheticDataset(3, size=192, seed=4)
    assert len(ds) == 3 and ds[1].name == "synthetic4_000001"
    assert np.array_equal(ds[1].image, ds[1].image) and np.array_equal(ds[2].gt, list(ds)[2].gt)
    assert not np.array_equal(ds[0].gt, SyntheticDataset(3, size=192, seed=5)[0].gt)


def test_sizes() -> None:
    big = generate(np.random.default_rng(0), 2048, _photos(), _photos())
    assert max(big.image.shape[:2]) == 2048 and big.gt.shape == big.image.shape[:2]
    for seed in range(6):
        s = generate(np.random.default_rng(seed), 300)
        assert max(s.gt.shape) == 300 and 300 / min(s.gt.shape) <= 16 / 9 + 0.01
    with pytest.raises(ValueError, match="2048"):
        generate(np.random.default_rng(0), 4096)


def test_generation_speed() -> None:
    # Budget: ≲ 100 ms per 1024 px sample for 2-core training; measured ~30-40 ms of CPU time per sample.
    textures = _photos()
    generate(np.random.default_rng(0), 1024, textures, textures)  # warm-up
    start = time.process_time()
    for seed in range(5):
        generate(np.random.default_rng(seed), 1024, textures, textures)
    per_sample = (time.process_time() - start) / 5
    assert per_sample < 0.3, f"{1000 * per_sample:.0f} ms CPU per 1024 px sample"


def test_copy_paste_is_exact() -> None:
    rng = np.random.default_rng(0)
    src = np.zeros((80, 100, 3), np.uint8)
    src[:] = (0, 0, 255)
    gt = np.zeros((80, 100), np.int8)
    cv2.circle(gt, (50, 40), 25, 1, -1)
    src[gt == 1] = (255, 0, 0)
    bg = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    bg_before = bg.copy()
    for seed in range(5):
        out = copy_paste([Sample("disk", src, gt)], [bg], np.random.default_rng(seed))
        assert out.name == "paste_disk" and out.image.shape == bg.shape and out.gt.dtype == np.int8
        assert out.gt.any()
        alpha = soft_alpha(out.gt)
        assert np.array_equal(out.image[alpha == 0], bg[alpha == 0])
        # Away from its edge (bilinear resizing blends up to one source pixel, ≤ 4 px here) the pasted
        # region is the object's colour: the object was pasted, not its surroundings.
        inner = cv2.erode(out.gt.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
        assert inner.any() and (out.image[inner] == (255, 0, 0)).all()
    assert np.array_equal(bg, bg_before)


def test_folder_photos_reads_only_images(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "img" / "a_000000000001.jpg")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "gt" / "a_000000000001.png")
    photos = FolderPhotos(tmp_path)
    assert [p.name for p in photos.paths] == ["a_000000000001.jpg"]
    assert photos(np.random.default_rng(0)).shape == (20, 30, 3)
    sample = SyntheticDataset(1, size=128, seed=0, photo_dir=tmp_path)[0]
    assert sample.image.shape[2] == 3 and sample.gt.any()
    with pytest.raises(FileNotFoundError):
        FolderPhotos(tmp_path / "gt" / "missing")
