"""int8 ExecuTorch programs: XNNPACK's PT2E quantizer, calibrated on recorded click sessions.

    art = quantize_executorch_artifact("artifacts/m-late-256x384-fp32-executorch", data, "artifacts/m-int8-executorch")
    backend = open_backend(art)                    # runtimes/executorch.py, unchanged

Per graph: torch.export of the split wrapper → `prepare_pt2e` with `XNNPACKQuantizer` (int8 symmetric,
per-channel weights; static int8 activations with XNNPACK's default observers) → the graph runs on the
recorded feeds (the same `CalibrationData` ONNX quantisation reads) → `convert_pt2e` → lowered to XNNPACK as
the fp32 export is (export/executorch.py), so XNNPACK runs the quantised convolutions as int8 kernels.

Only the model's submodules are annotated (backbone, heads, click encoder); what the model computes at its
own top level stays float: the ImageNet normalisation, the click rasteriser (sub-pixel coordinates) and the
final pixel shuffle, as the ONNX int8 keeps the rasteriser float.
"""
from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from edgeclick import contract
from edgeclick.io import publishing
from edgeclick.manifest import file_entries, read_manifest, write_manifest

from .data import CalibrationData

PRECISION = "int8"
METHOD = "xnnpack"  # variant suffix: the observers are the XNNPACK quantizer's own, not onnxruntime's methods
MAX_FEEDS = 64  # calibration runs per graph (PT2E observers run in Python: hundreds of feeds take minutes)


QUANTIZED = "model"
"""torch.export's path of the model under a split wrapper: what the quantizer annotates (all its submodules)."""

def float_paths(keep_float: Sequence[str]) -> list[str]:
    """torch.export paths of the submodules kept float (paths under the model: "feature_proj")."""
    return [f"{QUANTIZED}.{name}" for name in keep_float]


def check_submodules(model: Any, paths: Sequence[str]) -> None:
    """ValueError in one line when a keep-float path names no submodule of `model`."""
    known = {name for name, _ in model.named_modules() if name}
    unknown = [p for p in paths if p not in known]
    if unknown:
        top = ", ".join(name for name, _ in model.named_children())
        raise ValueError(f"--keep-float {', '.join(unknown)}: no such submodule of the model; ExecuTorch keeps submodules "
                         f"float by path, e.g. one of {top} (or a path below one, such as feature_extractor.stage4)")


def inside_modules(module_names: Sequence[str], excluded: Sequence[str] = ()) -> Callable[[Any], bool]:
    """A node filter: True for an FX node that torch.export recorded inside one of `module_names` or below
    it, and not inside one of `excluded`.

    By prefix, not by exact name: torchao's `get_module_name_filter` looks for the name itself in the node's
    `nn_module_stack`, and torch.export records only modules whose `__call__` ran. The split wrappers call
    `model.encode(...)` / `model.decode(...)`, and HRNet calls its stages' methods, so a conv's stack reads
    "model.feature_extractor.conv1" without "model.feature_extractor": filtered by exact name, no conv was
    annotated and the "int8" programs were float but for their concatenations.
    """
    def under(path: str, prefixes: Sequence[str]) -> bool:
        return any(path == m or path.startswith(m + ".") for m in prefixes)

    def recorded_inside(node: Any) -> bool:
        paths = [path.removeprefix("L['self'].") for path, _ in node.meta.get("nn_module_stack", {}).values()]
        return any(under(p, module_names) for p in paths) and not any(under(p, excluded) for p in paths)

    def inside(node: Any) -> bool:
        # Weights (and graph inputs) carry no module stack; the conv annotators test them with the conv, so
        # they count as inside where every op reading them is.
        if node.op in ("get_attr", "placeholder"):
            return bool(node.users) and all(recorded_inside(user) for user in node.users)
        return recorded_inside(node)

    return inside


def scoped_quantizer(module_names: Sequence[str], config: Any, excluded: Sequence[str] = ()) -> Any:
    """An XNNPACKQuantizer that annotates exactly the nodes inside `module_names` and not inside `excluded`
    (see `inside_modules`).

    Beyond the module filter: XNNPACK's `cat` annotator ignores every filter (each torch.cat becomes int8, the
    top-level click rasteriser's included: 0.19 logit error on the tiny decoder with nothing else quantised),
    and `propagate_annotation` carries int8 from a module's last op into the reshapes and transposes after it.
    This subclass drops every annotation on a node outside the modules after both ran, so those ops stay float
    as the module docstring says. (That leak was also why the late head's `fusion` block once had to stay
    float: int8 reshapes after it made XNNPACK fail at run time, "Propagating input shapes failed".)
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    inside = inside_modules(module_names, excluded)

    class ScopedXNNPACKQuantizer(XNNPACKQuantizer):
        def annotate(self, model: Any) -> Any:
            model = super().annotate(model)
            for node in model.graph.nodes:
                if Q_ANNOTATION_KEY in node.meta and not inside(node):
                    del node.meta[Q_ANNOTATION_KEY]
            return model

    quantizer = ScopedXNNPACKQuantizer()
    quantizer.set_global(config)
    quantizer.set_filter_function(inside)
    return quantizer


def _calibration_feeds(data: CalibrationData, graph: str, limit: int) -> Iterable[dict[str, Any]]:
    feeds = list(data.feeds(graph))
    step = max(1, len(feeds) // limit)
    return feeds[::step][:limit]


def quantize_module(model: Any, graph: str, module: Any, example: tuple[Any, ...], data: CalibrationData,
                    max_feeds: int = MAX_FEEDS, keep_float: Sequence[str] = ()) -> Any:
    """The PT2E-quantised GraphModule of one split graph (same inputs and outputs as `module`).

    keep_float: submodule paths under the model left float (`--keep-float`).
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeclick.model.split import model_graph_specs
    from edgeclick.runtimes.executorch import dense

    quantizer = scoped_quantizer([QUANTIZED], get_symmetric_quantization_config(is_per_channel=True), float_paths(keep_float))
    captured = torch.export.export(module, example, strict=False).module()
    prepared = prepare_pt2e(captured, quantizer)
    names = model_graph_specs(model)[graph].input_names()
    with torch.no_grad():
        for feeds in _calibration_feeds(data, graph, max_feeds):
            prepared(*[dense(feeds[n]) for n in names])
    return convert_pt2e(prepared)


def quantize_executorch_artifact(artifact_dir: str | Path, data: CalibrationData, out_dir: str | Path, *,
                                 graphs: Sequence[str] = (contract.ENCODER, contract.DECODER), overwrite: bool = False,
                                 max_feeds: int = MAX_FEEDS, keep_float: Sequence[str] = ()) -> Path:
    """Write an int8 copy of the fp32 ExecuTorch artifact `artifact_dir` to `out_dir` (atomically); return it.

    data: calibration feeds recorded at the artifact's size. graphs: which graphs to quantise; the others
    are copied fp32. keep_float: submodule paths under the model left float ("feature_proj"). The manifest
    is the source's with precision "int8", new hashes, the lowering facts, the calibration in options and the
    values against PyTorch (export/validation.py; int8 gates).
    """
    from edgeclick.export.executorch import example_inputs, graph_filename, lower_graph, prepare_model, program_metadata
    from edgeclick.export.validation import check_values
    from edgeclick.model.checkpoint import load_checkpoint
    from edgeclick.model.split import model_graph_specs
    from edgeclick.runtimes.artifact import resolve_source
    from edgeclick.runtimes.executorch import ExecuTorchBackend

    src = read_manifest(artifact_dir)
    if src.format != "executorch" or src.precision != "fp32":
        raise ValueError(f"{src.root}: a {src.precision} {src.format} artifact; int8 ExecuTorch starts from the fp32 "
                         "`edgeclick export --target executorch` artifact")
    if tuple(data.input_size) != tuple(src.size):
        raise ValueError(f"calibration data is {data.input_size}, the artifact {src.size}; record it at the artifact's size")
    bad = [g for g in graphs if g not in (contract.ENCODER, contract.DECODER)]
    if bad or not graphs:
        raise ValueError(f"graphs {list(graphs)}: choose from {contract.ENCODER!r} / {contract.DECODER!r}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True)")
    model = load_checkpoint(resolve_source(src.root).checkpoint).eval()
    check_submodules(model, keep_float)
    # As the fp32 programs compute it (artifacts from before the rasteriser option drew with "scatter").
    prepare_model(model, src.options.get("rasteriser", "scatter"))
    size = (int(src.size[0]), int(src.size[1]))
    examples = example_inputs(model, size)
    facts = dict(src.metadata.get("graphs", {}))
    with publishing(out) as staging:
        files: dict[str, Path] = {}
        for graph in (contract.ENCODER, contract.DECODER):
            dst = staging / graph_filename(graph)
            if graph in graphs:
                module, example = examples[graph]
                quantized = quantize_module(model, graph, module, example, data, max_feeds, keep_float)
                buffer, facts[graph] = lower_graph(quantized, example, program_metadata(model, graph, PRECISION))
                dst.write_bytes(buffer)
            else:
                shutil.copy2(src.path(graph), dst)
            files[graph] = Path(dst.name)
        backend = ExecuTorchBackend.from_files({g: staging / p for g, p in files.items()}, model_graph_specs(model), size)
        values = check_values(model, backend.run, PRECISION, [size])
        options = {**src.options, "calibration": {
            "method": f"XNNPACK PT2E ({METHOD})", "weights": "int8 symmetric per channel", "activations": "int8 static",
            "graphs": list(graphs), "feeds_per_graph": max_feeds, "kept_float": "the model's top-level ops (normalisation, "
            f"click rasteriser ({model.rasteriser}), pixel shuffle) and the submodules {list(keep_float)}", "source": str(src.root), "data": data.meta}}
        write_manifest(dataclasses.replace(
            src, root=staging, name=out.name, precision=PRECISION, files=file_entries(staging, files), options=options,
            metadata={**src.metadata, "graphs": facts}, validation=values,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds")))
    read_manifest(out)  # hashes and contract as a runtime will check them
    return out
