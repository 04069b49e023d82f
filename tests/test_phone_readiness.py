"""Phone readiness of an ONNX artifact: onnxruntime's mobile usability checker on the tiny export (partitions,
refused nodes with reasons), the ORT-format copies that load and match the .onnx, the CLI and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.export.phone_readiness import EPS, phone_readiness


@pytest.fixture(scope="module")
def report(tiny_onnx: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("readiness") / "tiny"
    return phone_readiness(tiny_onnx[0], out), out


def test_report_names_partitions_and_refused_nodes(report: tuple[dict, Path]) -> None:
    data, out = report
    assert json.loads((out / "readiness.json").read_text()) == json.loads(json.dumps(data))
    assert "# Phone readiness" in (out / "readiness.md").read_text()
    for graph in (contract.ENCODER, contract.DECODER):
        g = data["graphs"][graph]
        assert g["dynamic_inputs"] == []  # a static export
        assert set(g["eps"]) == set(EPS)
        for ep, parts in g["eps"].items():
            assert parts["nodes"] > 0 and 0 <= parts["supported"] <= parts["nodes"]
            assert sum(parts["partition_sizes"]) == parts["supported"] and len(parts["partition_sizes"]) == parts["partitions"]
            # Every node the checker refuses is named, with why; beyond those, only nodes breaking a constraint
            # the checker leaves unchecked.
            unchecked = [x for x in parts["refused"] if "the checker does not check" in x["reason"]]
            assert len(parts["refused"]) - len(unchecked) == parts["nodes"] - parts["supported"]
            assert all(x["reason"] for x in parts["refused"])
            goal = data["goal"][f"{graph} / {ep}"]
            assert goal["met"] == (parts["partitions"] == 1 and not parts["refused"])
            assert bool(goal["blockers"]) == bool(parts["refused"])
        assert any("partitions with a total of" in line for line in g["checker_log"])  # onnxruntime's own words


def test_ort_format_loads_and_matches(report: tuple[dict, Path]) -> None:
    data, out = report
    values = data["ort_format_values"]
    assert values["passed"] and values["max_abs_logit"] <= contract.TOLERANCES["fp32"].max_abs_logit
    for graph in (contract.ENCODER, contract.DECODER):
        assert (out / f"{graph}.ort").stat().st_size == data["graphs"][graph]["ort_bytes"] and data["graphs"][graph]["ort_loads"]


def test_cli_and_bad_input(tiny_onnx: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["phone-readiness", str(tiny_onnx[0]), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "encoder / NNAPI:" in out and (tmp_path / "r" / "decoder.ort").is_file()
    assert "--option rasteriser=broadcast" in out  # the tiny export draws with scatter: the fix is named
    not_onnx = tmp_path / "x"
    not_onnx.mkdir()
    assert main(["phone-readiness", str(not_onnx), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and not (tmp_path / "r2").exists()


@pytest.fixture(scope="module")
def broadcast_report(tiny_onnx: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Readiness of the tiny late model exported with the phone rasteriser (`--option rasteriser=broadcast`)."""
    from edgeclick.export.run import export

    from .helpers import TINY_ONNX_SIZE

    root = tmp_path_factory.mktemp("broadcast")
    [artifact] = export(tiny_onnx[1], "onnx", size=TINY_ONNX_SIZE, options={"rasteriser": "broadcast"},
                      out_root=root / "artifacts", name="tiny-broadcast-onnx")
    return phone_readiness(artifact, root / "report")


@pytest.mark.parametrize("ep", list(EPS))
@pytest.mark.parametrize("graph", [contract.ENCODER, contract.DECODER])
def test_broadcast_export_is_one_partition_per_ep(broadcast_report: dict, report: tuple[dict, Path], graph: str, ep: str) -> None:
    """The issue's goal: with empty Resize inputs and the broadcast rasteriser, each graph is one partition for
    every EP. The default (scatter) decoder is cut into several by the rasteriser's ops, which the report names."""
    assert broadcast_report["goal"][f"{graph} / {ep}"]["met"], broadcast_report["goal"][f"{graph} / {ep}"]
    assert broadcast_report["ort_format_values"]["passed"] and broadcast_report["rasteriser"] == "broadcast"
    scatter = report[0]["graphs"][graph]["eps"][ep]
    if graph == contract.DECODER:
        assert scatter["partitions"] > 1 and "ScatterElements" in {x["op"] for x in scatter["refused"]}
    else:
        assert scatter["partitions"] == 1


class _PhoneOps(torch.nn.Module):
    """The forms the graph rewrites change: a bilinear resize (omitted roi / scales) and a one-channel pixel
    shuffle (CRD → DCR), and a pixel shuffle to two channels, which no rewrite can make DCR."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        resized = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return resized, F.pixel_shuffle(x[:, :4], 2), F.pixel_shuffle(torch.cat([x[:, :4], x[:, 1:5]], 1), 2)


def _ops(path: Path) -> list[tuple[str, str]]:
    return [(n.op_type, next((a.s.decode() for a in n.attribute if a.name == "mode"), "")) for n in onnx.load(path).graph.node]


def test_mobile_rewrites_keep_the_values_and_leave_what_they_cannot_rewrite(tmp_path: Path) -> None:
    import onnxruntime as ort

    from edgeclick.export.onnx_rewrites import rewrite_for_mobile_eps
    from edgeclick.export.phone_readiness import check_graph

    x = np.random.default_rng(0).normal(size=(1, 5, 6, 10)).astype(np.float32)
    before, after = tmp_path / "before.onnx", tmp_path / "after.onnx"
    torch.onnx.export(_PhoneOps().eval(), (torch.from_numpy(x),), before, input_names=["x"], opset_version=17, dynamo=False)
    proto = onnx.load(before)
    rewrite_for_mobile_eps(proto)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, after)
    assert [m for op, m in _ops(before) if op == "DepthToSpace"] == ["CRD", "CRD"]
    assert [m for op, m in _ops(after) if op == "DepthToSpace"] == ["DCR", "CRD"]  # the two-channel shuffle stays
    resize = next(n for n in proto.graph.node if n.op_type == "Resize")
    assert "" not in list(resize.input)
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x}) for p in (before, after)]
    for old, new in zip(*run):
        assert old.shape == new.shape and np.array_equal(old, new)

    eps = check_graph(after, "decoder").eps
    crd = [x for x in eps["NNAPI"].refused if x["op"] == "DepthToSpace"]
    assert len(crd) == 1 and "DCR only" in crd[0]["reason"] and not eps["NNAPI"].single_partition
    assert not [x for x in eps["CoreML MLProgram"].refused if x["op"] == "DepthToSpace"]  # MLProgram takes CRD
