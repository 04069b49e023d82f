"""Phone readiness of an ONNX artifact: onnxruntime's mobile usability checker on the tiny export (partitions,
refused nodes with reasons), the ORT-format copies that load and match the .onnx, the CLI and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

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
            assert len(parts["refused"]) == parts["nodes"] - parts["supported"]  # every refused node is named, with why
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
