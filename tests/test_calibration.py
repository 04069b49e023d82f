"""int8 calibration: recorded RITM-session feeds, QDQ ONNX artifacts that onnxruntime runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from edgeclick.calibration.data import CalibrationData, collect_calibration_data
from edgeclick.calibration.ort import quantize_onnx_artifact
from edgeclick.export import run
from edgeclick.export.onnx import click_only_nodes
from edgeclick.runtimes.artifact import open_backend
from edgeclick.runtimes.ort import OrtBackend
from edgeclick.runtimes.session import Session
from edgeclick.runtimes.torch_ref import TorchBackend
from onnx import numpy_helper

from edgeclick import contract
from edgeclick.data.sample import Sample
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint

from .helpers import randomize_

SIZE = (64, 96)
CLICKS = 6


def _sample(name: str, seed: int, shape: tuple[int, int]) -> Sample:
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7), min(h, w) * rng.uniform(0.2, 0.35)
    gt = (((yy - cy) / r) ** 2 + ((xx - cx) / (1.3 * r)) ** 2 <= 1).astype(np.int8)
    image = rng.integers(0, 80, size=(h, w, 3), dtype=np.uint8)
    image[gt == 1] = np.clip(image[gt == 1].astype(int) + rng.integers(100, 170, size=3), 0, 255).astype(np.uint8)
    return Sample(name, image, gt)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("calib")
    model = randomize_(create_model("tiny", fusion="late"), seed=3)
    ckpt = save_checkpoint(model, root / "tiny.pt")
    art = run.export(ckpt, "onnx", size=SIZE, out_root=root / "artifacts")[0]
    samples = [_sample("a", 1, (60, 90)), _sample("b", 2, (70, 50)), _sample("c", 3, (64, 96))]
    data = collect_calibration_data(ckpt, samples, input_size=SIZE, clicks_per_sample=CLICKS, max_decoder_samples=12, seed=0)
    q = quantize_onnx_artifact(art, data, root / "artifacts" / "tiny-int8-onnx")
    return {"root": root, "ckpt": ckpt, "art": art, "samples": samples, "data": data, "int8": q}


def test_data_deterministic_per_seed(setup: dict, tmp_path: Path) -> None:
    data: CalibrationData = setup["data"]
    again = collect_calibration_data(setup["ckpt"], setup["samples"], input_size=SIZE, clicks_per_sample=CLICKS,
                                     max_decoder_samples=12, seed=0)
    other = collect_calibration_data(setup["ckpt"], setup["samples"], input_size=SIZE, clicks_per_sample=CLICKS,
                                     max_decoder_samples=12, seed=1)
    for a, b in ((data.clicks, again.clicks), (data.prev_mask, again.prev_mask), (data.image, again.image)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(data.sample_index * 100 + data.click_index, other.sample_index * 100 + other.click_index)
    # the cache round-trips exactly
    loaded = CalibrationData.load(data.save(tmp_path / "c.npz"))
    np.testing.assert_array_equal(loaded.prev_mask, data.prev_mask)
    np.testing.assert_array_equal(loaded.image, data.image)
    assert loaded.features.keys() == data.features.keys() and loaded.meta == data.meta


def test_feeds_are_valid_click_sessions(setup: dict) -> None:
    data: CalibrationData = setup["data"]
    assert len(data) == 12 and data.meta["decoder_feeds_recorded"] == 3 * CLICKS
    assert data.image.shape == (3, *SIZE, 3) and data.image.dtype == np.uint8
    assert list(data.features) == [contract.FEATURES]
    h, w = SIZE
    for k, feeds in enumerate(data.decoder_feeds()):
        rows = feeds[contract.CLICKS][0]
        n = int(data.click_index[k])
        assert 1 <= n <= CLICKS
        assert set(np.unique(rows[:, 2])) <= {contract.LABEL_POSITIVE, contract.LABEL_NEGATIVE, contract.LABEL_PADDING}
        used = rows[rows[:, 2] != contract.LABEL_PADDING]
        assert len(used) == n and (rows[n:, 2] == contract.LABEL_PADDING).all()
        assert (used[:, 0] >= 0).all() and (used[:, 0] <= w - 1).all() and (used[:, 1] >= 0).all() and (used[:, 1] <= h - 1).all()
        prev = feeds[contract.PREV_MASK]
        assert prev.shape == (1, 1, *SIZE) and prev.min() >= 0 and prev.max() <= 1
        if n == 1:
            assert not prev.any()
    # all clicks were recorded before subsampling: with every feed kept, clicks 1..N per sample
    full = collect_calibration_data(setup["ckpt"], setup["samples"][:1], input_size=SIZE, clicks_per_sample=CLICKS,
                                    max_decoder_samples=100)
    assert full.click_index.tolist() == list(range(1, CLICKS + 1))
    assert not full.prev_mask[0].any() and full.prev_mask[1:].any()


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def test_qdq_artifact_structure(setup: dict) -> None:
    q = setup["int8"]
    backend = open_backend(q)
    assert isinstance(backend, OrtBackend) and backend.manifest.precision == "int8"
    for graph in (contract.ENCODER, contract.DECODER):
        model = onnx.load(str(backend.manifest.path(graph)))
        onnx.checker.check_model(model, full_check=True)
        ops = [n.op_type for n in model.graph.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, graph
        inits = {i.name for i in model.graph.initializer}
        weights = 0
        for node in model.graph.node:
            if node.op_type == "QuantizeLinear":  # activations: asymmetric uint8 (onnxruntime CPU's fast path)
                zp = _initializer(model, node.input[2])
                assert zp is not None and zp.dtype == np.uint8, node.name
            if node.op_type == "DequantizeLinear" and node.input[0] in inits and _initializer(model, node.input[0]).ndim >= 2:
                zp = _initializer(model, node.input[2])  # weights: symmetric int8 (biases are int32)
                assert zp is not None and zp.dtype == np.int8 and not zp.any(), node.name
                weights += 1
        assert weights > 0, graph
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta[contract.META_CONTRACT_HASH] == contract.contract_hash() and meta[contract.META_GRAPH] == graph


def test_excluded_nodes_stay_float(setup: dict) -> None:
    manifest = open_backend(setup["int8"]).manifest
    kept = manifest.options["calibration"]["keep_float"][contract.DECODER]
    model = onnx.load(str(manifest.path(contract.DECODER)))
    inits = {i.name for i in model.graph.initializer}
    produced_by = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    qdq = ("QuantizeLinear", "DequantizeLinear")
    raster = [n for n in click_only_nodes(model.graph) if by_name[n].op_type not in qdq]
    assert raster and set(raster) <= set(kept)  # the whole rasteriser is unquantised
    for n in click_only_nodes(model.graph):  # Q/DQ only where the disk maps enter the quantised network
        if by_name[n].op_type == "QuantizeLinear":
            assert produced_by[by_name[n].input[0]].name in kept
    for name in kept:  # kept nodes take no int8 weights
        for i in by_name[name].input:
            src = produced_by.get(i)
            assert src is None or src.op_type != "DequantizeLinear" or src.input[0] not in inits, (name, i)
    assert produced_by[contract.LOGITS].name in kept  # the logits come from a float node


def test_int8_masks_follow_fp32(setup: dict) -> None:
    torch_session = Session(TorchBackend.from_checkpoint(setup["ckpt"], SIZE))
    int8_session = Session(OrtBackend(setup["int8"]))
    ious = []
    for sample in setup["samples"]:
        torch_session.set_image(sample.image)
        int8_session.set_image(sample.image)
        for click in [(sample.gt.shape[1] // 2, sample.gt.shape[0] // 2, True), (2, 2, False)]:
            a = torch_session.click(*click) > contract.PROB_THRESHOLD
            b = int8_session.click(*click) > contract.PROB_THRESHOLD
            union = (a | b).sum()
            ious.append(1.0 if union == 0 else (a & b).sum() / union)
    assert np.mean(ious) > 0.5, ious


def test_bad_requests(setup: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="method"):
        quantize_onnx_artifact(setup["art"], setup["data"], tmp_path / "x", method="nope")
    with pytest.raises(ValueError, match="keep_float"):
        quantize_onnx_artifact(setup["art"], setup["data"], tmp_path / "y", keep_float=["no-such-node"])
    with pytest.raises(FileExistsError):
        quantize_onnx_artifact(setup["art"], setup["data"], setup["int8"])


def test_symmetric_int8_activations_on_request(setup: dict, tmp_path: Path) -> None:
    q = quantize_onnx_artifact(setup["art"], setup["data"], tmp_path / "s8", graphs=(contract.DECODER,), activations="int8")
    manifest = open_backend(q).manifest
    assert manifest.options["calibration"]["activations"] == "QInt8 symmetric"
    model = onnx.load(str(manifest.path(contract.DECODER)))
    zps = [_initializer(model, n.input[2]) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zps and all(zp is not None and zp.dtype == np.int8 and not zp.any() for zp in zps)
    with pytest.raises(ValueError, match="activations"):
        quantize_onnx_artifact(setup["art"], setup["data"], tmp_path / "x", activations="int4")
