"""TensorRT backend: run the encoder / decoder engines that `edgeclick.export.tensorrt` builds.

An artifact directory holds, per graph (contract.ENCODER, contract.DECODER):

    encoder.engine        the serialized TensorRT engine (one per GPU model and TensorRT version)
    encoder.engine.json   its sidecar: contract version/hash, model config, graph, TensorRT version,
                          input size, precision, optimisation-profile shapes, GPU name, builder settings

TensorRT is imported lazily and only ≥ 10 is accepted: I/O is name-based (`set_input_shape`,
`set_tensor_address`, `execute_async_v3`); the binding-index API of 8.x is gone. Device buffers are
torch CUDA tensors and every copy and launch goes on one torch CUDA stream.
"""
from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeclick import contract
from edgeclick.model.config import ModelConfig

from .backend import check_contract, check_feeds

MIN_TENSORRT_MAJOR = 10
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"

# Sidecar keys next to contract.META_* (plain data, JSON).
SIDECAR_TENSORRT_VERSION = "tensorrt_version"
SIDECAR_INPUT_SIZE = "input_size"  # [H, W] the engine was built for (the profile's opt shape)
SIDECAR_DYNAMIC = "dynamic"  # True: H and W may vary within the profile
SIDECAR_PRECISION = "precision"  # "fp32" | "fp16" | "int8" (explicit Q/DQ, calibration/trt.py)
SIDECAR_PROFILE = "profile"  # {input name: {"min": [...], "opt": [...], "max": [...]}}
SIDECAR_GPU = "gpu"  # torch.cuda.get_device_name() of the build machine; engines are GPU-specific
SIDECAR_BUILDER = "builder"  # strongly_typed, flags, workspace, optimisation level, timing cache
SIDECAR_REQUIRED = (contract.META_CONTRACT_VERSION, contract.META_CONTRACT_HASH, contract.META_MODEL_CONFIG,
                    contract.META_GRAPH, SIDECAR_TENSORRT_VERSION, SIDECAR_INPUT_SIZE, SIDECAR_DYNAMIC,
                    SIDECAR_PRECISION, SIDECAR_PROFILE)


class TensorRTUnavailable(RuntimeError):
    """TensorRT ≥ 10 or a CUDA GPU is missing; the message lists what."""


class ArtifactError(ValueError):
    """A TensorRT artifact directory that cannot be used as it is (missing file, bad sidecar, wrong I/O)."""


# -- requirements ----------------------------------------------------------------------------------------

def tensorrt_major(version: str) -> int:
    """Major version of a TensorRT version string ("10.7.0.post1" → 10)."""
    try:
        return int(str(version).split(".")[0])
    except ValueError as exc:
        raise TensorRTUnavailable(f"cannot read the TensorRT version {version!r}") from exc


def probe_tensorrt(device: int = 0) -> tuple[ModuleType | None, list[str]]:
    """Import TensorRT and look for the CUDA device; return (module or None, what is missing).

    Nothing is raised: the exporter turns the list into MissingRequirement, the backend into
    TensorRTUnavailable.
    """
    missing: list[str] = []
    trt: ModuleType | None
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or the PyPI stub wheel failing at import
        trt = None
        missing.append(f"the `tensorrt` Python package (TensorRT >= {MIN_TENSORRT_MAJOR}; import failed: "
                       f"{type(exc).__name__}: {exc})")
    if trt is not None:
        version = str(getattr(trt, "__version__", "0"))
        if tensorrt_major(version) < MIN_TENSORRT_MAJOR:
            missing.append(f"TensorRT >= {MIN_TENSORRT_MAJOR} (found {version}: the name-based I/O API "
                           "execute_async_v3 / set_tensor_address is required)")
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        missing.append(f"a CUDA GPU (torch.cuda.is_available() is False with {build})")
    elif device >= torch.cuda.device_count():
        missing.append(f"CUDA device {device} (only {torch.cuda.device_count()} visible)")
    return trt, missing


_LOGGERS: dict[int, Any] = {}


def tensorrt_logger(trt: ModuleType) -> Any:
    """One process-wide trt.ILogger per TensorRT module (TensorRT warns when builders and runtimes get
    different loggers): prints warnings and errors, and keeps errors in `.errors` for exception messages."""
    if id(trt) in _LOGGERS:
        return _LOGGERS[id(trt)]

    class CollectingLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.errors.append(msg)
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR, trt.ILogger.WARNING):
                print(f"[TensorRT] {msg}")

    _LOGGERS[id(trt)] = CollectingLogger()
    return _LOGGERS[id(trt)]


def load_tensorrt(device: int = 0) -> ModuleType:
    """The `tensorrt` module, or TensorRTUnavailable naming everything that is missing."""
    trt, missing = probe_tensorrt(device)
    if missing or trt is None:
        raise TensorRTUnavailable("TensorRT backend unavailable: missing " + "; ".join(missing))
    return trt


# -- artifact layout -------------------------------------------------------------------------------------

def engine_path(artifact_dir: str | Path, graph: str) -> Path:
    """<artifact_dir>/<graph>.engine"""
    return Path(artifact_dir) / f"{graph}{ENGINE_SUFFIX}"


def sidecar_path(engine: str | Path) -> Path:
    """The JSON sidecar of an engine file: encoder.engine → encoder.engine.json."""
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Load a sidecar and check that it carries every required key."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing sidecar; re-export with `edgeclick export --format trt`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    absent = [key for key in SIDECAR_REQUIRED if key not in meta]
    if absent:
        raise ArtifactError(f"{path}: sidecar lacks {absent}; re-export with this edgeclick version")
    return meta


def sidecar_model_config(meta: dict[str, Any]) -> ModelConfig:
    """The ModelConfig a sidecar records (stored as a dict, or as a JSON string like ONNX metadata)."""
    raw = meta[contract.META_MODEL_CONFIG]
    return ModelConfig.from_dict(json.loads(raw) if isinstance(raw, str) else raw)


def config_graph_specs(config: ModelConfig) -> dict[str, contract.GraphSpec]:
    """The contract's encoder/decoder specs for a model config (same rule as split.model_graph_specs)."""
    skip = config.adapter.skip_channels if config.adapter is not None else 16
    return contract.graph_specs(config.fusion, config.adapter is not None,
                                late_channels=config.late_channels, skip_channels=skip)


def read_artifact_metadata(artifact_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Both sidecars of an artifact directory, checked against this code's contract and each other."""
    metas: dict[str, dict[str, Any]] = {}
    for graph in (contract.ENCODER, contract.DECODER):
        engine = engine_path(artifact_dir, graph)
        meta = read_sidecar(sidecar_path(engine))
        check_contract(str(meta[contract.META_CONTRACT_HASH]), f"TensorRT engine {engine}")
        if meta[contract.META_GRAPH] != graph:
            raise ArtifactError(f"{sidecar_path(engine)}: describes graph {meta[contract.META_GRAPH]!r}, expected {graph!r}")
        metas[graph] = meta
    shared = (contract.META_MODEL_CONFIG, SIDECAR_INPUT_SIZE, SIDECAR_DYNAMIC, SIDECAR_PRECISION, SIDECAR_TENSORRT_VERSION)
    enc, dec = metas[contract.ENCODER], metas[contract.DECODER]
    differ = [key for key in shared if enc[key] != dec[key]]
    if differ:
        raise ArtifactError(f"{artifact_dir}: encoder and decoder engines were built differently ({differ}); "
                            "export both again together")
    return metas


# -- backend ---------------------------------------------------------------------------------------------

class _Graph:
    """One deserialized engine with its execution context."""

    def __init__(self, engine: Any, spec: contract.GraphSpec) -> None:
        self.engine = engine
        self.context = engine.create_execution_context()
        self.spec = spec


class TensorRTBackend:
    """Backend protocol over an artifact directory of TensorRT engines (see the module docstring).

    input_size is the size the engines were built for (the profile's opt shape), so a Session letterboxes
    to it; a dynamic engine also runs other multiples of 32 inside its profile when fed directly.
    """

    name = "tensorrt"

    def __init__(self, artifact_dir: str | Path, device: int = 0) -> None:
        self.artifact_dir = Path(artifact_dir)
        metas = read_artifact_metadata(self.artifact_dir)  # contract first: refuse foreign artifacts anywhere
        meta = metas[contract.ENCODER]
        self.metadata = metas
        self.contract_hash = str(meta[contract.META_CONTRACT_HASH])
        self.model_config = sidecar_model_config(meta)
        self.graphs = config_graph_specs(self.model_config)
        height, width = (int(v) for v in meta[SIDECAR_INPUT_SIZE])
        self.input_size: tuple[int, int] | None = (height, width)
        self.dynamic = bool(meta[SIDECAR_DYNAMIC])
        self.precision = str(meta[SIDECAR_PRECISION])
        self._run_lock = threading.Lock()  # one execution context and stream per graph: one call at a time

        self._trt = load_tensorrt(device)
        import torch

        self._torch = torch
        self.device = torch.device("cuda", device)
        self.tensorrt_version = str(self._trt.__version__)
        self._runtime = self._trt.Runtime(tensorrt_logger(self._trt))
        with torch.cuda.device(self.device):
            self._stream = torch.cuda.Stream(device=self.device)
            self._graphs = {graph: self._load(graph) for graph in (contract.ENCODER, contract.DECODER)}

    def _load(self, graph: str) -> _Graph:
        path = engine_path(self.artifact_dir, graph)
        if not path.is_file():
            raise ArtifactError(f"{path}: missing engine file")
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            meta = self.metadata[graph]
            raise ArtifactError(f"{path}: TensorRT {self.tensorrt_version} could not deserialize it; it was built with "
                                f"TensorRT {meta[SIDECAR_TENSORRT_VERSION]} on {meta.get(SIDECAR_GPU, 'an unknown GPU')} "
                                "and engines only load on the same TensorRT version and GPU model: rebuild it here "
                                "(trtexec.sh next to the ONNX graphs, or the edgeclick exporter)")
        loaded = _Graph(engine, self.graphs[graph])
        self._check_io(path, loaded)
        return loaded

    def _check_io(self, path: Path, loaded: _Graph) -> None:
        """The engine's I/O names, directions and dtypes must be the contract's."""
        trt, engine, spec = self._trt, loaded.engine, loaded.spec
        found: dict[str, tuple[bool, np.dtype]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            found[name] = (is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
        expected = {t.name: (True, np.dtype(t.dtype)) for t in spec.inputs}
        expected.update({t.name: (False, np.dtype(t.dtype)) for t in spec.outputs})
        if found != expected:
            def show(io: dict[str, tuple[bool, np.dtype]]) -> str:
                return ", ".join(f"{'in' if d[0] else 'out'} {n}:{d[1]}" for n, d in sorted(io.items()))
            raise ArtifactError(f"{path}: engine I/O [{show(found)}] differs from the contract's [{show(expected)}]")

    def io(self, graph: str) -> tuple[list[tuple[str, str, tuple[int | None, ...]]], list[tuple[str, str, tuple[int | None, ...]]]]:
        """(inputs, outputs) of a graph's engine as (name, numpy dtype name, shape), in engine order;
        dynamic axes are None. Fits export/validation.py's TensorInfo."""
        trt, engine = self._trt, self._graphs[graph].engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
            entry = (name, np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name, shape)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(entry)
        return inputs, outputs

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` on numpy feeds (contract names, dtypes, shapes); outputs as numpy by contract name.

        Safe to share between threads: calls are serialised (the execution context and stream are shared)."""
        with self._run_lock:
            return self._run(graph, feeds)

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        loaded = self._graphs[graph]
        size = check_feeds(loaded.spec, feeds)
        if not self.dynamic and size != self.input_size:
            raise ValueError(f"{graph}: this engine is static for {self.input_size[0]}x{self.input_size[1]} "
                             f"(H x W), fed {size[0]}x{size[1]}; export with dynamic=True for other sizes")
        context = loaded.context
        buffers: dict[str, Any] = {}  # keep device tensors alive until the stream has finished
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            for t in loaded.spec.inputs:
                array = np.ascontiguousarray(feeds[t.name])
                if not context.set_input_shape(t.name, tuple(array.shape)):
                    bounds = self.metadata[graph][SIDECAR_PROFILE].get(t.name)
                    raise ValueError(f"{graph}.{t.name}: shape {tuple(array.shape)} is outside the engine's "
                                     f"optimisation profile {bounds}")
                buffers[t.name] = torch.from_numpy(array).to(self.device)
                context.set_tensor_address(t.name, buffers[t.name].data_ptr())
            for t in loaded.spec.outputs:
                shape = tuple(int(d) for d in context.get_tensor_shape(t.name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"{graph}.{t.name}: TensorRT could not infer the output shape ({shape})")
                dtype = torch.from_numpy(np.empty(0, dtype=t.dtype)).dtype
                buffers[t.name] = torch.empty(shape, dtype=dtype, device=self.device)
                context.set_tensor_address(t.name, buffers[t.name].data_ptr())
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"{graph}: TensorRT execute_async_v3 failed (see the TensorRT log)")
            outputs = {t.name: buffers[t.name].cpu() for t in loaded.spec.outputs}
        self._stream.synchronize()
        return {name: tensor.numpy() for name, tensor in outputs.items()}
