"""Soak: clicks through one Session with undo / reset / new images mixed in; memory must not creep."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeclick.runtimes.ort import OrtBackend
from edgeclick.runtimes.session import Session
from edgeclick.runtimes.soak import DEFAULT_LIMIT, main, run_soak
from edgeclick.runtimes.torch_ref import TorchBackend

from .helpers import TINY_ONNX_SIZE


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_short_soak_keeps_memory_and_answers(backend: str, tiny_onnx: tuple[Path, Path]) -> None:
    """1,500 clicks in this process: RSS growth after warm-up within the limit, the replayed session identical."""
    from edgeclick.model.checkpoint import load_checkpoint

    artifact, checkpoint = tiny_onnx
    session = Session(TorchBackend(load_checkpoint(checkpoint), input_size=TINY_ONNX_SIZE) if backend == "torch"
                      else OrtBackend(artifact, threads=1))
    result = run_soak(session, clicks=1500, size=TINY_ONNX_SIZE, warmup=300, backend=backend)
    assert result.clicks == 1500 and result.undos > 50 and result.resets > 20 and result.images >= 6
    assert result.replay_identical
    assert result.growth <= DEFAULT_LIMIT, result


@pytest.mark.slow
def test_ten_thousand_click_soak_report(tmp_path: Path) -> None:
    """docs/reliability.md's figure: 10,000 clicks per backend, each in its own process; writes soak.json."""
    assert main(["--clicks", "10000", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "soak.json").read_text())
    assert report["passed"] and {r["backend"] for r in report["results"]} == {"torch", "onnxruntime"}
    assert all(r["clicks"] == 10000 and r["growth"] <= DEFAULT_LIMIT for r in report["results"])
