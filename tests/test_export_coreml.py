"""CoreML export: conversion of both graphs, spec checks against the contract, metadata, the contract check
of CoreMLBackend, the Linux numeric check (MIL program evaluated with torch kernels), and on macOS real
prediction vs torch.

One fast conversion (tiny, late fusion, 64×96, fp16) is shared by most tests; the other layouts convert in
the slow tests (each conversion of a tiny HRNet takes ~20 s of coremltools graph passes on a CPU).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip("coremltools")

from edgeclick.export import coreml as cm
from edgeclick.export.coreml_checks import TARGETS, check_package, compute_precision
from edgeclick.export.formats import ExportRequest, ExportResult, ExportValidationError
from edgeclick.runtimes.backend import ContractMismatch
from edgeclick.runtimes.mil_reference import MILReference, load_program
from edgeclick.runtimes.coreml import (
    CoreMLBackend,
    package_path,
    read_artifact,
    read_package,
)

from edgeclick import contract
from edgeclick.model import create_model
from edgeclick.model.base import ClickModel
from edgeclick.model.split import Encoder, model_graph_specs

from .helpers import randomize_

SIZE = (64, 96)
macos = pytest.mark.skipif(sys.platform != "darwin", reason="CoreML prediction needs macOS (Core ML framework)")


def tiny(fusion: str, adapter: str | None = None) -> ClickModel:
    return randomize_(create_model("tiny", fusion=fusion, adapter=adapter))


def export(model: ClickModel, work_dir: Path, size: tuple[int, int] = SIZE, precision: str = "fp16",
           dynamic: bool = False, **options: object) -> ExportResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    request = ExportRequest(Path("tiny.pt"), model, size, precision, dynamic, dict(options), work_dir)
    return cm.export_coreml(request)


@pytest.fixture(scope="module")
def late() -> ClickModel:
    return tiny("late")


@pytest.fixture(scope="module")
def late_export(late: ClickModel, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export(late, tmp_path_factory.mktemp("coreml_late"))


def spec_of(path: Path) -> object:
    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


# -- the shared late-fusion export ------------------------------------------------------------------------

def test_packages_follow_the_contract(late: ClickModel, late_export: ExportResult) -> None:
    files = late_export.files
    assert set(files) == {contract.ENCODER, contract.DECODER}
    specs = model_graph_specs(late)
    for graph, path in files.items():
        assert path.name == f"{graph}.mlpackage" and path.is_dir()
        spec = spec_of(path)
        assert spec.WhichOneof("Type") == "mlProgram" and spec.specificationVersion == TARGETS["iOS17"].spec_version
        assert [f.name for f in spec.description.input] == specs[graph].input_names()
        assert [f.name for f in spec.description.output] == specs[graph].output_names()
        meta = dict(spec.description.metadata.userDefined)
        assert meta[contract.META_CONTRACT_HASH] == contract.contract_hash()
        assert meta[contract.META_CONTRACT_VERSION] == contract.CONTRACT_VERSION
        assert meta[contract.META_GRAPH] == graph
        assert meta[contract.META_MODEL_CONFIG]
    image = spec_of(files[contract.ENCODER]).description.input[0].type
    assert image.WhichOneof("Type") == "imageType"
    assert (image.imageType.height, image.imageType.width) == SIZE and image.imageType.colorSpace == image.imageType.RGB
    dec = spec_of(files[contract.DECODER]).description
    shapes = {f.name: tuple(f.type.multiArrayType.shape) for f in dec.input}
    assert shapes == {t.name: t.resolve(*SIZE) for t in specs[contract.DECODER].inputs}
    assert all(f.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
               for f in [*dec.input, *dec.output])


def test_fp16_compute_precision_is_recorded_and_real(late_export: ExportResult) -> None:
    assert late_export.metadata["compute_precision"] == "fp16"
    assert late_export.metadata["minimum_deployment_target"] == "iOS17"
    for graph, path in late_export.files.items():
        assert late_export.validation["spec"][graph]["compute_precision"] == "fp16"
        program = load_program(path)
        assert compute_precision(program) == "fp16"
        convs = [op for op in program.functions["main"].operations if op.op_type == "conv"]
        assert convs and all(str(op.outputs[0].dtype.__name__) == "fp16" for op in convs)


def test_click_coordinates_stay_fp32(late_export: ExportResult) -> None:
    """fp32_clicks (default): the disk rasterisation compares fp32 coordinates, the network runs in fp16."""
    ops = load_program(late_export.files[contract.DECODER]).functions["main"].operations
    compares = [op for op in ops if op.op_type in ("less_equal", "equal")]
    assert compares and all(str(op.inputs["x"].dtype.__name__) == "fp32" for op in compares)
    assert all(str(op.outputs[0].dtype.__name__) == "fp16" for op in ops if op.op_type in ("conv", "matmul"))
    assert late_export.metadata["fp32_clicks"] is True


def test_image_input_scale_is_the_contracts(late_export: ExportResult) -> None:
    facts = late_export.validation["spec"][contract.ENCODER]
    assert facts["image_scale"] == pytest.approx(1.0 / 255.0, rel=1e-6)
    assert facts["image_bias"] == [0.0, 0.0, 0.0]


def test_numeric_check_on_linux_matches_torch(late_export: ExportResult) -> None:
    numeric = late_export.validation["numeric"]
    assert numeric["passed"] is True
    entry = numeric["sizes"][f"{SIZE[0]}x{SIZE[1]}"]
    assert entry["mask_iou"] >= contract.TOLERANCES["fp16"].min_mean_mask_iou
    assert entry["relative_max_abs_logit"] < 1e-2  # fp16 rounding, not a conversion error


def test_mil_reference_reproduces_the_image_scaling(late: ClickModel, late_export: ExportResult) -> None:
    """Feeding 0..255 pixels to the encoder program equals torch's uint8 path (scale op inside the program)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, *SIZE, 3), dtype=np.uint8)
    ref = MILReference(late_export.files[contract.ENCODER])
    got = ref.run({contract.IMAGE: image.transpose(0, 3, 1, 2).astype(np.float32)})[contract.FEATURES]
    with torch.no_grad():
        want = Encoder(late)(torch.from_numpy(image))[0].numpy()
    scale = np.abs(want).max()
    assert np.abs(got - want).max() < 2e-2 * scale
    wrong = ref.run({contract.IMAGE: image.transpose(0, 3, 1, 2).astype(np.float32) / 255.0})[contract.FEATURES]
    assert np.abs(wrong - want).max() > 0.1 * scale  # the check can tell a missing /255 apart


def test_neural_engine_findings(late_export: ExportResult) -> None:
    warnings = late_export.validation["neural_engine_warnings"]
    assert warnings[contract.ENCODER] == []  # convs, relus, adds, bilinear upsampling: nothing flagged
    rules = {w["rule"]: w for w in warnings[contract.DECODER]}
    # click rasterisation compares coordinates: bool tensors; disks.py keeps every tensor ≤ 4-D
    assert "non-fp16-tensor" in rules and {"equal", "less_equal"} & {op for op, _ in rules["non-fp16-tensor"]["ops"]}
    assert "rank-over-4" not in rules
    assert all(w["source"].startswith("https://") for w in warnings[contract.DECODER])


def test_check_package_rejects_another_contract_layout(late: ClickModel, late_export: ExportResult) -> None:
    path = late_export.files[contract.ENCODER]
    early_spec = contract.graph_specs("early", False)[contract.ENCODER]
    with pytest.raises(ExportValidationError, match="outputs"):
        check_package(ct.models.MLModel(str(path), skip_model_load=True), load_program(path), early_spec, [SIZE],
                      late.config, TARGETS["iOS17"], "fp16")
    with pytest.raises(ExportValidationError, match="compute precision fp16, requested fp32"):
        check_package(ct.models.MLModel(str(path), skip_model_load=True), load_program(path),
                      model_graph_specs(late)[contract.ENCODER], [SIZE], late.config, TARGETS["iOS17"], "fp32")


def test_read_artifact_on_any_os(late: ClickModel, late_export: ExportResult) -> None:
    artifact = read_artifact(late_export.files[contract.ENCODER].parent)
    assert artifact.input_size == SIZE
    assert artifact.config == late.config
    assert artifact.graphs == model_graph_specs(late)


def test_tampered_contract_hash_is_refused(late_export: ExportResult, tmp_path: Path) -> None:
    source = late_export.files[contract.DECODER]
    tampered = ct.models.MLModel(str(source), skip_model_load=True)
    tampered.user_defined_metadata[contract.META_CONTRACT_HASH] = "0" * 64
    tampered.save(str(tmp_path / source.name))
    read_package(source, contract.DECODER)  # the original passes
    with pytest.raises(ContractMismatch, match="re-export"):
        read_package(tmp_path / source.name, contract.DECODER)
    with pytest.raises(ContractMismatch, match="holds the 'decoder' graph"):
        read_package(source, contract.ENCODER)


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the non-macOS message")
def test_backend_needs_macos(late_export: ExportResult) -> None:
    with pytest.raises(RuntimeError, match="CoreML prediction needs macOS"):
        CoreMLBackend(late_export.files[contract.ENCODER].parent)


# -- no conversion -----------------------------------------------------------------------------------------

def test_image_encoder_equals_split_encoder(late: ClickModel) -> None:
    image = torch.randint(0, 256, (1, *SIZE, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = Encoder(late)(image)
        got = cm.ImageEncoder(late)(image.permute(0, 3, 1, 2).float() / 255.0)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_static_resize_scales_keep_values_and_drop_size_ops() -> None:
    class Resize(torch.nn.Module):
        def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=True)

    x, ref = torch.randn(1, 2, 5, 7), torch.zeros(1, 1, 20, 28)
    with cm.static_resize_scales() as scales:
        patched = Resize()(x, ref)
    assert scales == [(4.0, 4.0)]
    torch.testing.assert_close(patched, Resize()(x, ref), rtol=0, atol=1e-6)
    assert F.interpolate.__name__ == "interpolate" and F.interpolate.__module__ == "torch.nn.functional"
    graph = str(cm.trace(Resize(), (x, ref)).graph)
    assert "aten::upsample_bilinear2d" in graph and "aten::size" not in graph


def test_resize_scales_must_agree_across_enumerated_sizes() -> None:
    model = tiny("late", "conv")
    assert cm.check_resize_scales(model, contract.ENCODER, [(64, 128), (128, 192)])
    with pytest.raises(ValueError, match="multiples of 64"):
        cm.check_resize_scales(model, contract.ENCODER, [(64, 128), (96, 128)])  # 96/2/32 rounds up


@pytest.mark.parametrize("precision,change,outcome", [
    ("fp32", "noise 1e-5", "pass"), ("fp32", "noise 1e-2", "error"),
    ("fp16", "noise 1e-2", "pass"),
    ("fp16", "flip 2%", "warn"),  # fp16-sized mask disagreement: parity's session gate only warns here
    ("fp16", "negate", "error"),  # a wrong graph fails whatever the precision
])
def test_numeric_gates(late: ClickModel, monkeypatch: pytest.MonkeyPatch, precision: str, change: str,
                       outcome: str) -> None:
    from edgeclick.runtimes.torch_ref import TorchBackend

    backend = TorchBackend(late, input_size=SIZE)
    rng = np.random.default_rng(0)

    def run(graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = backend.run(graph, feeds)
        if graph == contract.DECODER:
            logits = out[contract.LOGITS].copy()
            if change == "negate":
                logits = -logits
            elif change == "flip 2%":
                inside = np.flatnonzero(logits > 0)
                logits.flat[inside[: max(1, inside.size // 50)]] = -20.0
            else:
                logits += float(change.split()[1]) * rng.standard_normal(logits.shape).astype(np.float32)
            out[contract.LOGITS] = logits
        return out

    monkeypatch.setattr(cm, "mil_runner", lambda packages: run)
    if outcome == "error":
        with pytest.raises(ExportValidationError, match="differ from PyTorch"):
            cm.numeric_check(late, {}, precision, [SIZE])
        return
    report = cm.numeric_check(late, {}, precision, [SIZE])
    assert report["passed"] is True
    assert bool(report["warnings"]) == (outcome == "warn")


def test_options() -> None:
    assert cm.CoreMLOptions.from_dict({}) == cm.CoreMLOptions("iOS17", None, True, True)
    opts = cm.CoreMLOptions.from_dict({"enumerated_sizes": "512x512, 640x960", "numeric_check": "false"})
    assert opts.enumerated_sizes == ((512, 512), (640, 960)) and opts.numeric_check is False
    with pytest.raises(ValueError, match="true or false"):
        cm.CoreMLOptions.from_dict({"fp32_clicks": "maybe"})
    with pytest.raises(ValueError, match="does not accept"):
        cm.CoreMLOptions.from_dict({"compute_units": "ALL"})
    with pytest.raises(ValueError, match="minimum_deployment_target"):
        cm.CoreMLOptions.from_dict({"minimum_deployment_target": "iOS12"})
    with pytest.raises(ValueError, match="multiple of 32"):
        cm.parse_sizes("500x500")


def test_graph_sizes(late: ClickModel, tmp_path: Path) -> None:
    def request(dynamic: bool) -> ExportRequest:
        return ExportRequest(Path("x.pt"), late, (640, 960), "fp16", dynamic, {}, tmp_path)

    fixed, note = cm.graph_sizes(request(False), cm.CoreMLOptions())
    assert fixed == {contract.ENCODER: [(640, 960)], contract.DECODER: [(640, 960)]} and note is None
    with pytest.raises(ValueError, match="dynamic"):
        cm.graph_sizes(request(False), cm.CoreMLOptions(enumerated_sizes=((512, 512),)))
    sizes, note = cm.graph_sizes(request(True), cm.CoreMLOptions())
    assert sizes[contract.ENCODER][0] == (640, 960) and len(sizes[contract.ENCODER]) == len(cm.STANDARD_SIZES)
    assert sizes[contract.DECODER] == [(640, 960)] and "iOS 18" in note
    sizes, note = cm.graph_sizes(request(True), cm.CoreMLOptions("iOS18", ((512, 512),)))
    assert sizes[contract.DECODER] == sizes[contract.ENCODER] == [(640, 960), (512, 512)] and note is None


# -- other layouts (slow: one tiny HRNet conversion each) -------------------------------------------------

@pytest.mark.slow
def test_early_fusion_export(tmp_path: Path) -> None:
    model = tiny("early")
    result = export(model, tmp_path)
    assert result.validation["numeric"]["passed"] is True
    enc = spec_of(result.files[contract.ENCODER]).description
    assert [f.name for f in enc.output] == [contract.STEM]
    assert result.metadata["ops"][contract.ENCODER].get("conv") == 1  # only the stem conv before the clicks
    assert result.metadata["ops"][contract.DECODER].get("softmax")  # OCR's attention runs per click


@pytest.mark.slow
def test_late_fusion_conv_adapter_enumerated_export(tmp_path: Path) -> None:
    model = tiny("late", "conv")
    result = export(model, tmp_path, size=(64, 128), dynamic=True, enumerated_sizes="128x192")
    assert result.metadata["sizes"][contract.ENCODER] == [[64, 128], [128, 192]]
    assert result.metadata["sizes"][contract.DECODER] == [[64, 128]] and "iOS 18" in result.metadata["decoder_fixed"]
    enc = spec_of(result.files[contract.ENCODER]).description
    assert [f.name for f in enc.output] == [contract.FEATURES, contract.SKIP_IMAGE]
    sizes = enc.input[0].type.imageType.enumeratedSizes.sizes
    assert [(s.height, s.width) for s in sizes] == [(64, 128), (128, 192)]
    assert result.validation["numeric"]["passed"] is True


@pytest.mark.slow
def test_fp32_export_is_numerically_the_torch_graph(tmp_path: Path) -> None:
    model = tiny("early", "conv")
    result = export(model, tmp_path, precision="fp32")
    entry = result.validation["numeric"]["sizes"][f"{SIZE[0]}x{SIZE[1]}"]
    assert entry["max_abs_logit"] <= contract.TOLERANCES["fp32"].max_abs_logit
    assert any(w["rule"] == "fp32-program" for w in result.validation["neural_engine_warnings"][contract.ENCODER])


@pytest.mark.slow
def test_ios18_enumerated_decoder(late: ClickModel, tmp_path: Path) -> None:
    result = export(late, tmp_path, dynamic=True, minimum_deployment_target="iOS18", enumerated_sizes="128x128")
    assert result.metadata["sizes"][contract.DECODER] == [[64, 96], [128, 128]]
    assert result.metadata["spec_version"] == TARGETS["iOS18"].spec_version
    assert read_artifact(tmp_path).packages[contract.DECODER].sizes == [(64, 96), (128, 128)]
    assert result.validation["numeric"]["passed"] is True


# -- macOS: real Core ML prediction ----------------------------------------------------------------------

@pytest.mark.macos
@macos
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_coreml_prediction_matches_torch(precision: str, tmp_path: Path) -> None:
    from edgeclick.export.validation import reference_feeds
    from edgeclick.runtimes.torch_ref import TorchBackend

    from edgeclick.metrics import iou

    model = tiny("late")
    export(model, tmp_path, precision=precision)
    units = "CPU_ONLY" if precision == "fp32" else "ALL"
    coreml, torch_backend = CoreMLBackend(tmp_path, compute_units=units), TorchBackend(model, input_size=SIZE)
    feeds = reference_feeds(SIZE)
    image = {contract.IMAGE: feeds[contract.IMAGE]}
    clicks = {contract.CLICKS: feeds[contract.CLICKS], contract.PREV_MASK: feeds[contract.PREV_MASK]}
    got = coreml.run(contract.DECODER, {**coreml.run(contract.ENCODER, image), **clicks})[contract.LOGITS]
    want = torch_backend.run(contract.DECODER, {**torch_backend.run(contract.ENCODER, image), **clicks})[contract.LOGITS]
    tol = contract.TOLERANCES[precision]
    if precision == "fp32":
        assert np.abs(got - want).max() <= tol.max_abs_logit
    threshold = np.log(contract.PROB_THRESHOLD / (1 - contract.PROB_THRESHOLD))
    # per-click floor (0.999 fp32, 0.95 fp16): the session-mean fp16 gate belongs to runtimes.parity
    assert iou(got[0, 0] > threshold, (want[0, 0] > threshold).astype(np.int8)) >= tol.min_mask_iou_per_click


@pytest.mark.macos
@macos
def test_coreml_backend_refuses_tampered_hash(late_export: ExportResult, tmp_path: Path) -> None:
    for graph, path in late_export.files.items():
        shutil.copytree(path, package_path(tmp_path, graph))
    tampered = ct.models.MLModel(str(package_path(tmp_path, contract.ENCODER)), skip_model_load=True)
    tampered.user_defined_metadata[contract.META_CONTRACT_HASH] = "f" * 64
    shutil.rmtree(package_path(tmp_path, contract.ENCODER))
    tampered.save(str(package_path(tmp_path, contract.ENCODER)))
    with pytest.raises(ContractMismatch):
        CoreMLBackend(tmp_path)
