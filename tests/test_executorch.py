"""ExecuTorch: the tiny late model exported to .pte (XNNPACK), run by executorch.runtime, checked against
PyTorch through the contract's gates; a tampered program refused in one line; per-graph thread counts;
int8 (XNNPACK PT2E) on recorded click sessions.

One export of the tiny model per test session (the lowering is tens of seconds on a shared 2-core CPU).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeclick import contract
from edgeclick.cli import main
from edgeclick.export import formats
from edgeclick.export.options import ExecuTorchOptions
from edgeclick.manifest import ManifestError, read_manifest
from edgeclick.runtimes.artifact import open_backend
from edgeclick.runtimes.session import Session

from .helpers import TINY_ONNX_SIZE

pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install -e .[executorch]; `make venv` does)")


@pytest.fixture(scope="session")
def tiny_pte(tiny_onnx: tuple[Path, Path]) -> Path:
    """The tiny late checkpoint of `tiny_onnx`, exported to ExecuTorch at 64×96 (once per session)."""
    from edgeclick.export.run import export

    _, checkpoint = tiny_onnx
    artifact = checkpoint.parent / "artifacts" / "tiny-executorch"
    if not (artifact / "manifest.json").is_file():
        export(checkpoint, "executorch", size=TINY_ONNX_SIZE, out_root=artifact.parent, name=artifact.name)
    return artifact


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """Two synthetic 64×96 samples in GrabCut layout (data_GT/ images, boundary_GT/ 0/255 masks)."""
    root = tmp_path / "grabcut"
    (root / "data_GT").mkdir(parents=True)
    (root / "boundary_GT").mkdir()
    rng = np.random.default_rng(0)
    for name, (top, left) in {"a": (16, 30), "b": (8, 50)}.items():
        image = rng.integers(0, 120, size=(*TINY_ONNX_SIZE, 3), dtype=np.uint8)
        image[top : top + 32, left : left + 40] = 220
        mask = np.zeros(TINY_ONNX_SIZE, dtype=np.uint8)
        mask[top : top + 32, left : left + 40] = 255
        Image.fromarray(image).save(root / "data_GT" / f"{name}.png")
        Image.fromarray(mask).save(root / "boundary_GT" / f"{name}.png")
    return root


def test_export_writes_validated_delegated_programs(tiny_pte: Path) -> None:
    manifest = read_manifest(tiny_pte)  # every file's sha256 checked
    assert manifest.format == "executorch" and manifest.complete and manifest.precision == "fp32"
    assert {role: e.path for role, e in manifest.files.items()} == {contract.ENCODER: "encoder.pte", contract.DECODER: "decoder.pte"}
    graphs = manifest.metadata["graphs"]
    assert graphs[contract.ENCODER]["delegate_calls"] >= 1 and graphs[contract.DECODER]["delegate_calls"] >= 1
    assert manifest.metadata["partitioner"] == "xnnpack" and manifest.tools["executorch"] == "1.5.1"
    values = manifest.validation
    assert values["passed"] and values["max_abs_logit"] <= contract.TOLERANCES["fp32"].max_abs_logit
    assert set(values["structure"]) == {contract.ENCODER, contract.DECODER}


def test_session_runs_and_matches_onnxruntime(tiny_pte: Path, tiny_onnx: tuple[Path, Path], image_u8: np.ndarray) -> None:
    et, ort = Session(open_backend(tiny_pte)), Session(open_backend(tiny_onnx[0], threads=1))
    assert et.backend.name == "executorch"
    for session in (et, ort):
        session.set_image(image_u8)
        session.click(50, 30, True)
    probs = [s.click(20, 10, False) for s in (et, ort)]
    assert probs[0].shape == image_u8.shape[:2]
    assert np.abs(probs[0] - probs[1]).max() < 1e-3


def test_parity_cli_passes_fp32_gates(tiny_pte: Path, dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "parity"
    rc = main(["parity", str(tiny_pte), "--data", str(dataset_dir), "--samples", "2", "--clicks", "3", "--out", str(out)])
    data = json.loads((out / "parity.json").read_text())
    assert rc == 0 and data["passed"] and data["candidate"] == "executorch"
    assert data["summary"]["max_abs_logit"] <= contract.TOLERANCES["fp32"].max_abs_logit


@pytest.mark.parametrize("graph", [contract.ENCODER, contract.DECODER])
def test_tampered_program_is_refused_in_one_line(tiny_pte: Path, tmp_path: Path, graph: str,
                                                 capsys: pytest.CaptureFixture[str], image_u8: np.ndarray) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(tiny_pte, copy)
    pte = copy / f"{graph}.pte"
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=f"{graph} file {graph}.pte has sha256") as info:
        open_backend(copy)
    assert "\n" not in str(info.value) and "re-export" in str(info.value)
    Image.fromarray(image_u8).save(tmp_path / "x.png")
    rc = main(["segment", str(copy), str(tmp_path / "x.png"), "--click", "50,30,+", "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "sha256" in err


def test_threads_are_process_wide(tiny_pte: Path, image_u8: np.ndarray) -> None:
    """ExecuTorch's threadpool is one per process and fixed once a program is loaded (runtimes/executorch.py)."""
    from executorch.extension.pybindings import portable_lib

    from edgeclick.runtimes.executorch import _Pool

    backend = open_backend(tiny_pte)  # the pool as this process already has it
    size = _Pool.size
    assert size == portable_lib._threadpool_get_thread_count() and backend.threads == {contract.ENCODER: size, contract.DECODER: size}
    same = open_backend(tiny_pte, threads={contract.ENCODER: size, contract.DECODER: size})
    Session(same).set_image(image_u8)
    with pytest.raises(ValueError, match="process-wide and this process already runs programs"):
        open_backend(tiny_pte, threads=size + 1)
    with pytest.raises(ValueError, match="one threadpool .* give one count"):
        open_backend(tiny_pte, threads={contract.ENCODER: 2, contract.DECODER: 1})
    with pytest.raises(ValueError, match="threads must be >= 1"):
        open_backend(tiny_pte, threads=0)


def test_another_contract_is_refused(tiny_pte: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeclick.runtimes.artifact import graph_specs_from_manifest
    from edgeclick.runtimes.executorch import ExecuTorchBackend

    manifest = read_manifest(tiny_pte)
    files = {g: manifest.path(g) for g in (contract.ENCODER, contract.DECODER)}
    specs = graph_specs_from_manifest(manifest)
    monkeypatch.setattr(contract, "contract_hash", lambda: "0" * 64)  # this code now speaks another contract
    with pytest.raises(contract.ContractMismatch, match="ExecuTorch program .*encoder.pte was built for I/O contract"):
        ExecuTorchBackend.from_files(files, specs, TINY_ONNX_SIZE)


def test_options_and_precisions_are_checked() -> None:
    fmt = formats.get_format("executorch")
    with pytest.raises(ValueError, match="partitioner 'nnapi' is not one of"):
        ExecuTorchOptions.from_dict({"partitioner": "nnapi"})
    with pytest.raises(ValueError, match=r"supports precisions \['fp32'\], not 'fp16'"):
        formats.check_request(fmt, "fp16", False)
    with pytest.raises(ValueError, match="does not support dynamic"):
        formats.check_request(fmt, "fp32", True)


def test_bench_rows_state_threads(tiny_pte: Path) -> None:
    from edgeclick.runtimes.bench import ARTIFACT, BenchConfig, BenchTarget, run_bench

    target = BenchTarget("tiny executorch", ARTIFACT, str(tiny_pte), TINY_ONNX_SIZE)
    report = run_bench([target], BenchConfig(warmup=0, runs=2, sustain_seconds=0.0, threads=(1,)))  # a fresh worker
    assert [(r.backend, r.threads, r.threads_applied) for r in report.results] == [("executorch", 1, True)]
    assert report.results[0].encoder.p50_ms > 0 and report.results[0].decoder.p50_ms > 0


def test_int8_program_from_recorded_click_sessions(tiny_pte: Path, tiny_onnx: tuple[Path, Path], tmp_path: Path,
                                                   image_u8: np.ndarray) -> None:
    from edgeclick.calibration.data import collect_calibration_data
    from edgeclick.calibration.deploy import compose_one_graph
    from edgeclick.calibration.deploy import synthetic_samples
    from edgeclick.calibration.executorch import quantize_executorch_artifact

    data = collect_calibration_data(tiny_onnx[1], synthetic_samples(2, 0), input_size=TINY_ONNX_SIZE, clicks_per_sample=2,
                                    max_decoder_samples=4, seed=0)
    int8 = quantize_executorch_artifact(tiny_pte, data, tmp_path / "int8", max_feeds=4)
    m, fp32 = read_manifest(int8), read_manifest(tiny_pte)
    assert m.format == "executorch" and m.precision == "int8" and m.options["calibration"]["graphs"] == [contract.ENCODER, contract.DECODER]
    assert all(m.files[g].sha256 != fp32.files[g].sha256 for g in (contract.ENCODER, contract.DECODER))
    # The convolutions hold int8 weights: a quantizer that annotated no conv (its module filter matching
    # nothing) once wrote "int8" programs as large as the fp32 ones.
    assert m.files[contract.ENCODER].bytes < 0.5 * fp32.files[contract.ENCODER].bytes
    assert m.validation["precision"] == "int8" and m.validation["passed"]
    session = Session(open_backend(int8))
    session.set_image(image_u8)
    assert session.click(50, 30, True).shape == image_u8.shape[:2]
    one = compose_one_graph(int8, tiny_pte, contract.ENCODER, tmp_path / "int8enc")
    mixed = read_manifest(one)
    assert mixed.files[contract.ENCODER].sha256 == m.files[contract.ENCODER].sha256
    assert mixed.files[contract.DECODER].sha256 == fp32.files[contract.DECODER].sha256
    with pytest.raises(ValueError, match="int8 ExecuTorch starts from the fp32"):
        quantize_executorch_artifact(int8, data, tmp_path / "again")


class _Node:
    """The parts of an FX node `inside_modules` reads: op, meta["nn_module_stack"] and users."""

    def __init__(self, op: str, paths: tuple[str, ...] = (), users: tuple["_Node", ...] = ()) -> None:
        self.op = op
        self.meta = {"nn_module_stack": {f"k{i}": (p, object) for i, p in enumerate(paths)}}
        self.users = {u: None for u in users}


def test_quantised_scope_is_by_path_prefix_with_weights_beside_their_convs() -> None:
    from edgeclick.calibration.executorch import inside_modules

    inside = inside_modules(["model"], ["model.feature_proj"])
    # torch.export records only modules whose __call__ ran: no "model" entry above a conv's own path.
    conv = _Node("call_function", ("", "model.feature_extractor.conv1"))
    kept_float = _Node("call_function", ("", "model.feature_proj.0"))
    top_level = _Node("call_function", ("",))  # the normalisation, the click rasteriser, the pixel shuffle
    assert inside(conv) and not inside(kept_float) and not inside(top_level)
    assert inside(_Node("get_attr", users=(conv,)))  # a conv's weight has no module stack of its own
    assert not inside(_Node("get_attr", users=(conv, top_level)))
    assert not inside(_Node("placeholder"))
    assert inside(_Node("call_function", ("L['self'].model.head",)))  # the older capture's path spelling


def test_keep_float_names_a_submodule_in_one_line(tiny_onnx: tuple[Path, Path]) -> None:
    from edgeclick.calibration.executorch import check_submodules
    from edgeclick.model.checkpoint import load_checkpoint

    model = load_checkpoint(tiny_onnx[1])
    check_submodules(model, ["head", "feature_extractor.conv1"])
    with pytest.raises(ValueError, match=r"^--keep-float nope: no such submodule of the model; .*feature_extractor") as err:
        check_submodules(model, ["nope"])
    assert "\n" not in str(err.value)
