"""ONNX export end to end on tiny configs: parity with torch, Session parity, fp16, dynamic shapes,
metadata, manifest hashes, contract mismatch, and the validation gate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeclick import contract
from edgeclick.export import run
from edgeclick.export import validation as validation_mod
from edgeclick.export.formats import ExportValidationError
from edgeclick.export.onnx import CONTROL_FLOW_OPS, click_only_nodes
from edgeclick.export.validation import reference_feeds
from edgeclick.manifest import MANIFEST_NAME, ManifestError, hash_path, read_manifest
from edgeclick.model import create_model
from edgeclick.model.checkpoint import load_checkpoint, save_checkpoint
from edgeclick.runtimes.artifact import open_backend
from edgeclick.runtimes.backend import ContractMismatch
from edgeclick.runtimes.ort import OrtBackend
from edgeclick.runtimes.session import Session
from edgeclick.runtimes.torch_ref import TorchBackend

from .helpers import randomize_

# onnxruntime's kernels round differently from torch's, and differently on each CPU: compare with the contract's fp32
# logit tolerance, which sigmoid (slope ≤ ¼) carries to probabilities as a quarter of it.
FP32_LOGITS = contract.TOLERANCES["fp32"].max_abs_logit
FP32_PROBS = FP32_LOGITS / 4

SIZE = (64, 96)
CONFIGS = {"late": ("late", None), "early": ("early", None), "late_conv": ("late", "conv"), "early_conv": ("early", "conv")}
STATIC = ["late", "early", "early_conv"]  # late_conv is covered by the dynamic export (checked at two sizes)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for key, (fusion, adapter) in CONFIGS.items():
        model = randomize_(create_model("tiny", fusion=fusion, adapter=adapter), seed=3)
        out[key] = save_checkpoint(model, root / f"tiny_{key}.pt")
    # fp16: logits in a trained model's range (about ±10); randomize_ alone gives ±100, where the contract's
    # absolute fp16 gate of 5e-2 is finer than fp16's own resolution.
    model = randomize_(create_model("tiny", fusion="late"), seed=3)
    with torch.no_grad():
        model.head.weight.mul_(0.1)
        model.head.bias.mul_(0.1)
    out["late_fp16"] = save_checkpoint(model, root / "tiny_late_fp16.pt")
    return out


@pytest.fixture(scope="module")
def artifacts(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One export per config / variant, shared by the tests below (exports take seconds each)."""
    out = tmp_path_factory.mktemp("artifacts")
    arts = {key: run.export(checkpoints[key], "onnx", size=SIZE, out_root=out)[0] for key in STATIC}
    arts["fp16"] = run.export(checkpoints["late_fp16"], "onnx", size=SIZE, precision="fp16", out_root=out)[0]
    arts["dynamic"] = run.export(checkpoints["late_conv"], "onnx", size=SIZE, dynamic=True, out_root=out)[0]
    return arts


def _torch_backend(checkpoint: Path, size: tuple[int, int] | None = SIZE) -> TorchBackend:
    return TorchBackend(load_checkpoint(checkpoint), input_size=size)


def _feeds(size: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs other than the validation's own: random image, 3 clicks, random prev mask."""
    rng = np.random.default_rng(seed)
    h, w = size
    clicks = np.full((1, contract.NUM_CLICKS, 3), contract.LABEL_PADDING, np.float32)
    clicks[0, :3] = [[0.3 * w, 0.4 * h, 1], [0.7 * w + 0.5, 0.6 * h, 0], [0.5 * w, 0.5 * h + 0.25, 1]]
    return {contract.IMAGE: rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8), contract.CLICKS: clicks,
            contract.PREV_MASK: rng.random((1, 1, h, w), dtype=np.float32)}


def _end_to_end(backend, feeds: dict[str, np.ndarray]) -> np.ndarray:
    features = backend.run(contract.ENCODER, {contract.IMAGE: feeds[contract.IMAGE]})
    return backend.run(contract.DECODER, {**features, contract.CLICKS: feeds[contract.CLICKS],
                                          contract.PREV_MASK: feeds[contract.PREV_MASK]})[contract.LOGITS]


# -- parity --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", STATIC)
def test_onnxruntime_matches_torch(key: str, artifacts: dict[str, Path], checkpoints: dict[str, Path]) -> None:
    art = artifacts[key]
    manifest = read_manifest(art)
    assert manifest.validation["passed"] and manifest.validation["max_abs_logit"] <= FP32_LOGITS
    ort_backend = OrtBackend(art)
    torch_backend = _torch_backend(checkpoints[key])
    feeds = _feeds(SIZE, seed=5)
    ours, ref = _end_to_end(ort_backend, feeds), _end_to_end(torch_backend, feeds)
    assert ours.shape == (1, 1, *SIZE) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= contract.TOLERANCES["fp32"].max_abs_logit
    assert ref.std() > 1e-2  # a non-trivial map, so the comparison means something


@pytest.mark.parametrize("key", ["late", "early_conv"])
def test_session_over_onnxruntime_equals_session_over_torch(key: str, artifacts: dict[str, Path], checkpoints: dict[str, Path],
                                                           image_u8: np.ndarray) -> None:
    sessions = [Session(OrtBackend(artifacts[key], threads=1)), Session(_torch_backend(checkpoints[key]))]
    for s in sessions:
        s.set_image(image_u8)
    clicks = [(40.0, 30.0, True), (80.5, 10.0, False), (20.0, 50.25, True)]
    for x, y, positive in clicks:
        ours, ref = (s.click(x, y, positive) for s in sessions)
        assert ours.shape == image_u8.shape[:2]
        assert np.abs(ours - ref).max() <= FP32_PROBS
    assert len(sessions[0].clicks) == 3 and ref.std() > 1e-3


# -- structure and metadata ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["late", "early_conv"])
def test_graph_io_and_metadata_follow_the_contract(key: str, artifacts: dict[str, Path], checkpoints: dict[str, Path]) -> None:
    art = artifacts[key]
    assert sorted(p.name for p in art.iterdir()) == ["decoder.onnx", "encoder.onnx", MANIFEST_NAME]  # no external data
    backend = OrtBackend(art)
    config = load_checkpoint(checkpoints[key]).config.to_dict()
    for graph, spec in backend.graphs.items():
        proto = onnx.load_model(art / f"{graph}.onnx")
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta[contract.META_CONTRACT_VERSION] == contract.CONTRACT_VERSION
        assert meta[contract.META_CONTRACT_HASH] == contract.contract_hash()
        assert meta[contract.META_GRAPH] == graph
        assert json.loads(meta[contract.META_MODEL_CONFIG]) == config
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert not CONTROL_FLOW_OPS & {n.op_type for n in proto.graph.node}
        session = backend.sessions[graph]
        assert [i.name for i in session.get_inputs()] == spec.input_names()
        assert [o.name for o in session.get_outputs()] == spec.output_names()
        for value, tensor in zip([*session.get_inputs(), *session.get_outputs()], [*spec.inputs, *spec.outputs]):
            assert tuple(value.shape) == tensor.resolve(*SIZE)
    assert backend.input_size == SIZE and backend.contract_hash == contract.contract_hash()


def test_static_artifact_refuses_another_size(artifacts: dict[str, Path]) -> None:
    backend = OrtBackend(artifacts["late"])
    with pytest.raises(ValueError, match="exported for 64x96"):
        backend.run(contract.ENCODER, {contract.IMAGE: np.zeros((1, 96, 128, 3), np.uint8)})
    with pytest.raises(ValueError, match="dtype float32, contract says uint8"):
        backend.run(contract.ENCODER, {contract.IMAGE: np.zeros((1, *SIZE, 3), np.float32)})


def test_unavailable_provider_is_named(artifacts: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"\['NoSuchExecutionProvider'\] not available.*CPUExecutionProvider"):
        OrtBackend(artifacts["late"], providers=["NoSuchExecutionProvider"])


def test_open_backend_dispatches_onnx(artifacts: dict[str, Path]) -> None:
    backend = open_backend(artifacts["late"], threads=1)
    assert isinstance(backend, OrtBackend) and backend.input_size == SIZE


# -- fp16 and dynamic ------------------------------------------------------------------------------------

def test_fp16_runs_with_fp32_io_within_tolerance(artifacts: dict[str, Path], checkpoints: dict[str, Path]) -> None:
    art = artifacts["fp16"]
    manifest = read_manifest(art)
    assert manifest.precision == "fp16" and manifest.validation["max_abs_logit"] <= contract.TOLERANCES["fp16"].max_abs_logit
    backend = OrtBackend(art)
    types = {v.name: v.type for s in backend.sessions.values() for v in [*s.get_inputs(), *s.get_outputs()]}
    assert types.pop(contract.IMAGE) == "tensor(uint8)" and set(types.values()) == {"tensor(float)"}
    for graph in backend.graphs:
        proto = onnx.load_model(art / f"{graph}.onnx")
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer), graph
    decoder = onnx.load_model(art / "decoder.onnx").graph
    assert click_only_nodes(decoder)  # the disk rasteriser is found ...
    casts_of_clicks = [n for n in decoder.node if n.op_type == "Cast" and contract.CLICKS in n.input]
    assert not casts_of_clicks  # ... and reads the click rows in fp32
    feeds = _feeds(SIZE, seed=9)
    ours, ref = _end_to_end(backend, feeds), _end_to_end(_torch_backend(checkpoints["late_fp16"]), feeds)
    err = np.abs(ours - ref).max()
    assert 1e-6 < err <= contract.TOLERANCES["fp16"].max_abs_logit  # really fp16 inside, and close enough


def test_dynamic_export_runs_at_two_sizes(artifacts: dict[str, Path], checkpoints: dict[str, Path]) -> None:
    art = artifacts["dynamic"]
    manifest = read_manifest(art)
    assert manifest.dynamic and len(manifest.validation["sizes"]) == 2
    backend = OrtBackend(art)
    assert backend.input_size is None
    image_shape = backend.sessions[contract.ENCODER].get_inputs()[0].shape
    assert image_shape[0] == 1 and image_shape[3] == 3 and all(isinstance(d, str) for d in image_shape[1:3])
    torch_backend = _torch_backend(checkpoints["late_conv"], size=None)
    for size in [(64, 96), (128, 64)]:
        feeds = _feeds(size, seed=size[0])
        ours, ref = _end_to_end(backend, feeds), _end_to_end(torch_backend, feeds)
        assert ours.shape == (1, 1, *size)
        assert np.abs(ours - ref).max() <= FP32_LOGITS


# -- manifest integrity and the contract -------------------------------------------------------------------

def _copy(art: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(art, tmp_path / art.name))


def test_manifest_hashes_are_verified_and_tampering_refused(artifacts: dict[str, Path], tmp_path: Path) -> None:
    art = _copy(artifacts["late"], tmp_path)
    manifest = read_manifest(art)
    for role, entry in manifest.files.items():
        assert hash_path(art / entry.path) == (entry.sha256, entry.bytes), role
    decoder = art / manifest.files[contract.DECODER].path
    data = bytearray(decoder.read_bytes())
    data[-1] ^= 0xFF
    decoder.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"decoder file decoder.onnx has sha256 .* modified or corrupted"):
        read_manifest(art)
    with pytest.raises(ManifestError):
        OrtBackend(art)
    decoder.unlink()
    with pytest.raises(ManifestError, match="decoder.onnx is missing"):
        read_manifest(art)


def test_missing_or_corrupt_manifest(artifacts: dict[str, Path], tmp_path: Path) -> None:
    art = _copy(artifacts["late"], tmp_path)
    (art / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="corrupt manifest"):
        read_manifest(art)
    (art / MANIFEST_NAME).write_text(json.dumps({"name": "x"}))
    with pytest.raises(ManifestError, match="corrupt manifest"):
        read_manifest(art)
    (art / MANIFEST_NAME).unlink()
    with pytest.raises(ManifestError, match="no manifest.json"):
        OrtBackend(art)


def test_backend_refuses_graph_built_for_another_contract(artifacts: dict[str, Path], tmp_path: Path) -> None:
    art = _copy(artifacts["late"], tmp_path)
    path = art / "encoder.onnx"
    proto = onnx.load_model(path)
    for prop in proto.metadata_props:
        if prop.key == contract.META_CONTRACT_HASH:
            prop.value = "0" * 64
    onnx.save_model(proto, path)
    # keep the manifest consistent with the edited file, as a real artifact of another version would be
    manifest_path = art / MANIFEST_NAME
    data = json.loads(manifest_path.read_text())
    data["files"][contract.ENCODER]["sha256"], data["files"][contract.ENCODER]["bytes"] = hash_path(path)
    manifest_path.write_text(json.dumps(data))
    read_manifest(art)  # the manifest itself is fine ...
    with pytest.raises(ContractMismatch, match="ONNX graph .*encoder.onnx was built for I/O contract 000000000000"):
        OrtBackend(art)  # ... the graph's own metadata is what is refused


def test_manifest_of_another_contract_is_refused(artifacts: dict[str, Path], tmp_path: Path) -> None:
    art = _copy(artifacts["late"], tmp_path)
    data = json.loads((art / MANIFEST_NAME).read_text())
    data["contract"]["hash"] = "f" * 64
    (art / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ContractMismatch):
        read_manifest(art)
    with pytest.raises(ContractMismatch):
        open_backend(art)


# -- the validation gate -------------------------------------------------------------------------------------

def test_values_that_differ_from_torch_fail_the_export(checkpoints: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = validation_mod.torch_reference

    def shifted(model, feeds):  # a reference 0.01 away: what a wrong graph would look like
        features, logits = real(model, feeds)
        return features, logits + 0.01

    monkeypatch.setattr(validation_mod, "torch_reference", shifted)
    out = tmp_path / "artifacts"
    with pytest.raises(ExportValidationError, match=r"max \|Δlogit\| 0\.01\d* > 0\.001 \(fp32 tolerance\)"):
        run.export(checkpoints["late"], "onnx", size=SIZE, out_root=out)
    assert list(out.iterdir()) == []  # no artifact, no staging


def test_reference_feeds_are_deterministic_and_realistic() -> None:
    a, b = reference_feeds(SIZE), reference_feeds(SIZE)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a[contract.IMAGE].dtype == np.uint8 and a[contract.IMAGE].std() > 20
    labels = a[contract.CLICKS][0, :, 2]
    assert list(labels[:3]) == [contract.LABEL_POSITIVE, contract.LABEL_POSITIVE, contract.LABEL_NEGATIVE]
    assert (labels[3:] == contract.LABEL_PADDING).all()
    prev = a[contract.PREV_MASK]
    assert 0 <= prev.min() < 0.05 and 0.95 < prev.max() <= 1 and 0.05 < prev.mean() < 0.5


# -- exporter choice -----------------------------------------------------------------------------------------

def test_dynamo_exporter_is_static_only(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    with pytest.raises(ValueError, match="dynamic H/W needs exporter=torchscript"):
        run.export(checkpoints["late"], "onnx", size=SIZE, dynamic=True, options={"exporter": "dynamo"}, out_root=out)
    with pytest.raises(ValueError, match="ONNX exporter 'jit' is not one of"):
        run.export(checkpoints["late"], "onnx", size=SIZE, options={"exporter": "jit"}, out_root=out)
    with pytest.raises(ValueError, match="opset 16 is below 17"):
        run.export(checkpoints["late"], "onnx", size=SIZE, options={"opset": "16"}, out_root=out)
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_dynamo_exporter_writes_single_files_that_match_torch(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    [art] = run.export(checkpoints["early_conv"], "onnx", size=SIZE, options={"exporter": "dynamo", "opset": 18},
                       out_root=tmp_path)
    assert sorted(p.name for p in art.iterdir()) == ["decoder.onnx", "encoder.onnx", MANIFEST_NAME]
    manifest = read_manifest(art)
    assert manifest.metadata["exporter"] == "dynamo" and manifest.validation["max_abs_logit"] <= FP32_LOGITS
    feeds = _feeds(SIZE, seed=2)
    ours, ref = _end_to_end(OrtBackend(art), feeds), _end_to_end(_torch_backend(checkpoints["early_conv"]), feeds)
    assert np.abs(ours - ref).max() <= FP32_LOGITS


def test_relative_out_root(checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make export` passes a relative folder (artifacts/); the artifact must land there, complete."""
    monkeypatch.chdir(tmp_path)
    artifact = run.export(checkpoints["late"], "onnx", size=SIZE, out_root=Path("rel/artifacts"))[0]
    assert artifact.resolve().parent == (tmp_path / "rel" / "artifacts").resolve()
    manifest = read_manifest(artifact)
    assert set(manifest.files) >= {contract.ENCODER, contract.DECODER}


def test_artifact_of_a_model_with_another_click_radius_says_so(tmp_path: Path) -> None:
    """The radius is the model's (ModelConfig.click_radius, e.g. from a RITM file), not the contract's: an
    artifact of a radius-3 model carries 3 in its manifest and graph metadata, the contract hash it carries
    is the one fixed contract, and its decoder draws radius-3 disks."""
    assert "radius" not in json.dumps(contract.describe())
    models = {r: randomize_(create_model("tiny", fusion="late", click_radius=r), seed=3) for r in (3, 5)}
    art = run.export(save_checkpoint(models[3], tmp_path / "r3.pt"), "onnx", size=SIZE, out_root=tmp_path / "out")[0]
    manifest = read_manifest(art)
    assert manifest.model["click_radius"] == 3 and manifest.model_config().click_radius == 3
    assert manifest.contract_hash == contract.contract_hash()
    meta = {p.key: p.value for p in onnx.load(str(manifest.path(contract.DECODER))).metadata_props}
    assert json.loads(meta[contract.META_MODEL_CONFIG])["click_radius"] == 3
    rgb = np.random.default_rng(0).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
    probs = {}
    for key, backend in (("onnx", OrtBackend(art)), (3, TorchBackend(models[3], input_size=SIZE)),
                         (5, TorchBackend(models[5], input_size=SIZE))):
        session = Session(backend)
        session.set_image(rgb)
        session.click(40, 30, True)
        probs[key] = session.click(20, 10, False)
    assert np.abs(probs["onnx"] - probs[3]).max() <= FP32_PROBS  # the graph's disks are the radius-3 model's
    assert np.abs(probs["onnx"] - probs[5]).max() > 1e-3  # and visibly not the default radius's
