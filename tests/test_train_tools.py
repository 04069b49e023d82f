"""Training tools around `fit`: the time-boxed GPU run (here on the CPU with the tiny config), learning
curves from its TensorBoard log, and packing training photos for a GPU machine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeclick.model.checkpoint import load_checkpoint, read_checkpoint
from edgeclick.train import curves, gpu_run, pack_data
from edgeclick.train.data import split_by_photo

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny_smoke.yaml"


@pytest.fixture(scope="module")
def gpu_run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-step tiny run through gpu_run with a size cap that forces the float16 copy."""
    tmp = tmp_path_factory.mktemp("gpu_run")
    threads = torch.get_num_threads()
    try:
        gpu_run.main(["--config", str(TINY), "--out", str(tmp / "out"), "--max-mib", "0.01",
                      f"out_dir={tmp / 'run'}", "max_steps=6", "val.every=3", "trainer.channels_last=true",
                      "trainer.max_minutes=5"])
    finally:
        torch.set_num_threads(threads)
    return tmp


def test_gpu_run_reports_throughput_and_small_weights(gpu_run_out: Path) -> None:
    out = gpu_run_out / "out"
    report = json.loads((out / "throughput.json").read_text())
    assert report["global_step"] == 6 and report["batch_size"] == 4 and report["crops_per_s"] > 0
    assert report["weights_dtype"] == "float16" and (out / "config.yaml").is_file()
    small = read_checkpoint(out / "weights.pt")
    assert small["meta"]["stored_dtype"] == "float16"
    assert all(t.dtype in (torch.float16, torch.int64) for t in small["state_dict"].values())
    full = load_checkpoint(gpu_run_out / "run" / "last.pt")
    restored = load_checkpoint(out / "weights.pt")  # float16 weights load into the float32 model
    for (name, a), b in zip(full.state_dict().items(), restored.state_dict().values()):
        assert b.dtype == a.dtype, name
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), name


def test_learning_curve_png_and_numbers(gpu_run_out: Path) -> None:
    png = gpu_run_out / "curve.png"
    assert curves.main([str(gpu_run_out / "run"), "--out", str(png), "--label", "tiny"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads(png.with_suffix(".json").read_text())["tiny"]
    assert [s for s, _ in numbers["val/miou@1"]] == [2, 5]  # val.every=3: after steps 3 and 6 (0-based)
    assert len(numbers["train/loss"]) >= 1
    with pytest.raises(SystemExit, match="no TensorBoard scalars"):
        curves.main([str(gpu_run_out / "out"), "--out", str(gpu_run_out / "x.png")])


def test_smooth_is_a_trailing_mean() -> None:
    assert curves.smooth([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]


def test_pack_data_copies_training_pairs_under_a_cap(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "img").mkdir(parents=True)
    (src / "gt").mkdir()
    rng = np.random.default_rng(0)
    names = [f"thing00_{i + 1:012d}" for i in range(20)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(src / "img" / f"{name}.png")
        Image.fromarray(np.zeros((40, 50), np.uint8)).save(src / "gt" / f"{name}.png")
    train, val = split_by_photo(names, 0.3)
    assert val, "the fixture must have validation photos for the check to mean anything"
    count, used = pack_data.pack(src, tmp_path / "packed", max_mib=1.0, val_fraction=0.3)
    copied = sorted(p.stem for p in (tmp_path / "packed" / "img").iterdir())
    assert count == len(train) == len(copied) and copied == sorted(names[i] for i in train)
    assert not {names[i] for i in val} & set(copied)
    # A cap below two pairs copies one; an existing destination is never overwritten.
    pair = sum((src / d / f"{names[train[0]]}.png").stat().st_size for d in ("img", "gt"))
    count, _ = pack_data.pack(src, tmp_path / "one", max_mib=1.5 * pair / 2**20, val_fraction=0.3)
    assert count == 1
    with pytest.raises(SystemExit, match="already exists"):
        pack_data.pack(src, tmp_path / "one", max_mib=1.0)
    assert not list(tmp_path.glob(".*staging*"))


def test_bundle_adds_demo_meta(tmp_path: Path) -> None:
    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint
    from edgeclick.train import bundle

    src = save_checkpoint(create_model("tiny", fusion="early"), tmp_path / "src.pt", meta={"global_step": 7})
    assert bundle.main([str(src), str(tmp_path / "b.pt"), "--input-size", "64x96", "--demo-data", "synthetic-holdout",
                        "--float16"]) == 0
    meta = read_checkpoint(tmp_path / "b.pt")["meta"]
    assert meta == {"global_step": 7, "input_size": [64, 96], "demo_data": "synthetic-holdout", "stored_dtype": "float16"}
