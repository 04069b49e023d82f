"""On-disk dataset layouts (RITM's conventions), layout detection, and mask → `Sample.gt` rules.

Each layout names its image and annotation folders, how an annotation file is decoded, and
how its values become the int8 ground truth (1 object, 0 background, -1 ignore). Layouts with
instance maps (SBD, PASCAL VOC) yield one sample per instance id.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from edgeclick.data.imread import IMAGE_SUFFIXES, read_intensity, read_label_map
from edgeclick.data.sample import IGNORE

GRABCUT_IGNORE_VALUE: int = 128
"""GrabCut/Berkeley trimap value of the unlabelled band around the object boundary."""

VOC_VOID_ID: int = 255
"""PASCAL VOC palette index of the void band (object borders and ambiguous regions)."""

HQ_THRESHOLD: int = 127
"""HQ masks (DIS5K, ThinObject-5K, HQSeg-44K) are anti-aliased 0..255; object is > 127."""


def grabcut_gt(intensity: np.ndarray, instance: int | None = None) -> np.ndarray:
    """GrabCut trimap (H×W uint8) → H×W int8: exactly 128 → ignore, > 128 object, else background.

    Same rule as RITM's GrabCutDataset, which Berkeley reuses.
    """
    gt = (intensity > GRABCUT_IGNORE_VALUE).astype(np.int8)
    gt[intensity == GRABCUT_IGNORE_VALUE] = IGNORE
    return gt


def davis_gt(intensity: np.ndarray, instance: int | None = None) -> np.ndarray:
    """DAVIS / COCO_MVal mask (H×W uint8) → H×W int8: any non-zero value is object.

    RITM's DavisDataset (also used for COCO_MVal) takes max over channels and `> 0`, not
    `> 127`; the distributed masks are strictly 0/255, so the two agree on them, and `> 0`
    keeps parity with RITM's published numbers if a mask ever carries intermediate values.
    """
    return (intensity > 0).astype(np.int8)


def hq_gt(intensity: np.ndarray, instance: int | None = None) -> np.ndarray:
    """HQ mask (H×W uint8, anti-aliased) → H×W int8 object where > 127 (HQ-SAM/DIS practice)."""
    return (intensity > HQ_THRESHOLD).astype(np.int8)


def sbd_gt(instances: np.ndarray, instance: int | None) -> np.ndarray:
    """SBD instance map (H×W int) and one id → H×W int8: that instance 1, everything else 0."""
    return (instances == instance).astype(np.int8)


def voc_gt(instances: np.ndarray, instance: int | None) -> np.ndarray:
    """VOC instance map (H×W int) and one id → H×W int8: the instance 1, void (255) ignore, else 0."""
    gt = (instances == instance).astype(np.int8)
    gt[instances == VOC_VOID_ID] = IGNORE
    return gt


def sbd_ids(instances: np.ndarray) -> list[int]:
    """Instance ids present in an SBD map (H×W int), ascending; 0 is background."""
    return [int(i) for i in np.unique(instances) if i > 0]


def voc_ids(instances: np.ndarray) -> list[int]:
    """Instance ids present in a VOC map (H×W int), ascending; 0 background and 255 void excluded."""
    return [int(i) for i in np.unique(instances) if i != 0 and i != VOC_VOID_ID]


def read_sbd_instances(path: Path) -> np.ndarray:
    """Read `GTinst.Segmentation` from an SBD `inst/*.mat` file as an H×W int32 instance map.

    Raises:
        ValueError: when the file has no `GTinst` struct with a 2-D `Segmentation` field.
    """
    mat = scipy.io.loadmat(path, simplify_cells=True, variable_names=["GTinst"])
    gtinst = mat.get("GTinst")
    if not isinstance(gtinst, dict) or "Segmentation" not in gtinst:
        raise ValueError("no 'GTinst' struct with a 'Segmentation' field")
    seg = np.asarray(gtinst["Segmentation"])
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"GTinst.Segmentation must be a 2-D integer array, got {seg.shape} {seg.dtype}")
    return seg.astype(np.int32)


@dataclass(frozen=True)
class Layout:
    """How one dataset format is stored and turned into samples.

    Attributes:
        name: format name accepted by `load_dataset(fmt=...)` and reported as `Dataset.format`.
        dir_pairs: (images folder, annotations folder) alternatives; the first present pair is used.
        annotation_suffixes: lower-case file endings of annotation files.
        read_annotation: path → raw H×W array (8-bit intensities or integer instance ids).
        to_gt: (raw H×W array, instance id or None) → H×W int8 ground truth.
        instance_ids: raw map → ids to split into samples; None means one sample per file.
        list_file: split list relative to the root, with `{split}` placeholder; None if unused.
        description: one line for error messages.
    """

    name: str
    dir_pairs: tuple[tuple[str, str], ...]
    annotation_suffixes: frozenset[str]
    read_annotation: Callable[[Path], np.ndarray]
    to_gt: Callable[[np.ndarray, int | None], np.ndarray]
    instance_ids: Callable[[np.ndarray], list[int]] | None
    list_file: str | None
    description: str


_TRIMAP_DIRS = (("data_GT", "boundary_GT"), ("images", "masks"))

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("grabcut", _TRIMAP_DIRS, IMAGE_SUFFIXES, read_intensity, grabcut_gt, None, None,
               "data_GT/ + boundary_GT/ (or images/ + masks/), trimap 0/128 ignore/255"),
        Layout("berkeley", _TRIMAP_DIRS, IMAGE_SUFFIXES, read_intensity, grabcut_gt, None, None,
               "images/ + masks/ (or data_GT/ + boundary_GT/), trimap 0/128 ignore/255"),
        Layout("davis", (("img", "gt"),), IMAGE_SUFFIXES, read_intensity, davis_gt, None, None,
               "img/ + gt/, mask > 0 is object"),
        Layout("coco_mval", (("img", "gt"),), IMAGE_SUFFIXES, read_intensity, davis_gt, None, None,
               "img/ + gt/ (one file per instance), mask > 0 is object"),
        Layout("sbd", (("img", "inst"),), frozenset({".mat"}), read_sbd_instances, sbd_gt, sbd_ids,
               "{split}.txt", "img/ + inst/*.mat (GTinst.Segmentation), one sample per instance"),
        Layout("pascalvoc", (("JPEGImages", "SegmentationObject"),), IMAGE_SUFFIXES, read_label_map,
               voc_gt, voc_ids, "ImageSets/Segmentation/{split}.txt",
               "JPEGImages/ + SegmentationObject/ palette PNGs, 255 void, one sample per instance"),
        Layout("hq", (("im", "gt"), ("images", "masks")), IMAGE_SUFFIXES, read_intensity, hq_gt, None,
               None, "im/ + gt/ (or images/ + masks/ with fmt='hq'), mask > 127 is object"),
    )
}
"""Every supported format by name."""

# Auto-detection signatures, one per folder pair. images/ + masks/ is shared by Berkeley and
# ThinObject-5K-style HQ data; it resolves to Berkeley's trimap rule (128 → ignore) because that
# is what RITM's benchmarks use; HQ data in that layout needs fmt="hq" (128 there is object).
_SIGNATURES: tuple[tuple[tuple[str, str], str], ...] = (
    (("JPEGImages", "SegmentationObject"), "pascalvoc"),
    (("img", "inst"), "sbd"),
    (("data_GT", "boundary_GT"), "grabcut"),
    (("images", "masks"), "berkeley"),
    (("img", "gt"), "davis"),
    (("im", "gt"), "hq"),
)


def _supported_text() -> str:
    """Multi-line list of formats and their folders, for error messages."""
    return "\n".join(f"  {layout.name}: {layout.description}" for layout in LAYOUTS.values())


def _subfolders(root: Path) -> list[str]:
    """Sorted names of the visible subfolders of `root`."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_format(root: Path) -> str:
    """Name the layout of `root` from its subfolders.

    img/ + gt/ is structurally the same for DAVIS and COCO_MVal; it is reported as "coco_mval"
    when the folder name contains "coco" (e.g. `coco_mval_dev`) and "davis" otherwise. The two
    decode identically, so this only affects `Dataset.format`.

    Raises:
        ValueError: when no layout, or more than one, matches; the message lists what was found.
    """
    found = _subfolders(root)
    present = set(found)
    matches = [fmt for pair, fmt in _SIGNATURES if set(pair) <= present]
    if len(matches) == 1:
        fmt = matches[0]
        if fmt == "davis" and "coco" in root.name.lower():
            return "coco_mval"
        return fmt
    if not matches:
        raise ValueError(
            f"cannot detect the dataset layout of {root}: found folders {found or '(none)'}; "
            f"supported layouts:\n{_supported_text()}"
        )
    raise ValueError(f"ambiguous dataset layout in {root}: folders {found} match {matches}; pass fmt= explicitly")


def resolve_dirs(root: Path, layout: Layout) -> tuple[Path, Path]:
    """(images folder, annotations folder) of `layout` under `root`: the first pair that exists.

    Raises:
        ValueError: when none of the layout's folder pairs exists under `root`.
    """
    for images, masks in layout.dir_pairs:
        if (root / images).is_dir() and (root / masks).is_dir():
            return root / images, root / masks
    expected = " or ".join(f"{a}/ + {b}/" for a, b in layout.dir_pairs)
    raise ValueError(
        f"{root} is not a {layout.name} dataset: expected {expected}, found folders {_subfolders(root) or '(none)'}"
    )
