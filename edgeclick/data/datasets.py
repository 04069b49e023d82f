"""Lazy evaluation/training datasets in RITM's on-disk layouts: `load_dataset(root) -> Dataset`.

Loading happens in two stages, and broken inputs are skipped (never raised mid-dataset) in both:

1. Construction pairs images and annotations by file stem and compares their sizes from the
   file headers (no pixel decoding), so it is cheap. Layouts with instance maps (SBD `.mat`,
   VOC palette PNGs) must decode each map once here to count instances, since `len()` depends
   on it. Image without mask, mask without image, duplicate stems, size mismatches, unreadable
   headers or instance maps, and maps without instances are recorded now.
2. Indexing/iteration decodes a sample. A file that only fails there (truncated data, a mask
   with no object pixels) is recorded then: `ds[i]` raises `BrokenSampleError`, iteration
   skips it. So `len(ds)` counts the samples that passed stage 1, iteration yields only good
   samples, and `ds.skipped` is complete after one full iteration.

Every skip is logged as a warning and kept as `(file relative to root, reason)`; reasons start
with one of the `REASON_*` constants below.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeclick.data.imread import IMAGE_SUFFIXES, header_size, read_rgb
from edgeclick.data.layouts import LAYOUTS, Layout, detect_format, resolve_dirs
from edgeclick.data.sample import Sample

logger = logging.getLogger(__name__)

REASON_MISSING_MASK = "image without mask"
REASON_MISSING_IMAGE = "mask without image"
REASON_DUPLICATE = "duplicate stem"
REASON_SIZE_MISMATCH = "size mismatch"
REASON_UNREADABLE = "unreadable file"
REASON_EMPTY_MASK = "empty mask"
REASON_NO_INSTANCES = "no object instances"

Report = Callable[[Path, str], None]
"""Callback that records one skipped file and the reason."""


class BrokenSampleError(ValueError):
    """Raised by `Dataset[i]` when sample i fails to decode; the file is also in `Dataset.skipped`."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class _Entry:
    """One future sample: where its pixels are, and which instance id of the map (None: binary mask)."""

    name: str
    image: Path
    annotation: Path
    instance: int | None


def _files_by_stem(folder: Path, suffixes: frozenset[str], report: Report) -> tuple[dict[str, Path], set[str]]:
    """Map stem → file for the visible files in `folder` with one of `suffixes` (case-insensitive).

    Returns the unique stems and the set of stems shared by several files. Those are reported
    and left out: pairing `x.jpg`/`x.png` with `x.bmp` would be a guess.
    """
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes:
            groups[path.stem].append(path)
    unique: dict[str, Path] = {}
    duplicated: set[str] = set()
    for stem, paths in groups.items():
        if len(paths) == 1:
            unique[stem] = paths[0]
        else:
            duplicated.add(stem)
            for path in paths:
                report(path, f"{REASON_DUPLICATE}: {', '.join(p.name for p in paths)}")
    return unique, duplicated


def _header_size_or_report(path: Path, report: Report) -> tuple[int, int] | None:
    """(width, height) from the header of `path`, or None after reporting it as unreadable."""
    try:
        return header_size(path)
    except Exception as exc:  # any Pillow failure means a broken file; the dataset goes on
        report(path, f"{REASON_UNREADABLE}: {type(exc).__name__}: {exc}")
        return None


def _index_pairs(image_dir: Path, mask_dir: Path, layout: Layout, report: Report) -> list[_Entry]:
    """Entries for one-mask-per-image layouts, in image file name order (RITM's order)."""
    images, bad_images = _files_by_stem(image_dir, IMAGE_SUFFIXES, report)
    masks, bad_masks = _files_by_stem(mask_dir, layout.annotation_suffixes, report)
    entries: list[_Entry] = []
    for stem, image in sorted(images.items(), key=lambda item: item[1].name):
        mask = masks.get(stem)
        if mask is None:
            if stem not in bad_masks:
                report(image, f"{REASON_MISSING_MASK}: no {mask_dir.name}/{stem}.*")
            continue
        image_size = _header_size_or_report(image, report)
        mask_size = _header_size_or_report(mask, report)
        if image_size is None or mask_size is None:
            continue
        if image_size != mask_size:
            report(mask, f"{REASON_SIZE_MISMATCH}: image {image_size[0]}x{image_size[1]}, "
                         f"mask {mask_size[0]}x{mask_size[1]} (width x height)")
            continue
        entries.append(_Entry(stem, image, mask, None))
    for stem, mask in sorted(masks.items()):
        if stem not in images and stem not in bad_images:
            report(mask, f"{REASON_MISSING_IMAGE}: no {image_dir.name}/{stem}.*")
    return entries


def _read_split(root: Path, layout: Layout, split: str | None) -> list[str] | None:
    """Stems listed in the layout's split file, or None to use every annotation file."""
    if layout.list_file is None or split is None:
        return None
    list_path = root / layout.list_file.format(split=split)
    if not list_path.is_file():
        logger.info("%s: no %s; using every annotation file", root.name, list_path.relative_to(root))
        return None
    # dict.fromkeys: drop repeated names (they would yield duplicate samples), keep list order.
    return list(dict.fromkeys(line.strip() for line in list_path.read_text().splitlines() if line.strip()))


def _index_instances(
    root: Path, image_dir: Path, map_dir: Path, layout: Layout, split: str | None, report: Report
) -> list[_Entry]:
    """Entries for instance-map layouts: one per instance id, images in list or map-name order.

    Images without a map are not reported here: VOC's JPEGImages/ holds every photo, most of
    them unannotated for segmentation.
    """
    assert layout.instance_ids is not None
    images, bad_images = _files_by_stem(image_dir, IMAGE_SUFFIXES, report)
    maps, bad_maps = _files_by_stem(map_dir, layout.annotation_suffixes, report)
    listed = _read_split(root, layout, split)
    list_note = f" (listed in {layout.list_file.format(split=split)})" if listed is not None and layout.list_file else ""
    entries: list[_Entry] = []
    for stem in listed if listed is not None else sorted(maps):
        if stem in bad_images or stem in bad_maps:
            continue
        image, instance_map = images.get(stem), maps.get(stem)
        if instance_map is None:
            report(images.get(stem, image_dir / stem), f"{REASON_MISSING_MASK}: no {map_dir.name}/{stem}.*{list_note}")
            continue
        if image is None:
            report(instance_map, f"{REASON_MISSING_IMAGE}: no {image_dir.name}/{stem}.*{list_note}")
            continue
        image_size = _header_size_or_report(image, report)
        if image_size is None:
            continue
        try:
            ids_map = layout.read_annotation(instance_map)
        except Exception as exc:  # corrupt map: skip this image, keep the dataset going
            report(instance_map, f"{REASON_UNREADABLE}: {type(exc).__name__}: {exc}")
            continue
        map_size = (ids_map.shape[1], ids_map.shape[0])
        if map_size != image_size:
            report(instance_map, f"{REASON_SIZE_MISMATCH}: image {image_size[0]}x{image_size[1]}, "
                                 f"mask {map_size[0]}x{map_size[1]} (width x height)")
            continue
        ids = layout.instance_ids(ids_map)
        if not ids:
            report(instance_map, f"{REASON_NO_INSTANCES}: map has no instance ids")
            continue
        entries.extend(_Entry(f"{stem}_inst{i}", image, instance_map, i) for i in ids)
    return entries


class Dataset:
    """Lazy sequence of `Sample`s from one dataset folder; see the module docstring for skipping.

    Attributes:
        root: dataset folder.
        name: folder name (e.g. "grabcut").
        format: layout name (a key of `edgeclick.data.layouts.LAYOUTS`).
        skipped: (file relative to root, reason) for every skipped file seen so far; complete
            after one full iteration.
    """

    def __init__(self, root: Path, fmt: str, entries: list[_Entry], skipped: list[tuple[str, str]]) -> None:
        self.root = root
        self.name = root.name
        self.format = fmt
        self.skipped = skipped
        self._entries = entries
        self._seen = set(skipped)
        # Instances of one image are consecutive, so remembering the last decoded map saves
        # re-reading it (a .mat load for SBD) for every instance.
        self._cached_map: tuple[Path, np.ndarray] | None = None

    def __len__(self) -> int:
        """Samples that passed construction checks (an upper bound on what iteration yields)."""
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        """Sample names in index order, without decoding anything."""
        return [entry.name for entry in self._entries]

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, format={self.format!r}, len={len(self)}, skipped={len(self.skipped)})"

    def _skip(self, path: Path, reason: str) -> BrokenSampleError:
        """Record (once) and log a decode-time failure; return the error for `__getitem__` to raise."""
        file = _relative(path, self.root)
        if (file, reason) not in self._seen:
            self._seen.add((file, reason))
            self.skipped.append((file, reason))
            logger.warning("%s: skipping %s: %s", self.name, file, reason)
        return BrokenSampleError(file, reason)

    def _annotation(self, entry: _Entry, layout: Layout) -> np.ndarray:
        """Raw H×W annotation array of `entry`, reusing the previous one for instance layouts."""
        if layout.instance_ids is None:
            return layout.read_annotation(entry.annotation)
        if self._cached_map is None or self._cached_map[0] != entry.annotation:
            self._cached_map = (entry.annotation, layout.read_annotation(entry.annotation))
        return self._cached_map[1]

    def __getitem__(self, index: int) -> Sample:
        """Decode sample `index` (negative indices count from the end).

        Raises:
            TypeError: `index` is not an integer (slices are not supported).
            IndexError: out of range.
            BrokenSampleError: the sample's files fail to decode or its mask has no object pixels.
        """
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"Dataset indices must be integers, got {type(index).__name__}")
        entry = self._entries[index]
        layout = LAYOUTS[self.format]
        try:
            image = read_rgb(entry.image)
        except Exception as exc:  # truncated/corrupt pixel data only shows up on decode
            raise self._skip(entry.image, f"{REASON_UNREADABLE}: {type(exc).__name__}: {exc}") from exc
        try:
            gt = layout.to_gt(self._annotation(entry, layout), entry.instance)
        except Exception as exc:
            raise self._skip(entry.annotation, f"{REASON_UNREADABLE}: {type(exc).__name__}: {exc}") from exc
        if gt.shape != image.shape[:2]:
            # Headers agreed at construction; a decoder disagreeing with its own header lands here.
            raise self._skip(entry.annotation, f"{REASON_SIZE_MISMATCH}: image {image.shape[1]}x{image.shape[0]}, "
                                               f"mask {gt.shape[1]}x{gt.shape[0]} (width x height)")
        if not (gt == 1).any():
            raise self._skip(entry.annotation, f"{REASON_EMPTY_MASK}: no object pixels")
        return Sample(entry.name, image, gt)

    def __iter__(self) -> Iterator[Sample]:
        """Yield every sample that decodes, in index order, skipping (and recording) broken ones."""
        broken = 0
        for index in range(len(self)):
            try:
                yield self[index]
            except BrokenSampleError:
                broken += 1
        if broken:
            logger.warning("%s: %d of %d samples skipped while decoding; see Dataset.skipped",
                           self.name, broken, len(self))


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root` in POSIX form (absolute if it lies elsewhere)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def load_dataset(root: str | Path, fmt: str = "auto", *, split: str | None = "val") -> Dataset:
    """Index the dataset in `root` without decoding images (see the module docstring).

    Args:
        root: dataset folder, e.g. `$EDGECLICK_DATA/grabcut`.
        fmt: one of `LAYOUTS` ("grabcut", "berkeley", "davis", "coco_mval", "sbd", "pascalvoc",
            "hq") or "auto" to detect it from the subfolders.
        split: SBD / PASCAL VOC only: read `{split}.txt` (SBD) or
            `ImageSets/Segmentation/{split}.txt` (VOC) when present, as RITM does; None, or a
            missing list, means every annotation file.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: unknown `fmt`, undetectable layout, or the folders `fmt` needs are missing.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt not in LAYOUTS:
        raise ValueError(f"unknown dataset format {fmt!r}; supported: 'auto', {', '.join(map(repr, LAYOUTS))}")
    layout = LAYOUTS[fmt]
    image_dir, annotation_dir = resolve_dirs(root, layout)

    skipped: list[tuple[str, str]] = []

    def report(path: Path, reason: str) -> None:
        skipped.append((_relative(path, root), reason))
        logger.warning("%s: skipping %s: %s", root.name, _relative(path, root), reason)

    if layout.instance_ids is None:
        entries = _index_pairs(image_dir, annotation_dir, layout, report)
    else:
        entries = _index_instances(root, image_dir, annotation_dir, layout, split, report)
    if skipped:
        logger.warning("%s: %d file(s) skipped while indexing, %d samples kept; see Dataset.skipped",
                       root.name, len(skipped), len(entries))
    return Dataset(root, fmt, entries, skipped)
