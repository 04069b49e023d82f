"""CoreML compressed variants (calibration/coreml.py) and the Linux numeric path for them: the MIL reference
evaluator's constexpr ops (runtimes/mil_reference.py) and MilReferenceBackend (runtimes/coreml_reference.py).

One tiny late-fusion fp16 export (64×96, ~20 s of coremltools) is compressed at most once per scheme, when
a test first asks for it (w8 ~12 s, palette4 ~19 s, palette6 ~25 s on a 2-core CPU: coremltools re-runs
its pass pipeline on every compressed program, and its k-means is scikit-learn's). palette6 (the same code
path as palette4 with 64 LUT entries; its 6-bit packing is checked by the builder test below) and the
all-weights w8 variant are `slow`. W8A8 needs Core ML prediction: here it must raise
CoreMLCalibrationUnavailable; on a Mac (marker `macos`) it runs for real.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
pytest.importorskip("sklearn")  # palettize_weights' k-means

from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import types
from coremltools.optimize import _utils as optimize_utils
from edgeclick.calibration import coreml as cc
from edgeclick.calibration.data import CalibrationData
from edgeclick.export import run
from edgeclick.export.validation import reference_feeds
from edgeclick.manifest import read_manifest
from edgeclick.runtimes.coreml import package_path, read_artifact
from edgeclick.runtimes.coreml_reference import MilReferenceBackend
from edgeclick.runtimes.mil_reference import OPS, load_program, materialize_constexpr
from edgeclick.runtimes.session import Session

from edgeclick import contract
from edgeclick.model import create_model
from edgeclick.model.checkpoint import save_checkpoint

from .helpers import randomize_

SIZE = (64, 96)
LINUX_SCHEMES = ("w8", "palette6", "palette4")
SCHEME_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s == "palette6" else s for s in LINUX_SCHEMES]
macos = pytest.mark.skipif(sys.platform != "darwin", reason="CoreML prediction needs macOS (Core ML framework)")

# Measured on this fixture (tiny late model, seed 3, 64×96, default weight_threshold 2048). Weight-file
# bytes are set by tensor shapes, not values, so they are exact; only the encoder has weights over the
# threshold (44 of its conv weights with the 3×3 feature projection, ~90% of its elements), the late decoder's 7 (≤1024 elements)
# stay fp16. Ratios: w8 0.578, palette6 0.464, palette4 0.352 (the 102 small fp16 weights, per-channel
# scales / LUTs and each tensor's 64-byte alignment keep them above 0.5 / 0.375 / 0.25).
WEIGHT_RATIO_MAX = {"w8": 0.59, "palette6": 0.475, "palette4": 0.36}
# Mask agreement (logits > 0) with the fp16 source, both through MilReferenceBackend, over three Session
# clicks on reference_feeds' image (~2750 of 6144 pixels foreground; the random-weight model's mask
# hardly moves with the clicks, so this measures the encoder's features more than click handling).
# Measured minimum per click: w8 0.9982, palette6 0.9898, palette4 0.9766; with every weight compressed
# (weight_threshold=0, the decoder's 7 convs too) w8 drops to 0.994. With the global late head (contract
# 1.2, its 3×3 feature projection compressed too) palette4 measured 0.9435: its 16-entry palettes on the
# projection move the region attention of every pixel at once, so its bound follows the measurement.
MIN_MASK_IOU = {"w8": 0.995, "palette6": 0.985, "palette4": 0.94}
CLICKS = ((0.45, 0.5, True), (0.38, 0.62, True), (0.81, 0.3, False))  # (x / W, y / H, positive)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The fp16 CoreML export of a randomised tiny late-fusion model (manifest included) and its checkpoint."""
    root = tmp_path_factory.mktemp("coreml_calib")
    model = randomize_(create_model("tiny", fusion="late"), seed=3)
    ckpt = save_checkpoint(model, root / "tiny.pt")
    art = run.export(ckpt, "coreml", size=SIZE, precision="fp16", out_root=root / "artifacts",
                     options={"numeric_check": False})[0]
    return {"root": root, "ckpt": ckpt, "art": art}


class Compressed:
    """scheme → compressed artifact at the default threshold, compressed on first use."""

    def __init__(self, source: Path, root: Path) -> None:
        self.source, self.root = source, root
        self._done: dict[str, Path] = {}

    def __getitem__(self, scheme: str) -> Path:
        if scheme not in self._done:
            self._done[scheme] = cc.compress_coreml_artifact(self.source, self.root / f"tiny-{scheme}-coreml", scheme)
        return self._done[scheme]


@pytest.fixture(scope="module")
def compressed(source: dict) -> Compressed:
    return Compressed(source["art"], source["root"] / "artifacts")


@pytest.fixture(scope="module")
def fp16_masks(source: dict) -> list[np.ndarray]:
    """The fp16 source's Session masks (see _session_masks) through MilReferenceBackend."""
    return _session_masks(MilReferenceBackend(source["art"]), reference_feeds(SIZE))


def _program_ops(package: Path) -> dict[str, int]:
    ops: dict[str, int] = {}
    for op in load_program(package).functions["main"].operations:
        ops[op.op_type] = ops.get(op.op_type, 0) + 1
    return ops


def _session_masks(backend: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Masks (logits > 0) after each of CLICKS on reference_feeds' image, prev mask fed back."""
    session = Session(backend)  # type: ignore[arg-type]
    session.set_image(feeds[contract.IMAGE][0])
    h, w = SIZE
    return [session.click(fx * (w - 1), fy * (h - 1), pos) > 0.5 for fx, fy, pos in CLICKS]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


# -- the Linux schemes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", SCHEME_PARAMS)
def test_scheme_writes_a_valid_smaller_artifact(scheme: str, source: dict, compressed: Compressed) -> None:
    src, art = read_manifest(source["art"]), read_manifest(compressed[scheme])
    assert art.format == "coreml" and art.precision == src.precision == "fp16" and art.size == src.size
    read_artifact(art.root)  # the contract check a runtime makes
    record = art.options["calibration"]
    want = cc.SCHEMES[scheme]
    assert (record["scheme"], record["nbits"], record["mode"]) == (scheme, want.nbits, want.mode)
    assert record["weight_threshold"] == cc.DEFAULT_WEIGHT_THRESHOLD and record["source"] == str(src.root)
    for graph in (contract.ENCODER, contract.DECODER):
        sizes = record["sizes"][graph]
        assert sizes["package_bytes_before"] == src.files[graph].bytes and sizes["package_bytes_after"] == art.files[graph].bytes
        weights = art.validation["weights"][graph]
        assert weights["compressed"] == weights["candidates"] and weights["unmatched"] == 0  # all over the threshold
    enc, dec = record["sizes"][contract.ENCODER], record["sizes"][contract.DECODER]
    assert enc["weight_ratio"] <= WEIGHT_RATIO_MAX[scheme], enc
    assert dec["weight_bytes_after"] == dec["weight_bytes_before"]  # late decoder: all weights ≤ 2048 elements
    enc_ops = _program_ops(package_path(art.root, contract.ENCODER))
    found = {op: n for op, n in enc_ops.items() if op.startswith("constexpr_")}
    assert found == {want.constexpr_ops[0]: art.validation["weights"][contract.ENCODER]["compressed"]}  # iOS 17 form
    assert art.validation["weights"][contract.ENCODER]["compressed"] == 44  # the trunk + the 3×3 feature projection
    assert not any(op.startswith("constexpr_") for op in _program_ops(package_path(art.root, contract.DECODER)))


def test_fewer_bits_make_smaller_weights_and_larger_errors(compressed: Compressed) -> None:
    facts = {s: read_manifest(compressed[s]) for s in ("w8", "palette4")}
    ratio = {s: m.options["calibration"]["sizes"][contract.ENCODER]["weight_ratio"] for s, m in facts.items()}
    error = {s: m.validation["weights"][contract.ENCODER]["rel_rmse"] for s, m in facts.items()}
    assert ratio["palette4"] < ratio["w8"] < 1.0
    # measured relative RMS weight error: w8 0.0065, palette6 0.027, palette4 0.112
    assert 0 < error["w8"] < 0.01 and 0.05 < error["palette4"] < 0.15, error


@pytest.mark.parametrize("scheme", SCHEME_PARAMS)
def test_metadata_survives(scheme: str, source: dict, compressed: Compressed) -> None:
    for graph in (contract.ENCODER, contract.DECODER):
        before = ct.models.MLModel(str(package_path(source["art"], graph)), skip_model_load=True).user_defined_metadata
        after = ct.models.MLModel(str(package_path(compressed[scheme], graph)), skip_model_load=True).user_defined_metadata
        for key in (contract.META_CONTRACT_VERSION, contract.META_CONTRACT_HASH, contract.META_MODEL_CONFIG, contract.META_GRAPH):
            assert after[key] == before[key], (graph, key)
        record = json.loads(after[cc.META_COMPRESSION])
        assert record["scheme"] == scheme and record["weight_threshold"] == cc.DEFAULT_WEIGHT_THRESHOLD


def test_restore_metadata_puts_lost_keys_back(source: dict) -> None:
    model = ct.models.MLModel(str(package_path(source["art"], contract.DECODER)), skip_model_load=True)
    meta = dict(model.user_defined_metadata)
    del model.user_defined_metadata[contract.META_CONTRACT_HASH]
    model.user_defined_metadata[contract.META_GRAPH] = "wrong"
    assert sorted(cc.restore_metadata(model, meta)) == sorted([contract.META_CONTRACT_HASH, contract.META_GRAPH])
    assert dict(model.user_defined_metadata) == meta


@pytest.mark.parametrize("scheme", SCHEME_PARAMS)
def test_constexpr_decompression_is_coremltools_exactly(scheme: str, compressed: Compressed) -> None:
    """The evaluator's weights equal coremltools' own decompression of every compressed weight, bit for bit."""
    function = load_program(package_path(compressed[scheme], contract.ENCODER)).functions["main"]
    constants = materialize_constexpr(function)
    ops = [op for op in function.operations if op.op_type.startswith("constexpr_")]
    assert len(ops) == 44  # the trunk + the 3×3 feature projection
    for op in ops:
        np.testing.assert_array_equal(constants[op.outputs[0].name].numpy(), op.materialized_val_inference().astype(np.float32))


@pytest.mark.parametrize("scheme", SCHEME_PARAMS)
def test_reference_backend_masks_follow_fp16(scheme: str, compressed: Compressed, fp16_masks: list[np.ndarray]) -> None:
    masks = _session_masks(MilReferenceBackend(compressed[scheme]), reference_feeds(SIZE))
    ious = [_iou(a, b) for a, b in zip(fp16_masks, masks)]
    assert all(m.any() and not m.all() for m in fp16_masks)  # masks with something to disagree on
    assert min(ious) >= MIN_MASK_IOU[scheme], ious


@pytest.mark.slow
def test_every_weight_compressed_keeps_the_click_arithmetic(source: dict, fp16_masks: list[np.ndarray], tmp_path: Path) -> None:
    """weight_threshold=0: the late decoder's 7 convs are compressed too, its fp32 click constants are not."""
    art = read_manifest(cc.compress_coreml_artifact(source["art"], tmp_path / "w8-all", "w8", weight_threshold=0))
    assert art.validation["weights"][contract.DECODER]["compressed"] == 7
    before, after = (load_program(package_path(root, contract.DECODER)).functions["main"] for root in (source["art"], art.root))
    fp32_consts = {op.name: op.outputs[0].val for op in before.operations
                   if op.op_type == "const" and str(op.outputs[0].dtype.__name__) == "fp32"}
    kept = {op.name: op.outputs[0].val for op in after.operations if op.op_type == "const"}
    assert fp32_consts and all(np.array_equal(kept[name], val) for name, val in fp32_consts.items())
    masks = _session_masks(MilReferenceBackend(art.root), reference_feeds(SIZE))
    assert min(_iou(a, b) for a, b in zip(fp16_masks, masks)) >= 0.99  # measured 0.994


def test_reference_backend_follows_the_contract(source: dict) -> None:
    backend = MilReferenceBackend(source["art"])
    assert backend.name == "mil-reference"  # reports must not mistake it for Core ML
    assert backend.input_size == SIZE and backend.contract_hash == contract.contract_hash()
    feeds = reference_feeds(SIZE)
    features = backend.run(contract.ENCODER, {contract.IMAGE: feeds[contract.IMAGE]})
    assert list(features) == backend.graphs[contract.ENCODER].output_names()
    logits = backend.run(contract.DECODER, {**features, contract.CLICKS: feeds[contract.CLICKS],
                                            contract.PREV_MASK: feeds[contract.PREV_MASK]})[contract.LOGITS]
    assert logits.shape == (1, 1, *SIZE) and logits.dtype == np.float32 and np.isfinite(logits).all()
    with pytest.raises(ValueError, match="contract says"):
        backend.run(contract.ENCODER, {contract.IMAGE: feeds[contract.IMAGE].astype(np.float32)})


# -- refusals and failures -------------------------------------------------------------------------------------

def test_bad_arguments_are_refused(source: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"unknown CoreML compression scheme 'int4'.*w8.*palette6"):
        cc.compress_coreml_artifact(source["art"], out, "int4")
    with pytest.raises(ValueError, match="takes no calibration data"):
        cc.compress_coreml_artifact(source["art"], out, "w8", data=_fake_data(SIZE))
    with pytest.raises(ValueError, match="weight_threshold must be an int >= 0"):
        cc.compress_coreml_artifact(source["art"], out, "w8", weight_threshold=-1)
    with pytest.raises(ValueError, match="nothing would be compressed; lower weight_threshold"):
        cc.compress_coreml_artifact(source["art"], out, "w8", weight_threshold=10**9)
    assert not out.exists()


def test_non_coreml_and_compressed_sources_are_refused(source: dict, compressed: Compressed, tmp_path: Path) -> None:
    fake = tmp_path / "fake-onnx"
    shutil.copytree(source["art"], fake)
    manifest = json.loads((fake / "manifest.json").read_text())
    manifest["format"] = "onnx"
    (fake / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="a 'onnx' artifact; CoreML compression takes a CoreML artifact"):
        cc.compress_coreml_artifact(fake, tmp_path / "out", "w8")
    with pytest.raises(ValueError, match="already compressed.*compress the uncompressed export"):
        cc.compress_coreml_artifact(compressed["w8"], tmp_path / "out", "palette4")
    assert not (tmp_path / "out").exists()


def test_failed_compression_leaves_nothing(source: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_src = read_manifest(source["art"])

    def half_done(src: Path, dst: Path, scheme: cc.Scheme, threshold: int, *, graph: str, data: object = None) -> None:
        if graph == contract.DECODER:
            raise RuntimeError("injected failure")
        shutil.copytree(src, dst)  # the encoder "compressed" into the staging dir

    monkeypatch.setattr(cc, "compress_package", half_done)
    out = tmp_path / "artifacts" / "tiny-w8-coreml"
    with pytest.raises(RuntimeError, match="injected failure"):
        cc.compress_coreml_artifact(real_src.root, out, "w8")
    assert not out.exists() and list((tmp_path / "artifacts").iterdir()) == []  # staging removed too
    out.mkdir()
    (out / "keep.txt").write_text("previous artifact")
    with pytest.raises(RuntimeError, match="injected failure"):
        cc.compress_coreml_artifact(real_src.root, out, "w8", overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cc.compress_coreml_artifact(real_src.root, out, "w8")


# -- W8A8 --------------------------------------------------------------------------------------------------

def _fake_data(size: tuple[int, int], samples: int = 2) -> CalibrationData:
    """Recorded-feed shapes without a session (for argument checks only)."""
    h, w = size
    return CalibrationData(
        image=np.zeros((samples, h, w, 3), np.uint8), features={contract.FEATURES: np.zeros((samples, 32, h // 4, w // 4), np.float32)},
        clicks=np.full((samples, contract.NUM_CLICKS, 3), contract.LABEL_PADDING, np.float32),
        prev_mask=np.zeros((samples, 1, h, w), np.float32), sample_index=np.arange(samples), click_index=np.ones(samples, np.int64))


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS w8a8 runs (test_w8a8_on_macos)")
def test_w8a8_raises_clearly_off_macos(source: dict, tmp_path: Path) -> None:
    out = tmp_path / "w8a8"
    with pytest.raises(cc.CoreMLCalibrationUnavailable, match=r"needs macOS.*On a Mac.*'w8a8', data=CalibrationData.load"):
        cc.compress_coreml_artifact(source["art"], out, "w8a8", data=_fake_data(SIZE))
    assert issubclass(cc.CoreMLCalibrationUnavailable, RuntimeError) and not out.exists()
    with pytest.raises(ValueError, match="pass data=CalibrationData"):
        cc.compress_coreml_artifact(source["art"], out, "w8a8")
    with pytest.raises(ValueError, match="collect it at the artifact's size"):
        cc.compress_coreml_artifact(source["art"], out, "w8a8", data=_fake_data((32, 32)))


def _check_w8a8_programs(root: Path) -> None:
    """Both graphs quantise activations (quantize / dequantize pairs) and weights, and the decoder's fp32
    click arithmetic stays float: every quantize op reads an fp16 tensor."""
    for graph in (contract.ENCODER, contract.DECODER):
        ops = load_program(package_path(root, graph)).functions["main"].operations
        quantize = [op for op in ops if op.op_type == "quantize"]
        assert quantize and any(op.op_type == "dequantize" for op in ops), graph
        assert all(str(op.inputs["input"].dtype.__name__) == "fp16" for op in quantize), graph
    assert _program_ops(package_path(root, contract.ENCODER)).get("constexpr_affine_dequantize") == 44  # the trunk + the 3×3 feature projection


@pytest.mark.slow
def test_w8a8_code_path_with_stubbed_calibration(source: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The macOS path on Linux with Core ML's part stubbed: the activation ranges (which coremltools gets by
    predicting every sample) are a fixed ±8, so only the wiring is checked — the configs coremltools
    accepts, the click ops left float (without that exclusion coremltools fails: its quantize of the fp32
    click `add` has an fp16 scale), metadata, manifest, and the evaluator running quantize / dequantize."""
    import coremltools.optimize.coreml._post_training_quantization as ptq

    class FixedRanges(dict):
        def __missing__(self, name: str) -> dict[str, float]:
            return {"rmin": -8.0, "rmax": 8.0}

    monkeypatch.setattr(ptq, "_get_activation_calibration_stats", lambda *args, **kwargs: FixedRanges())
    monkeypatch.setattr(cc, "require_coreml_prediction", lambda scheme: None)
    art = read_manifest(cc.compress_coreml_artifact(source["art"], tmp_path / "w8a8", "w8a8", data=_fake_data(SIZE)))
    assert art.precision == "int8" and art.options["calibration"]["activations"]["dtype"] == "int8"
    _check_w8a8_programs(art.root)
    feeds = reference_feeds(SIZE)
    backend = MilReferenceBackend(art.root)
    features = backend.run(contract.ENCODER, {contract.IMAGE: feeds[contract.IMAGE]})
    logits = backend.run(contract.DECODER, {**features, contract.CLICKS: feeds[contract.CLICKS],
                                            contract.PREV_MASK: feeds[contract.PREV_MASK]})[contract.LOGITS]
    assert np.isfinite(logits).all()


@macos
@pytest.mark.macos
def test_w8a8_on_macos(source: dict, tmp_path: Path) -> None:
    """Unverified off macOS: written against coremltools 9's linear_quantize_activations."""
    from edgeclick.calibration.data import collect_calibration_data
    from edgeclick.runtimes.coreml import CoreMLBackend

    from edgeclick.data.sample import Sample

    feeds = reference_feeds(SIZE)
    gt = np.zeros(SIZE, np.int8)
    gt[20:44, 25:60] = 1
    data = collect_calibration_data(source["ckpt"], [Sample("ref", feeds[contract.IMAGE][0], gt)], input_size=SIZE,
                                    clicks_per_sample=3, max_decoder_samples=3)
    art = read_manifest(cc.compress_coreml_artifact(source["art"], tmp_path / "w8a8", "w8a8", data=data))
    assert art.precision == "int8" and art.options["calibration"]["activations"]["dtype"] == "int8"
    _check_w8a8_programs(art.root)
    fp16 = _session_masks(CoreMLBackend(source["art"], compute_units="CPU_ONLY"), feeds)
    w8a8 = _session_masks(CoreMLBackend(art.root, compute_units="CPU_ONLY"), feeds)
    assert min(_iou(a, b) for a, b in zip(fp16, w8a8)) >= 0.9  # a guess, not measured: no Mac here
    # the MIL reference evaluator runs the quantize / dequantize pairs too
    ref = _session_masks(MilReferenceBackend(art.root), feeds)
    assert min(_iou(a, b) for a, b in zip(ref, w8a8)) >= 0.9


# -- the evaluator's ops against coremltools' definitions (no conversion: programs built with mb) ---------------

def _materialized(prog: object) -> list[tuple[np.ndarray, np.ndarray]]:
    """(evaluator, coremltools) values of every constexpr op in a builder program."""
    function = prog.functions["main"]  # type: ignore[attr-defined]
    constants = materialize_constexpr(function)
    pairs = []
    for op in function.operations:
        if op.op_type.startswith("constexpr_"):
            got = constants[op.outputs[0].name].numpy()
            pairs.append((got, np.asarray(op.materialized_val_inference()).astype(got.dtype)))
    assert pairs
    return pairs


def test_ios18_constexpr_forms_match_coremltools() -> None:
    rng = np.random.default_rng(0)
    uint4, uint2, int4 = (types.nptype_from_builtin(types.string_to_builtin(t)) for t in ("uint4", "uint2", "int4"))

    @mb.program(input_specs=[], opset_version=ct.target.iOS18)
    def prog():
        mb.constexpr_blockwise_shift_scale(  # int8, per-block scale and offset (blocks of 3 along axis 1)
            data=rng.integers(-128, 128, (4, 6)).astype(np.int8), scale=rng.uniform(0.01, 0.1, (4, 2)).astype(np.float16),
            offset=rng.integers(-3, 3, (4, 2)).astype(np.int8))
        mb.constexpr_blockwise_shift_scale(  # int4, per-channel scale, no offset
            data=rng.integers(-8, 8, (8, 3, 2, 2)).astype(int4), scale=rng.uniform(0.1, 1, (8, 1, 1, 1)).astype(np.float32))
        mb.constexpr_lut_to_dense(  # 2 LUTs of 16 along axis 0
            indices=rng.integers(0, 16, (6, 4)).astype(uint4), lut=rng.normal(size=(2, 1, 16, 1)).astype(np.float16))
        return mb.constexpr_lut_to_dense(  # vector LUT: V=3 along axis 1, one LUT per half of axis 1
            indices=rng.integers(0, 4, (2, 4, 2)).astype(uint2), lut=rng.normal(size=(1, 2, 1, 4, 3)).astype(np.float16),
            vector_axis=1)

    for got, want in _materialized(prog):
        np.testing.assert_array_equal(got, want)


def test_ios16_constexpr_forms_match_coremltools() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 64, 35).astype(np.uint8)

    @mb.program(input_specs=[], opset_version=ct.target.iOS16)
    def prog():
        mb.constexpr_lut_to_dense(  # 6-bit indices packed LSB first, 35 values → 27 bytes
            indices=optimize_utils.pack_elements_into_bits(values, 6), lut=rng.normal(size=64).astype(np.float16),
            shape=np.array([5, 7], np.uint32))
        mb.constexpr_affine_dequantize(  # uint8 with per-axis zero point along axis 1
            quantized_data=rng.integers(0, 256, (3, 4, 2)).astype(np.uint8), zero_point=rng.integers(100, 150, 4).astype(np.uint8),
            scale=rng.uniform(0.01, 0.1, 4).astype(np.float16), axis=1)
        return mb.constexpr_cast(source_val=rng.normal(size=(2, 3)).astype(np.float16), output_dtype="fp32")

    for got, want in _materialized(prog):
        np.testing.assert_array_equal(got, want)


def test_activation_quantize_ops_match_coremltools() -> None:
    """quantize / dequantize (what w8a8 inserts) against coremltools' value-inference formulas."""
    import torch

    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 4, 3, 5)).astype(np.float32) * 3
    scale, zero_point = rng.uniform(0.01, 0.05, 4).astype(np.float32), rng.integers(-5, 5, 4).astype(np.int8)
    shaped = (optimize_utils.promote_rank_to_same_as_data(scale, x, 1), optimize_utils.promote_rank_to_same_as_data(zero_point, x, 1))
    want_q = optimize_utils.quantize_by_scale_and_zp(x, shaped[0], shaped[1], "int8")
    args = {"input": torch.from_numpy(x), "scale": torch.from_numpy(scale), "zero_point": torch.from_numpy(zero_point.astype(np.int64)),
            "axis": torch.tensor(1), "output_dtype": "int8"}
    got_q = OPS["quantize"](args)
    np.testing.assert_array_equal(got_q.numpy().astype(np.int8), want_q)
    want_dq = optimize_utils.dequantize_by_scale_and_zp(want_q, shaped[0], shaped[1])
    got_dq = OPS["dequantize"]({**args, "input": got_q})
    np.testing.assert_allclose(got_dq.numpy(), want_dq, rtol=1e-6)
