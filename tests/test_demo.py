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


@pytest.mark.parametrize("late_noc90,picked", [(10.8, "late.pt"), (11.2, "base.pt")])
def test_demo_default_is_the_fastest_bundled_model_that_passes_the_rule(tmp_path: Path, late_noc90: float, picked: str) -> None:
    """DEMO_RULE: a late model within +1 click NoC@90 (GrabCut, own size) of the early base is the default."""
    import json

    from edgeclick.export.demo import choose_bundled

    save_checkpoint(create_model("tiny", fusion="early"), tmp_path / "base.pt", meta={"protocol_row": "early_base"})
    save_checkpoint(create_model("tiny", fusion="late"), tmp_path / "late.pt", meta={"protocol_row": "late_a"})
    save_checkpoint(create_model("tiny", fusion="late"), tmp_path / "unjudged.pt")  # no row: never chosen
    cells = lambda noc: [{"noc90": noc}, {"noc90": 1.0}]  # noqa: E731 - the rule reads the first dataset only
    (tmp_path / "late_fusion.json").write_text(json.dumps({"rows": [
        {"label": "early_base", "cells": cells(10.0)}, {"label": "late_a", "cells": cells(late_noc90)}]}))
    path, why = choose_bundled(tmp_path, tmp_path / "base.pt")
    assert path.name == picked and why
    (tmp_path / "late_fusion.json").unlink()
    assert choose_bundled(tmp_path, tmp_path / "base.pt")[0].name == "base.pt"
