"""ExecuTorch export: the encoder and the decoder as `.pte` programs, XNNPACK-delegated, run and validated here.

    export_executorch(request) → ExportResult          ("edgeclick.export.executorch:export_executorch")
    lower_graph(module, example, graph, model, "fp32") → bytes of one .pte (calibration/executorch.py reuses it)

Per graph: torch.export.export (non-strict) of the split wrapper on the contract's reference feeds →
`constant_prop_pass` (weight-only computations folded) → `to_edge_transform_and_lower(..., partitioner=
[XnnpackPartitioner()])` → `to_executorch()` with the inputs outside the memory plan → work_dir/<graph>.pte.
The decoder draws its click disks with the "broadcast" rasteriser by default (option `rasteriser`,
edgeclick/model/disks.py), whose ops XNNPACK all takes, and the conv adapter's transposed conv is exported as
`SubPixelUp`. With `rasteriser=scatter` its comparisons, `where` and `scatter_add` run on ExecuTorch's portable
kernels. Whatever XNNPACK does not take runs on those portable kernels inside the same program, and the metadata
counts both. For the bundled models each graph is one delegate call.

Every program carries the contract (version, hash), the model config, its graph name and its precision as
a constant method `edgeclick_metadata` returning that JSON (`runtimes/executorch.py` refuses a program
whose contract hash differs). Shapes are static: a .pte holds one memory plan, so an artifact serves the
size it was exported at.

Validation is the one every format gets (export/validation.py): I/O structure against the contract from
the programs' method metadata, then end-to-end values against PyTorch through `executorch.runtime`.

With the option `partitioner=coreml`, ExecuTorch's Core ML delegate takes the graphs instead (iOS / macOS).
The programs are written, but neither run nor validated here: Core ML executes only on Apple devices, so
the exporter raises MissingRequirement after writing them and the artifact is kept with `complete: false`.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from edgeclick import contract
from edgeclick.runtimes.executorch import METADATA_METHOD, dense
from edgeclick.model.adapters import use_subpixel_up
from edgeclick.model.base import ClickModel, use_rasteriser
from edgeclick.model.split import model_graph_specs, split_model

from .formats import ExportRequest, ExportResult, MissingRequirement
from .options import ExecuTorchOptions
from .validation import TensorInfo, check_structure, check_values, reference_feeds

META_PRECISION = "edgeclick.precision"
SUFFIX = ".pte"
_BOOKKEEPING = ("alloc", "getitem", "view", "executorch_call_delegate")  # not compute ops of the program


def graph_filename(graph: str) -> str:
    """File name of a graph inside an artifact: "encoder.pte" / "decoder.pte"."""
    return f"{graph}{SUFFIX}"


def require_executorch() -> Any:
    """The executorch package, or MissingRequirement naming the extra that installs it."""
    try:
        import executorch
    except ImportError as exc:
        raise MissingRequirement("ExecuTorch is not installed; pip install -e .[executorch] (executorch==1.5.1)") from exc
    return executorch


def example_inputs(model: ClickModel, size: tuple[int, int]) -> dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]:
    """graph → (split wrapper in eval mode, example inputs in contract order) on `reference_feeds(size)`.

    Every example tensor has canonical contiguous strides: a program records the dim order of its example
    inputs, and `runtimes/executorch.py` feeds contiguous arrays.
    """
    encoder, decoder = (m.eval() for m in split_model(model.eval()))
    feeds = reference_feeds(size)
    image = dense(feeds[contract.IMAGE])
    with torch.inference_mode():
        # Contiguous NCHW, as the runtime feeds numpy arrays: eager convs may hand back channels-last tensors, and
        # a program traced on those expects that memory layout at run time (it reads a plain array wrongly).
        features = tuple(dense(f.contiguous().numpy()) for f in encoder(image))
    return {
        contract.ENCODER: (encoder, (image,)),
        contract.DECODER: (decoder, (*features, dense(feeds[contract.CLICKS]), dense(feeds[contract.PREV_MASK]))),
    }


def prepare_model(model: ClickModel, rasteriser: str) -> ClickModel:
    """`model` (in place) as the ExecuTorch programs compute it: click disks drawn by `rasteriser`, and the conv
    adapter's one-channel ConvTranspose as SubPixelUp, which XNNPACK runs faster. The fp32 export and the int8
    calibration (calibration/executorch.py) both call this, so the int8 programs quantise the same graph."""
    use_rasteriser(model, rasteriser)
    use_subpixel_up(model)
    return model


def program_metadata(model: ClickModel, graph: str, precision: str) -> dict[str, str]:
    """What every .pte carries in its METADATA_METHOD (the keys ONNX puts into metadata_props)."""
    return {
        contract.META_CONTRACT_VERSION: contract.CONTRACT_VERSION,
        contract.META_CONTRACT_HASH: contract.contract_hash(),
        contract.META_MODEL_CONFIG: json.dumps(model.config.to_dict(), sort_keys=True),
        contract.META_GRAPH: graph,
        META_PRECISION: precision,
    }


def partitioners(name: str) -> list[Any]:
    """ExecuTorch partitioner objects for ExecuTorchOptions.partitioner."""
    if name == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]
    if name == "coreml":
        try:
            from executorch.backends.apple.coreml.partition import CoreMLPartitioner
        except Exception as exc:  # noqa: BLE001 - its import pulls in coremltools and ExecuTorch's Core ML bindings
            raise MissingRequirement(f"ExecuTorch's Core ML partitioner cannot be imported here ({type(exc).__name__}: {exc})") from exc
        return [CoreMLPartitioner()]
    raise ValueError(f"unknown ExecuTorch partitioner {name!r}")


def lower_graph(module: torch.nn.Module, example: tuple[torch.Tensor, ...], metadata: dict[str, str],
                partitioner: str = "xnnpack") -> tuple[bytes, dict[str, Any]]:
    """torch.export → edge + delegate lowering → ExecuTorch program; returns (.pte bytes, facts).

    facts: "delegate_calls" (delegated subgraphs), "portable_ops" (op → count of the ops left to ExecuTorch's
    portable kernels), "seconds" (lowering time).
    """
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    t0 = time.perf_counter()
    program = torch.export.export(module, example, strict=False)
    # Fold what depends on weights and constants alone, so XNNPACK sees constant weights: the late conv
    # adapter convolves the clicks with a slice of a conv's weight, which otherwise ran on ExecuTorch's portable
    # convolution (late_conv_w18s decoder at 256x384: 64 ms per click, 17 ms folded, one delegate call). The
    # click grid's `arange` folds too. Quantisation primitives stay: folded, an int8 weight would turn float.
    keep = {n.target for n in program.graph.nodes if n.op == "call_function" and "quantized_decomposed" in str(n.target)}
    program = constant_prop_pass(program, custom_skip_targets=keep | {torch.ops.aten.full.default})
    edge = to_edge_transform_and_lower(program, partitioner=partitioners(partitioner),
                                       constant_methods={METADATA_METHOD: json.dumps(metadata, sort_keys=True)})
    # Inputs outside the memory plan: the program reads the caller's tensors instead of copying them in. The
    # decoder's input is mostly the encoder's features (2.4 MB at 256x384); the copy was 1.2 of its 6.4 ms
    # per click at 1 thread (measured on late_w18s).
    et = edge.to_executorch(ExecutorchBackendConfig(memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False)))
    ops = Counter(str(getattr(n.target, "__name__", n.target)).split(".")[0]
                  for n in et.exported_program().graph_module.graph.nodes if n.op == "call_function")
    facts = {"delegate_calls": ops.get("executorch_call_delegate", 0),
             "portable_ops": {op: n for op, n in sorted(ops.items()) if not any(b in op for b in _BOOKKEEPING)},
             "seconds": round(time.perf_counter() - t0, 2)}
    return et.buffer, facts


def export_executorch_graphs(model: ClickModel, size: tuple[int, int], work_dir: Path, *, precision: str = "fp32",
                             partitioner: str = "xnnpack",
                             modules: dict[str, torch.nn.Module] | None = None) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write encoder.pte and decoder.pte of `model` at `size` (H, W) into `work_dir`.

    modules: graph → a module to lower instead of the split wrapper (the int8 graphs of calibration,
        same inputs and outputs). Returns ({contract.ENCODER: path, contract.DECODER: path}, graph → facts).
    """
    require_executorch()
    contract.check_size(*size)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    facts: dict[str, Any] = {}
    for graph, (module, example) in example_inputs(model, size).items():
        chosen = (modules or {}).get(graph, module)
        buffer, facts[graph] = lower_graph(chosen, example, program_metadata(model, graph, precision), partitioner)
        files[graph] = work_dir / graph_filename(graph)
        files[graph].write_bytes(buffer)
    return files, facts


def tool_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"executorch": version("executorch"), "torch": torch.__version__}


def export_executorch(request: ExportRequest) -> ExportResult:
    """The format table's ExecuTorch exporter: write both programs, then validate them in executorch.runtime."""
    from edgeclick.runtimes.executorch import ExecuTorchBackend

    opts = ExecuTorchOptions.from_dict(request.options)
    prepare_model(request.model, opts.rasteriser)
    files, facts = export_executorch_graphs(request.model, request.size, request.work_dir, precision=request.precision,
                                            partitioner=opts.partitioner)
    metadata = {"tools": tool_versions(), "partitioner": opts.partitioner, "graphs": facts,
                "metadata_method": METADATA_METHOD}
    if opts.partitioner != "xnnpack":
        result = ExportResult(files=files, metadata=metadata,
                              validation={"skipped": "the Core ML delegate runs on iOS / macOS only"})
        raise MissingRequirement("ExecuTorch programs with the Core ML delegate were written but cannot run here "
                                 "(Core ML executes on iOS / macOS only); run them on an Apple device", result)
    backend = ExecuTorchBackend.from_files(files, model_graph_specs(request.model), request.size)
    io = {g: tuple([TensorInfo(*t) for t in side] for side in backend.io_info(g)) for g in files}
    structure = check_structure(request.model, io, request.size, False)  # type: ignore[arg-type]
    values = check_values(request.model, backend.run, request.precision, [request.size])
    metadata["validated_with"] = f"executorch.runtime ({backend.threads_note()})"
    return ExportResult(files=files, metadata=metadata, validation={"structure": structure, **values})
