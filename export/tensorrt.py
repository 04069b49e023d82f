"""TensorRT export: TensorRT-ready ONNX and trtexec command lines always, engines where TensorRT runs.

    export_tensorrt(request) → ExportResult        ("edgeclick.export.tensorrt:export_tensorrt")

1. Both graphs are written as ONNX into `request.work_dir` (`export_onnx_graphs`). Precision lives in the
   ONNX: fp16 means fp16 casts inside the graph with fp32 / uint8 I/O, which is the only way TensorRT 11
   gets fp16 (it removed the FP16/INT8 builder flags and implicit calibration; networks are always
   strongly typed and the builder only compiles).
2. `trtexec.sh` holds the exact trtexec command lines for both engines, for TensorRT 10.x and 11.x
   (`sh trtexec.sh 10` / `sh trtexec.sh 11`; the detected major version is the default).
3. Without TensorRT >= 10 or a CUDA GPU, MissingRequirement is raised here, after 1 and 2, naming what is
   missing and the command file. No engine is faked and nothing is skipped silently.
4. Otherwise both engines are built with the Python API (profile shapes from contract.tensorrt_profile,
   timing cache, workspace limit, version-dependent precision handling), each with a JSON sidecar
   (runtimes/trt.py reads it), and validated against PyTorch through TensorRTBackend within
   contract.TOLERANCES[precision].

Precision per TensorRT major version:
    10.x  fp16: weak typing + BuilderFlag.FP16 (trtexec --fp16) over the fp16-cast ONNX; with the option
          strongly_typed=True: NetworkDefinitionCreationFlag.STRONGLY_TYPED (trtexec --stronglyTyped).
          fp32: no precision flag.
    11.x  always strongly typed (trtexec --stronglyTyped, a no-op there); no precision flags exist.
    TF32 is cleared (trtexec --noTF32) unless tf32=True: fp32 parity is gated at 1e-3 and TF32 rounds
    convolution inputs to 10-bit mantissas.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeclick import contract
from edgeclick.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgeclick.metrics import iou
from edgeclick.model.ritm import ClickModel
from edgeclick.model.split import model_graph_specs
from edgeclick.runtimes import trt as trt_runtime

from .formats import ExportRequest, ExportResult, MissingRequirement
from .onnx import export_onnx_graphs

TRTEXEC_SCRIPT = "trtexec.sh"
TIMING_CACHE = "timing.cache"
PRECISIONS = ("fp32", "fp16")  # int8 engines come from explicit Q/DQ ONNX (calibration/), not from here
SUPPORTED_MAJORS = (10, 11)
MAX_OPTIMIZATION_LEVEL = 5


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build a graph; the message names the graph, nodes and log errors."""


class ParityError(RuntimeError):
    """Engines built but their outputs differ from PyTorch beyond contract.TOLERANCES[precision]."""


# -- options ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorRTOptions:
    """Options of the "trt" format (ExportRequest.options); unknown names are rejected.

    workspace_mb: builder workspace pool limit in MiB (None: TensorRT's default, the device's memory).
    timing_cache: timing cache file, loaded before and saved after each build (None: work_dir/timing.cache).
    builder_optimization_level: 0–5, TensorRT's default 3; higher searches longer for faster kernels.
    tf32: allow TF32 for fp32 layers (faster on Ampere+, breaks the fp32 1e-3 parity gate).
    strongly_typed: TensorRT 10.x only: build a strongly typed network from the ONNX (as 11.x always
        does) instead of weak typing with the FP16 flag. None: the version's default.
    """

    workspace_mb: int | None = None
    timing_cache: str | None = None
    builder_optimization_level: int = 3
    tf32: bool = False
    strongly_typed: bool | None = None

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "TensorRTOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown TensorRT export options {unknown}; known: {sorted(known)}")
        opts = cls(**options)
        if opts.workspace_mb is not None and (not isinstance(opts.workspace_mb, int) or opts.workspace_mb <= 0):
            raise ValueError(f"workspace_mb must be a positive integer (MiB), got {opts.workspace_mb!r}")
        level = opts.builder_optimization_level
        if not isinstance(level, int) or not 0 <= level <= MAX_OPTIMIZATION_LEVEL:
            raise ValueError(f"builder_optimization_level must be an integer in 0..{MAX_OPTIMIZATION_LEVEL}, got {level!r}")
        if not isinstance(opts.tf32, bool) or opts.strongly_typed not in (None, True, False):
            raise ValueError("tf32 must be a bool and strongly_typed a bool or None")
        return opts

    def cache_file(self, work_dir: Path) -> Path:
        return Path(self.timing_cache) if self.timing_cache else work_dir / TIMING_CACHE


OPTIONS: dict[str, Any] = {f.name: f.default for f in fields(TensorRTOptions)}
"""Option names and defaults for the format table."""


# -- precision handling per TensorRT major version -------------------------------------------------------

@dataclass(frozen=True)
class PrecisionMode:
    """How one TensorRT major version gets the requested precision.

    network_flag_strongly_typed: pass NetworkDefinitionCreationFlag.STRONGLY_TYPED to create_network
        (10.x opt-in; on 11.x the flag is deprecated and ignored, so it is not passed).
    """

    major: int
    strongly_typed: bool
    network_flag_strongly_typed: bool
    fp16_flag: bool

    def trtexec_flags(self) -> list[str]:
        if self.fp16_flag:
            return ["--fp16"]
        return ["--stronglyTyped"] if self.strongly_typed else []


def precision_mode(major: int, precision: str, strongly_typed: bool | None = None) -> PrecisionMode:
    """The builder settings that give `precision` on TensorRT `major` (the ONNX already carries it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"TensorRT export precision must be one of {PRECISIONS}, got {precision!r} "
                         "(int8 engines are built from Q/DQ ONNX by the calibration step)")
    if major >= 11:
        if strongly_typed is False:
            raise ValueError("TensorRT 11 networks are always strongly typed; drop strongly_typed=False")
        return PrecisionMode(major, True, False, False)
    if major == 10:
        strong = bool(strongly_typed)
        return PrecisionMode(major, strong, strong, precision == "fp16" and not strong)
    raise ValueError(f"TensorRT {major}.x is not supported; edgeclick needs TensorRT >= {trt_runtime.MIN_TENSORRT_MAJOR}")


# -- engine plans and profiles ---------------------------------------------------------------------------

Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class EnginePlan:
    """One engine to build: graph name, its ONNX, the engine file, (min, opt, max) per input."""

    graph: str
    onnx: Path
    engine: Path
    profile: dict[str, Profile]


def check_profile(name: str, profile: Profile) -> None:
    """min <= opt <= max on every axis, or ValueError naming the input."""
    lo, opt, hi = profile
    if not (len(lo) == len(opt) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, opt, hi))):
        raise ValueError(f"input {name}: optimisation profile min {lo} / opt {opt} / max {hi} is not ordered; "
                         f"a dynamic engine needs the export size within contract.DYNAMIC_MIN {contract.DYNAMIC_MIN} "
                         f"and DYNAMIC_MAX {contract.DYNAMIC_MAX} (H, W)")


def graph_profiles(specs: dict[str, contract.GraphSpec], size: tuple[int, int],
                   dynamic: bool) -> dict[str, dict[str, Profile]]:
    """(min, opt, max) per input of each graph, from contract.tensorrt_profile, checked for order."""
    profiles: dict[str, dict[str, Profile]] = {}
    for graph in (contract.ENCODER, contract.DECODER):
        profiles[graph] = {t.name: contract.tensorrt_profile(t, size, dynamic) for t in specs[graph].inputs}
        for name, shapes in profiles[graph].items():
            check_profile(name, shapes)
    return profiles


def engine_plans(profiles: dict[str, dict[str, Profile]], onnx_paths: dict[str, Path], work_dir: Path) -> dict[str, EnginePlan]:
    """Plans for the encoder and decoder engines (engine files next to the ONNX in work_dir)."""
    return {graph: EnginePlan(graph, Path(onnx_paths[graph]), trt_runtime.engine_path(work_dir, graph), profile)
            for graph, profile in profiles.items()}


# -- trtexec ---------------------------------------------------------------------------------------------

def _shapes(profile: dict[str, Profile], which: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in shapes[which])}" for name, shapes in profile.items())


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def trtexec_command(plan: EnginePlan, mode: PrecisionMode, opts: TensorRTOptions, work_dir: Path) -> list[str]:
    """argv of the trtexec call that builds `plan` (paths relative to work_dir, where the script runs)."""
    argv = ["trtexec", f"--onnx={_relative(plan.onnx, work_dir)}", f"--saveEngine={_relative(plan.engine, work_dir)}",
            f"--minShapes={_shapes(plan.profile, 0)}", f"--optShapes={_shapes(plan.profile, 1)}",
            f"--maxShapes={_shapes(plan.profile, 2)}",
            f"--timingCacheFile={_relative(opts.cache_file(work_dir), work_dir)}",
            f"--builderOptimizationLevel={opts.builder_optimization_level}"]
    if opts.workspace_mb is not None:
        argv.append(f"--memPoolSize=workspace:{opts.workspace_mb}M")
    if not opts.tf32:
        argv.append("--noTF32")
    return argv + mode.trtexec_flags()


_MAJOR_NOTES = {
    10: "TensorRT 10.x: {typing}",
    11: "TensorRT 11.x: always strongly typed; precision comes from the ONNX (--fp16 no longer exists)",
}


def trtexec_script(plans: dict[str, EnginePlan], precision: str, opts: TensorRTOptions, work_dir: Path,
                   detected_major: int | None, header: list[str]) -> str:
    """A POSIX sh script with both TensorRT majors' command lines, selected by its first argument."""
    mode10 = precision_mode(10, precision, opts.strongly_typed)
    typing10 = ("strongly typed network (--stronglyTyped), precision from the ONNX" if mode10.strongly_typed else
                "weak typing; --fp16 lets TensorRT pick fp16 kernels next to the ONNX's own casts"
                if mode10.fp16_flag else "fp32, no precision flag")
    default = str(detected_major) if detected_major in SUPPORTED_MAJORS else ""
    lines = ["#!/bin/sh", *(f"# {line}" for line in header),
             f"# Usage: sh {TRTEXEC_SCRIPT} 10|11   (the TensorRT major version: trtexec prints it; "
             "python3 -c 'import tensorrt; print(tensorrt.__version__)')",
             f"# Default here: {default or 'none (TensorRT was not found when this was written)'}.",
             "set -eu", 'cd "$(dirname "$0")"', f'case "${{1:-{default}}}" in']
    for major in SUPPORTED_MAJORS:
        if major == 11 and opts.strongly_typed is False:
            continue
        mode = precision_mode(major, precision, opts.strongly_typed)
        lines += [f"  {major})", f"    # {_MAJOR_NOTES[major].format(typing=typing10)}"]
        lines += [f"    {shlex.join(trtexec_command(plan, mode, opts, work_dir))}" for plan in plans.values()]
        lines.append("    ;;")
    lines += ["  *)", f'    echo "usage: sh {TRTEXEC_SCRIPT} 10|11 (TensorRT major version)" >&2', "    exit 2",
              "    ;;", "esac", ""]
    return "\n".join(lines)


# -- building --------------------------------------------------------------------------------------------

def parser_errors(parser: Any, onnx_path: Path) -> str:
    """Every ONNX parser error with its node index, node name and operator."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name = err.node_name() if hasattr(err, "node_name") else "?"
        op = err.node_operator() if hasattr(err, "node_operator") else "?"
        lines.append(f"  node #{err.node()} {name!r} ({op}): {err.desc()}")
    return f"TensorRT could not parse {onnx_path}:\n" + ("\n".join(lines) or "  (no parser error recorded)")


def _check_network(network: Any, plan: EnginePlan, spec: contract.GraphSpec, dynamic: bool) -> list[str]:
    """Network I/O must be the contract's; return the inputs that carry dynamic (-1) axes."""
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    if set(inputs) != set(spec.input_names()) or set(outputs) != set(spec.output_names()):
        raise EngineBuildError(f"{plan.onnx}: network inputs {sorted(inputs)} / outputs {sorted(outputs)} differ from "
                               f"the contract's {spec.input_names()} / {spec.output_names()}")
    flexible = []
    for t in spec.inputs:
        dims, opt = inputs[t.name], plan.profile[t.name][1]
        if len(dims) != len(opt) or any(d not in (-1, o) for d, o in zip(dims, opt)):
            raise EngineBuildError(f"{plan.onnx}: input {t.name} has shape {dims}, the contract says {opt}")
        if -1 in dims:
            flexible.append(t.name)
        elif dynamic and t.dynamic:
            raise EngineBuildError(f"{plan.onnx}: input {t.name} is static {dims} but a dynamic engine was requested; "
                                   "the ONNX must be exported with dynamic=True")
    return flexible


def _attach_timing_cache(trt: ModuleType, config: Any, path: Path) -> bool:
    """Load the timing cache file into `config` (an empty cache when absent or stale); True if reused."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if blob and (cache is None or not config.set_timing_cache(cache, False)):
        print(f"[edgeclick] timing cache {path} was written by another TensorRT/GPU; starting an empty one")
        blob, cache = b"", config.create_timing_cache(b"")
    if not blob:
        config.set_timing_cache(cache, False)
    return bool(blob)


def build_engine(trt: ModuleType, plan: EnginePlan, spec: contract.GraphSpec, mode: PrecisionMode,
                 opts: TensorRTOptions, cache_file: Path, dynamic: bool) -> dict[str, Any]:
    """Parse plan.onnx, build and write plan.engine; save the timing cache; return the builder settings."""
    logger = trt_runtime.tensorrt_logger(trt)
    logger.errors.clear()
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode.network_flag_strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        raise EngineBuildError(parser_errors(parser, plan.onnx))
    flexible = _check_network(network, plan, spec, dynamic)

    config = builder.create_builder_config()
    if opts.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    config.builder_optimization_level = opts.builder_optimization_level
    set_flags = []
    if mode.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
        set_flags.append("FP16")
    if not opts.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if flexible:
        profile = builder.create_optimization_profile()
        for name in flexible:
            profile.set_shape(name, *plan.profile[name])
        config.add_optimization_profile(profile)
    reused = _attach_timing_cache(trt, config, cache_file)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build {plan.graph} from {plan.onnx}:\n  "
                               + "\n  ".join(logger.errors or ["(no error logged)"]))
    write_bytes_atomic(plan.engine, bytes(memoryview(serialized)))
    write_bytes_atomic(cache_file, bytes(memoryview(config.get_timing_cache().serialize())))
    return {"strongly_typed": mode.strongly_typed, "flags": set_flags, "tf32": opts.tf32,
            "workspace_mb": opts.workspace_mb, "builder_optimization_level": opts.builder_optimization_level,
            "timing_cache": str(cache_file), "timing_cache_reused": reused, "profile_inputs": flexible}


def sidecar(model: ClickModel, plan: EnginePlan, request: ExportRequest, trt_version: str, gpu: str,
            builder: dict[str, Any]) -> dict[str, Any]:
    """The JSON sidecar of one engine (keys: contract.META_* and runtimes.trt.SIDECAR_*)."""
    return {
        contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
        contract.META_CONTRACT_HASH: contract.contract_hash(),
        contract.META_MODEL_CONFIG: model.config.to_dict(),
        contract.META_GRAPH: plan.graph,
        trt_runtime.SIDECAR_TENSORRT_VERSION: trt_version,
        trt_runtime.SIDECAR_INPUT_SIZE: list(request.size),
        trt_runtime.SIDECAR_DYNAMIC: request.dynamic,
        trt_runtime.SIDECAR_PRECISION: request.precision,
        trt_runtime.SIDECAR_PROFILE: {name: {"min": list(p[0]), "opt": list(p[1]), "max": list(p[2])}
                                      for name, p in plan.profile.items()},
        trt_runtime.SIDECAR_GPU: gpu,
        trt_runtime.SIDECAR_BUILDER: builder,
    }


def build_engines(trt: ModuleType, request: ExportRequest, plans: dict[str, EnginePlan],
                  opts: TensorRTOptions, device: int = 0) -> dict[str, Path]:
    """Build both engines and write their sidecars; return {file name: path}."""
    import torch

    version = str(trt.__version__)
    mode = precision_mode(trt_runtime.tensorrt_major(version), request.precision, opts.strongly_typed)
    specs = model_graph_specs(request.model)
    gpu = torch.cuda.get_device_name(device)
    cache_file = opts.cache_file(request.work_dir)
    files: dict[str, Path] = {}
    for graph, plan in plans.items():
        settings = build_engine(trt, plan, specs[graph], mode, opts, cache_file, request.dynamic)
        meta = sidecar(request.model, plan, request, version, gpu, settings)
        side = write_json_atomic(trt_runtime.sidecar_path(plan.engine), meta)
        files[plan.engine.name], files[side.name] = plan.engine, side
    files[cache_file.name] = cache_file
    return files


# -- validation ------------------------------------------------------------------------------------------

def parity_inputs(size: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """A structured uint8 image 1×H×W×3 and click rows 1×N×3 for 1, 2 and 3 clicks."""
    h, w = size
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, size=(1, h, w, 3), dtype=np.uint8)
    image[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 220
    points = [(w / 2, h / 2, contract.LABEL_POSITIVE), (w / 8, h / 8, contract.LABEL_NEGATIVE),
              (w / 3, h / 2, contract.LABEL_POSITIVE)]
    rows = []
    for k in range(1, len(points) + 1):
        r = np.full((1, contract.NUM_CLICKS, 3), contract.LABEL_PADDING, dtype=np.float32)
        r[0, :k] = np.array(points[:k], dtype=np.float32)
        rows.append(r)
    return image, rows


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def compare_backends(reference: Any, candidate: Any, size: tuple[int, int], precision: str) -> dict[str, Any]:
    """Click-session parity of `candidate` vs `reference` (both Backends): each click's logits and mask IoU.

    Both decoders see the same inputs (the reference's previous mask), so the numbers are per step.
    """
    tol = contract.TOLERANCES[precision]
    image, click_rows = parity_inputs(size)
    ref_feats = reference.run(contract.ENCODER, {contract.IMAGE: image})
    cand_feats = candidate.run(contract.ENCODER, {contract.IMAGE: image})
    feature_diff = {k: float(np.max(np.abs(ref_feats[k] - cand_feats[k]))) for k in ref_feats}
    prev = np.zeros((1, 1, *size), dtype=np.float32)
    max_abs, ious = 0.0, []
    for rows in click_rows:
        ref = reference.run(contract.DECODER, {**ref_feats, contract.CLICKS: rows, contract.PREV_MASK: prev})[contract.LOGITS]
        cand = candidate.run(contract.DECODER, {**cand_feats, contract.CLICKS: rows, contract.PREV_MASK: prev})[contract.LOGITS]
        max_abs = max(max_abs, float(np.max(np.abs(ref - cand))))
        ref_mask = (_sigmoid(ref) > contract.PROB_THRESHOLD)[0, 0]
        ious.append(iou(_sigmoid(cand)[0, 0] > contract.PROB_THRESHOLD, ref_mask.astype(np.int8)))
        prev = _sigmoid(ref).astype(np.float32)
    passed = (max_abs <= tol.max_abs_logit and min(ious) >= tol.min_mask_iou_per_click
              and float(np.mean(ious)) >= tol.min_mean_mask_iou)
    return {"precision": precision, "size": list(size), "max_abs_logit": max_abs, "mask_iou_per_click": ious,
            "mean_mask_iou": float(np.mean(ious)), "encoder_max_abs": feature_diff,
            "tolerance": {"max_abs_logit": tol.max_abs_logit, "min_mask_iou_per_click": tol.min_mask_iou_per_click,
                          "min_mean_mask_iou": tol.min_mean_mask_iou}, "passed": passed}


def validate_engines(request: ExportRequest, device: int = 0) -> dict[str, Any]:
    """Run the built engines through TensorRTBackend against TorchBackend; ParityError when out of tolerance."""
    from edgeclick.runtimes.torch_ref import TorchBackend

    candidate = trt_runtime.TensorRTBackend(request.work_dir, device=device)
    reference = TorchBackend(request.model, input_size=request.size)
    sizes = [request.size]
    if request.dynamic:  # one more size inside the profile, to exercise set_input_shape
        other = (request.size[0] + contract.PAD_MULTIPLE, request.size[1])
        if other[0] <= contract.DYNAMIC_MAX[0]:
            sizes.append(other)
    reports = [compare_backends(reference, candidate, size, request.precision) for size in sizes]
    result = {"backend": candidate.name, "tensorrt_version": candidate.tensorrt_version, "checks": reports,
              "passed": all(r["passed"] for r in reports)}
    if not result["passed"]:
        raise ParityError(f"TensorRT engines differ from PyTorch beyond the {request.precision} tolerance: "
                          + json.dumps(reports))
    return result


# -- entry point -----------------------------------------------------------------------------------------

def _header(request: ExportRequest, detected: str | None) -> list[str]:
    cfg = request.model.config
    return [f"edgeclick TensorRT engines: contract {contract.CONTRACT_VERSION} ({contract.contract_hash()[:12]}), "
            f"model {cfg.arch}/{cfg.fusion}{' + conv adapter' if cfg.adapter else ''}, checkpoint {request.checkpoint}",
            f"input {request.size[0]}x{request.size[1]} (H x W), {'dynamic H/W within the profile' if request.dynamic else 'static shapes'}, "
            f"precision {request.precision}"
            + (" (fp16 casts inside the ONNX, fp32/uint8 I/O)" if request.precision == "fp16" else ""),
            f"TensorRT found when written: {detected or 'none'}"]


def export_tensorrt(request: ExportRequest) -> ExportResult:
    """ONNX + trtexec.sh always; engines + sidecars + parity when TensorRT >= 10 and a CUDA GPU are present."""
    opts = TensorRTOptions.from_dict(dict(request.options))
    contract.check_size(*request.size)
    precision_mode(10, request.precision, opts.strongly_typed)  # reject int8 / bad combinations up front
    work_dir = Path(request.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    specs = model_graph_specs(request.model)
    size = (int(request.size[0]), int(request.size[1]))
    profiles = graph_profiles(specs, size, request.dynamic)  # impossible profiles fail before the ONNX export

    onnx_paths = export_onnx_graphs(request.model, size, work_dir, precision=request.precision, dynamic=request.dynamic)
    plans = engine_plans(profiles, onnx_paths, work_dir)
    trt, missing = trt_runtime.probe_tensorrt()
    detected = str(trt.__version__) if trt is not None and hasattr(trt, "__version__") else None
    major = trt_runtime.tensorrt_major(detected) if detected else None
    script = write_text_atomic(work_dir / TRTEXEC_SCRIPT,
                               trtexec_script(plans, request.precision, opts, work_dir, major, _header(request, detected)))
    script.chmod(0o755)
    files: dict[str, Path] = {p.name: p for p in onnx_paths.values()}
    files[script.name] = script
    if missing or trt is None:
        raise MissingRequirement(
            "TensorRT engines were not built: missing " + "; ".join(missing) + ". "
            f"The TensorRT-ready ONNX graphs ({', '.join(sorted(p.name for p in onnx_paths.values()))}) and the exact "
            f"trtexec command lines ({script}) are in {work_dir}; on a machine with TensorRT 10.x or 11.x and an "
            f"NVIDIA GPU run `sh {script} 10` or `sh {script} 11`.")
    files.update(build_engines(trt, request, plans, opts))
    validation = validate_engines(request)
    metadata = {
        contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
        contract.META_CONTRACT_HASH: contract.contract_hash(),
        contract.META_MODEL_CONFIG: request.model.config.to_dict(),
        trt_runtime.SIDECAR_TENSORRT_VERSION: detected,
        trt_runtime.SIDECAR_PRECISION: request.precision,
        trt_runtime.SIDECAR_DYNAMIC: request.dynamic,
        "options": {f.name: getattr(opts, f.name) for f in fields(opts)},
    }
    return ExportResult(files=files, metadata=metadata, validation=validation)
