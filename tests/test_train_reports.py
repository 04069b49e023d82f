"""Model card and ablation table come from eval reports and checkpoints; the held-out set reads back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeclick.data.datasets import load_dataset
from edgeclick.data.holdout import write_holdout
from edgeclick.data.synthetic import SyntheticDataset
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint
from edgeclick.train.ablation import main as ablation_main
from edgeclick.train.model_card import main as card_main


def _summary(folder: Path, noc90: float, bnoc90: float, n: int = 5) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "dataset": "GrabCut", "n_samples": n, "max_clicks": 20,
        "noc": {"85": noc90 - 0.25, "90": noc90, "95": noc90 + 2}, "nof": {"85": 0, "90": 1, "95": 2},
        "noc_boundary": {"85": bnoc90 - 1, "90": bnoc90, "95": bnoc90 + 1}, "nof_boundary": {"85": 1, "90": 2, "95": 3},
        "miou": [0.5 + 0.02 * k for k in range(20)], "mbiou": [0.3 + 0.01 * k - 0.01 * bnoc90 for k in range(20)],
        "seconds_per_click": 0.0421}))
    return folder


def test_model_card_takes_numbers_from_reports(tmp_path: Path) -> None:
    ckpt = save_checkpoint(create_model("tiny"), tmp_path / "base.pt",
                           meta={"source": "edgeclick train", "global_step": 123, "val/noc90": 4.5,
                                 "train_config": {"batch_size": 4, "data": {"synthetic": 10, "synthetic_size": 256, "crop_size": [64, 96]},
                                                  "loss": {"nfl": 1.0, "aux_bce": 0.4, "boundary": 0.1}, "optim": {"lr": 0.001}}})
    report = _summary(tmp_path / "eval", noc90=3.1415, bnoc90=7.777)
    out = tmp_path / "MODEL_CARD.md"
    assert card_main(["--out", str(out), "--model", "tiny", str(ckpt), "--report", "tiny", "GrabCut", str(report)]) == 0
    text = out.read_text()
    assert "| tiny | GrabCut | own size | 5 | 20 | 2.89 | 3.14 | 1 | 6.78 | 7.78 | 0.500 | 0.540 | 0.580 | 0.042 |" in text
    assert "123 steps × batch 4" in text and "boundary 0.1" in text
    with pytest.raises(SystemExit):
        card_main(["--out", str(out), "--model", "tiny", str(ckpt), "--report", "other", "GrabCut", str(report)])


def test_ablation_table_in_paper_layout(tmp_path: Path) -> None:
    rows = {"base": (8.82, 16.97), "lora": (8.17, 13.44), "conv": (7.65, 12.25)}
    args = ["--out", str(tmp_path / "ablation.md"), "--dataset", "GrabCut", "--dataset", "HR"]
    for name, (a, b) in rows.items():
        g = _summary(tmp_path / name / "g", a, b)
        h = _summary(tmp_path / name / "h", a + 1, b + 1)
        args += ["--row", name, str(g), str(h)]
    assert ablation_main(args) == 0
    text = (tmp_path / "ablation.md").read_text()
    assert "| Method | GrabCut NoC@90 (IoU / BIoU) | HR NoC@90 (IoU / BIoU) |" in text
    assert "| base | 8.82 / 16.97 | 9.82 / 17.97 |" in text
    assert "| conv | **7.65** / **12.25** | **8.65** / **13.25** |" in text
    # After 5 clicks: mIoU 0.58 everywhere (all bold), mBIoU 0.34 - 0.01 * BNoC90: highest for conv.
    assert "| GrabCut after 5 clicks (mIoU / mBIoU) | HR after 5 clicks (mIoU / mBIoU) |" in text
    assert "| base | **0.580** / 0.170 | **0.580** / 0.160 |" in text
    assert "| conv | **0.580** / **0.217** | **0.580** / **0.207** |" in text
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["label"] for r in saved["rows"]] == ["base", "lora", "conv"]
    with pytest.raises(SystemExit):
        ablation_main(["--out", str(tmp_path / "x.md"), "--dataset", "GrabCut", "--dataset", "HR", "--row", "base", str(tmp_path)])


def test_holdout_set_reads_back_as_hq(tmp_path: Path) -> None:
    out = write_holdout(tmp_path / "holdout", n=2, size=64, seed=5)
    dataset = load_dataset(out, "hq")
    assert len(dataset) == 2
    expected = SyntheticDataset(2, size=64, seed=5)
    for i in range(2):
        got = dataset[i]
        ref = expected[i]
        np.testing.assert_array_equal(got.image, ref.image)
        np.testing.assert_array_equal(got.gt, (ref.gt == 1).astype(np.int8))


def test_training_wall_seconds_adds_up_resumed_processes(tmp_path: Path) -> None:
    import time

    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from edgeclick.train.model_card import training_wall_seconds

    assert training_wall_seconds(None) is None and training_wall_seconds(tmp_path / "none") is None
    for process in ("first", "resumed"):  # each process of a resumed run writes its own event file
        writer = EventFileWriter(str(tmp_path / "run" / "tensorboard" / process))
        start = time.time()  # the writer's own first event carries the current time
        for step, offset in enumerate((30.0, 120.0)):
            writer.add_event(Event(wall_time=start + offset, step=step))
        writer.close()
    assert training_wall_seconds(tmp_path / "run") == pytest.approx(240.0, abs=2.0)


def test_protocol_table_compares_late_with_early_on_every_dataset(tmp_path: Path) -> None:
    from edgeclick.train.protocol_table import main as table_main

    early, late = tmp_path / "early.pt", tmp_path / "late.pt"
    save_checkpoint(create_model("tiny", fusion="early"), early)
    save_checkpoint(create_model("tiny", fusion="late"), late,
                    meta={"global_step": 1200, "train_config": {"from_early": True, "freeze_encoder": True}})
    args = ["--out", str(tmp_path / "late.md"), "--dataset", "GrabCut", "--dataset", "HR",
            "--row", "early_base", str(early), str(_summary(tmp_path / "e1", 10.0, 19.0)), str(_summary(tmp_path / "e2", 12.0, 19.5)),
            "--row", "late_a", str(late), str(_summary(tmp_path / "l1", 10.5, 19.2)), str(_summary(tmp_path / "l2", 14.0, 19.9))]
    assert table_main(args) == 0
    text = (tmp_path / "late.md").read_text()
    assert "| late_a | late, from early, backbone frozen, 1200 steps | 10.25 | 10.50 | 18.20 | 19.20 | 0.500 | 0.540 | 0.580 |" in text
    assert "GrabCut: best late (late_a) NoC@90 10.50 vs early_base 10.00: +0.50 clicks (within the goal" in text
    assert "HR: best late (late_a) NoC@90 14.00 vs early_base 12.00: +2.00 clicks (goal missed by 1.00 clicks" in text
    saved = json.loads((tmp_path / "late.json").read_text())
    assert saved["rows"][1]["cells"][1]["noc90"] == 14.0
    # Rows evaluated with other click budgets are not comparable: refused.
    odd = _summary(tmp_path / "odd", 9.0, 18.0, n=7)
    with pytest.raises(ValueError, match="different click budgets"):
        table_main([*args, "--row", "odd", str(late), str(odd), str(tmp_path / "l2")])
