"""TensorRT int8 by explicit quantization (calibration/trt.py).

What runs on a CPU machine (no TensorRT, no GPU):
- the Q/DQ ONNX: onnx.checker, check_tensorrt_qdq, symmetric int8, per-channel weights on the output-channel
  axis (Conv 0, ConvTranspose 1), per-tensor activations, float biases; it runs in onnxruntime and its masks
  follow fp32's;
- the artifact: format "trt", precision "int8", trtexec.sh with the int8 lines for 10.x and 11.x, and —
  without TensorRT — published incomplete with MissingRequirement, never a faked engine;
- check_tensorrt_qdq on deliberately corrupted graphs;
- the engine builder's TensorRT API calls for Q/DQ networks, against test_tensorrt.py's API-CALL RECORDER
  (a stand-in that records calls, not a TensorRT substitute: it proves which calls and flags are made,
  nothing about what TensorRT does with them).
What needs TensorRT + an NVIDIA GPU (marked trt + gpu, deselected by default): building real int8 engines
and running them against the Q/DQ ONNX in onnxruntime.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest
import torch
from edgeclick.calibration import trt as ctrt
from edgeclick.calibration.data import CalibrationData, collect_calibration_data
from edgeclick.export import tensorrt as trt_export
from edgeclick.export.formats import MissingRequirement
from edgeclick.export.onnx import META_PRECISION
from edgeclick.manifest import read_manifest
from edgeclick.runtimes import trt as trt_runtime
from edgeclick.runtimes.artifact import open_backend
from edgeclick.runtimes.ort import OrtBackend
from onnx import helper, numpy_helper

from edgeclick import contract

from .helpers import TINY_ONNX_SIZE, randomize_, real_tensorrt_missing
from .test_calibration import _sample
from .test_tensorrt import flag, make_recorder, parse_script, parse_shapes

SIZE = TINY_ONNX_SIZE
GRAPHS = (contract.ENCODER, contract.DECODER)
# Measured on the tiny randomised late model (64x96, 3 calibration images x 4 clicks), on three held-out
# pairs of sessions, every calibration method: mean IoU of (logits > 0) int8 vs fp32 0.984-0.987, worst feed
# 0.982 (onnxruntime 1.32, CPU). The masks cover ~55% of the image, so a mask that ignores the image scores
# ~0.55: the bounds leave room for other onnxruntime / numpy versions, not for a broken quantisation.
MIN_MEAN_IOU = 0.95
MIN_FEED_IOU = 0.9


# -- fixtures ----------------------------------------------------------------------------------------------

def _no_tensorrt(mp: pytest.MonkeyPatch) -> None:
    """No TensorRT and no CUDA GPU, whatever this machine has."""
    mp.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    mp.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tensorrt(monkeypatch)


@pytest.fixture(scope="module")
def setup(tiny_onnx: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny fp32 ONNX artifact, calibration data, and its int8 TensorRT artifact made without TensorRT."""
    art, ckpt = tiny_onnx
    root = tmp_path_factory.mktemp("calib_trt")
    samples = [_sample("a", 1, (60, 90)), _sample("b", 2, (70, 50)), _sample("c", 3, (64, 96))]
    data = collect_calibration_data(ckpt, samples, input_size=SIZE, clicks_per_sample=4, max_decoder_samples=12, seed=0)
    out = root / "artifacts" / "tiny-int8-trt"
    with pytest.MonkeyPatch.context() as mp:
        _no_tensorrt(mp)
        with pytest.raises(MissingRequirement) as info:
            ctrt.quantize_for_tensorrt(art, data, out)
    return {"art": art, "ckpt": ckpt, "data": data, "int8": out, "error": info.value, "root": root}


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


# -- the artifact without TensorRT ------------------------------------------------------------------------

def test_without_tensorrt_publishes_qdq_onnx_and_commands(setup: dict[str, Any]) -> None:
    out, error = setup["int8"], setup["error"]
    message = str(error)
    assert error.artifact == out.resolve()
    assert "`tensorrt` Python package" in message and "CUDA GPU" in message
    assert f"sh {trt_export.TRTEXEC_SCRIPT} 10" in message and str(out.resolve()) in message
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "manifest.json", "trtexec.sh"]
    assert not list(out.glob("*.engine")) and not list(out.glob("*.engine.json"))  # never a faked engine
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind

    manifest = read_manifest(out)  # hashes and contract check out
    assert (manifest.format, manifest.precision) == ("trt", "int8")
    assert manifest.complete is False and manifest.missing == message
    assert set(manifest.files) == {"encoder.onnx", "decoder.onnx", trt_export.TRTEXEC_SCRIPT}
    src = read_manifest(setup["art"])
    assert (manifest.model, manifest.size, manifest.dynamic, manifest.checkpoint) == (src.model, src.size, src.dynamic,
                                                                                      src.checkpoint)
    calib = manifest.options["calibration"]
    assert calib["method"] == "minmax" and calib["symmetric"] is True and calib["source"] == str(src.root)
    assert calib["op_types"] == list(ctrt.QUANTIZED_OP_TYPES) and calib["data"] == setup["data"].meta
    assert calib["extra_options"]["QDQOpTypePerChannelSupportToAxis"] == {"Conv": 0, "ConvTranspose": 1}
    assert manifest.options["strongly_typed"] is True and "opset" not in manifest.options
    assert manifest.metadata["explicit_quantization"] is True
    assert manifest.validation == {"passed": False, "reason": message}
    with pytest.raises(ValueError, match="incomplete trt artifact"):
        open_backend(out)


def test_build_false_publishes_without_raising(setup: dict[str, Any], tmp_path: Path, no_tensorrt: None) -> None:
    out = ctrt.quantize_for_tensorrt(setup["art"], setup["data"], tmp_path / "q", build=False,
                                     trt_options={"strongly_typed": False, "workspace_gb": 0.5})
    manifest = read_manifest(out)
    assert manifest.complete is False and "build=False" in manifest.missing
    assert not list(out.glob("*.engine"))
    blocks = parse_script((out / trt_export.TRTEXEC_SCRIPT).read_text())
    assert all("--int8" in argv and "--stronglyTyped" not in argv for argv in blocks["10"])  # weak typing on 10.x
    assert all(flag(argv, "memPoolSize") == "workspace:512M" for argv in blocks["10"] + blocks["11"])


# -- the Q/DQ graphs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("graph", GRAPHS)
def test_qdq_graphs_are_what_tensorrt_compiles(setup: dict[str, Any], graph: str) -> None:
    model = onnx.load(str(setup["int8"] / f"{graph}.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert ctrt.check_tensorrt_qdq(model) == []
    assert ctrt.onnx_opset(model) >= ctrt.MIN_OPSET
    ops = [n.op_type for n in model.graph.node]
    assert not [op for op in ops if op.startswith("QLinear") or op.endswith("Integer")]
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node if n.op_type in ctrt.QDQ_OPS)
    inits = _initializers(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in producers]
    assert quantized, "no Conv received Q/DQ weights"
    for node in model.graph.node:
        if node.op_type in ctrt.QDQ_OPS:  # symmetric int8 everywhere
            zp = inits[node.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), node.name
            assert np.all(np.isfinite(inits[node.input[1]])) and np.all(inits[node.input[1]] > 0), node.name
    for conv in quantized:
        dq = producers[conv.input[1]]
        q = producers[dq.input[0]]
        assert (dq.op_type, q.op_type) == ("DequantizeLinear", "QuantizeLinear")  # a Q/DQ pair on float weights
        weight = inits[q.input[0]]
        assert weight.dtype == np.float32
        scale = inits[dq.input[1]]
        assert scale.shape == (weight.shape[0],) and _attr(dq, "axis", 1) == 0  # per output channel
        act = producers[conv.input[0]]
        assert act.op_type == "DequantizeLinear" and inits[act.input[1]].ndim == 0  # per-tensor activation
        if len(conv.input) > 2 and conv.input[2]:
            assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # float bias
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[contract.META_CONTRACT_HASH] == contract.contract_hash() and meta[contract.META_GRAPH] == graph
    assert meta[META_PRECISION] == "int8"
    logits_producer = producers[contract.LOGITS] if graph == contract.DECODER else None
    if logits_producer is not None:  # the logits come from a float node
        assert logits_producer.op_type not in ctrt.QDQ_OPS


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _masks(backend: Any, data: CalibrationData) -> list[np.ndarray]:
    """logits > 0 for every decoder feed of `data`, each from the backend's own encoder features."""
    features = [backend.run(contract.ENCODER, feeds) for feeds in data.encoder_feeds()]
    masks = []
    for k in range(len(data)):
        feeds = {**features[int(data.sample_index[k])], contract.CLICKS: data.clicks[k: k + 1],
                 contract.PREV_MASK: data.prev_mask[k: k + 1]}
        masks.append(backend.run(contract.DECODER, feeds)[contract.LOGITS] > 0)
    return masks


def test_int8_masks_follow_fp32(setup: dict[str, Any]) -> None:
    """Held-out click sessions (not the calibration samples), through both graphs of each artifact."""
    held_out = collect_calibration_data(setup["ckpt"], [_sample("d", 11, (64, 96)), _sample("e", 12, (50, 80))],
                                        input_size=SIZE, clicks_per_sample=4, max_decoder_samples=8, seed=5)
    fp32 = OrtBackend(setup["art"])
    specs = trt_runtime.config_graph_specs(read_manifest(setup["int8"]).model_config())
    int8 = OrtBackend.from_files({g: setup["int8"] / f"{g}.onnx" for g in GRAPHS}, specs, SIZE)
    ious = [_iou(a, b) for a, b in zip(_masks(fp32, held_out), _masks(int8, held_out))]
    assert np.mean(ious) > MIN_MEAN_IOU and min(ious) > MIN_FEED_IOU, ious


def test_conv_transpose_weights_per_output_channel(tmp_path: Path, no_tensorrt: None) -> None:
    """The conv adapter's transposed conv (weight Cin x Cout/g x k x k) is quantized on axis 1."""
    from edgeclick.export.run import export

    from edgeclick.model import create_model
    from edgeclick.model.checkpoint import save_checkpoint

    ckpt = save_checkpoint(randomize_(create_model("tiny", fusion="late", adapter="conv"), seed=2), tmp_path / "a.pt")
    # Without the ORT Mobile rewrites, which turn the transposed conv into a conv (export/onnx_rewrites.py).
    art = export(ckpt, "onnx", size=SIZE, out_root=tmp_path / "arts", options={"mobile_rewrites": False})[0]
    data = collect_calibration_data(ckpt, [_sample("a", 1, (60, 90))], input_size=SIZE, clicks_per_sample=2,
                                    max_decoder_samples=2)
    out = ctrt.quantize_for_tensorrt(art, data, tmp_path / "q", build=False)
    model = onnx.load(str(out / f"{contract.DECODER}.onnx"))
    assert ctrt.check_tensorrt_qdq(model) == []
    inits = _initializers(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    transposed = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    assert transposed
    for node in transposed:
        dq = producers[node.input[1]]
        weight = inits[producers[dq.input[0]].input[0]]
        assert dq.op_type == "DequantizeLinear" and _attr(dq, "axis", 1) == 1
        assert inits[dq.input[1]].shape == (weight.shape[1],)


# -- check_tensorrt_qdq on corrupted graphs ----------------------------------------------------------------

def _first(model: onnx.ModelProto, op_type: str, *, weight: bool) -> onnx.NodeProto:
    """The first Q of a weight (weight=True) or of an activation."""
    inits = {i.name for i in model.graph.initializer}
    return next(n for n in model.graph.node if n.op_type == op_type and (n.input[0] in inits) == weight)


def _set_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
            return
    raise KeyError(name)


def _zero_point_3(m: onnx.ModelProto) -> None:
    q = _first(m, "QuantizeLinear", weight=False)
    _set_init(m, q.input[2], np.array(3, dtype=np.int8))


def _scale(value: float) -> Callable[[onnx.ModelProto], None]:
    def corrupt(m: onnx.ModelProto) -> None:
        q = _first(m, "QuantizeLinear", weight=False)
        _set_init(m, q.input[1], np.array(value, dtype=np.float32))
    return corrupt


def _uint8(m: onnx.ModelProto) -> None:
    q = _first(m, "QuantizeLinear", weight=False)
    _set_init(m, q.input[2], np.array(0, dtype=np.uint8))


def _no_zero_point(m: onnx.ModelProto) -> None:
    q = _first(m, "QuantizeLinear", weight=False)
    del q.input[2]  # the ONNX default is a uint8 output


def _axis(value: int) -> Callable[[onnx.ModelProto], None]:
    def corrupt(m: onnx.ModelProto) -> None:
        q = _first(m, "QuantizeLinear", weight=True)
        dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0])
        for node in (q, dq):
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axis", value))
    return corrupt


def _integer_op(m: onnx.ModelProto) -> None:
    m.graph.node.append(helper.make_node("MatMulInteger", ["a", "b"], ["c"], name="mmi"))


def _opset_12(m: onnx.ModelProto) -> None:
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 12


def _contrib(m: onnx.ModelProto) -> None:
    _first(m, "QuantizeLinear", weight=False).domain = "com.microsoft"


@pytest.mark.parametrize("corrupt,expected", [
    (_zero_point_3, "not 0"),
    (_scale(0.0), "<= 0"),
    (_scale(float("nan")), "NaN"),
    (_uint8, "uint8, not int8"),
    (_no_zero_point, "uint8, not int8"),
    (_axis(4), "out of range"),
    (_axis(1), "output-channel axis 0"),  # a Conv weight quantized per input channel
    (_integer_op, "MatMulInteger"),
    (_opset_12, "opset 12 < 13"),
    (_contrib, "contrib op"),
], ids=["zero-point-3", "scale-0", "scale-nan", "uint8-q", "no-zero-point", "axis-4", "conv-axis-1",
        "integer-op", "opset-12", "contrib"])
def test_check_catches_corruption(setup: dict[str, Any], corrupt: Callable[[onnx.ModelProto], None],
                                  expected: str) -> None:
    model = onnx.load(str(setup["int8"] / f"{contract.ENCODER}.onnx"))
    corrupt(model)
    problems = ctrt.check_tensorrt_qdq(model)
    assert any(expected in p for p in problems), problems


def test_check_refuses_a_float_graph(setup: dict[str, Any]) -> None:
    problems = ctrt.check_tensorrt_qdq(onnx.load(str(setup["art"] / f"{contract.DECODER}.onnx")))
    assert problems == ["no QuantizeLinear/DequantizeLinear nodes: TensorRT would build this graph in float, not int8"]


def test_asymmetric_quantization_is_refused_and_nothing_published(setup: dict[str, Any], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, no_tensorrt: None) -> None:
    monkeypatch.setitem(ctrt.TRT_EXTRA_OPTIONS, "ActivationSymmetric", False)  # onnxruntime then writes zero points
    out = tmp_path / "arts" / "asym"
    with pytest.raises(ValueError, match=r"(?s)not one TensorRT compiles as explicit int8 .*not 0; TensorRT quantization is symmetric"):
        ctrt.quantize_for_tensorrt(setup["art"], setup["data"], out)
    assert not out.exists() and list((tmp_path / "arts").iterdir()) == []  # no half-written artifact, no staging


def test_bad_requests(setup: dict[str, Any], tmp_path: Path, no_tensorrt: None) -> None:
    art, data = setup["art"], setup["data"]
    with pytest.raises(ValueError, match="method"):
        ctrt.quantize_for_tensorrt(art, data, tmp_path / "a", method="nope")
    with pytest.raises(ValueError, match="opset"):
        ctrt.quantize_for_tensorrt(art, data, tmp_path / "b", trt_options={"opset": 13})
    with pytest.raises(ValueError, match=r"format 'trt' does not accept option\(s\) \['int8'\]"):
        ctrt.quantize_for_tensorrt(art, data, tmp_path / "c", trt_options={"int8": True})
    with pytest.raises(ValueError, match="keep_float"):
        ctrt.quantize_for_tensorrt(art, data, tmp_path / "d", keep_float=["no-such-node"])
    with pytest.raises(ValueError, match="fp32 ONNX artifact"):
        ctrt.quantize_for_tensorrt(setup["int8"], data, tmp_path / "e")
    with pytest.raises(FileExistsError):
        ctrt.quantize_for_tensorrt(art, data, setup["int8"])
    assert not list(tmp_path.iterdir())


# -- trtexec lines and the builder (API-CALL RECORDER) ----------------------------------------------------

def test_trtexec_int8_lines(setup: dict[str, Any]) -> None:
    blocks = parse_script((setup["int8"] / trt_export.TRTEXEC_SCRIPT).read_text())
    assert set(blocks) == {"10", "11"}
    specs = trt_runtime.config_graph_specs(read_manifest(setup["int8"]).model_config())
    for commands in blocks.values():
        assert [flag(c, "onnx") for c in commands] == ["encoder.onnx", "decoder.onnx"]
        assert [flag(c, "saveEngine") for c in commands] == ["encoder.engine", "decoder.engine"]
        for argv, graph in zip(commands, GRAPHS):
            # strongly typed on both (the default): the Q/DQ nodes decide, no precision flag
            assert "--stronglyTyped" in argv and "--int8" not in argv and "--fp16" not in argv
            assert not [a for a in argv if a.startswith("--calib")]
            for which, key in enumerate(("minShapes", "optShapes", "maxShapes")):
                expected = {t.name: contract.tensorrt_profile(t, SIZE, False)[which] for t in specs[graph].inputs}
                assert parse_shapes(flag(argv, key)) == expected


@pytest.mark.parametrize("major,strong,expected", [
    (10, True, (True, True, False, False, ["--stronglyTyped"])),
    (10, False, (False, False, False, True, ["--int8"])),
    (11, True, (True, False, False, False, ["--stronglyTyped"])),
    (11, False, (True, False, False, False, ["--stronglyTyped"])),  # 11.x has no weak typing
])
def test_precision_mode_for_qdq(major: int, strong: bool, expected: tuple) -> None:
    mode = trt_export.precision_mode(major, "int8", strong, qdq=True)
    assert (mode.strongly_typed, mode.network_flag_strongly_typed, mode.fp16_flag, mode.int8_flag,
            mode.trtexec_flags()) == expected
    with pytest.raises(ValueError, match="Q/DQ"):  # without qdq=True int8 stays refused
        trt_export.precision_mode(major, "int8", strong)


def _recorder(version: str) -> Any:
    rec = make_recorder(version)
    if version.startswith("10."):
        rec.BuilderFlag.INT8 = 1  # TensorRT 10's BuilderFlag.INT8; absent in 11, so touching it there fails
    return rec


def _stub_open(root: Path, device: int) -> dict[str, Any]:
    return {"opened_with": "recorder (no TensorRT runtime)"}


def test_quantize_builds_engines_with_the_export_builder(setup: dict[str, Any], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path with TensorRT "present" (the recorder): engines + sidecars + a complete manifest."""
    rec = _recorder("10.7.0")
    monkeypatch.setattr(trt_runtime, "probe_tensorrt", lambda device=0: (rec, []))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no CUDA context to enter
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: "Recorder GPU")
    monkeypatch.setattr(ctrt, "_open_engines", _stub_open)  # TensorRTBackend needs a real runtime
    out = ctrt.quantize_for_tensorrt(setup["art"], setup["data"], tmp_path / "q", trt_options={"workspace_gb": 0.25})

    manifest = read_manifest(out)
    assert manifest.complete is True and manifest.missing is None
    assert (manifest.format, manifest.precision) == ("trt", "int8")
    assert manifest.tools["tensorrt"] == "10.7.0" and manifest.validation == _stub_open(out, 0)
    assert {contract.ENCODER, contract.DECODER, "encoder.engine.json", "decoder.engine.json",
            trt_export.TIMING_CACHE, "encoder.onnx", "decoder.onnx", trt_export.TRTEXEC_SCRIPT} == set(manifest.files)
    assert [c[1] for c in rec.calls if c[0] == "parse_from_file"] == ["encoder.onnx", "decoder.onnx"]
    assert [c[1] for c in rec.calls if c[0] == "create_network"] == [1 << 1, 1 << 1]  # STRONGLY_TYPED on 10.x
    assert not [c for c in rec.calls if c[0] == "set_flag"]  # explicit quantization: no precision flag
    assert rec.calls.count(("set_memory_pool_limit", rec.MemoryPoolType.WORKSPACE, 256 << 20)) == 2
    metas = trt_runtime.read_artifact_metadata(out)  # what TensorRTBackend reads first
    for graph, meta in metas.items():
        assert meta[trt_runtime.SIDECAR_PRECISION] == "int8" and meta[contract.META_GRAPH] == graph
        assert meta[contract.META_MODEL_CONFIG] == manifest.model
        assert meta[trt_runtime.SIDECAR_BUILDER]["flags"] == [] and meta[trt_runtime.SIDECAR_BUILDER]["strongly_typed"]
    assert "Default here: 10." in (out / trt_export.TRTEXEC_SCRIPT).read_text()


@pytest.mark.parametrize("version,strong,network_flags,set_int8", [
    ("10.7.0", False, 0, True),
    ("11.0.0", True, 0, False),
    ("11.0.0", False, 0, False),
])
def test_builder_flags_for_qdq_networks(setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       version: str, strong: bool, network_flags: int, set_int8: bool) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: "Recorder GPU")
    work = tmp_path / "w"
    work.mkdir()
    onnx_paths = {g: Path(shutil.copy2(setup["int8"] / f"{g}.onnx", work)) for g in GRAPHS}
    manifest = read_manifest(setup["int8"])
    specs = trt_runtime.config_graph_specs(manifest.model_config())
    plans = trt_export.engine_plans(trt_export.graph_profiles(specs, SIZE, False), onnx_paths, work)
    opts = trt_export.TensorRTOptions(strongly_typed=strong)
    rec = _recorder(version)
    trt_export.build_engine_files(rec, plans, opts, specs=specs, model_config=manifest.model, size=SIZE, dynamic=False,
                                  precision="int8", cache_file=opts.cache_file(work), qdq=True)
    assert [c[1] for c in rec.calls if c[0] == "create_network"] == [network_flags] * 2
    assert [c for c in rec.calls if c[0] == "set_flag"] == ([("set_flag", 1)] * 2 if set_int8 else [])
    assert rec.calls.count(("clear_flag", rec.BuilderFlag.TF32)) == 2
    for plan in plans.values():
        meta = json.loads(trt_runtime.sidecar_path(plan.engine).read_text())
        assert meta[trt_runtime.SIDECAR_BUILDER]["flags"] == (["INT8"] if set_int8 else [])
        assert meta[trt_runtime.SIDECAR_PRECISION] == "int8"


# -- real TensorRT on an NVIDIA GPU ------------------------------------------------------------------------

@pytest.mark.parametrize("strong", [True, False])
@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(bool(real_tensorrt_missing()), reason=real_tensorrt_missing() or "runs")
def test_real_int8_engines_follow_the_qdq_onnx(setup: dict[str, Any], tmp_path: Path, strong: bool) -> None:
    import tensorrt

    if not strong and trt_runtime.tensorrt_major(tensorrt.__version__) >= 11:
        pytest.skip("TensorRT 11 has no weak typing")
    out = ctrt.quantize_for_tensorrt(setup["art"], setup["data"], tmp_path / "q", trt_options={"strongly_typed": strong})
    manifest = read_manifest(out)
    assert manifest.complete and manifest.validation["io_checked"]
    backend = open_backend(out)
    assert isinstance(backend, trt_runtime.TensorRTBackend) and backend.precision == "int8"
    specs = trt_runtime.config_graph_specs(manifest.model_config())
    onnx_int8 = OrtBackend.from_files({g: out / f"{g}.onnx" for g in GRAPHS}, specs, SIZE)
    ious = [_iou(a, b) for a, b in zip(_masks(backend, setup["data"]), _masks(onnx_int8, setup["data"]))]
    assert np.mean(ious) > 0.95, ious  # same Q/DQ graph; TensorRT may reorder float math and fuse differently
