"""TensorRT export: TensorRT-ready ONNX and trtexec command lines always, engines where TensorRT runs.

    export_tensorrt(request) → ExportResult        ("edgeclick.export.tensorrt:export_tensorrt")

1. Both graphs are written as ONNX into `request.work_dir` (`export_onnx_graphs`). Precision lives in the
   ONNX: fp16 means fp16 tensors inside with fp32 / uint8 I/O and the click rasteriser kept fp32, which is
   the only way TensorRT 11 gets fp16 (it removed the FP16/INT8 builder flags and implicit calibration;
   networks are always strongly typed and the builder only compiles).
2. `trtexec.sh` holds the exact trtexec command lines for both engines, for TensorRT 10.x and 11.x
   (`sh trtexec.sh 10` / `sh trtexec.sh 11`; the detected major version is the default).
3. Without TensorRT >= 10 or a CUDA GPU, MissingRequirement is raised here, after 1 and 2, naming what is
   missing and the command file. No engine is faked and nothing is skipped silently.
4. Otherwise both engines are built with the Python API (profile shapes from contract.tensorrt_profile,
   timing cache, workspace limit, version-dependent precision handling), each with a JSON sidecar
   (runtimes/trt.py reads it), and validated through TensorRTBackend by export/validation.py: I/O against
   the contract, values against PyTorch within contract.TOLERANCES[precision].

Precision per TensorRT major version (option strongly_typed, default True):
    11.x  always strongly typed (create_network without flags; trtexec --stronglyTyped, a no-op there).
    10.x  strongly typed by default too: NetworkDefinitionCreationFlag.STRONGLY_TYPED / trtexec
          --stronglyTyped, so the ONNX's fp16 casts and fp32 islands are obeyed exactly as on 11.x.
          strongly_typed=False: weak typing, with BuilderFlag.FP16 (trtexec --fp16) for fp16 — TensorRT
          may then pick fp16 kernels anywhere, the fp32 click rasteriser included.
    TF32 is cleared (trtexec --noTF32) unless tf32=True: fp32 parity is gated at 1e-3 and TF32 rounds
    convolution inputs to 10-bit mantissas.
    int8 (qdq=True only: calibration/trt.py writes the Q/DQ ONNX; this module never calibrates): explicit
          quantization, so no calibrator on any version. 11.x and strongly typed 10.x take the Q/DQ network
          with no precision flag (TensorRT's explicit-quantization guide: "Use explicit quantization with
          Strong Typing. Precision-control build flags are not required and should not be specified");
          weakly typed 10.x sets BuilderFlag.INT8 (trtexec --int8), which TensorRT's weak typing needs to
          run any int8 kernel, the Q/DQ scales then decide where.
"""
from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from edgeclick import contract
from edgeclick.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgeclick.model.base import ClickModel
from edgeclick.model.split import model_graph_specs
from edgeclick.runtimes import trt as trt_runtime

from .formats import ExportRequest, ExportResult, MissingRequirement
from .onnx import export_onnx_graphs
from .options import PRECISIONS, TIMING_CACHE, TensorRTOptions  # noqa: F401 - TIMING_CACHE: this format's file names
from .validation import TensorInfo, check_structure, check_values, validation_sizes

TRTEXEC_SCRIPT = "trtexec.sh"
QDQ_PRECISION = "int8"  # what the builder accepts with qdq=True: the ONNX already carries int8 Q/DQ nodes
SUPPORTED_MAJORS = (10, 11)


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build a graph; the message names the graph, nodes and log errors."""


# -- precision handling per TensorRT major version -------------------------------------------------------

@dataclass(frozen=True)
class PrecisionMode:
    """How one TensorRT major version gets the requested precision.

    network_flag_strongly_typed: pass NetworkDefinitionCreationFlag.STRONGLY_TYPED to create_network
        (10.x opt-in; on 11.x the flag is deprecated and ignored, so it is not passed).
    int8_flag: BuilderFlag.INT8 (trtexec --int8): a weakly typed 10.x network with Q/DQ nodes only.
    """

    major: int
    strongly_typed: bool
    network_flag_strongly_typed: bool
    fp16_flag: bool
    int8_flag: bool = False

    def trtexec_flags(self) -> list[str]:
        if self.fp16_flag:
            return ["--fp16"]
        if self.int8_flag:
            return ["--int8"]
        return ["--stronglyTyped"] if self.strongly_typed else []


def precision_mode(major: int, precision: str, strongly_typed: bool = True, *, qdq: bool = False) -> PrecisionMode:
    """The builder settings that give `precision` on TensorRT `major` (the ONNX already carries it).

    qdq: the ONNX holds explicit int8 Q/DQ nodes (calibration/trt.py); only then is precision "int8" taken.
    """
    allowed = PRECISIONS + ((QDQ_PRECISION,) if qdq else ())
    if precision not in allowed:
        raise ValueError(f"TensorRT export precision must be one of {allowed}, got {precision!r} "
                         "(int8 engines are built from Q/DQ ONNX by the calibration step)")
    if major >= 11:
        return PrecisionMode(major, True, False, False)
    if major == 10:
        weak = not strongly_typed
        return PrecisionMode(major, strongly_typed, strongly_typed, precision == "fp16" and weak,
                             int8_flag=precision == QDQ_PRECISION and weak)
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
            f"--builderOptimizationLevel={opts.optimization_level}",
            f"--memPoolSize=workspace:{opts.workspace_mib}M"]
    if not opts.tf32:
        argv.append("--noTF32")
    return argv + mode.trtexec_flags()


def _major_note(mode: PrecisionMode, precision: str) -> str:
    if precision == QDQ_PRECISION:
        return _int8_note(mode)
    if mode.major >= 11:
        return "TensorRT 11.x: always strongly typed; precision comes from the ONNX (--fp16 no longer exists)"
    if mode.strongly_typed:
        note = "TensorRT 10.x: strongly typed network, precision exactly as in the ONNX (as on 11.x)"
        return note + ("; the weak-typing alternative replaces --stronglyTyped with --fp16" if precision == "fp16" else "")
    return ("TensorRT 10.x: weak typing; --fp16 lets TensorRT pick fp16 kernels anywhere" if mode.fp16_flag
            else "TensorRT 10.x: weak typing, fp32")


def _int8_note(mode: PrecisionMode) -> str:
    if mode.major >= 11:
        return ("TensorRT 11.x: always strongly typed; int8 exactly where the ONNX's Q/DQ nodes are "
                "(--int8 and --calib no longer exist)")
    if mode.strongly_typed:
        return ("TensorRT 10.x: strongly typed network, int8 exactly where the ONNX's Q/DQ nodes are (as on 11.x); "
                "the weak-typing alternative replaces --stronglyTyped with --int8")
    return "TensorRT 10.x: weak typing; --int8 enables int8 kernels, the Q/DQ nodes place them (no calibrator)"


def trtexec_script(plans: dict[str, EnginePlan], precision: str, opts: TensorRTOptions, work_dir: Path,
                   detected_major: int | None, header: list[str], *, qdq: bool = False) -> str:
    """A POSIX sh script with both TensorRT majors' command lines, selected by its first argument.

    qdq: the ONNX graphs carry int8 Q/DQ nodes (precision "int8", see precision_mode)."""
    default = str(detected_major) if detected_major in SUPPORTED_MAJORS else ""
    lines = ["#!/bin/sh", *(f"# {line}" for line in header),
             (f"# Usage: sh {TRTEXEC_SCRIPT} 10|11   (the TensorRT major version: trtexec prints it; "
              "python3 -c 'import tensorrt; print(tensorrt.__version__)')"),
             f"# Default here: {default or 'none (TensorRT was not found when this was written)'}.",
             "set -eu", 'cd "$(dirname "$0")"', f'case "${{1:-{default}}}" in']
    for major in SUPPORTED_MAJORS:
        mode = precision_mode(major, precision, opts.strongly_typed, qdq=qdq)
        lines += [f"  {major})", f"    # {_major_note(mode, precision)}"]
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


def _attach_timing_cache(config: Any, path: Path) -> bool:
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
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib << 20)
    config.builder_optimization_level = opts.optimization_level
    set_flags = []
    if mode.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
        set_flags.append("FP16")
    if mode.int8_flag:  # weakly typed 10.x Q/DQ network; never on 11.x, where the flag no longer exists
        config.set_flag(trt.BuilderFlag.INT8)
        set_flags.append("INT8")
    if not opts.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if flexible:
        profile = builder.create_optimization_profile()
        for name in flexible:
            profile.set_shape(name, *plan.profile[name])
        config.add_optimization_profile(profile)
    reused = _attach_timing_cache(config, cache_file)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build {plan.graph} from {plan.onnx}:\n  "
                               + "\n  ".join(logger.errors or ["(no error logged)"]))
    write_bytes_atomic(plan.engine, bytes(memoryview(serialized)))
    write_bytes_atomic(cache_file, bytes(memoryview(config.get_timing_cache().serialize())))
    return {"strongly_typed": mode.strongly_typed, "flags": set_flags, "tf32": opts.tf32,
            "workspace_mib": opts.workspace_mib, "optimization_level": opts.optimization_level,
            "timing_cache": _relative(cache_file, plan.engine.parent), "timing_cache_reused": reused,
            "profile_inputs": flexible}


def sidecar(model: ClickModel, plan: EnginePlan, request: ExportRequest, trt_version: str, gpu: str,
            builder: dict[str, Any]) -> dict[str, Any]:
    """The JSON sidecar of one engine (keys: contract.META_* and runtimes.trt.SIDECAR_*)."""
    return engine_sidecar(model.config.to_dict(), plan, request.size, request.dynamic, request.precision, trt_version,
                          gpu, builder)


def engine_sidecar(model_config: dict[str, Any], plan: EnginePlan, size: tuple[int, int], dynamic: bool,
                   precision: str, trt_version: str, gpu: str, builder: dict[str, Any]) -> dict[str, Any]:
    """`sidecar` from plain values: model_config is ModelConfig.to_dict(), size the (H, W) built for."""
    return {
        contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
        contract.META_CONTRACT_HASH: contract.contract_hash(),
        contract.META_MODEL_CONFIG: model_config,
        contract.META_GRAPH: plan.graph,
        trt_runtime.SIDECAR_TENSORRT_VERSION: trt_version,
        trt_runtime.SIDECAR_INPUT_SIZE: list(size),
        trt_runtime.SIDECAR_DYNAMIC: dynamic,
        trt_runtime.SIDECAR_PRECISION: precision,
        trt_runtime.SIDECAR_PROFILE: {name: {"min": list(p[0]), "opt": list(p[1]), "max": list(p[2])}
                                      for name, p in plan.profile.items()},
        trt_runtime.SIDECAR_GPU: gpu,
        trt_runtime.SIDECAR_BUILDER: builder,
    }


def build_engines(trt: ModuleType, request: ExportRequest, plans: dict[str, EnginePlan],
                  opts: TensorRTOptions) -> dict[str, Path]:
    """Build both engines and write their sidecars.

    Returns {contract.ENCODER / contract.DECODER: engine, sidecar file name: sidecar, cache name: cache}.
    """
    return build_engine_files(trt, plans, opts, specs=model_graph_specs(request.model),
                              model_config=request.model.config.to_dict(), size=request.size, dynamic=request.dynamic,
                              precision=request.precision, cache_file=opts.cache_file(Path(request.work_dir)))


def build_engine_files(trt: ModuleType, plans: dict[str, EnginePlan], opts: TensorRTOptions, *,
                       specs: dict[str, contract.GraphSpec], model_config: dict[str, Any], size: tuple[int, int],
                       dynamic: bool, precision: str, cache_file: Path, qdq: bool = False) -> dict[str, Path]:
    """`build_engines` without an ExportRequest (no model object needed): what calibration/trt.py builds
    its int8 engines with (qdq=True, precision "int8"). Same return value as build_engines."""
    import torch

    version = str(trt.__version__)
    mode = precision_mode(trt_runtime.tensorrt_major(version), precision, opts.strongly_typed, qdq=qdq)
    gpu = torch.cuda.get_device_name(opts.device)
    files: dict[str, Path] = {}
    scope = torch.cuda.device(opts.device) if torch.cuda.is_available() else contextlib.nullcontext()
    with scope:
        for graph, plan in plans.items():
            settings = build_engine(trt, plan, specs[graph], mode, opts, cache_file, dynamic)
            meta = engine_sidecar(model_config, plan, size, dynamic, precision, version, gpu, settings)
            side = write_json_atomic(trt_runtime.sidecar_path(plan.engine), meta)
            files[graph], files[side.name] = plan.engine, side
    files[cache_file.name] = cache_file
    return files


# -- validation ------------------------------------------------------------------------------------------

def _within_profile(size: tuple[int, int]) -> bool:
    return all(lo <= v <= hi for lo, v, hi in zip(contract.DYNAMIC_MIN, size, contract.DYNAMIC_MAX))


def validate_engines(request: ExportRequest, opts: TensorRTOptions) -> dict[str, Any]:
    """Engines through TensorRTBackend: I/O against the contract, then values against PyTorch
    (export/validation.py; ExportValidationError when out of contract.TOLERANCES[precision])."""
    backend = trt_runtime.TensorRTBackend(request.work_dir, device=opts.device)
    io = {graph: tuple([TensorInfo(*t) for t in part] for part in backend.io(graph))
          for graph in (contract.ENCODER, contract.DECODER)}
    structure = check_structure(request.model, io, request.size, request.dynamic)  # type: ignore[arg-type]
    sizes = [s for s in validation_sizes(request.size, request.dynamic) if s == request.size or _within_profile(s)]
    values = check_values(request.model, backend.run, request.precision, sizes)
    return {"backend": backend.name, "tensorrt_version": backend.tensorrt_version, "structure": structure,
            **values}


# -- entry point -----------------------------------------------------------------------------------------

def _header(request: ExportRequest, detected: str | None) -> list[str]:
    cfg = request.model.config
    return [(f"edgeclick TensorRT engines: contract {contract.CONTRACT_VERSION} ({contract.contract_hash()[:12]}), "
             f"model {cfg.arch}/{cfg.fusion}{' + conv adapter' if cfg.adapter else ''}, checkpoint {request.checkpoint}"),
            f"input {request.size[0]}x{request.size[1]} (H x W), "
            f"{'dynamic H/W within the profile' if request.dynamic else 'static shapes'}, precision {request.precision}"
            + (" (fp16 casts inside the ONNX, fp32/uint8 I/O)" if request.precision == "fp16" else ""),
            f"TensorRT found when written: {detected or 'none'}"]


def _tools(trt_version: str | None) -> dict[str, str]:
    import onnx
    import torch

    tools = {"torch": torch.__version__, "onnx": onnx.__version__}
    if trt_version:
        tools["tensorrt"] = trt_version
    return tools


def export_tensorrt(request: ExportRequest) -> ExportResult:
    """ONNX + trtexec.sh always; engines + sidecars + validation when TensorRT >= 10 and a CUDA GPU are present.

    files: contract.ENCODER / contract.DECODER → the engines; other entries by file name (the ONNX graphs,
    the engines' JSON sidecars, trtexec.sh, the timing cache).
    """
    opts = TensorRTOptions.from_dict(dict(request.options))
    contract.check_size(*request.size)
    precision_mode(10, request.precision, opts.strongly_typed)  # reject int8 up front
    # Absolute paths throughout: the manifest reads relative paths as relative to the artifact root.
    request = replace(request, work_dir=Path(request.work_dir).resolve())
    work_dir = request.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    size = (int(request.size[0]), int(request.size[1]))
    specs = model_graph_specs(request.model)
    profiles = graph_profiles(specs, size, request.dynamic)  # impossible profiles fail before the ONNX export

    # No ORT Mobile rewrites (export/onnx_rewrites.py): TensorRT's parser was only ever run on the graphs as
    # exported (Resize with omitted inputs, ConvTranspose, CRD DepthToSpace).
    onnx_paths = export_onnx_graphs(request.model, size, work_dir, precision=request.precision,
                                    dynamic=request.dynamic, opset=opts.opset, mobile_rewrites=False)
    plans = engine_plans(profiles, onnx_paths, work_dir)
    trt, missing = trt_runtime.probe_tensorrt(opts.device)
    detected = str(trt.__version__) if trt is not None and hasattr(trt, "__version__") else None
    major = trt_runtime.tensorrt_major(detected) if detected else None
    script = write_text_atomic(work_dir / TRTEXEC_SCRIPT,
                               trtexec_script(plans, request.precision, opts, work_dir, major, _header(request, detected)))
    script.chmod(0o755)
    files: dict[str, Path] = {Path(p).name: Path(p) for p in onnx_paths.values()}
    files[script.name] = script
    metadata: dict[str, Any] = {
        "tools": _tools(detected),
        contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
        contract.META_CONTRACT_HASH: contract.contract_hash(),
        trt_runtime.SIDECAR_PRECISION: request.precision,
        trt_runtime.SIDECAR_DYNAMIC: request.dynamic,
        trt_runtime.SIDECAR_PROFILE: {g: {n: [list(s) for s in p] for n, p in prof.items()} for g, prof in profiles.items()},
        "options": {f.name: getattr(opts, f.name) for f in fields(opts)},
        "build_commands": script.name,
    }
    if missing or trt is None:
        message = ("TensorRT engines were not built: missing " + "; ".join(missing) + ". "
                   f"The TensorRT-ready ONNX graphs ({', '.join(sorted(Path(p).name for p in onnx_paths.values()))}) "
                   f"and the exact trtexec command lines ({script.name}) are in the artifact directory (staged in "
                   f"{work_dir}); there, on a machine with TensorRT 10.x or 11.x and an NVIDIA GPU, run "
                   f"`sh {script.name} 10` or `sh {script.name} 11`.")
        raise MissingRequirement(message, result=ExportResult(files=files, metadata=metadata,
                                                              validation={"passed": False, "reason": message}))
    built = build_engines(trt, request, plans, opts)
    files.update(built)
    import torch

    metadata[trt_runtime.SIDECAR_GPU] = torch.cuda.get_device_name(opts.device)
    return ExportResult(files=files, metadata=metadata, validation=validate_engines(request, opts))
