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
    assert "encoder / NNAPI:" in capsys.readouterr().out and (tmp_path / "r" / "decoder.ort").is_file()
    not_onnx = tmp_path / "x"
    not_onnx.mkdir()
    assert main(["phone-readiness", str(not_onnx), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and not (tmp_path / "r2").exists()
