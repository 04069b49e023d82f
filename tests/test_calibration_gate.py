"""The calibration gate: ΔNoC judgement, a deliberately broken int8 variant failing, the table and the final set."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from edgeclick.calibration.data import collect_calibration_data
from edgeclick.calibration.gate import (
    BASELINE,
    FAILED,
    PASSED,
    SKIPPED,
    GateConfig,
    Variant,
    judge,
    markdown_table,
    publish_final,
    run_gate,
    write_gate_report,
)
from edgeclick.calibration.ort import calibration_stride, quantize_onnx_artifact
from edgeclick.export import run
from edgeclick.manifest import file_entries, read_manifest, write_manifest
from onnx import numpy_helper

from edgeclick import contract
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint

from .test_calibration import SIZE, _sample

NOC = {"noc85": 3.0, "noc90": 5.0, "noc85_boundary": 6.0, "noc90_boundary": 9.0}


@pytest.mark.parametrize(("noc90", "parity", "status"), [
    (5.0, True, PASSED), (5.25, True, PASSED), (5.3, True, FAILED), (4.0, True, PASSED),
    (math.nan, True, FAILED), (5.0, False, FAILED), (5.0, None, PASSED),
])
def test_judge_on_delta_noc90_and_parity(noc90: float, parity: bool | None, status: str) -> None:
    got, reasons, delta = judge(NOC, {**NOC, "noc90": noc90}, 0.25, parity, ["int8 gate min_mean_mask_iou failed"])
    assert got == status
    assert (reasons == []) == (status == PASSED)
    if not math.isnan(noc90):
        assert delta["noc90"] == pytest.approx(noc90 - 5.0)
        assert delta["noc85"] == 0.0


def test_calibration_stride_divides() -> None:
    for n in (1, 7, 12, 300, 301):
        s = calibration_stride(n)
        assert n % s == 0 and 1 <= s <= 8
    assert calibration_stride(300) == 6 and calibration_stride(16) == 8


def corrupt_scales(src: Path, dst: Path) -> Path:
    """Copy an int8 artifact with every int8 conv weight tensor of the decoder shuffled (a fixed permutation).

    Scaling the weights would not do: a ReLU network is positively homogeneous, so the late decoder's
    logits keep their signs and its masks survive; shuffled weights are wrong in every conv.
    """
    shutil.copytree(src, dst)
    manifest = read_manifest(dst)
    path = manifest.path(contract.DECODER)
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    changed = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            weight = inits[node.input[0]]
            values = numpy_helper.to_array(weight)
            if values.ndim == 4 and values.size > 1:
                shuffled = rng.permutation(values.reshape(-1)).reshape(values.shape)
                weight.CopyFrom(numpy_helper.from_array(shuffled, weight.name))
                changed += 1
    assert changed > 0
    onnx.save(model, str(path))
    files = {role: Path(e.path) for role, e in manifest.files.items()}
    from dataclasses import replace

    write_manifest(replace(manifest, name=dst.name, files=file_entries(dst, files)))
    return dst


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("gate")
    # Default init, not randomize_: its random BN statistics give the late head logits of ±100, where the
    # fp32 session's compounding float drift alone exceeds the contract's 1e-3 logit gate.
    torch.manual_seed(3)
    model = create_model("tiny", fusion="late").eval()
    ckpt = save_checkpoint(model, root / "tiny.pt")
    fp32 = run.export(ckpt, "onnx", size=SIZE, out_root=root / "artifacts")[0]
    samples = [_sample("a", 1, (60, 90)), _sample("b", 2, (70, 50)), _sample("c", 3, (64, 96))]
    data = collect_calibration_data(ckpt, samples, input_size=SIZE, clicks_per_sample=4, max_decoder_samples=12)
    good = quantize_onnx_artifact(fp32, data, root / "artifacts" / "int8")
    broken = corrupt_scales(good, root / "artifacts" / "int8-broken")
    variants = [Variant("fp32", fp32, baseline=True), Variant("int8", good), Variant("int8-broken", broken),
                Variant("w8a8", None, skipped="needs macOS (Core ML prediction)"),
                Variant("missing", root / "nowhere")]
    config = GateConfig(max_clicks=4, parity_samples=2, parity_clicks=3, bench_runs=2, bench_warmup=1, threads=1)
    report = run_gate(variants, samples, config, progress=False, log=lambda _: None)
    return {"root": root, "report": report, "rows": {r.name: r for r in report.rows}}


def test_gate_fails_the_broken_variant(gate: dict) -> None:
    rows = gate["rows"]
    assert rows["fp32"].status == BASELINE and rows["fp32"].parity_passed
    broken = rows["int8-broken"]
    assert broken.status == FAILED
    assert broken.mask_iou_mean is not None and broken.mask_iou_mean < contract.TOLERANCES["int8"].min_mean_mask_iou
    assert any("parity" in r for r in broken.reasons)


def test_gate_rows_hold_measurements(gate: dict) -> None:
    rows = gate["rows"]
    for name in ("fp32", "int8", "int8-broken"):
        r = rows[name]
        assert set(r.noc) == {"noc85", "noc90", "noc85_boundary", "noc90_boundary"}
        assert all(1.0 <= v <= 4.0 for v in r.noc.values())
        assert r.size_mb is not None and r.size_mb > 0
        assert r.encoder_ms is not None and r.encoder_ms > 0 and r.decoder_ms is not None and r.decoder_ms > 0
    assert rows["int8"].delta_noc["noc90"] == pytest.approx(rows["int8"].noc["noc90"] - rows["fp32"].noc["noc90"])
    assert rows["int8"].encoder_ratio == pytest.approx(rows["int8"].encoder_ms / rows["fp32"].encoder_ms)
    assert rows["int8"].session_ms == pytest.approx(rows["int8"].encoder_ms + 5 * rows["int8"].decoder_ms)
    assert rows["int8"].session_ratio == pytest.approx(rows["int8"].session_ms / rows["fp32"].session_ms)
    assert rows["fp32"].delta_noc == {}
    assert rows["w8a8"].status == SKIPPED and "macOS" in rows["w8a8"].reasons[0]
    assert rows["missing"].status == FAILED and "could not run" in rows["missing"].reasons[0]


def test_table_report_and_final_set(gate: dict, tmp_path: Path) -> None:
    report = gate["report"]
    table = markdown_table(report)
    assert table.count("\n") == len(report.rows) + 1
    assert "| int8-broken | FAIL |" in table
    files = write_gate_report(report, tmp_path / "report")
    data = json.loads(files["json"].read_text())
    assert [r["name"] for r in data["rows"]] == ["fp32", "int8", "int8-broken", "w8a8", "missing"]
    final = tmp_path / "final"
    (final / "stale").mkdir(parents=True)  # an earlier run's set is replaced, not merged
    published = publish_final(report, final)
    names = sorted(p.name for p in final.iterdir())
    assert names == sorted(r.name for r in report.passed())
    assert "int8-broken" not in names and "w8a8" not in names and "fp32" in names
    for p in published:
        read_manifest(p)  # copies verify against their manifests


def test_gate_needs_one_runnable_baseline(gate: dict) -> None:
    with pytest.raises(ValueError, match="exactly one baseline"):
        run_gate([Variant("a", None)], [], GateConfig())
    with pytest.raises(ValueError, match="cannot run here"):
        run_gate([Variant("a", None, baseline=True, skipped="no GPU")], [], GateConfig())
    with pytest.raises(ValueError, match="unique"):
        run_gate([Variant("a", None), Variant("a", None)], [], GateConfig())
