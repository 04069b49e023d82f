"""Evaluator: scripted stub predictors with known IoU sequences, transforms, report files, sharding."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import sys
import types
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from PIL import Image

from edgeclick.clicks import Click
from edgeclick.data.sample import Sample
from edgeclick.evaluate import EvalRun, evaluate, evaluate_dataset, evaluate_sample
from edgeclick.io import write_bytes_atomic as atomic_write
from edgeclick.metrics import boundary_iou, iou
from edgeclick.predictors import (
    FlipAveraged,
    ZoomIn,
    box_iou,
    clicks_inside,
    object_roi,
    resize_bilinear,
    wrap_predictor,
)
from edgeclick.report import write_report
from edgeclick.runtimes import evaluate_cli
from edgeclick.runtimes.evaluate_cli import SessionFactory, register_cli, run_cli

# ---------------------------------------------------------------------------------------------------
# Stubs (module level so spawned workers can unpickle them)
# ---------------------------------------------------------------------------------------------------

OBJECT = (slice(10, 20), slice(10, 20))  # a 10×10 = 100 px object in a 40×40 image
SEQUENCES = {0: [50, 80, 86, 91, 96], 1: [50, 80, 86]}  # object pixels covered after each click


def scripted_sample(name: str, sequence: int) -> Sample:
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[0, 0, 0] = sequence  # tells the stub which IoU sequence to play
    gt = np.zeros((40, 40), dtype=np.int8)
    gt[OBJECT] = 1
    return Sample(name, image, gt)


class ScriptedPredictor:
    """After click k covers the first SEQUENCES[s][k] object pixels (row-major): IoU = that / 100.

    Probabilities are 0.5 on the mask and 0.48 elsewhere, so only a > 0.49 threshold recovers it.
    """

    def __init__(self) -> None:
        self.prev_masks: list[np.ndarray | None] = []
        self.outputs: list[np.ndarray] = []

    def set_image(self, rgb: np.ndarray) -> None:
        self.counts = SEQUENCES[int(rgb[0, 0, 0])]
        self.prev_masks, self.outputs = [], []

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        self.prev_masks.append(None if prev_mask is None else prev_mask.copy())
        k = min(len(clicks), len(self.counts)) - 1
        covered = np.zeros(100, dtype=bool)
        covered[: self.counts[k]] = True
        probs = np.full((40, 40), 0.48, dtype=np.float32)
        probs[OBJECT] = np.where(covered.reshape(10, 10), 0.5, 0.48)
        self.outputs.append(probs)
        return probs


class DiskPredictor:
    """Click-driven stub: disks of `radius` around positive clicks minus disks around negative ones."""

    def __init__(self, radius: float = 4.0) -> None:
        self.radius = radius
        self.images: list[tuple[int, ...]] = []
        self.clicks: list[list[Click]] = []

    def set_image(self, rgb: np.ndarray) -> None:
        self.shape = rgb.shape[:2]
        self.images.append(rgb.shape)

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        self.clicks.append(list(clicks))
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        out = np.zeros(self.shape, dtype=np.float32)
        for c in clicks:
            disk = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= self.radius**2
            out[disk] = 1.0 if c.positive else 0.0
        return out


class DiskFactory:
    def __call__(self) -> DiskPredictor:
        return DiskPredictor()


def blob_samples(n: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        h, w = int(rng.integers(30, 50)), int(rng.integers(30, 50))
        yy, xx = np.mgrid[:h, :w]
        gt = np.zeros((h, w), dtype=np.int8)
        for _ in range(3):
            cy, cx, r = rng.integers(5, h - 5), rng.integers(5, w - 5), rng.integers(3, 9)
            gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 1
        gt[rng.random((h, w)) < 0.02] = -1
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        samples.append(Sample(f"blob{i}", image, gt))
    return samples


# ---------------------------------------------------------------------------------------------------
# Protocol with the scripted stub
# ---------------------------------------------------------------------------------------------------


def test_scripted_ious_threshold_and_prev_mask_feedback() -> None:
    predictor = ScriptedPredictor()
    result, preview = evaluate_sample(scripted_sample("a", 0), predictor, index=7)
    assert result.index == 7 and result.name == "a"
    assert result.iou == pytest.approx([0.5, 0.8, 0.86, 0.91] + [0.96] * 16)
    assert len(result.clicks) == len(result.seconds) == len(result.biou) == 20
    # prev mask: None before the first click, then exactly the previous probability map.
    assert predictor.prev_masks[0] is None
    for prev, out in zip(predictor.prev_masks[1:], predictor.outputs[:-1]):
        np.testing.assert_array_equal(prev, out)
    # Boundary IoU per click is the metric of the thresholded mask.
    gt = scripted_sample("a", 0).gt
    assert result.biou[2] == pytest.approx(boundary_iou(predictor.outputs[2] > 0.49, gt))
    assert preview.final_iou == pytest.approx(0.96)
    # The first click is the clicker's: centre of the 10×10 object (first of the 4 tied centre pixels).
    assert result.clicks[0] == Click(14, 14, True)


def _scripted_run() -> EvalRun:
    samples = [scripted_sample("reaches", 0), scripted_sample("stalls", 1)]
    return evaluate(samples, ScriptedPredictor, progress=False)


def test_noc_nof_from_scripted_run() -> None:
    summary = _scripted_run().summary()
    assert summary.noc == {0.85: pytest.approx(3.0), 0.90: pytest.approx(12.0), 0.95: pytest.approx(12.5)}
    assert summary.nof == {0.85: 0, 0.90: 1, 0.95: 1}
    assert summary.miou[0] == pytest.approx(0.5)
    assert summary.miou[-1] == pytest.approx((0.96 + 0.86) / 2)


def test_report_files_exist_and_parse(tmp_path: Path) -> None:
    run = _scripted_run()
    files = write_report(run, tmp_path / "out", "Scripted", settings={"zoom_in": False}, skipped=[("bad.png", "no mask")])
    samples = json.loads(files["samples"].read_text())
    assert [s["name"] for s in samples["samples"]] == ["reaches", "stalls"]
    first = samples["samples"][0]
    assert first["iou"][:5] == pytest.approx([0.5, 0.8, 0.86, 0.91, 0.96])
    assert first["clicks"][0] == [14, 14, True]
    assert len(first["biou"]) == len(first["seconds"]) == 20
    summary = json.loads(files["summary"].read_text())
    assert summary["noc"] == {"85": 3.0, "90": 12.0, "95": 12.5}
    assert summary["nof"] == {"85": 0, "90": 1, "95": 1}
    assert summary["skipped"] == [["bad.png", "no mask"]]
    report = files["report"].read_text()
    assert "| Dataset | Metric | NoC@85 | NoC@90 | NoC@95 | NoF@85 | NoF@90 | NoF@95 | SPC, s | Time |" in report
    iou_row = next(line for line in report.splitlines() if line.startswith("| Scripted | IoU |"))
    assert "| 3.00 | 12.00 | 12.50 | 0 | 1 | 1 |" in iou_row
    assert "bad.png: no mask" in report
    for key in ("miou_plot", "worst_plot"):
        with Image.open(files[key]) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "miou.png", "report.md", "samples.json", "summary.json", "worst.png"
    ]  # no temporary files left behind


def test_worst_previews_are_lowest_final_iou() -> None:
    run = _scripted_run()
    assert [p.name for p in run.previews] == ["stalls", "reaches"]
    run1 = evaluate([scripted_sample("a", 0), scripted_sample("b", 1)], ScriptedPredictor, progress=False, worst_k=1)
    assert [p.name for p in run1.previews] == ["b"]


def test_predictor_with_wrong_output_shape_is_rejected() -> None:
    class Bad(ScriptedPredictor):
        def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
            return np.zeros((20, 40), np.float32)

    with pytest.raises(ValueError, match="expected"):
        evaluate_sample(scripted_sample("a", 0), Bad())


def test_atomic_write_replaces_without_leftovers(tmp_path: Path) -> None:
    target = atomic_write(tmp_path / "sub" / "f.txt", "one")
    atomic_write(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


# ---------------------------------------------------------------------------------------------------
# Flip
# ---------------------------------------------------------------------------------------------------


class ClickSpot:
    """Equivariant stub: probability 1 exactly at the last click, 0 elsewhere."""

    def set_image(self, rgb: np.ndarray) -> None:
        self.shape = rgb.shape[:2]

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        out[int(clicks[-1].y), int(clicks[-1].x)] = 1.0
        return out


class LeftHalf:
    """Not equivariant: always the left half, whatever the input."""

    def set_image(self, rgb: np.ndarray) -> None:
        self.shape = rgb.shape[:2]

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        out[:, : self.shape[1] // 2] = 1.0
        return out


class EchoImageAndPrev:
    """Returns red/255 + prev mask: checks the image and the prev mask are mirrored consistently."""

    def set_image(self, rgb: np.ndarray) -> None:
        self.red = rgb[..., 0].astype(np.float32) / 255

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        return self.red + (0 if prev_mask is None else prev_mask)


def test_flip_equivariant_stub_is_unchanged() -> None:
    flip = FlipAveraged(ClickSpot())
    flip.set_image(np.zeros((5, 8, 3), np.uint8))
    out = flip.predict([Click(2, 3, True)], None)
    expected = np.zeros((5, 8), np.float32)
    expected[3, 2] = 1.0  # a W − x mirror (off by one) would give 0.5 at two pixels
    np.testing.assert_array_equal(out, expected)


def test_flip_averages_direct_and_mirrored() -> None:
    flip = FlipAveraged(LeftHalf())
    flip.set_image(np.zeros((4, 6, 3), np.uint8))
    np.testing.assert_allclose(flip.predict([Click(0, 0, True)], None), np.full((4, 6), 0.5))


def test_flip_mirrors_image_and_prev_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    prev = rng.random((6, 7)).astype(np.float32)
    for mirror in (None, EchoImageAndPrev()):
        flip = FlipAveraged(EchoImageAndPrev(), mirror=mirror)
        flip.set_image(image)
        np.testing.assert_allclose(flip.predict([Click(1, 1, True)], prev), image[..., 0] / 255 + prev, rtol=1e-6)


def test_flip_logit_average_matches_ritm() -> None:
    class Half:
        def set_image(self, rgb: np.ndarray) -> None:
            pass

        def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None) -> np.ndarray:
            out = np.full((1, 2), 0.5, np.float32)
            out[0, 0] = 0.9  # the mirror sees 0.9 at column 1 after flipping back
            return out

    flip = FlipAveraged(Half(), average="logit")
    flip.set_image(np.zeros((1, 2, 3), np.uint8))
    # mean of logit(0.9) and logit(0.5) = ln(9)/2 → sigmoid = 3/4
    np.testing.assert_allclose(flip.predict([Click(0, 0, True)], None), [[0.75, 0.75]], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Zoom-in
# ---------------------------------------------------------------------------------------------------


def test_resize_bilinear_matches_torch_align_corners() -> None:
    import torch

    rng = np.random.default_rng(1)
    a = rng.random((13, 17, 3)).astype(np.float32)
    for size in ((40, 9), (5, 30), (1, 1), (13, 17)):
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(a).permute(2, 0, 1)[None], size=size, mode="bilinear", align_corners=True
        )[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(resize_bilinear(a, *size), ref, atol=1e-5)


def test_object_roi_hand_computed() -> None:
    mask = np.zeros((600, 800), bool)
    mask[100:150, 200:300] = True  # 50×100 → ×1.4 = 70×140 → min 200 → 200×200 about (124.5, 249.5)
    # round-half-even like RITM: 24.5 → 24, 224.5 → 224, 149.5 → 150, 349.5 → 350
    assert object_roi(mask, [], 1.4, 200) == (24, 224, 150, 350)
    # A positive click extends the box; a negative one does not.
    assert object_roi(mask, [Click(790, 590, True)], 1.4, 200)[1] == 599  # clamped to the image
    assert object_roi(mask, [Click(790, 590, False)], 1.4, 200) == (24, 224, 150, 350)
    mask2 = np.zeros((600, 800), bool)
    mask2[0:400, 0:10] = True  # tall: ×1.4 → 560 rows about 199.5 → −80.5..479.5 → clamp at 0
    assert object_roi(mask2, [], 1.4, 200) == (0, 480, 0, 104)


def test_box_iou_and_inside_rules() -> None:
    assert box_iou((0, 9, 0, 9), (0, 9, 0, 9)) == 1.0
    assert box_iou((0, 9, 0, 9), (5, 14, 0, 9)) == pytest.approx(5 / 15)
    box = (10, 20, 10, 20)
    assert clicks_inside(box, [Click(10, 10, True), Click(0, 0, False)])
    assert not clicks_inside(box, [Click(20, 15, True)])  # max is exclusive in RITM's check


def test_zoom_in_crops_to_long_side_400_and_maps_back() -> None:
    inner = DiskPredictor(radius=30)
    zoom = ZoomIn(inner)
    image = np.zeros((600, 800, 3), np.uint8)
    zoom.set_image(image)
    c1 = Click(250, 125, True)
    p1 = zoom.predict([c1], None)
    assert inner.images == [(600, 800, 3)]  # the first click sees the whole image
    # p1 is a radius-30 disk: rows 95..155, cols 220..280 → 200×200 minimum about (125, 250)
    p2 = zoom.predict([c1, Click(300, 150, False)], p1)
    assert zoom.roi == (25, 225, 150, 350)
    assert inner.images[-1] == (400, 400, 3)
    # Clicks mapped with RITM's rule: 400·(x − 150)/201.
    assert inner.clicks[-1][0].x == pytest.approx(400 * 100 / 201)
    assert inner.clicks[-1][0].y == pytest.approx(400 * 100 / 201)
    assert p2.shape == (600, 800)
    assert p2[125, 250] == pytest.approx(1.0)
    assert p2[:25].max() == 0 and p2[:, 351:].max() == 0  # zero outside the crop
    # A negative click outside the crop keeps it (and the crop image is not re-sent).
    zoom.predict([c1, Click(300, 150, False), Click(700, 500, False)], p2)
    assert zoom.roi == (25, 225, 150, 350) and len(inner.images) == 2
    # A positive click outside the crop recomputes it to include the click.
    p3 = zoom.predict([c1, Click(300, 150, False), Click(700, 500, False), Click(600, 400, True)], p2)
    r0, r1, c0, c1_ = zoom.roi
    assert r0 <= 400 <= r1 and c0 <= 600 <= c1_
    assert len(inner.images) == 3 and max(inner.images[-1][:2]) == 400
    assert p3.shape == (600, 800)


def test_zoom_in_falls_back_to_whole_image_on_empty_mask() -> None:
    inner = DiskPredictor(radius=30)
    zoom = ZoomIn(inner)
    zoom.set_image(np.zeros((600, 800, 3), np.uint8))
    out = zoom.predict([Click(10, 10, True), Click(200, 200, False)], np.zeros((600, 800), np.float32))
    assert inner.images == [(600, 800, 3)] and zoom.roi is None
    assert out[10, 10] == 1.0


def test_zoom_in_inside_evaluation_loop() -> None:
    inner = DiskPredictor(radius=6)
    gt = np.zeros((300, 500), np.int8)
    gt[100:160, 200:260] = 1
    sample = Sample("zoom", np.zeros((300, 500, 3), np.uint8), gt)
    result, _ = evaluate_sample(sample, wrap_predictor(inner, zoom_in=True), max_clicks=5)
    assert inner.images[0] == (300, 500, 3)
    assert len(inner.images) >= 2 and all(max(s[:2]) == 400 for s in inner.images[1:])
    assert len(result.iou) == 5


# ---------------------------------------------------------------------------------------------------
# Sharding
# ---------------------------------------------------------------------------------------------------


def _comparable(run: EvalRun) -> list[tuple[Any, ...]]:
    return [(r.index, r.name, r.clicks, r.iou, r.biou) for r in run.results]


def test_two_workers_match_one_worker() -> None:
    samples = blob_samples(5)
    one = evaluate(samples, DiskFactory(), progress=False, max_clicks=6)
    two = evaluate(samples, DiskFactory(), progress=False, max_clicks=6, workers=2)
    assert _comparable(one) == _comparable(two)
    assert [p.name for p in one.previews] == [p.name for p in two.previews]
    assert one.ious.shape == (5, 6)
    assert not np.all(one.ious == one.ious[:, :1])  # the clicks really change the predictions


class BrokenFactory:
    def __call__(self) -> DiskPredictor:
        raise OSError("checkpoint unreadable")


def test_worker_factory_failure_raises_instead_of_hanging() -> None:
    with pytest.raises(RuntimeError, match="worker failed"):
        evaluate(blob_samples(2), BrokenFactory(), progress=False, max_clicks=2, workers=2)


class IterOnly:
    """A dataset without random access: only iteration and len()."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __iter__(self) -> Any:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)


def test_evaluate_dataset_limit_with_and_without_random_access() -> None:
    samples = blob_samples(5)
    for dataset in (samples, IterOnly(samples)):
        run = evaluate_dataset(dataset, DiskFactory(), limit=3, progress=False, max_clicks=3)
        assert run is not None
        assert [(r.index, r.name) for r in run.results] == [(0, "blob0"), (1, "blob1"), (2, "blob2")]


class FlakyDataset:
    """Random access like edgeclick's Dataset: index 1 fails to decode and is recorded as skipped."""

    name = "Flaky"

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        if index == 1:
            self.skipped.append(("blob1.png", "unreadable file"))
            raise ValueError("blob1.png: unreadable file")
        return self.samples[index]


def test_broken_sample_is_skipped_and_reported() -> None:
    run = evaluate_dataset(FlakyDataset(blob_samples(4)), DiskFactory(), progress=False, max_clicks=2)
    assert run is not None
    assert [r.name for r in run.results] == ["blob0", "blob2", "blob3"]
    assert run.skipped == [("blob1.png", "unreadable file")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, queue: Any) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    run = evaluate_dataset(IterOnly(blob_samples(5)), DiskFactory(), progress=False, max_clicks=4)
    queue.put((rank, None if run is None else _comparable(run)))


def test_rank_sharding_and_merge_on_rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun logic without torch: rank r takes r::world, rank 0 merges in index order."""
    from edgeclick import distributed

    payloads: dict[int, Any] = {}

    def fake_gather(payload: Any, rank: int, world: int) -> list[Any] | None:
        payloads[rank] = payload
        return [payloads[r] for r in range(world)] if rank == 0 else None

    monkeypatch.setattr(distributed, "gather", fake_gather)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert evaluate_dataset(IterOnly(blob_samples(5)), DiskFactory(), progress=False, max_clicks=4) is None
    assert [r.index for r in payloads[1][0]] == [1, 3]
    monkeypatch.setenv("RANK", "0")
    run = evaluate_dataset(blob_samples(5), DiskFactory(), progress=False, max_clicks=4)
    assert run is not None
    assert [r.index for r in payloads[0][0]] == [0, 2, 4]
    single = evaluate(blob_samples(5), DiskFactory(), progress=False, max_clicks=4)
    assert _comparable(run) == _comparable(single)
    assert [p.name for p in run.previews] == [p.name for p in single.previews]


@pytest.mark.slow  # two processes importing torch take ~10 s on a small machine
def test_torchrun_ranks_gather_to_rank_zero() -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    procs = [context.Process(target=_rank_main, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got[1] is None
    single = evaluate(blob_samples(5), DiskFactory(), progress=False, max_clicks=4)
    assert got[0] == _comparable(single)


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeclick")
    register_cli(parser.add_subparsers(dest="command"))
    return parser


def test_cli_arguments() -> None:
    args = _parser().parse_args(
        ["evaluate", "--checkpoint", "m.pth", "--data", "d", "--dataset-format", "davis", "--zoom-in",
         "--flip", "--workers", "2", "--limit", "5", "--max-clicks", "10", "--out", "o"]
    )
    assert (args.checkpoint, args.data, args.dataset_format) == ("m.pth", "d", "davis")
    assert args.zoom_in and args.flip and (args.workers, args.limit, args.max_clicks, args.out) == (2, 5, 10, "o")
    assert args.func is run_cli
    defaults = _parser().parse_args(["evaluate", "--checkpoint", "m", "--data", "d"])
    assert (defaults.dataset_format, defaults.max_clicks, defaults.workers, defaults.limit) == ("auto", 20, 1, None)
    assert not defaults.zoom_in and not defaults.flip
    with pytest.raises(SystemExit):
        _parser().parse_args(["evaluate", "--checkpoint", "m", "--data", "d", "--dataset-format", "voc"])


class FakeDataset(IterOnly):
    name = "Blobs"
    skipped = [("x.jpg", "unreadable")]


def test_cli_end_to_end_with_fake_session_and_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[tuple[str, dict[str, Any]]] = []

    def open_session(checkpoint: str, **kwargs: Any) -> DiskPredictor:
        opened.append((checkpoint, kwargs))
        return DiskPredictor()

    loaded: list[tuple[str, str]] = []

    def load_dataset(root: str, fmt: str = "auto") -> FakeDataset:
        loaded.append((str(root), fmt))
        return FakeDataset(blob_samples(4))

    monkeypatch.setattr(evaluate_cli, "open_session", open_session)
    monkeypatch.setitem(sys.modules, "edgeclick.data.datasets", types.SimpleNamespace(load_dataset=load_dataset))
    out = tmp_path / "rep"
    args = _parser().parse_args(
        ["evaluate", "--checkpoint", "ck.pth", "--data", "root", "--dataset-format", "grabcut", "--flip",
         "--limit", "3", "--max-clicks", "4", "--out", str(out), "--device", "cpu", "--size", "64x96"]
    )
    assert args.func(args) == 0
    assert loaded == [("root", "grabcut")]
    # flip: one session per image orientation; --device and --size are passed through
    expected = {"device": "cpu", "input_size": (64, 96), "power": None}
    assert opened == [("ck.pth", expected), ("ck.pth", expected)]
    samples = json.loads((out / "samples.json").read_text())["samples"]
    assert len(samples) == 3 and all(len(s["iou"]) == 4 for s in samples)
    text = capsys.readouterr().out
    assert "seconds per click" in text and "total wall time" in text and "| Blobs | IoU |" in text
    assert "x.jpg: unreadable" in (out / "report.md").read_text()


def test_session_factory_is_picklable() -> None:
    import pickle

    factory = pickle.loads(pickle.dumps(SessionFactory("a.pth", zoom_in=True, flip=True)))
    assert factory == SessionFactory("a.pth", True, True)
    assert isinstance(wrap_predictor(DiskPredictor(), zoom_in=True, flip=True), ZoomIn)
    assert isinstance(wrap_predictor(DiskPredictor(), flip=True), FlipAveraged)


def test_iou_helper_consistency() -> None:
    # Guard against the scripted sample construction drifting: 86 of 100 object pixels = 0.86.
    sample = scripted_sample("a", 0)
    pred = np.zeros((40, 40), bool)
    pred[OBJECT] = (np.arange(100) < 86).reshape(10, 10)
    assert iou(pred, sample.gt) == pytest.approx(0.86)
