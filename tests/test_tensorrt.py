"""TensorRT export and backend.

What runs on a CPU machine (no TensorRT, no GPU):
- export_tensorrt writes the TensorRT-ready ONNX graphs and trtexec.sh, then raises MissingRequirement
  naming what is missing and the command file; the command lines' shapes are contract.tensorrt_profile's
  and their precision flags follow the TensorRT major version.
- the engine builder's calls into the TensorRT Python API, checked with an API-CALL RECORDER (below): a
  stand-in `tensorrt` module that only records what the builder asks for. It is not a TensorRT substitute
  and proves nothing about TensorRT's behaviour; it pins which real API calls are made, with which
  flags, shapes and cache bytes, for 10.x and 11.x.
- the backend's sidecar / contract checks and its clear error without TensorRT or a GPU.

What needs TensorRT + an NVIDIA GPU (marked trt + gpu, skipped here with the reason): building real
engines and running them against PyTorch.
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import types
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from edgeclick import contract
from edgeclick.export import formats
from edgeclick.export import tensorrt as trt_export
from edgeclick.model import create_model
from edgeclick.model.base import ClickModel
from edgeclick.model.checkpoint import save_checkpoint
from edgeclick.model.split import model_graph_specs
from edgeclick.runtimes import trt as trt_runtime
from edgeclick.runtimes.backend import ContractMismatch

from .helpers import randomize_, real_tensorrt_missing

SMALL = (64, 96)
DYNAMIC_SIZE = (320, 352)  # inside [contract.DYNAMIC_MIN, contract.DYNAMIC_MAX]


# -- helpers ---------------------------------------------------------------------------------------------

def make_request(tmp_path: Path, *, fusion: str = "late", adapter: str | None = None, size: tuple[int, int] = SMALL,
                 precision: str = "fp32", dynamic: bool = False, options: dict[str, Any] | None = None) -> Any:
    model = randomize_(create_model("tiny", fusion=fusion, adapter=adapter), seed=3)
    checkpoint = save_checkpoint(model, tmp_path / "tiny.pt")
    return formats.ExportRequest(checkpoint=checkpoint, model=model, size=size, precision=precision, dynamic=dynamic,
                                 options=dict(options or {}), work_dir=tmp_path / "trt")


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TensorRT and no CUDA GPU, whatever this machine has."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def parse_script(text: str) -> dict[str, list[list[str]]]:
    """{case label ("10", "11"): [argv of each trtexec line]} from trtexec.sh's case blocks."""
    blocks: dict[str, list[list[str]]] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.endswith(")") and stripped[:-1].isdigit():
            current = stripped[:-1]
            blocks[current] = []
        elif stripped == ";;":
            current = None
        elif current and stripped.startswith("trtexec "):
            blocks[current].append(shlex.split(stripped))
    return blocks


def flag(argv: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def parse_shapes(value: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for item in value.split(","):
        name, dims = item.rsplit(":", 1)
        out[name] = tuple(int(d) for d in dims.split("x"))
    return out


def onnx_inputs(path: Path) -> dict[str, tuple[int | str, ...]]:
    model = onnx.load(str(path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    return {i.name: tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in i.type.tensor_type.shape.dim)
            for i in model.graph.input if i.name not in weights}


# -- without TensorRT: ONNX + trtexec.sh, then MissingRequirement ----------------------------------------

@pytest.mark.parametrize("fusion,precision,strong", [("late", "fp32", True), ("early", "fp16", True),
                                                     ("late", "fp16", False)])
def test_export_without_tensorrt_leaves_onnx_and_commands(tmp_path: Path, no_tensorrt: None, fusion: str,
                                                          precision: str, strong: bool) -> None:
    request = make_request(tmp_path, fusion=fusion, precision=precision, options={"strongly_typed": strong})
    with pytest.raises(formats.MissingRequirement) as info:
        trt_export.export_tensorrt(request)
    message = str(info.value)
    script = request.work_dir / trt_export.TRTEXEC_SCRIPT
    assert "`tensorrt` Python package" in message and "CUDA GPU" in message
    assert f"sh {trt_export.TRTEXEC_SCRIPT} 10" in message and str(request.work_dir.resolve()) in message
    assert not list(request.work_dir.glob("*.engine"))  # never a fake engine
    assert info.value.result is not None
    assert set(info.value.result.files) == {f"{contract.ENCODER}.onnx", f"{contract.DECODER}.onnx", trt_export.TRTEXEC_SCRIPT}
    assert all(p.is_file() for p in info.value.result.files.values())

    specs = model_graph_specs(request.model)
    blocks = parse_script(script.read_text())
    assert set(blocks) == {"10", "11"}  # version unknown here: both variants, labelled
    for major, commands in blocks.items():
        assert [Path(flag(c, "saveEngine")).name for c in commands] == [f"{contract.ENCODER}.engine", f"{contract.DECODER}.engine"]
        for argv, graph in zip(commands, (contract.ENCODER, contract.DECODER)):
            onnx_path = request.work_dir / flag(argv, "onnx")
            onnx.checker.check_model(str(onnx_path))
            assert list(onnx_inputs(onnx_path)) == specs[graph].input_names()
            for which, key in enumerate(("minShapes", "optShapes", "maxShapes")):
                expected = {t.name: contract.tensorrt_profile(t, SMALL, False)[which] for t in specs[graph].inputs}
                assert parse_shapes(flag(argv, key)) == expected
            assert onnx_inputs(onnx_path) == {t.name: t.resolve(*SMALL) for t in specs[graph].inputs}  # static ONNX
            assert flag(argv, "timingCacheFile") == trt_export.TIMING_CACHE
            assert "--noTF32" in argv
            if major == "10":
                assert ("--fp16" in argv) == (precision == "fp16" and not strong)
                assert ("--stronglyTyped" in argv) == strong
            else:
                assert "--fp16" not in argv and "--stronglyTyped" in argv


def test_dynamic_commands_use_contract_bounds(tmp_path: Path, no_tensorrt: None) -> None:
    request = make_request(tmp_path, fusion="late", adapter="conv", size=DYNAMIC_SIZE, dynamic=True,
                           options={"workspace_gb": 0.5, "optimization_level": 4, "tf32": True})
    with pytest.raises(formats.MissingRequirement):
        trt_export.export_tensorrt(request)
    specs = model_graph_specs(request.model)
    encoder, decoder = parse_script((request.work_dir / trt_export.TRTEXEC_SCRIPT).read_text())["11"]
    for argv, graph in ((encoder, contract.ENCODER), (decoder, contract.DECODER)):
        lo, opt, hi = (parse_shapes(flag(argv, k)) for k in ("minShapes", "optShapes", "maxShapes"))
        for t in specs[graph].inputs:
            assert (lo[t.name], opt[t.name], hi[t.name]) == contract.tensorrt_profile(t, DYNAMIC_SIZE, True)
        assert lo[specs[graph].inputs[0].name] != hi[specs[graph].inputs[0].name]  # H/W really vary
        assert lo.get(contract.CLICKS) == hi.get(contract.CLICKS)  # N never varies
        assert flag(argv, "memPoolSize") == "workspace:512M" and flag(argv, "builderOptimizationLevel") == "4"
        assert "--noTF32" not in argv
    image_dims = onnx_inputs(request.work_dir / flag(encoder, "onnx"))[contract.IMAGE]
    assert not isinstance(image_dims[1], int) and not isinstance(image_dims[2], int)  # dynamic H, W in the ONNX
    assert image_dims[0] == 1 and image_dims[3] == 3


def test_dynamic_export_below_contract_min_widens_the_profile(tmp_path: Path, no_tensorrt: None) -> None:
    """64x96 is below contract.DYNAMIC_MIN: the profile's min drops to the export size (min <= opt <= max)."""
    request = make_request(tmp_path, size=SMALL, dynamic=True)
    with pytest.raises(formats.MissingRequirement):
        trt_export.export_tensorrt(request)
    encoder, _ = parse_script((request.work_dir / trt_export.TRTEXEC_SCRIPT).read_text())["11"]
    lo, opt, hi = (parse_shapes(flag(encoder, k)) for k in ("minShapes", "optShapes", "maxShapes"))
    assert lo[contract.IMAGE] == opt[contract.IMAGE] == (1, *SMALL, 3)
    assert hi[contract.IMAGE] == (1, *contract.DYNAMIC_MAX, 3)


@pytest.mark.parametrize("options,match", [({"fp16": True}, r"format 'trt' does not accept option\(s\) \['fp16'\]"),
                                           ({"optimization_level": 9}, "0..5"),
                                           ({"workspace_gb": 0}, "workspace_gb"),
                                           ({"strongly_typed": "maybe"}, "expected a boolean"),
                                           ({"tf32": 1.5}, "booleans")])
def test_bad_options_are_rejected(tmp_path: Path, no_tensorrt: None, options: dict[str, Any], match: str) -> None:
    request = make_request(tmp_path, options=options)
    with pytest.raises(ValueError, match=match):
        trt_export.export_tensorrt(request)
    assert not list(request.work_dir.glob("*.onnx"))


def test_option_table() -> None:
    assert formats.FORMATS["trt"].options == {"opset": 17, "workspace_gb": 4.0, "device": 0, "optimization_level": 3,
                                              "timing_cache": None, "tf32": False, "strongly_typed": True}


@pytest.mark.parametrize("major,precision,strong,expected", [
    (10, "fp32", True, (True, True, False, ["--stronglyTyped"])),
    (10, "fp16", True, (True, True, False, ["--stronglyTyped"])),
    (10, "fp32", False, (False, False, False, [])),
    (10, "fp16", False, (False, False, True, ["--fp16"])),
    (11, "fp16", True, (True, False, False, ["--stronglyTyped"])),
    (11, "fp16", False, (True, False, False, ["--stronglyTyped"])),  # 11.x has no weak typing
])
def test_precision_mode_per_major(major: int, precision: str, strong: bool, expected: tuple) -> None:
    mode = trt_export.precision_mode(major, precision, strong)
    assert (mode.strongly_typed, mode.network_flag_strongly_typed, mode.fp16_flag, mode.trtexec_flags()) == expected


def test_precision_mode_refusals() -> None:
    with pytest.raises(ValueError, match="Q/DQ"):
        trt_export.precision_mode(10, "int8")
    with pytest.raises(ValueError, match=">= 10"):
        trt_export.precision_mode(8, "fp32")


# -- the builder, against an API-CALL RECORDER (not a TensorRT substitute) -------------------------------

class Enum:
    """Enum-like namespace whose members are distinct ints (as TensorRT's pybind11 enums convert to)."""

    def __init__(self, **members: int) -> None:
        self.__dict__.update(members)


class RecorderTensor:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name, self.shape = name, shape


class RecorderNetwork:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[RecorderTensor] = []
        self.outputs: list[RecorderTensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int) -> RecorderTensor:
        return self.inputs[i]

    def get_output(self, i: int) -> RecorderTensor:
        return self.outputs[i]


class RecorderParserError:
    def __init__(self, node: int, name: str, op: str, desc: str) -> None:
        self._v = (node, name, op, desc)

    def node(self) -> int:
        return self._v[0]

    def node_name(self) -> str:
        return self._v[1]

    def node_operator(self) -> str:
        return self._v[2]

    def desc(self) -> str:
        return self._v[3]


def make_recorder(version: str, *, parse_error: RecorderParserError | None = None, build_fails: bool = False) -> types.ModuleType:
    """A `tensorrt` stand-in that records calls in `module.calls` (see the module docstring)."""
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    calls: list[tuple[Any, ...]] = []
    mod.calls = calls  # type: ignore[attr-defined]
    major = int(version.split(".")[0])

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    mod.ILogger = ILogger  # type: ignore[attr-defined]
    mod.NetworkDefinitionCreationFlag = Enum(STRONGLY_TYPED=1 if major == 10 else 0)  # no EXPLICIT_BATCH on purpose
    flags = {"TF32": 6, "DEBUG": 2}
    if major == 10:
        flags["FP16"] = 0  # removed in 11: the builder must never touch it there
    mod.BuilderFlag = Enum(**flags)
    mod.MemoryPoolType = Enum(WORKSPACE=0)

    class Parser:
        def __init__(self, network: RecorderNetwork, logger: Any) -> None:
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            calls.append(("parse_from_file", Path(path).name))
            if parse_error is not None:
                self.errors.append(parse_error)
                return False
            model = onnx.load(path, load_external_data=False)
            weights = {i.name for i in model.graph.initializer}
            def dims(v: Any) -> tuple[int, ...]:
                return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)

            self.network.inputs = [RecorderTensor(v.name, dims(v)) for v in model.graph.input if v.name not in weights]
            self.network.outputs = [RecorderTensor(v.name, dims(v)) for v in model.graph.output]
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> RecorderParserError:
            return self.errors[i]

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return self.blob + b"+entry"

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            calls.append(("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

    class Config:
        def __init__(self) -> None:
            self.cache: TimingCache | None = None

        def __setattr__(self, key: str, value: Any) -> None:
            if key != "cache":
                calls.append(("config." + key, value))
            object.__setattr__(self, key, value)

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, f: int) -> None:
            calls.append(("set_flag", f))

        def clear_flag(self, f: int) -> None:
            calls.append(("clear_flag", f))

        def add_optimization_profile(self, profile: Profile) -> None:
            calls.append(("add_optimization_profile",))

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            calls.append(("create_timing_cache", bytes(blob)))
            return TimingCache(bytes(blob))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            calls.append(("set_timing_cache", ignore_mismatch))
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            assert self.cache is not None
            return self.cache

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> RecorderNetwork:
            calls.append(("create_network", flags))
            return RecorderNetwork(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: RecorderNetwork, config: Config) -> bytes | None:
            calls.append(("build_serialized_network", [t.name for t in network.inputs]))
            if build_fails:
                self.logger.log(ILogger.ERROR, "recorded: no implementation for node /decoder/Conv_7")
                return None
            return b"recorded-plan-bytes"

    mod.OnnxParser = Parser  # type: ignore[attr-defined]
    mod.Builder = Builder  # type: ignore[attr-defined]
    return mod


Prepare = Callable[..., tuple[Any, dict[str, Any]]]


@pytest.fixture(scope="module")
def prepare(tmp_path_factory: pytest.TempPathFactory) -> Prepare:
    """prepare(tmp_path, **request kw) → (request, engine plans), its work_dir already holding real ONNX
    graphs written by export_tensorrt without TensorRT (once per configuration in this module, then copied)."""
    templates: dict[tuple[Any, ...], Path] = {}

    def _prepare(tmp_path: Path, **kw: Any) -> tuple[Any, dict[str, Any]]:
        request = make_request(tmp_path, **kw)
        key = (request.model.config, request.size, request.precision, request.dynamic)
        if key not in templates:
            first = make_request(tmp_path_factory.mktemp("onnx"), **kw)
            with pytest.MonkeyPatch.context() as mp:
                mp.setitem(sys.modules, "tensorrt", None)
                mp.setattr(torch.cuda, "is_available", lambda: False)
                with pytest.raises(formats.MissingRequirement):
                    trt_export.export_tensorrt(first)
            templates[key] = first.work_dir
        shutil.copytree(templates[key], request.work_dir)
        profiles = trt_export.graph_profiles(model_graph_specs(request.model), request.size, request.dynamic)
        onnx_paths = {g: request.work_dir / f"{g}.onnx" for g in profiles}
        return request, trt_export.engine_plans(profiles, onnx_paths, request.work_dir)

    return _prepare


@pytest.fixture
def recorder_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: "Recorder GPU")


@pytest.mark.parametrize("version,precision,strong,network_flags,set_fp16", [
    ("10.7.0", "fp16", True, 1 << 1, False),
    ("10.7.0", "fp16", False, 0, True),
    ("10.7.0", "fp32", False, 0, False),
    ("11.0.0", "fp16", True, 0, False),
    ("11.0.0", "fp16", False, 0, False),
])
def test_builder_api_calls(tmp_path: Path, recorder_gpu: None, prepare: Prepare, version: str, precision: str, strong: bool,
                           network_flags: int, set_fp16: bool) -> None:
    options = {"workspace_gb": 0.25, "optimization_level": 2, "strongly_typed": strong}
    request, plans = prepare(tmp_path, precision=precision, options=options)
    rec = make_recorder(version)
    opts = trt_export.TensorRTOptions.from_dict(request.options)
    files = trt_export.build_engines(rec, request, plans, opts)
    calls = rec.calls

    assert [c[1] for c in calls if c[0] == "create_network"] == [network_flags, network_flags]
    fp16 = [c for c in calls if c[0] == "set_flag"]
    assert fp16 == ([("set_flag", 0)] * 2 if set_fp16 else [])
    assert calls.count(("clear_flag", rec.BuilderFlag.TF32)) == 2
    assert calls.count(("set_memory_pool_limit", rec.MemoryPoolType.WORKSPACE, 256 << 20)) == 2
    assert calls.count(("config.builder_optimization_level", 2)) == 2
    assert not [c for c in calls if c[0] in ("add_optimization_profile", "profile.set_shape")]  # static ONNX
    # timing cache: the first build starts empty, the second loads what the first saved
    assert [c[1] for c in calls if c[0] == "create_timing_cache"] == [b"", b"+entry"]
    cache_file = request.work_dir / trt_export.TIMING_CACHE
    assert cache_file.read_bytes() == b"+entry+entry"
    assert [c[1] for c in calls if c[0] == "parse_from_file"] == [plans[contract.ENCODER].onnx.name, plans[contract.DECODER].onnx.name]

    for graph, plan in plans.items():
        assert plan.engine.read_bytes() == b"recorded-plan-bytes"
        meta = trt_runtime.read_sidecar(trt_runtime.sidecar_path(plan.engine))
        assert meta[contract.META_CONTRACT_HASH] == contract.contract_hash()
        assert meta[contract.META_CONTRACT_VERSION] == contract.CONTRACT_VERSION
        assert meta[contract.META_GRAPH] == graph
        assert meta[contract.META_MODEL_CONFIG] == request.model.config.to_dict()
        assert meta[trt_runtime.SIDECAR_TENSORRT_VERSION] == version
        assert meta[trt_runtime.SIDECAR_GPU] == "Recorder GPU"
        assert meta[trt_runtime.SIDECAR_BUILDER]["flags"] == (["FP16"] if set_fp16 else [])
        assert meta[trt_runtime.SIDECAR_PROFILE] == {n: {"min": list(p[0]), "opt": list(p[1]), "max": list(p[2])}
                                                     for n, p in plan.profile.items()}
        assert files[graph] == plan.engine
    assert files[cache_file.name] == cache_file
    # the artifact reads back: contract checked, model config → the same graph specs
    metas = trt_runtime.read_artifact_metadata(request.work_dir)
    assert trt_runtime.config_graph_specs(trt_runtime.sidecar_model_config(metas[contract.ENCODER])) == model_graph_specs(request.model)


def test_builder_sets_profiles_for_dynamic_inputs(tmp_path: Path, recorder_gpu: None, prepare: Prepare) -> None:
    request, plans = prepare(tmp_path, fusion="early", size=DYNAMIC_SIZE, dynamic=True)
    rec = make_recorder("11.0.0")
    trt_export.build_engines(rec, request, plans, trt_export.TensorRTOptions())
    set_shapes = {c[1]: c[2:] for c in rec.calls if c[0] == "profile.set_shape"}
    specs = model_graph_specs(request.model)
    flexible = [t for g in specs.values() for t in g.inputs if t.dynamic]
    assert set(set_shapes) == {t.name for t in flexible}
    for t in flexible:
        assert set_shapes[t.name] == contract.tensorrt_profile(t, DYNAMIC_SIZE, True)
    assert rec.calls.count(("add_optimization_profile",)) == 2


def test_stale_timing_cache_file_is_loaded(tmp_path: Path, recorder_gpu: None, prepare: Prepare) -> None:
    cache = tmp_path / "shared.cache"
    cache.write_bytes(b"old")
    request, plans = prepare(tmp_path, options={"timing_cache": str(cache)})
    rec = make_recorder("10.3.0")
    trt_export.build_engines(rec, request, plans, trt_export.TensorRTOptions.from_dict(request.options))
    assert [c[1] for c in rec.calls if c[0] == "create_timing_cache"] == [b"old", b"old+entry"]
    assert cache.read_bytes() == b"old+entry+entry"


def test_parser_errors_name_the_node(tmp_path: Path, recorder_gpu: None, prepare: Prepare) -> None:
    request, plans = prepare(tmp_path)
    rec = make_recorder("10.7.0", parse_error=RecorderParserError(12, "/model/Resize_3", "Resize", "unsupported mode"))
    with pytest.raises(trt_export.EngineBuildError, match=r"node #12 '/model/Resize_3' \(Resize\): unsupported mode"):
        trt_export.build_engines(rec, request, plans, trt_export.TensorRTOptions())
    assert not list(request.work_dir.glob("*.engine"))


def test_build_failure_reports_logged_errors(tmp_path: Path, recorder_gpu: None, prepare: Prepare) -> None:
    request, plans = prepare(tmp_path)
    rec = make_recorder("11.0.0", build_fails=True)
    with pytest.raises(trt_export.EngineBuildError, match="no implementation for node /decoder/Conv_7"):
        trt_export.build_engines(rec, request, plans, trt_export.TensorRTOptions())
    assert not list(request.work_dir.glob("*.engine"))


# -- backend: sidecars, contract, requirements ----------------------------------------------------------

def write_artifact(tmp_path: Path, model: ClickModel, **overrides: Any) -> Path:
    """Two sidecars (as the exporter writes them) and placeholder engine files."""
    request = formats.ExportRequest(checkpoint=tmp_path / "x.pt", model=model, size=SMALL, precision="fp32",
                                    dynamic=False, options={}, work_dir=tmp_path / "artifact")
    profiles = trt_export.graph_profiles(model_graph_specs(model), SMALL, False)
    plans = trt_export.engine_plans(profiles, {g: tmp_path / f"{g}.onnx" for g in profiles}, request.work_dir)
    for graph, plan in plans.items():
        meta = trt_export.sidecar(model, plan, request, "10.7.0", "Some GPU", {})
        meta.update(overrides.get(graph, {}))
        trt_runtime.sidecar_path(plan.engine).parent.mkdir(parents=True, exist_ok=True)
        trt_runtime.sidecar_path(plan.engine).write_text(json.dumps(meta))
        plan.engine.write_bytes(b"placeholder: never deserialized in these tests")
    return request.work_dir


def test_backend_refuses_a_mismatched_contract(tmp_path: Path) -> None:
    model = create_model("tiny", fusion="late")
    artifact = write_artifact(tmp_path, model, **{contract.DECODER: {contract.META_CONTRACT_HASH: "0" * 64}})
    with pytest.raises(ContractMismatch, match="re-export"):
        trt_runtime.TensorRTBackend(artifact)


def test_backend_refuses_mixed_engines(tmp_path: Path) -> None:
    model = create_model("tiny", fusion="late")
    artifact = write_artifact(tmp_path, model, **{contract.DECODER: {trt_runtime.SIDECAR_PRECISION: "fp16"}})
    with pytest.raises(trt_runtime.ArtifactError, match="built differently"):
        trt_runtime.TensorRTBackend(artifact)
    (artifact / f"{contract.ENCODER}.engine.json").unlink()
    with pytest.raises(trt_runtime.ArtifactError, match="missing sidecar"):
        trt_runtime.TensorRTBackend(artifact)


def test_backend_without_tensorrt_says_what_is_missing(tmp_path: Path, no_tensorrt: None) -> None:
    artifact = write_artifact(tmp_path, create_model("tiny", fusion="early"))
    with pytest.raises(trt_runtime.TensorRTUnavailable) as info:
        trt_runtime.TensorRTBackend(artifact)
    assert isinstance(info.value, RuntimeError)
    assert "`tensorrt` Python package" in str(info.value) and "CUDA GPU" in str(info.value)


def test_backend_refuses_tensorrt_8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = write_artifact(tmp_path, create_model("tiny", fusion="early"))
    monkeypatch.setitem(sys.modules, "tensorrt", make_recorder("8.6.1"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(trt_runtime.TensorRTUnavailable, match=r"TensorRT >= 10 \(found 8\.6\.1"):
        trt_runtime.TensorRTBackend(artifact)


@pytest.mark.parametrize("fusion,adapter", [("early", None), ("early", "conv"), ("late", None), ("late", "conv")])
def test_sidecar_config_gives_the_models_graphs(fusion: str, adapter: str | None) -> None:
    model = create_model("tiny", fusion=fusion, adapter=adapter)
    meta = {contract.META_MODEL_CONFIG: json.dumps(model.config.to_dict())}  # the ONNX-metadata string form too
    assert trt_runtime.config_graph_specs(trt_runtime.sidecar_model_config(meta)) == model_graph_specs(model)


# -- real TensorRT on an NVIDIA GPU ----------------------------------------------------------------------

@pytest.mark.parametrize("fusion,adapter,precision,size,dynamic", [
    ("late", None, "fp32", SMALL, False),
    ("early", None, "fp16", SMALL, False),
    ("late", "conv", "fp16", DYNAMIC_SIZE, True),
])
@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(bool(real_tensorrt_missing()), reason=real_tensorrt_missing() or "runs")
def test_real_engines_match_torch(tmp_path: Path, fusion: str, adapter: str | None, precision: str,
                                  size: tuple[int, int], dynamic: bool) -> None:
    from edgeclick.runtimes.session import Session
    from edgeclick.runtimes.torch_ref import TorchBackend

    request = make_request(tmp_path, fusion=fusion, adapter=adapter, size=size, precision=precision, dynamic=dynamic)
    result = trt_export.export_tensorrt(request)
    assert result.validation["passed"], result.validation
    tol = contract.TOLERANCES[precision]
    for check in result.validation["checks"]:
        assert check["max_abs_logit"] <= tol.max_abs_logit
    for graph in (contract.ENCODER, contract.DECODER):
        assert (request.work_dir / f"{graph}.engine").stat().st_size > 0

    backend = trt_runtime.TensorRTBackend(request.work_dir)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(size[0] + 7, size[1] - 5, 3), dtype=np.uint8)
    trt_session, ref_session = Session(backend), Session(TorchBackend(request.model, input_size=size))
    for session in (trt_session, ref_session):
        session.set_image(image)
    for x, y, positive in ((size[1] // 2, size[0] // 2, True), (3, 4, False)):
        got, want = trt_session.click(x, y, positive), ref_session.click(x, y, positive)
        assert np.mean((got > contract.PROB_THRESHOLD) == (want > contract.PROB_THRESHOLD)) > 0.99
    with pytest.raises(ValueError, match="contract"):
        backend.run(contract.ENCODER, {contract.IMAGE: np.zeros((1, *size, 3), dtype=np.float32)})
