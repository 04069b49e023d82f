"""`edgeclick calibrate` end to end on a tiny model and a tiny on-disk dataset; keep-float sensitivity."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgeclick.calibration.data import CalibrationData, collect_calibration_data
from edgeclick.calibration.gate import (
    BASELINE,
    SKIPPED,
    GateConfig,
    publish_final,
    run_gate,
)
from edgeclick.calibration.sensitivity import GroupEffect, chosen_nodes, measure_groups
from edgeclick.calibration.variants import CalibrationPlan, build_variants
from edgeclick.export import run
from edgeclick.manifest import read_manifest
from PIL import Image

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint

from .helpers import randomize_
from .test_calibration import SIZE, _sample


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("calib_cli")
    ckpt = save_checkpoint(randomize_(create_model("tiny", fusion="late"), seed=3), root / "tiny.pt")
    data = root / "data"
    (data / "img").mkdir(parents=True)
    (data / "gt").mkdir()
    samples = [_sample(f"s{i}", i, shape) for i, shape in enumerate([(60, 90), (70, 50), (64, 96)])]
    for s in samples:  # the davis / coco_mval layout: img/<name>.jpg + gt/<name>.png
        Image.fromarray(s.image).save(data / "img" / f"{s.name}.png")
        Image.fromarray((s.gt > 0).astype(np.uint8) * 255).save(data / "gt" / f"{s.name}.png")
    return {"root": root, "ckpt": ckpt, "data": data, "samples": samples}


def test_calibrate_cli_writes_table_and_final_set(tiny: dict, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tiny["root"])
    code = main(["calibrate", "--checkpoint", str(tiny["ckpt"]), "--size", "64x96", "--data", str(tiny["data"]),
                 "--calib-samples", "2", "--calib-clicks", "3", "--calib-decoder-samples", "6", "--max-clicks", "3",
                 "--parity-samples", "2", "--no-bench"])  # the gate's own test measures latency
    out = capsys.readouterr().out
    assert code == 0, out
    name = "tiny-late-64x96-onnx"
    report = json.loads((tiny["root"] / "reports" / "calibration" / name / "calibration.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["fp32", "fp16", "int8-minmax", "int8enc-minmax", "int8dec-minmax"]
    assert rows["fp32"]["status"] == BASELINE
    assert report["settings"]["warning"].startswith("calibrated on the evaluation data")
    work = tiny["root"] / "artifacts" / "calibration" / name
    precisions = {n: read_manifest(work / "variants" / n).precision for n in rows if n != "fp32"}
    assert precisions == {"fp16": "fp16", "int8-minmax": "int8", "int8enc-minmax": "int8", "int8dec-minmax": "int8"}
    # the one-graph variants: the named graph quantised, the other the fp32 file byte for byte
    fp32 = read_manifest(work / "variants" / "fp32")
    for variant, quantised, kept in (("int8enc-minmax", contract.ENCODER, contract.DECODER),
                                     ("int8dec-minmax", contract.DECODER, contract.ENCODER)):
        m = read_manifest(work / "variants" / variant)
        assert m.options["calibration"]["graphs"] == [quantised]
        assert m.files[kept].sha256 == fp32.files[kept].sha256 and m.files[quantised].sha256 != fp32.files[quantised].sha256
    assert "session 1 image + 5 clicks ms" in out
    assert list(work.glob("calibration-data-*.npz"))
    final = sorted(p.name for p in (work / "final").iterdir())
    assert final == sorted(n for n, r in rows.items() if r["status"] in ("baseline", "pass"))
    assert "| fp32 | baseline |" in out


def test_calibrate_cli_bad_input(tiny: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--data", str(tiny["data"])]) == 2
    assert "ARTIFACT_DIR" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(tiny["ckpt"]), "--data", str(tiny["root"] / "none")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(tiny["ckpt"]), "--data", str(tiny["data"]), "--target", "tflite"]) == 2
    assert "tflite" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fp32_and_data(tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CalibrationData]:
    art = run.export(tiny["ckpt"], "onnx", size=SIZE, out_root=tmp_path_factory.mktemp("fp32"))[0]
    data = collect_calibration_data(tiny["ckpt"], tiny["samples"], input_size=SIZE, clicks_per_sample=3,
                                    max_decoder_samples=8)
    return art, data


def test_measure_groups(fp32_and_data: tuple[Path, CalibrationData]) -> None:
    art, data = fp32_and_data
    graph = contract.DECODER  # the encoder's path is exercised by the mixed-variant test below
    effects = measure_groups(art, data, graph, groups=("first_conv", "last_conv"), eval_feeds=4, method="percentile")
    assert [e.group for e in effects] == ["none", "first_conv", "last_conv"]
    assert effects[0].gain == 0.0 and not effects[0].nodes
    for e in effects:
        assert 0.0 <= e.min_mask_iou <= e.mean_mask_iou <= 1.0
        assert e.gain == pytest.approx(e.mean_mask_iou - effects[0].mean_mask_iou)
    assert all(len(e.nodes) == 1 for e in effects[1:])
    with pytest.raises(ValueError, match="unknown node group"):
        measure_groups(art, data, graph, groups=["nope"])


def test_mixed_variant_keeps_measured_nodes_float(tiny: dict, fp32_and_data: tuple[Path, CalibrationData],
                                                  tmp_path: Path) -> None:
    art, data = fp32_and_data
    plan = CalibrationPlan(tiny["ckpt"], SIZE, "onnx", tmp_path, baseline=art, fp16=False, search_keep_float=True,
                           min_gain=-1.0, search_groups=("last_conv",), mixed=False)  # min_gain -1: every group helps
    variants = build_variants(plan, lambda: data)
    assert [v.name for v in variants] == ["fp32", "int8-minmax", "int8-minmax-mixed"]
    kept = {v.name: read_manifest(v.artifact).options["calibration"]["keep_float"] for v in variants[1:]}
    for graph in (contract.ENCODER, contract.DECODER):
        assert set(kept["int8-minmax"][graph]) < set(kept["int8-minmax-mixed"][graph])
    assert "| none |" in (tmp_path / "sensitivity-minmax.md").read_text()


def test_chosen_nodes_by_gain() -> None:
    effects = [GroupEffect("none", (), 0.95, 0.9, 0.0), GroupEffect("softmax", ("a", "b"), 0.96, 0.9, 0.01),
               GroupEffect("resize", ("c",), 0.951, 0.9, 0.001), GroupEffect("last_conv", ("b", "d"), 0.97, 0.9, 0.02)]
    assert chosen_nodes(effects, 0.002) == ["a", "b", "d"]
    assert chosen_nodes(effects, 0.05) == []


def test_trt_target_without_tensorrt_judges_qdq_proxies(tiny: dict, fp32_and_data: tuple[Path, CalibrationData],
                                                        tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed: this test covers the machine without it")
    except ImportError:
        pass
    art, data = fp32_and_data
    plan = CalibrationPlan(tiny["ckpt"], SIZE, "trt", tmp_path, baseline=art)
    variants = build_variants(plan, lambda: data)
    by_name = {v.name: v for v in variants}
    assert list(by_name) == ["fp32 (onnxruntime)", "fp16", "int8-minmax", "int8-minmax Q/DQ (onnxruntime)"]
    assert by_name["fp32 (onnxruntime)"].baseline and by_name["fp32 (onnxruntime)"].artifact == art
    assert by_name["fp16"].skipped and by_name["int8-minmax"].skipped  # no engine is faked
    proxy = by_name["int8-minmax Q/DQ (onnxruntime)"]
    trt_art = read_manifest(proxy.publish)
    assert trt_art.format == "trt" and not trt_art.complete and (proxy.publish / "trtexec.sh").is_file()
    assert read_manifest(proxy.artifact).format == "onnx" and read_manifest(proxy.artifact).precision == "int8"
    report = run_gate(variants, tiny["samples"], GateConfig(max_clicks=3, parity_samples=2, parity_clicks=3, bench=False),
                      progress=False, log=lambda _: None)
    rows = {r.name: r for r in report.rows}
    assert rows["fp16"].status == SKIPPED and rows["int8-minmax"].status == SKIPPED
    assert rows["int8-minmax Q/DQ (onnxruntime)"].noc and rows["int8-minmax Q/DQ (onnxruntime)"].mask_iou_mean > 0.9
    final = publish_final(report, tmp_path / "final")
    for path in final:  # a passing proxy publishes the TensorRT artifact, not the onnxruntime copy
        if "Q_DQ" in path.name:
            assert read_manifest(path).format == "trt"


@pytest.mark.slow  # two CoreML conversions and three compressions of the tiny model: about a minute
def test_coreml_target_runs_every_scheme_on_linux(tiny: dict, tmp_path: Path) -> None:
    import sys

    if sys.platform == "darwin":
        pytest.skip("covers the Linux path (MIL reference evaluator, w8a8 skipped)")
    plan = CalibrationPlan(tiny["ckpt"], SIZE, "coreml", tmp_path)
    def no_data() -> CalibrationData:
        raise AssertionError("weight-only schemes need no calibration data; w8a8 is refused before it is asked for")

    variants = build_variants(plan, no_data)
    by_name = {v.name: v for v in variants}
    assert list(by_name) == ["fp32", "fp16", "w8", "palette6", "palette4", "w8a8"]
    assert by_name["w8a8"].skipped and "macOS" in by_name["w8a8"].skipped
    assert all(v.opener.endswith("MilReferenceBackend") and not v.bench for v in variants if v.skipped is None)
    report = run_gate(variants, tiny["samples"], GateConfig(max_clicks=3, parity_samples=2, parity_clicks=3),
                      progress=False, log=lambda _: None)
    rows = {r.name: r for r in report.rows}
    assert rows["fp32"].status == BASELINE and rows["fp32"].mask_iou_mean == pytest.approx(1.0, abs=1e-3)
    for name in ("fp16", "w8", "palette6", "palette4"):
        assert rows[name].noc and rows[name].mask_iou_mean is not None and rows[name].encoder_ms is None
    assert rows["w8"].size_mb < rows["fp16"].size_mb < rows["fp32"].size_mb
