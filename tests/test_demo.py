"""`edgeclick demo` end to end on the tiny model: a synthetic-only checkpoint runs on generated held-out
images at the input size its meta names, and the masks picture is written."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeclick.cli import main
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint


@pytest.mark.slow  # exports ONNX + CoreML and benches: ~30-60 s
def test_demo_on_a_synthetic_only_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("tiny", fusion="early"), tmp_path / "tiny_syn.pt",
                           meta={"input_size": [64, 96], "demo_data": "synthetic-holdout"})
    out = tmp_path / "demo"
    code = main(["demo", "--checkpoint", str(ckpt), "--out", str(out), "--samples", "2", "--clicks", "2",
                 "--runs", "2", "--sustain-seconds", "0.5", "--threads", "1"])
    captured = capsys.readouterr()
    assert "trained on synthetic objects only" in captured.err
    assert "input 64x96" in captured.out
    assert len(list((out / "holdout_synthetic" / "im").iterdir())) == 2
    assert (out / "masks.png").read_bytes()[:4] == b"\x89PNG"
    assert code == 0, captured.out
