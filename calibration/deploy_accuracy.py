"""Accuracy for deploy-table rows, read from `edgeclick calibrate` gate reports (never re-derived).

The deploy table times untrained models (latency does not depend on weights); accuracy needs trained ones.
`edgeclick calibrate` already evaluates every precision of a trained checkpoint through its exported (and
quantised) graphs, click by click on a dataset, and records NoC and mIoU per variant in calibration.json.
This module maps those rows onto the table's (fusion, adapter, precision) cells:

    deploy precision   calibrate variant
    fp32               the baseline ("fp32")
    int8 / int8enc / int8dec    "int8-<method>" / "int8enc-<method>" / "int8dec-<method>": the first that
                       passed the gate, else the first measured (shown as refused)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .gate import BASELINE, PASSED


@dataclass(frozen=True)
class Accuracy:
    """One cell's accuracy: NoC@90 and mIoU@5 on `dataset` at `size`, and whether the gate passed it."""

    noc90: float
    miou5: float | None
    passed: bool
    variant: str
    dataset: str
    size: tuple[int, int]
    checkpoint: str


def _matches(precision: str, name: str) -> bool:
    if precision == "fp32":
        return name == "fp32"
    return name.startswith(precision + "-") and not name.endswith("-mixed")


RUNTIME_OF_TARGET = {"onnx": "onnxruntime", "executorch": "executorch"}
"""calibrate --target → the deploy table's runtime whose rows its gate numbers fill."""


def read_gate_accuracy(paths: Iterable[str | Path]) -> dict[tuple[str, bool, str, str], Accuracy]:
    """(fusion, adapter, precision, runtime) → Accuracy from calibration.json files (later files win a cell).

    Raises:
        ValueError: a file that is not a calibrate report of an onnx or executorch target with the model recorded.
    """
    cells: dict[tuple[str, bool, str, str], Accuracy] = {}
    for path in paths:
        path = Path(path)
        try:
            report: dict[str, Any] = json.loads(path.read_text())
            settings, rows = report["settings"], report["rows"]
            model = settings["model"]
            fusion, adapter = str(model["fusion"]), bool(model["adapter"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--accuracy {path}: not a calibration.json written by `edgeclick calibrate` of this "
                             f"version ({type(exc).__name__}: {exc}); re-run calibrate and pass its calibration.json") from None
        runtime = RUNTIME_OF_TARGET.get(str(settings.get("target")))
        if runtime is None:
            raise ValueError(f"--accuracy {path}: a {settings.get('target')} calibration; the deploy table times "
                             "onnxruntime and ExecuTorch, so pass the report of `edgeclick calibrate --target onnx` "
                             "or `--target executorch`")
        for precision in ("fp32", "int8", "int8enc", "int8dec"):
            measured = [r for r in rows if _matches(precision, r["name"]) and r.get("noc", {}).get("noc90") is not None]
            if not measured:
                continue
            row = next((r for r in measured if r["status"] in (BASELINE, PASSED)), measured[0])
            cells[(fusion, adapter, precision, runtime)] = Accuracy(
                noc90=float(row["noc"]["noc90"]), miou5=row.get("miou", {}).get("miou@5"),
                passed=row["status"] in (BASELINE, PASSED), variant=row["name"], dataset=str(report["dataset"]),
                size=(int(settings["size"][0]), int(settings["size"][1])), checkpoint=str(settings["checkpoint"]))
    return cells


def recommend(rows: Sequence[dict[str, Any]], noc_margin: float = 1.0) -> dict[str, Any] | None:
    """The row to deploy: among rows with accuracy that the gate passed, the fastest session whose NoC@90 is
    within `noc_margin` clicks of the best such NoC@90. None when no row has accuracy."""
    judged = [r for r in rows if r.get("accuracy") and r["accuracy"]["passed"]]
    if not judged:
        return None
    best = min(r["accuracy"]["noc90"] for r in judged)
    good = [r for r in judged if r["accuracy"]["noc90"] <= best + noc_margin]
    return min(good, key=lambda r: r["session_ms"])
