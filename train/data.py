"""Training data: real, copy-paste and synthetic samples → augmented crops with first clicks and SDMs.

`build_datasets(cfg)` returns (train, val) `ClickTrainingDataset`s whose items are dicts

    RGB_KEY    "rgb"     float32 3×H×W in [0, 1]       the augmented crop (H×W = cfg.crop_size)
    GT_KEY     "gt"      float32 1×H×W {1, 0, -1}      object / background / ignore
    POINTS_KEY "points"  float32 N×3 (x, y, label)     first clicks, N = cfg.max_num_points, -1 rows padding
    SDM_KEY    "sdm"     float32 1×H×W                 `signed_distance_map(gt)` in pixels

Augmentation is RITM's recipe (albumentations): RandomScale over `scale_range` (RITM's
UniformRandomResize: one factor for both sides), HorizontalFlip, PadIfNeeded to the crop with zeros
(image 0 and mask 0 = background, as RITM pads), RandomCrop, RandomBrightnessContrast((-0.25, 0.25),
(-0.15, 0.4), p=0.75), RGBShift(10, 10, 10, p=0.75). Validation items only pad and crop (RITM's
val_augmentator). A crop must show the object: RITM re-runs the whole augmentation until the sample
keeps an object (`keep_background_prob` ≈ 0); here up to `MAX_ATTEMPTS` draws are tried until the crop
holds at least min(`MIN_OBJECT_AREA` scaled to the crop size, a quarter of the object's source area)
object pixels, then a crop centred on an object pixel (albumentations' CropNonEmptyMaskIfExists) is used.

Determinism: item i draws everything from `np.random.default_rng([seed, stream, epoch, i])` (albumentations
is re-seeded from it), so an item is a pure function of (seed, epoch, index) whatever the worker. Call
`set_epoch(e)` on the training set before each epoch (DataLoader workers that are not persistent copy the
dataset at every epoch, so they see it) to get fresh augmentations and synthetic objects per epoch.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import albumentations as A
import cv2
import numpy as np
import torch

from edgeclick.data.datasets import BrokenSampleError, Dataset, load_dataset
from edgeclick.data.sample import IGNORE, Sample
from edgeclick.data.synthetic import copy_paste, generate_with_photos
from edgeclick.train.losses import signed_distance_map
from edgeclick.train.points import MultiPointSampler

RGB_KEY = "rgb"
GT_KEY = "gt"
POINTS_KEY = "points"
SDM_KEY = "sdm"

MAX_ATTEMPTS: int = 8
"""Random augmentation draws tried before falling back to an object-centred crop."""

MIN_OBJECT_AREA: int = 100
"""Object pixels a 320×480 crop must show (scaled with the crop area). Low on purpose: a crop that sees
only a few 1–2 px wires of a large object is exactly what high-resolution training needs."""

REFERENCE_CROP: tuple[int, int] = (320, 480)

# Label codes of the uint8 map that travels through albumentations (cv2 has no int8 resize/pad);
# nearest-neighbour interpolation keeps them intact, and padding fills BACKGROUND (0) like RITM.
_BACKGROUND, _OBJECT, _IGNORE, _OTHER = 0, 1, 2, 3

_STREAM_TRAIN, _STREAM_VAL = 0, 1
_CLICK_STREAM = 2  # the first clicks of fixed crops (ClickTrainingDataset.fix_crops) draw from their own stream


@dataclass(frozen=True)
class DataConfig:
    """What the training data is made of (see `build_datasets`)."""

    crop_size: tuple[int, int] = (320, 480)  # H, W; adapters train at 2× (640, 960)
    scale_range: tuple[float, float] = (0.75, 1.40)
    max_num_points: int = 24
    synthetic: int = 0  # synthetic samples per epoch (0 = none)
    synthetic_size: int = 1024  # long side of generated images
    coco_dir: str | None = None  # a folder load_dataset reads (e.g. ../shared/data/coco_mval_dev): real samples
    copy_paste: int = 0  # copy-paste composites per epoch from coco_dir objects
    hq_dirs: tuple[str, ...] = ()  # extra HQ-layout folders (all used for training)
    val_fraction: float = 0.1  # held-out part of coco_dir, split by photo
    seed: int = 0
    val_scale: float = 1.0  # fixed resize of validation images before pad + crop (the pixel scale training sees)


# --- sources: where the raw samples of one dataset index range come from -----------------------------------

class SampleSource(Protocol):
    """A block of dataset indices: `draw(i, rng)` → (sample, optional H×W bool mask of other objects)."""

    def __len__(self) -> int: ...

    def draw(self, index: int, rng: np.random.Generator) -> tuple[Sample, np.ndarray | None]: ...


_COCO_PHOTO_ID = re.compile(r"_(\d+)$")
_INSTANCE_SUFFIX = re.compile(r"_inst\d+$")


def photo_key(name: str) -> str:
    """The photo a sample name comes from: the COCO image id of COCO_MVal names ("cat00_000000281693"),
    the stem of instance-layout names ("2008_000123_inst2" → "2008_000123"), else the name itself."""
    match = _COCO_PHOTO_ID.search(name)
    if match and len(match.group(1)) >= 6:
        return match.group(1)
    return _INSTANCE_SUFFIX.sub("", name)


def split_by_photo(names: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train indices, val indices) with every photo's samples on one side.

    A photo goes to validation when sha1(f"{seed}:{photo}") read as a fraction is below `val_fraction`: a
    fixed rule per photo, so adding photos never moves existing ones across the split.
    """
    train, val = [], []
    for i, name in enumerate(names):
        digest = hashlib.sha1(f"{seed}:{photo_key(name)}".encode()).digest()
        (val if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else train).append(i)
    return train, val


def _decode(dataset: Dataset, indices: Sequence[int], index: int) -> tuple[int, Sample]:
    """dataset[indices[index]], or the next decodable one (broken files are logged by the dataset)."""
    for step in range(len(indices)):
        j = indices[(index + step) % len(indices)]
        try:
            return j, dataset[j]
        except BrokenSampleError:
            continue
    raise RuntimeError(f"{dataset.name}: no sample decodes")


class RealSource:
    """Samples of a loaded dataset; other instances of the same photo become the "other objects" mask."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        names = dataset.names
        by_photo: dict[str, list[int]] = defaultdict(list)
        for j in self.indices:
            by_photo[photo_key(names[j])].append(j)
        self.siblings = {j: [k for k in by_photo[photo_key(names[j])] if k != j] for j in self.indices}
        self._masks: dict[int, tuple[np.ndarray, tuple[int, int]] | None] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def draw(self, index: int, rng: np.random.Generator) -> tuple[Sample, np.ndarray | None]:
        j, sample = _decode(self.dataset, self.indices, index)
        others = None
        for k in self.siblings[j]:
            other = self._object_mask(k)
            if other is not None and other.shape == sample.gt.shape:
                others = other if others is None else others | other
        return sample, others

    def _object_mask(self, index: int) -> np.ndarray | None:
        """H×W bool object mask of dataset[index], decoded once per worker and kept bit-packed."""
        if index not in self._masks:
            try:
                gt = self.dataset[index].gt
            except BrokenSampleError:
                self._masks[index] = None
                return None
            self._masks[index] = (np.packbits(gt == 1, axis=None), gt.shape)
        entry = self._masks[index]
        if entry is None:
            return None
        bits, shape = entry
        return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


class DatasetPhotos:
    """A `PhotoSource` over a dataset's images (picklable, for DataLoader workers)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return _decode(self.dataset, self.indices, int(rng.integers(len(self.indices))))[1].image


class CopyPasteSource:
    """`n` composites: an object of `dataset[indices]` pasted onto another photo of the same indices."""

    def __init__(self, n: int, dataset: Dataset, indices: Sequence[int]) -> None:
        self.n = n
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return self.n

    def draw(self, index: int, rng: np.random.Generator) -> tuple[Sample, np.ndarray | None]:
        _, obj = _decode(self.dataset, self.indices, int(rng.integers(len(self.indices))))
        for _ in range(4):  # prefer a different photo as the background
            _, bg = _decode(self.dataset, self.indices, int(rng.integers(len(self.indices))))
            if photo_key(bg.name) != photo_key(obj.name):
                break
        return copy_paste([obj], [bg.image], rng), None


class SyntheticSource:
    """`n` synthetic samples (`edgeclick.data.synthetic`), textured with `photos` when given."""

    def __init__(self, n: int, size: int, photos: DatasetPhotos | None) -> None:
        self.n = n
        self.size = size
        self.photos = photos

    def __len__(self) -> int:
        return self.n

    def draw(self, index: int, rng: np.random.Generator) -> tuple[Sample, np.ndarray | None]:
        return generate_with_photos(rng, self.size, self.photos), None


# --- the dataset ------------------------------------------------------------------------------------------

def _pipeline(crop: tuple[int, int], scale_range: tuple[float, float], augment: bool, centred: bool) -> A.Compose:
    """RITM's train (augment) or val augmentator (scale_range (s, s): a fixed scale s); `centred` swaps
    RandomCrop for an object-centred crop."""
    h, w = crop
    cropper = A.CropNonEmptyMaskIfExists(h, w, ignore_values=[_IGNORE, _OTHER]) if centred else A.RandomCrop(h, w)
    pad = A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=_BACKGROUND)
    lo, hi = scale_range
    scale = A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR,
                          mask_interpolation=cv2.INTER_NEAREST, p=1.0)
    if not augment:  # validation: a fixed scale (lo == hi), then pad + crop
        return A.Compose([pad, cropper] if lo == hi == 1.0 else [scale, pad, cropper], p=1.0)
    return A.Compose([
        scale,
        A.HorizontalFlip(p=0.5),
        pad,
        cropper,
        A.RandomBrightnessContrast(brightness_limit=(-0.25, 0.25), contrast_limit=(-0.15, 0.4), p=0.75),
        A.RGBShift(r_shift_limit=10, g_shift_limit=10, b_shift_limit=10, p=0.75),
    ], p=1.0)


def _encode(gt: np.ndarray, others: np.ndarray | None) -> np.ndarray:
    """H×W int8 gt (+ other objects) → H×W uint8 label codes."""
    codes = np.where(gt == 1, _OBJECT, np.where(gt == IGNORE, _IGNORE, _BACKGROUND)).astype(np.uint8)
    if others is not None:
        codes[(codes == _BACKGROUND) & others] = _OTHER
    return codes


class ClickTrainingDataset(torch.utils.data.Dataset):
    """Concatenated sources → augmented crops with first clicks (see the module docstring for item keys).

    Args:
        sources: index blocks in order (item i belongs to the first source whose block holds it).
        crop_size: (H, W) of every item.
        scale_range: RandomScale range (augment); without augment (s, s) resizes by a fixed s (1: none).
        max_num_points: click rows per item.
        augment: RITM's training augmentation; otherwise pad + crop only.
        seed: base seed; stream: separates train and val draws with the same seed.

    fix_crops: every epoch shows each item's epoch-0 crop (what a cache of encoder outputs needs), while
    its first clicks are still drawn anew each epoch.
    """

    def __init__(self, sources: Sequence[SampleSource], *, crop_size: tuple[int, int], scale_range: tuple[float, float],
                 max_num_points: int, augment: bool, seed: int, stream: int = _STREAM_TRAIN) -> None:
        self.sources = list(sources)
        self.crop_size = tuple(crop_size)
        self.augment = augment
        self.seed = seed
        self.stream = stream
        self.epoch = 0
        self.fix_crops = False
        self.sampler = MultiPointSampler(max_num_points)
        self.min_object_area = max(1, round(MIN_OBJECT_AREA * crop_size[0] * crop_size[1] / (REFERENCE_CROP[0] * REFERENCE_CROP[1])))
        self._random = _pipeline(self.crop_size, scale_range, augment, centred=False)
        self._centred = _pipeline(self.crop_size, scale_range, augment, centred=True)
        self._starts = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def set_epoch(self, epoch: int) -> None:
        """Make items depend on `epoch` (new augmentations and synthetic objects every epoch)."""
        self.epoch = epoch

    def raw(self, index: int) -> tuple[Sample, np.ndarray | None, np.random.Generator]:
        """The un-augmented sample of item `index`, its other-objects mask, and the item's generator after drawing it."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, self.stream, 0 if self.fix_crops else self.epoch, index])
        k = int(np.searchsorted(self._starts, index, side="right")) - 1
        sample, others = self.sources[k].draw(index - int(self._starts[k]), rng)
        return sample, others, rng

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample, others, rng = self.raw(index)
        rgb, codes = self._crop(sample.image, _encode(sample.gt, others), rng)
        gt = np.where(codes == _OBJECT, 1, np.where(codes == _IGNORE, IGNORE, 0)).astype(np.int8)
        if self.fix_crops:  # the same crop every epoch, new first clicks
            rng = np.random.default_rng([self.seed, self.stream, self.epoch, index, _CLICK_STREAM])
        points = self.sampler(gt, rng, others=codes == _OTHER)
        return {
            RGB_KEY: torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)),
            GT_KEY: torch.from_numpy(gt.astype(np.float32))[None],
            POINTS_KEY: torch.from_numpy(points),
            SDM_KEY: torch.from_numpy(signed_distance_map(gt))[None],
        }

    def _crop(self, image: np.ndarray, codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment and crop until the crop shows enough of the object (see the module docstring)."""
        source_area = int((codes == _OBJECT).sum())
        need = min(self.min_object_area, max(1, source_area // 4))
        for _ in range(MAX_ATTEMPTS):
            rgb, out = self._apply(self._random, image, codes, rng)
            if int((out == _OBJECT).sum()) >= need:
                return rgb, out
        return self._apply(self._centred, image, codes, rng)

    @staticmethod
    def _apply(pipeline: A.Compose, image: np.ndarray, codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        pipeline.set_random_seed(int(rng.integers(2**31)))
        # The batch targets ("images"/"masks", a stack of one) run the same transforms as the single ones.
        out = pipeline(images=image[None], masks=codes[None])
        return out["images"][0], out["masks"][0]


# --- assembly ---------------------------------------------------------------------------------------------

def build_datasets(cfg: DataConfig, split_seed: int = 0) -> tuple[ClickTrainingDataset, ClickTrainingDataset]:
    """(train, val) datasets from a config.

    Train: the training photos of `coco_dir` (all but the `val_fraction` held out by `split_by_photo`), every
    sample of each `hq_dirs` folder, `copy_paste` composites of training objects on training photos, and
    `synthetic` generated samples textured with training photos (procedural textures without coco_dir).
    Val: the held-out coco_dir photos, resized by val_scale, then pad + crop; without coco_dir, max(1, val_fraction·synthetic)
    synthetic samples on their own seed stream. No validation photo ever appears in a training item.

    Raises:
        ValueError: nothing to train on, or copy_paste without coco_dir.
    """
    common = {"crop_size": cfg.crop_size, "scale_range": cfg.scale_range, "max_num_points": cfg.max_num_points,
              "seed": cfg.seed}
    train_sources: list[SampleSource] = []
    val_sources: list[SampleSource] = []
    photos: DatasetPhotos | None = None
    if cfg.coco_dir is not None:
        coco = load_dataset(cfg.coco_dir)
        train_idx, val_idx = split_by_photo(coco.names, cfg.val_fraction, split_seed)
        if not train_idx:
            raise ValueError(f"{cfg.coco_dir}: val_fraction {cfg.val_fraction} leaves no training photos")
        train_sources.append(RealSource(coco, train_idx))
        if val_idx:
            val_sources.append(RealSource(coco, val_idx))
        photos = DatasetPhotos(coco, train_idx)
        if cfg.copy_paste:
            train_sources.append(CopyPasteSource(cfg.copy_paste, coco, train_idx))
    elif cfg.copy_paste:
        raise ValueError("copy_paste needs coco_dir (objects and photos to paste onto)")
    for folder in cfg.hq_dirs:
        hq = load_dataset(folder, "hq")
        train_sources.append(RealSource(hq, range(len(hq))))
    if cfg.synthetic:
        train_sources.append(SyntheticSource(cfg.synthetic, cfg.synthetic_size, photos))
        if not val_sources:
            val_sources.append(SyntheticSource(max(1, round(cfg.val_fraction * cfg.synthetic)), cfg.synthetic_size, None))
    if not train_sources:
        raise ValueError("no training data: set coco_dir, hq_dirs or synthetic > 0")
    train = ClickTrainingDataset(train_sources, augment=True, stream=_STREAM_TRAIN, **common)
    val_common = {**common, "scale_range": (cfg.val_scale, cfg.val_scale)}
    val = ClickTrainingDataset(val_sources, augment=False, stream=_STREAM_VAL, **val_common)
    return train, val
