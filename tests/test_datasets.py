"""Dataset loaders: every layout, RGB conversion, broken-file skipping, auto-detection, real data."""
from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from edgeclick.data.datasets import (
    REASON_DUPLICATE,
    REASON_EMPTY_MASK,
    REASON_MISSING_IMAGE,
    REASON_MISSING_MASK,
    REASON_NO_INSTANCES,
    REASON_SIZE_MISMATCH,
    REASON_UNREADABLE,
    BrokenSampleError,
    Dataset,
    load_dataset,
)
from edgeclick.data.sample import IGNORE, Sample

H, W = 6, 8


# ---------------------------------------------------------------- fixture writers


def _photo(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """Random h×w×3 uint8 RGB."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_photo(path: Path, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """Write a random RGB image (format from the suffix) and return its h×w×3 pixels as saved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_photo(h, w, seed)).save(path)
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def _write_gray(path: Path, values: np.ndarray) -> None:
    """Write an H×W uint8 array as an 8-bit grayscale image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def _write_palette(path: Path, ids: np.ndarray) -> None:
    """Write an H×W array of palette indices as a palette PNG (VOC SegmentationObject style)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(ids.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[1:21] = np.arange(1, 21)[:, None] * [12, 6, 3]
    palette[255] = (224, 224, 192)  # VOC's void colour
    im.putpalette(palette.flatten().tolist())
    im.save(path)


def _write_sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    """Write an SBD `inst/*.mat`: struct GTinst with Segmentation, Boundaries, Categories fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(segmentation.max())
    boundaries = np.empty((n, 1), dtype=object)
    for i in range(n):
        boundaries[i, 0] = np.zeros((1, 1), np.uint8)
    gtinst = {
        "Segmentation": segmentation.astype(np.uint8),
        "Boundaries": boundaries,
        "Categories": np.arange(1, n + 1, dtype=np.uint8)[:, None],
    }
    scipy.io.savemat(path, {"GTinst": gtinst})


def _trimap() -> np.ndarray:
    """H×W GrabCut trimap: object block 255 with a 128 ignore band, background 0."""
    m = np.zeros((H, W), np.uint8)
    m[1:5, 2:7] = 128
    m[2:4, 3:6] = 255
    return m


def _trimap_gt() -> np.ndarray:
    """Expected int8 gt of `_trimap()`."""
    gt = np.zeros((H, W), np.int8)
    gt[1:5, 2:7] = IGNORE
    gt[2:4, 3:6] = 1
    return gt


def _binary(top: int = 1) -> np.ndarray:
    """H×W 0/255 mask with a block starting at row `top`."""
    m = np.zeros((H, W), np.uint8)
    m[top : top + 2, 2:5] = 255
    return m


def _instances() -> np.ndarray:
    """H×W instance map: ids 1 and 2 and a 255 void band between them."""
    m = np.zeros((H, W), np.uint8)
    m[0:3, 0:3] = 1
    m[3:6, 5:8] = 2
    m[3, 0:5] = 255
    return m


def _make_grabcut(root: Path, dirs: tuple[str, str] = ("data_GT", "boundary_GT")) -> None:
    """Three GrabCut samples with mixed image suffixes, masks as BMP/PNG."""
    _write_photo(root / dirs[0] / "b.jpg", seed=1)
    _write_photo(root / dirs[0] / "a.bmp", seed=2)
    _write_photo(root / dirs[0] / "c.JPG", seed=3)
    _write_gray(root / dirs[1] / "a.bmp", _trimap())
    _write_gray(root / dirs[1] / "b.bmp", _trimap())
    _write_gray(root / dirs[1] / "c.png", _binary())


def _make_davis(root: Path, images: str = "img", masks: str = "gt") -> None:
    """Three COCO_MVal-style instances, two sharing one photo (same pixels, own file each)."""
    for i, name in enumerate(["airplane00_000000281693", "airplane01_000000281693", "dog00_000000000139"]):
        _write_photo(root / images / f"{name}.jpg", seed=i // 2)
        _write_gray(root / masks / f"{name}.png", _binary(top=i))


def _make_sbd(root: Path) -> None:
    """SBD: two images in val.txt (2 and 1 instances), one in train.txt only."""
    for stem in ["2008_000001", "2008_000002", "2008_000003"]:
        _write_photo(root / "img" / f"{stem}.jpg")
    two = np.zeros((H, W), np.uint8)
    two[0:2, 0:3] = 1
    two[3:6, 4:8] = 2
    one = np.zeros((H, W), np.uint8)
    one[1:4, 1:4] = 1
    _write_sbd_mat(root / "inst" / "2008_000001.mat", two)
    _write_sbd_mat(root / "inst" / "2008_000002.mat", one)
    _write_sbd_mat(root / "inst" / "2008_000003.mat", one)
    (root / "val.txt").write_text("2008_000002\n2008_000001\n")
    (root / "train.txt").write_text("2008_000003\n")


def _make_voc(root: Path, with_list: bool = True) -> None:
    """VOC: two annotated images (2 and 1 instances), one unannotated photo, optional val.txt."""
    for stem in ["2007_000032", "2007_000033", "2007_009999"]:
        _write_photo(root / "JPEGImages" / f"{stem}.jpg")
    _write_palette(root / "SegmentationObject" / "2007_000032.png", _instances())
    single = np.zeros((H, W), np.uint8)
    single[1:3, 1:3] = 1
    _write_palette(root / "SegmentationObject" / "2007_000033.png", single)
    if with_list:
        (root / "ImageSets" / "Segmentation").mkdir(parents=True)
        (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n2007_000032\n")


def _make_hq(root: Path, images: str = "im", masks: str = "gt") -> None:
    """HQ: two samples of different sizes with anti-aliased masks (127 background, 128 object)."""
    _write_photo(root / images / "thin_0001.jpg", h=9, w=12)
    soft = np.zeros((9, 12), np.uint8)
    soft[2:7, 3:9] = 127
    soft[3:6, 4:8] = 128
    soft[4, 5] = 255
    _write_gray(root / masks / "thin_0001.png", soft)
    _write_photo(root / images / "thin_0002.png", h=5, w=4)
    _write_gray(root / masks / "thin_0002.png", np.full((5, 4), 200, np.uint8))


def _all(ds: Dataset) -> list[Sample]:
    return list(ds)


# ---------------------------------------------------------------- layouts


def test_grabcut_trimap_ignore_and_mixed_suffixes(tmp_path: Path) -> None:
    root = tmp_path / "grabcut"
    _make_grabcut(root)
    ds = load_dataset(root, "grabcut")
    assert (ds.name, ds.format, len(ds)) == ("grabcut", "grabcut", 3)
    samples = _all(ds)
    assert [s.name for s in samples] == ["a", "b", "c"]  # image file name order, as RITM
    np.testing.assert_array_equal(samples[0].gt, _trimap_gt())
    assert samples[0].gt.dtype == np.int8 and samples[0].image.shape == (H, W, 3)
    with Image.open(root / "data_GT" / "b.jpg") as im:
        np.testing.assert_array_equal(samples[1].image, np.array(im))
    np.testing.assert_array_equal(samples[2].gt, (_binary() > 0).astype(np.int8))
    assert ds.skipped == []


def test_grabcut_rule_on_intermediate_values(tmp_path: Path) -> None:
    # RITM's rule: exactly 128 is ignore, > 128 object, everything below is background.
    root = tmp_path / "gc"
    _write_photo(root / "data_GT" / "x.jpg")
    values = np.array([0, 1, 127, 128, 129, 254, 255, 255], np.uint8)
    _write_gray(root / "boundary_GT" / "x.png", np.tile(values, (H, 1)))
    gt = load_dataset(root)[0].gt
    np.testing.assert_array_equal(gt[0], [0, 0, 0, IGNORE, 1, 1, 1, 1])


def test_berkeley_images_masks(tmp_path: Path) -> None:
    root = tmp_path / "berkeley"
    _make_grabcut(root, ("images", "masks"))
    ds = load_dataset(root)
    assert ds.format == "berkeley" and len(ds) == 3
    np.testing.assert_array_equal(ds[0].gt, _trimap_gt())
    # Either trimap format accepts either folder pair.
    assert len(load_dataset(root, "grabcut")) == 3
    other = tmp_path / "gc"
    _make_grabcut(other)
    assert load_dataset(other, "berkeley").format == "berkeley"


@pytest.mark.parametrize("folder, fmt", [("DAVIS", "davis"), ("coco_mval_dev", "coco_mval")])
def test_davis_and_coco_mval(tmp_path: Path, folder: str, fmt: str) -> None:
    root = tmp_path / folder
    _make_davis(root)
    ds = load_dataset(root)
    assert ds.format == fmt and ds.name == folder
    samples = _all(ds)
    assert [s.name for s in samples] == ["airplane00_000000281693", "airplane01_000000281693", "dog00_000000000139"]
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(s.gt, (_binary(top=i) > 0).astype(np.int8))
    np.testing.assert_array_equal(samples[0].image, samples[1].image)  # the shared photo


def test_davis_threshold_follows_ritm(tmp_path: Path) -> None:
    # RITM's DavisDataset: max over channels, then > 0 (not > 127); colour masks count.
    root = tmp_path / "davis"
    _write_photo(root / "img" / "a.jpg")
    _write_photo(root / "img" / "b.jpg")
    values = np.zeros((H, W), np.uint8)
    values[0, :4] = [1, 127, 128, 255]
    _write_gray(root / "gt" / "a.png", values)
    red = np.zeros((H, W, 3), np.uint8)
    red[2, 2] = (255, 0, 0)
    Image.fromarray(red).save(root / "gt" / "b.png")
    a, b = _all(load_dataset(root, "davis"))
    assert a.gt.sum() == 4 and a.gt[0, :4].tolist() == [1, 1, 1, 1]
    assert b.gt.sum() == 1 and b.gt[2, 2] == 1


def test_sbd_instances_and_val_list(tmp_path: Path) -> None:
    root = tmp_path / "SBD"
    _make_sbd(root)
    ds = load_dataset(root)
    assert ds.format == "sbd"
    samples = _all(ds)
    # val.txt order; train-only image left out; one sample per instance.
    assert [s.name for s in samples] == ["2008_000002_inst1", "2008_000001_inst1", "2008_000001_inst2"]
    assert samples[1].gt.sum() == 6 and samples[2].gt.sum() == 12
    assert set(np.unique(samples[2].gt)) == {0, 1}
    assert not (samples[1].gt & samples[2].gt).any()
    assert len(load_dataset(root, split="train")) == 1
    assert len(load_dataset(root, split=None)) == 4  # every .mat
    assert ds.skipped == []


def test_sbd_mat_is_ritm_compatible(tmp_path: Path) -> None:
    # The fixture's .mat must also read the way RITM does: GTinst[0][0][0] is Segmentation.
    path = tmp_path / "inst" / "x.mat"
    _write_sbd_mat(path, _instances() % 255)
    seg = scipy.io.loadmat(path)["GTinst"][0][0][0]
    np.testing.assert_array_equal(seg, _instances() % 255)


def test_pascalvoc_instances_void_and_list(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    _make_voc(root)
    ds = load_dataset(root)
    assert ds.format == "pascalvoc"
    samples = _all(ds)
    assert [s.name for s in samples] == ["2007_000033_inst1", "2007_000032_inst1", "2007_000032_inst2"]
    ids = _instances()
    for s, instance in zip(samples[1:], (1, 2)):
        expected = (ids == instance).astype(np.int8)
        expected[ids == 255] = IGNORE
        np.testing.assert_array_equal(s.gt, expected)
    # The unannotated photo in JPEGImages is normal for VOC, not a skipped file.
    assert ds.skipped == []


def test_pascalvoc_without_list_uses_every_map(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    _make_voc(root, with_list=False)
    ds = load_dataset(root, "pascalvoc")
    assert ds.names == ["2007_000032_inst1", "2007_000032_inst2", "2007_000033_inst1"]
    assert ds.skipped == []


@pytest.mark.parametrize("dirs, fmt", [(("im", "gt"), "auto"), (("images", "masks"), "hq")])
def test_hq_any_size_threshold_127(tmp_path: Path, dirs: tuple[str, str], fmt: str) -> None:
    root = tmp_path / "DIS5K"
    _make_hq(root, *dirs)
    ds = load_dataset(root, fmt)
    assert ds.format == "hq"
    a, b = _all(ds)
    assert a.image.shape == (9, 12, 3) and b.image.shape == (5, 4, 3)
    assert a.gt.sum() == 12  # the 128 block only; 127 is background
    assert (b.gt == 1).all()


# ---------------------------------------------------------------- image conversion


def test_images_converted_to_rgb_uint8(tmp_path: Path) -> None:
    root = tmp_path / "davis"
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W) * 5
    (root / "img").mkdir(parents=True)
    Image.fromarray(gray, mode="L").save(root / "img" / "gray.png")
    pal = Image.fromarray((np.arange(H * W) % 3).reshape(H, W).astype(np.uint8), mode="P")
    pal.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    pal.save(root / "img" / "palette.png")
    rgba = np.dstack([_photo(), np.full((H, W), 7, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(root / "img" / "rgba.png")
    deep = np.full((H, W), 65535, np.uint16)
    deep[0, 0], deep[0, 1] = 0, 32896  # 32896 = 128 * 257
    Image.fromarray(deep).save(root / "img" / "deep.png")
    with Image.open(root / "img" / "deep.png") as im:
        assert im.mode.startswith("I")  # Pillow opens 16-bit grayscale as I;16
    for stem in ["gray", "palette", "rgba", "deep"]:
        _write_gray(root / "gt" / f"{stem}.png", _binary())
    s = {x.name: x.image for x in load_dataset(root)}
    for image in s.values():
        assert image.dtype == np.uint8 and image.shape == (H, W, 3) and image.flags.writeable
    np.testing.assert_array_equal(s["gray"], np.repeat(gray[:, :, None], 3, axis=2))
    assert s["palette"][0, :3].tolist() == [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    np.testing.assert_array_equal(s["rgba"], rgba[:, :, :3])
    assert s["deep"][0, :3].tolist() == [[0] * 3, [128] * 3, [255] * 3]


def test_exif_orientation_not_applied(tmp_path: Path) -> None:
    # Masks live on the stored pixel grid; rotating the photo alone would misalign them.
    root = tmp_path / "davis"
    (root / "img").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° CW to display"
    Image.fromarray(_photo()).save(root / "img" / "a.jpg", exif=exif.tobytes())
    _write_gray(root / "gt" / "a.png", _binary())
    assert load_dataset(root)[0].image.shape == (H, W, 3)


# ---------------------------------------------------------------- broken inputs


def test_broken_files_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "grabcut"
    _make_grabcut(root)
    _write_photo(root / "data_GT" / "no_mask.jpg")
    _write_gray(root / "boundary_GT" / "no_image.bmp", _trimap())
    _write_photo(root / "data_GT" / "wrong_size.jpg", h=H + 1)
    _write_gray(root / "boundary_GT" / "wrong_size.bmp", _trimap())
    (root / "data_GT" / "garbage.png").write_bytes(b"not an image at all")
    _write_gray(root / "boundary_GT" / "garbage.bmp", _trimap())
    # A truncated JPEG keeps a valid header: only decoding finds it.
    _write_photo(root / "data_GT" / "truncated.jpg", h=64, w=64)
    data = (root / "data_GT" / "truncated.jpg").read_bytes()
    (root / "data_GT" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    _write_gray(root / "boundary_GT" / "truncated.bmp", np.full((64, 64), 255, np.uint8))
    _write_photo(root / "data_GT" / "empty.jpg")
    empty = np.zeros((H, W), np.uint8)
    empty[0] = 128  # ignore pixels but no object
    _write_gray(root / "boundary_GT" / "empty.bmp", empty)
    _write_photo(root / "data_GT" / "dup.jpg")
    _write_photo(root / "data_GT" / "dup.png")
    _write_gray(root / "boundary_GT" / "dup.bmp", _trimap())
    (root / "data_GT" / "notes.txt").write_text("stray files are ignored")

    with caplog.at_level(logging.WARNING, logger="edgeclick.data.datasets"):
        ds = load_dataset(root)
        at_index = dict(ds.skipped)
        assert len(ds) == 5  # 3 good + truncated + empty, which need decoding to detect
        samples = _all(ds)
    assert [s.name for s in samples] == ["a", "b", "c"]
    reasons = dict(ds.skipped)
    assert reasons["data_GT/no_mask.jpg"].startswith(REASON_MISSING_MASK)
    assert reasons["boundary_GT/no_image.bmp"].startswith(REASON_MISSING_IMAGE)
    assert reasons["boundary_GT/wrong_size.bmp"].startswith(REASON_SIZE_MISMATCH)
    assert "8x6" in reasons["boundary_GT/wrong_size.bmp"] and "8x7" in reasons["boundary_GT/wrong_size.bmp"]
    assert reasons["data_GT/garbage.png"].startswith(REASON_UNREADABLE)
    assert reasons["data_GT/dup.jpg"].startswith(REASON_DUPLICATE)
    assert reasons["data_GT/dup.png"].startswith(REASON_DUPLICATE)
    assert reasons["data_GT/truncated.jpg"].startswith(REASON_UNREADABLE)
    assert reasons["boundary_GT/empty.bmp"].startswith(REASON_EMPTY_MASK)
    assert "data_GT/truncated.jpg" not in at_index and "boundary_GT/empty.bmp" not in at_index
    assert len(ds.skipped) == 8
    for file in reasons:
        assert any(file in r.getMessage() for r in caplog.records), file
    assert any("skipped while indexing" in r.getMessage() for r in caplog.records)
    assert any("skipped while decoding" in r.getMessage() for r in caplog.records)

    # Direct indexing raises a typed error; a second pass does not duplicate reports.
    with pytest.raises(BrokenSampleError, match="empty mask"):
        ds[ds.names.index("empty")]
    assert len(_all(ds)) == 3 and len(ds.skipped) == 8


def test_corrupt_mask_skipped_at_decode(tmp_path: Path) -> None:
    root = tmp_path / "davis"
    _make_davis(root)
    path = root / "gt" / "dog00_000000000139.png"
    _write_gray(path, np.full((64, 64), 255, np.uint8))
    _write_photo(root / "img" / "dog00_000000000139.jpg", h=64, w=64)
    path.write_bytes(path.read_bytes()[:60])  # header intact, IDAT cut
    ds = load_dataset(root)
    assert len(_all(ds)) == 2
    assert ds.skipped[0][0] == "gt/dog00_000000000139.png"
    assert ds.skipped[0][1].startswith(REASON_UNREADABLE)


def test_sbd_broken_files(tmp_path: Path) -> None:
    root = tmp_path / "sbd"
    _make_sbd(root)
    (root / "inst" / "corrupt.mat").write_bytes(b"MATLAB junk")
    _write_photo(root / "img" / "corrupt.jpg")
    scipy.io.savemat(root / "inst" / "nokey.mat", {"other": np.zeros((H, W))})
    _write_photo(root / "img" / "nokey.jpg")
    _write_sbd_mat(root / "inst" / "none.mat", np.zeros((H, W), np.uint8))
    _write_photo(root / "img" / "none.jpg")
    _write_sbd_mat(root / "inst" / "small.mat", np.ones((H - 1, W), np.uint8))
    _write_photo(root / "img" / "small.jpg")
    _write_sbd_mat(root / "inst" / "noimage.mat", np.ones((H, W), np.uint8))
    _write_photo(root / "img" / "nomat.jpg")
    names = "2008_000002 corrupt nokey none small noimage nomat 2008_000001".split()
    (root / "val.txt").write_text("\n".join(names) + "\n")
    ds = load_dataset(root)
    assert ds.names == ["2008_000002_inst1", "2008_000001_inst1", "2008_000001_inst2"]
    reasons = dict(ds.skipped)
    assert reasons["inst/corrupt.mat"].startswith(REASON_UNREADABLE)
    assert "GTinst" in reasons["inst/nokey.mat"]
    assert reasons["inst/none.mat"].startswith(REASON_NO_INSTANCES)
    assert reasons["inst/small.mat"].startswith(REASON_SIZE_MISMATCH)
    assert reasons["inst/noimage.mat"].startswith(REASON_MISSING_IMAGE) and "val.txt" in reasons["inst/noimage.mat"]
    assert reasons["img/nomat.jpg"].startswith(REASON_MISSING_MASK)
    assert len(ds.skipped) == 6 and len(_all(ds)) == 3


def test_pascalvoc_broken_files(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    _make_voc(root, with_list=False)
    _write_palette(root / "SegmentationObject" / "void_only.png", np.full((H, W), 255, np.uint8))
    _write_photo(root / "JPEGImages" / "void_only.jpg")
    Image.fromarray(_photo()).save(root / "SegmentationObject" / "rgb.png")  # colours, not ids
    _write_photo(root / "JPEGImages" / "rgb.jpg")
    _write_palette(root / "SegmentationObject" / "orphan.png", _instances())
    ds = load_dataset(root)
    assert len(ds) == 3 and len(_all(ds)) == 3
    reasons = dict(ds.skipped)
    assert reasons["SegmentationObject/void_only.png"].startswith(REASON_NO_INSTANCES)
    assert reasons["SegmentationObject/rgb.png"].startswith(REASON_UNREADABLE)
    assert reasons["SegmentationObject/orphan.png"].startswith(REASON_MISSING_IMAGE)


# ---------------------------------------------------------------- detection and errors


@pytest.mark.parametrize(
    "maker, folder, fmt",
    [
        (_make_grabcut, "grabcut", "grabcut"),
        (lambda r: _make_grabcut(r, ("images", "masks")), "Berkeley", "berkeley"),
        (_make_davis, "DAVIS", "davis"),
        (_make_davis, "COCO_MVal", "coco_mval"),
        (_make_sbd, "SBD", "sbd"),
        (_make_voc, "VOC2012", "pascalvoc"),
        (_make_hq, "DIS5K-VD", "hq"),
    ],
)
def test_auto_detection(tmp_path: Path, maker: Callable[[Path], None], folder: str, fmt: str) -> None:
    root = tmp_path / folder
    maker(root)
    (root / "extra_folder").mkdir()  # unrelated folders do not confuse detection
    ds = load_dataset(str(root))
    assert ds.format == fmt and ds.name == folder and len(ds) > 0 and ds.skipped == []


def test_unknown_layout_raises_clear_error(tmp_path: Path) -> None:
    for name in ["photos", "labels"]:
        (tmp_path / "mystery" / name).mkdir(parents=True)
    with pytest.raises(ValueError) as info:
        load_dataset(tmp_path / "mystery")
    message = str(info.value)
    assert "['labels', 'photos']" in message
    for fmt in ["grabcut", "berkeley", "davis", "coco_mval", "sbd", "pascalvoc", "hq"]:
        assert fmt in message
    assert "data_GT/" in message and "SegmentationObject/" in message


def test_other_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing")
    root = tmp_path / "davis"
    _make_davis(root)
    with pytest.raises(ValueError, match="unknown dataset format 'kitti'"):
        load_dataset(root, "kitti")
    with pytest.raises(ValueError, match=r"not a grabcut dataset: expected data_GT/ \+ boundary_GT/"):
        load_dataset(root, "grabcut")
    (root / "inst").mkdir()
    with pytest.raises(ValueError, match="ambiguous"):
        load_dataset(root)


def test_dataset_is_a_picklable_sequence(tmp_path: Path) -> None:
    # DataLoader workers receive the dataset pickled.
    root = tmp_path / "voc"
    _make_voc(root)
    ds = load_dataset(root)
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[-1].gt, ds[2].gt)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(TypeError):
        ds[0:2]  # type: ignore[index]
    assert ds[np.int64(0)].name == ds.names[0]
    assert "pascalvoc" in repr(ds)


# ---------------------------------------------------------------- real data


def _real_root() -> Path:
    data = os.environ.get("EDGECLICK_DATA")
    if not data:
        pytest.skip("EDGECLICK_DATA is unset; it points at the shared real-data folder")
    return Path(data)


def test_real_grabcut() -> None:
    ds = load_dataset(_real_root() / "grabcut")
    assert ds.format == "grabcut" and len(ds) == 50
    samples = _all(ds)
    assert len(samples) == 50 and ds.skipped == []
    assert sum(bool((s.gt == IGNORE).any()) for s in samples) > 0
    assert all(set(np.unique(s.gt)) <= {IGNORE, 0, 1} for s in samples)


def test_real_coco_mval_dev() -> None:
    ds = load_dataset(_real_root() / "coco_mval_dev")
    assert ds.format == "coco_mval" and len(ds) == 408
    count = 0
    for s in ds:
        assert set(np.unique(s.gt)) == {0, 1}
        count += 1
    assert count == 408 and ds.skipped == []
