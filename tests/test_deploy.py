"""`edgeclick deploy-table` on the tiny model: artifacts per configuration × precision (one-graph int8 ones
assembled from the int8 and fp32 graphs), reuse on a second run, the report files and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.manifest import read_manifest

ARGS = ["deploy-table", "--model", "tiny", "--size", "64x96", "--threads", "1", "--runs", "1", "--warmup", "0",
        "--configs", "late", "--precisions", "fp32,int8enc,int8dec"]


def gate_report(path: Path, fusion: str = "late", target: str = "onnx") -> Path:
    """A calibration.json as `edgeclick calibrate` writes it (the fields deploy-table reads)."""
    rows = [{"name": "fp32", "status": "baseline", "noc": {"noc90": 5.0}, "miou": {"miou@5": 0.81}},
            {"name": "int8enc-minmax", "status": "pass", "noc": {"noc90": 5.25}, "miou": {"miou@5": 0.80}},
            {"name": "int8dec-minmax", "status": "FAIL", "noc": {"noc90": 9.5}, "miou": {"miou@5": 0.52}},
            {"name": "int8dec-entropy", "status": "FAIL", "noc": {"noc90": 9.9}, "miou": {"miou@5": 0.50}}]
    path.write_text(json.dumps({"dataset": "grabcut", "settings": {"checkpoint": "models/reference/late.pt", "size": [256, 384],
                                "target": target, "model": {"fusion": fusion, "adapter": False}}, "rows": rows}))
    return path


def test_deploy_table_writes_the_table_and_reuses_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work, out, doc = tmp_path / "work", tmp_path / "out", tmp_path / "deploy.md"
    doc.write_text("# x\n\nbefore\n<!-- deploy-table:start -->\nold table\n<!-- deploy-table:end -->\nafter\n")
    accuracy = gate_report(tmp_path / "calibration.json")
    assert main([*ARGS, "--work", str(work), "--out", str(out), "--doc", str(doc), "--accuracy", str(accuracy)]) == 0
    first = capsys.readouterr()
    assert "exporting tiny-late-64x96" in first.err
    data = json.loads((out / "deploy.json").read_text())
    assert [(r["precision"], r["fusion"], r["adapter"]) for r in data["rows"]] == [
        ("fp32", "late", False), ("int8enc", "late", False), ("int8dec", "late", False)]
    for r in data["rows"]:
        assert r["session_ms"] == pytest.approx(r["encoder_ms"] + 5 * r["decoder_ms"])
        assert r["size_mb"] > 0 and r["peak_rss_mib"] > 0 and set(r["sweep"]) == {"1"}
    assert {"deploy.md", "table.md", "deploy.json", "sessions.png"} <= {p.name for p in out.iterdir()}
    assert "| late | int8dec |" in (out / "table.md").read_text() and "Thread sweep" in (out / "deploy.md").read_text()
    # Accuracy is the gate's, per precision; a refused variant says so; the pick weighs NoC and session time.
    table = (out / "table.md").read_text()
    assert [(r["accuracy"]["noc90"], r["accuracy"]["passed"]) for r in data["rows"]] == [(5.0, True), (5.25, True), (9.5, False)]
    assert "| 5.00 | 0.810 |" in table and "| 9.50 (refused by the gate) | 0.520 |" in table
    passed = [r for r in data["rows"] if r["accuracy"]["passed"]]
    fastest = min(passed, key=lambda r: r["session_ms"])
    assert f"**Recommended: {fastest['label'].replace(' · ', ', ')}**" in table
    assert "late.pt on grabcut at 256×384" in table
    text = doc.read_text()
    assert "old table" not in text and (out / "table.md").read_text().strip() in text
    assert text.startswith("# x\n\nbefore\n") and text.endswith("<!-- deploy-table:end -->\nafter\n")
    assert "Measured by `edgeclick deploy-table --model tiny --size 64x96 --configs late" in text
    fp32, int8 = read_manifest(work / "tiny-late-64x96-fp32"), read_manifest(work / "tiny-late-64x96-int8")
    for name, quantised, kept in (("int8enc", contract.ENCODER, contract.DECODER), ("int8dec", contract.DECODER, contract.ENCODER)):
        m = read_manifest(work / f"tiny-late-64x96-{name}")
        assert m.files[quantised].sha256 == int8.files[quantised].sha256 != fp32.files[quantised].sha256
        assert m.files[kept].sha256 == fp32.files[kept].sha256
        assert m.options["calibration"]["graphs"] == [quantised] and m.precision == "int8"
    assert main([*ARGS, "--work", str(work), "--out", str(out)]) == 0
    again = capsys.readouterr()
    assert "exporting" not in again.err and "recording" not in again.err  # the artifacts were reused
    table = (out / "table.md").read_text()  # without --accuracy: no row claims accuracy, none is recommended
    assert "no trained weights" in table and "Recommended" not in table
    # Accuracy that arrives after the timing run: --rerender adds it to the saved rows, measuring nothing.
    timed = json.loads((out / "deploy.json").read_text())["rows"]
    assert main(["deploy-table", "--rerender", str(out / "deploy.json"), "--accuracy", str(accuracy), "--doc", str(doc)]) == 0
    assert "exporting" not in capsys.readouterr().err
    rows = json.loads((out / "deploy.json").read_text())["rows"]
    assert [r["session_ms"] for r in rows] == [r["session_ms"] for r in timed]  # the timings are the saved ones
    assert [r["accuracy"]["noc90"] for r in rows] == [5.0, 5.25, 9.5]
    table = (out / "table.md").read_text()
    assert "| 9.50 (refused by the gate) | 0.520 |" in table and "Recommended" in table and table in (out / "deploy.md").read_text()
    assert table.strip() in doc.read_text() and "accuracy added from calibrate reports afterwards" in doc.read_text()


@pytest.mark.parametrize("extra,phrase", [(["--precisions", "fp8"], "--precisions"), (["--configs", "middle"], "--configs"),
                                          (["--size", "60x96"], "multiple"), (["--doc", "/nonexistent.md"], "--doc"),
                                          (["--readme", "/nonexistent.md"], "--doc"), (["--accuracy", "/nonexistent.json"], "--accuracy"),
                                          (["--runtimes", "tflite"], "--runtimes"),
                                          (["--rerender", "/nonexistent.json"], "--rerender")])
def test_deploy_table_bad_input(extra: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["deploy-table", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), *extra])
    except SystemExit as exc:  # argparse's own one-line usage errors
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0]
    assert not (tmp_path / "w").exists() and not (tmp_path / "o").exists()
