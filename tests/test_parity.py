"""Parity: a backend against itself is perfect, perturbed backends fail the right gate at the right click,
NoC differences on scripted backends, report files, the `edgeclick parity` CLI over real ONNX artifacts."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.data.sample import Sample
from edgeclick.metrics import MAX_CLICKS
from edgeclick.model import create_model
from edgeclick.runtimes.backend import Backend
from edgeclick.runtimes.parity import (
    ClickParity,
    SampleParity,
    evaluate_gates,
    run_parity,
)
from edgeclick.runtimes.parity_report import write_parity_report
from edgeclick.runtimes.torch_ref import TorchBackend

from .helpers import randomize_

SIZE = (64, 96)  # a multiple of 32: the letterbox is the identity, so model space = image space


# ---------------------------------------------------------------------------------------------------
# Inputs and test backends
# ---------------------------------------------------------------------------------------------------


def square_sample(name: str, top: int = 16, left: int = 30, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, size=(*SIZE, 3), dtype=np.uint8)
    image[top : top + 32, left : left + 40] = 220
    gt = np.zeros(SIZE, dtype=np.int8)
    gt[top : top + 32, left : left + 40] = 1
    return Sample(name, image, gt)


def n_clicks(feeds: dict[str, np.ndarray]) -> int:
    return int((feeds[contract.CLICKS][0, :, 2] != contract.LABEL_PADDING).sum())


class Perturbed:
    """Wraps a backend; adds Gaussian noise to the decoder logits and/or negates them at one click count."""

    def __init__(self, inner: Backend, *, flip_at: int | None = None, noise: float = 0.0, seed: int = 0) -> None:
        self.inner = inner
        self.name = f"perturbed {inner.name}"
        self.contract_hash = inner.contract_hash
        self.input_size = inner.input_size
        self.graphs = inner.graphs
        self.flip_at = flip_at
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(self.inner.run(graph, feeds))
        if graph == contract.DECODER:
            logits = out[contract.LOGITS].copy()
            if self.noise:
                logits += self.rng.normal(0.0, self.noise, size=logits.shape).astype(np.float32)
            if n_clicks(feeds) == self.flip_at:
                logits = -logits  # nearly every thresholded pixel flips: mask IoU with the reference ≈ 0
            out[contract.LOGITS] = logits
        return out


class Scripted:
    """Encoder: zeros. Decoder: logits +10 on the object once `after` clicks are in, −10 everywhere else."""

    def __init__(self, gt: np.ndarray, after: int, name: str = "scripted") -> None:
        self.name = name
        self.contract_hash = contract.contract_hash()
        self.input_size = SIZE
        self.graphs = contract.graph_specs("late", False)
        self.obj = gt == 1
        self.after = after

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph == contract.ENCODER:
            spec = self.graphs[contract.ENCODER].outputs[0]
            return {spec.name: np.zeros(spec.resolve(*SIZE), dtype=np.float32)}
        on = self.obj if n_clicks(feeds) >= self.after else np.zeros_like(self.obj)
        return {contract.LOGITS: np.where(on, 10.0, -10.0).astype(np.float32)[None, None]}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> object:
    """The tiny model gains nothing from threads, and on a busy machine OpenMP threads that spin-wait for
    each other make every run many times slower; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> object:
    return randomize_(create_model("tiny", fusion="late"), seed=1)


@pytest.fixture
def samples() -> list[Sample]:
    return [square_sample("a"), square_sample("b", top=8, left=50, seed=1)]


# ---------------------------------------------------------------------------------------------------
# run_parity
# ---------------------------------------------------------------------------------------------------


def test_self_parity_is_perfect(model: object, samples: list[Sample]) -> None:
    report = run_parity(TorchBackend(model, SIZE), TorchBackend(model, SIZE), samples, 4, "fp32")  # type: ignore[arg-type]
    assert len(report.clicks) == 8 and [s.name for s in report.samples] == ["a", "b"]
    assert all(c.max_abs_logit == 0.0 and c.mean_abs_logit == 0.0 for c in report.clicks)
    assert all(c.mask_iou == 1.0 and c.boundary_iou == 1.0 for c in report.clicks)
    assert all(s.noc_difference(t) == 0 for s in report.samples for t in (0.85, 0.90))
    assert report.samples[0].reference_ious == report.samples[0].candidate_ious
    assert report.passed and report.failures == []
    assert [g.name for g in report.gates] == list(contract.GATED["fp32"])


def test_flipped_click_fails_fp32_and_names_sample_and_click(model: object) -> None:
    reference = TorchBackend(model, SIZE)  # type: ignore[arg-type]
    candidate = Perturbed(TorchBackend(model, SIZE), flip_at=3)  # type: ignore[arg-type]
    report = run_parity(reference, candidate, [square_sample("only")], 5, "fp32")
    assert not report.passed
    iou_gate = next(g for g in report.gates if g.name == "min_mask_iou_per_click")
    # Negated logits flip every pixel outside p ∈ (0.49, 0.51) (the threshold is 0.49, not 0.5): IoU ≈ 0.
    assert not iou_gate.passed and iou_gate.value < 0.05 and iou_gate.where == "sample 'only' click 3"
    # Clicks 1-2 are untouched: identical to the reference.
    assert [c.max_abs_logit for c in report.clicks[:2]] == [0.0, 0.0]
    assert any("FAILED" in f and "sample 'only' click 3" in f for f in report.failures)
    assert report.worst is not None and (report.worst.sample, report.worst.click) == ("only", 3)


def test_noise_fails_fp32_logit_gate_but_passes_fp16(model: object, samples: list[Sample]) -> None:
    """Gates follow the precision: 0.01 logit noise is an fp32 failure and fine for fp16's mean mask IoU."""
    fp32 = run_parity(TorchBackend(model, SIZE), Perturbed(TorchBackend(model, SIZE), noise=0.01), samples, 3, "fp32")  # type: ignore[arg-type]
    logit_gate = next(g for g in fp32.gates if g.name == "max_abs_logit")
    assert not logit_gate.passed and logit_gate.value > contract.TOLERANCES["fp32"].max_abs_logit
    assert logit_gate.failing == logit_gate.total == 6
    fp16 = run_parity(TorchBackend(model, SIZE), Perturbed(TorchBackend(model, SIZE), noise=0.01), samples, 3, "fp16")  # type: ignore[arg-type]
    assert [g.name for g in fp16.gates] == ["min_mean_mask_iou"]
    assert fp16.summary()["mean_mask_iou"] >= contract.TOLERANCES["fp16"].min_mean_mask_iou
    assert fp16.passed


def test_noc_difference_on_scripted_backends() -> None:
    """Reference perfect from click 1, candidate from click 3, another never: NoC differences 2 and 19."""
    sample = square_sample("s")
    late = run_parity(Scripted(sample.gt, 1), Scripted(sample.gt, 3), [sample], 5, "int8")
    s = late.samples[0]
    assert s.reference_ious == [1.0] * 5 and s.candidate_ious == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert (s.noc("reference", 0.9), s.noc("candidate", 0.9), s.noc_difference(0.9)) == (1, 3, 2)
    assert late.summary()["noc85_difference"] == 2.0
    # The shared session gives the candidate the reference's clicks: clicks 1-2 disagree completely.
    assert [c.mask_iou for c in late.clicks] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert late.summary()["mean_mask_iou"] == pytest.approx(0.6) and not late.passed  # int8 gate: mean ≥ 0.97
    assert late.clicks[0].reference_logit_absmax == 10.0 and late.clicks[0].reference_area == pytest.approx(32 * 40 / (64 * 96))
    never = run_parity(Scripted(sample.gt, 1), Scripted(sample.gt, 99), [sample], 5, "int8")
    assert never.samples[0].noc("candidate", 0.85) == MAX_CLICKS and never.samples[0].noc_difference(0.85) == MAX_CLICKS - 1
    # Two backends that both predict nothing agree perfectly; the summary flags such trivial masks.
    empty = run_parity(Scripted(sample.gt, 99), Scripted(sample.gt, 99), [sample], 2, "fp32")
    assert empty.passed and empty.summary()["trivial_masks"] == 2 and late.summary()["trivial_masks"] == 0


def test_noc_helpers_and_gate_edge_cases() -> None:
    s = SampleParity("x", [], reference_ious=[0.5, 0.86, 0.95], candidate_ious=[0.5, 0.7, 0.88], noc_cap=20)
    assert (s.noc("reference", 0.85), s.noc("candidate", 0.85), s.noc("candidate", 0.9)) == (2, 3, 20)
    assert s.noc_difference(0.90) == 17
    nan_click = ClickParity("x", 1, 0, 0, True, float("nan"), 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5)
    assert not evaluate_gates([nan_click], "fp32")[0].passed  # NaN logits never pass
    assert not any(g.passed for g in evaluate_gates([], "fp32"))  # nothing compared proves nothing
    with pytest.raises(ValueError, match="unknown precision"):
        evaluate_gates([nan_click], "bf16")


def test_run_parity_refuses_different_sizes(model: object, samples: list[Sample]) -> None:
    with pytest.raises(ValueError, match="same preprocessing"):
        run_parity(TorchBackend(model, SIZE), TorchBackend(model, (96, 96)), samples, 2, "fp32")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clicks must be"):
        run_parity(TorchBackend(model, SIZE), TorchBackend(model, SIZE), samples, contract.NUM_CLICKS + 1, "fp32")  # type: ignore[arg-type]


def test_report_files_and_worst_png(model: object, samples: list[Sample], tmp_path: Path) -> None:
    report = run_parity(TorchBackend(model, SIZE), Perturbed(TorchBackend(model, SIZE), flip_at=2), samples, 3, "fp32",  # type: ignore[arg-type]
                        settings={"artifact": "test"})
    files = write_parity_report(report, tmp_path / "out")
    assert set(files) == {"json", "report", "worst"}
    with Image.open(files["worst"]) as png:
        png.verify()
    with Image.open(files["worst"]) as png:
        assert png.format == "PNG" and png.size[0] > 400 and png.size[1] > 200
    data = json.loads(files["json"].read_text())
    assert data["passed"] is False and data["precision"] == "fp32"
    assert data["worst"]["click"] == 2 and data["worst"]["mask_iou"] < 0.05
    assert len(data["samples"]) == 2 and len(data["samples"][0]["per_click"]) == 3
    assert {"noc", "reference_ious", "candidate_ious"} <= set(data["samples"][0])
    md = files["report"].read_text()
    assert "— FAIL" in md and "click 2" in md and "worst.png" in md


# ---------------------------------------------------------------------------------------------------
# CLI over real ONNX artifacts
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_onnx_fp16(tiny_onnx: tuple[Path, Path]) -> Path:
    """The same checkpoint exported to ONNX in fp16."""
    from edgeclick.export.run import export

    _, checkpoint = tiny_onnx
    return export(checkpoint, "onnx", size=SIZE, precision="fp16", out_root=checkpoint.parent / "artifacts",
                  name="tiny-onnx-fp16")[0]


@pytest.fixture
def dataset_dir(tmp_path: Path, samples: list[Sample]) -> Path:
    """The samples as a GrabCut-layout dataset folder (data_GT/ images, boundary_GT/ 0/255 masks)."""
    root = tmp_path / "grabcut"
    (root / "data_GT").mkdir(parents=True)
    (root / "boundary_GT").mkdir()
    for s in samples:
        Image.fromarray(s.image).save(root / "data_GT" / f"{s.name}.png")
        Image.fromarray((s.gt == 1).astype(np.uint8) * 255).save(root / "boundary_GT" / f"{s.name}.png")
    return root


def test_cli_onnx_artifact_passes(tiny_onnx: tuple[Path, Path], dataset_dir: Path, tmp_path: Path) -> None:
    artifact, _ = tiny_onnx
    out = tmp_path / "parity"
    rc = main(["parity", str(artifact), "--data", str(dataset_dir), "--samples", "2", "--clicks", "4", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "parity.json").read_text())
    assert data["passed"] and data["candidate"] == "onnxruntime" and data["reference"] == "torch"
    assert data["summary"]["n_clicks"] == 8
    assert data["summary"]["max_abs_logit"] <= contract.TOLERANCES["fp32"].max_abs_logit
    assert data["summary"]["min_mask_iou"] >= contract.TOLERANCES["fp32"].min_mask_iou_per_click
    assert (out / "worst.png").is_file() and (out / "report.md").is_file()


def test_cli_gates_follow_the_manifest_precision(tiny_onnx_fp16: Path, dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "parity"
    rc = main(["parity", str(tiny_onnx_fp16), "--data", str(dataset_dir), "--samples", "2", "--clicks", "4", "--out", str(out)])
    data = json.loads((out / "parity.json").read_text())
    assert data["precision"] == "fp16" and [g["name"] for g in data["gates"]] == ["min_mean_mask_iou"]
    assert data["summary"]["max_abs_logit"] > 0.0  # really reduced precision, yet within the fp16 gate
    assert rc == 0 and data["passed"]


def test_cli_perturbed_onnx_exits_nonzero(tiny_onnx: tuple[Path, Path], dataset_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeclick.runtimes import cli
    from edgeclick.runtimes.artifact import open_backend

    monkeypatch.setattr(cli, "open_artifact", lambda d, power=None: Perturbed(open_backend(d, power=power), flip_at=2))
    artifact, _ = tiny_onnx
    out = tmp_path / "parity"
    rc = main(["parity", str(artifact), "--data", str(dataset_dir), "--samples", "1", "--clicks", "3", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "min_mask_iou_per_click FAILED" in err and "sample 'a' click 2" in err and "gate failed" in err
    assert json.loads((out / "parity.json").read_text())["passed"] is False


def test_cli_errors_name_the_problem(tiny_onnx: tuple[Path, Path], dataset_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    artifact, _ = tiny_onnx
    rc = main(["parity", str(artifact), "--data", str(tmp_path / "nowhere")])
    assert rc == 2 and "--data" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    from edgeclick.model.checkpoint import save_checkpoint

    save_checkpoint(create_model("tiny", fusion="late"), other)
    rc = main(["parity", str(artifact), "--data", str(dataset_dir), "--checkpoint", str(other)])
    assert rc == 2 and "was exported from" in capsys.readouterr().err


def test_cli_real_grabcut_samples(tiny_onnx: tuple[Path, Path], tmp_path: Path) -> None:
    data = os.environ.get("EDGECLICK_DATA")
    if not data:
        pytest.skip("EDGECLICK_DATA is not set (point it at the shared data folder to run on real GrabCut images)")
    grabcut = Path(data) / "grabcut"
    if not grabcut.is_dir():
        pytest.skip(f"{grabcut} does not exist")
    artifact, _ = tiny_onnx
    out = tmp_path / "parity"
    rc = main(["parity", str(artifact), "--data", str(grabcut), "--samples", "2", "--clicks", "10", "--out", str(out)])
    data_json = json.loads((out / "parity.json").read_text())
    assert rc == 0 and data_json["passed"]
    assert len(data_json["samples"]) == 2 and data_json["summary"]["n_clicks"] == 20
    assert all((grabcut / "data_GT").glob(f"{s['name']}.*") for s in data_json["samples"])
    # Real images are letterboxed into 64×96, yet both sides see the same pixels: the fp32 gates hold.
    assert data_json["summary"]["max_abs_logit"] <= contract.TOLERANCES["fp32"].max_abs_logit
