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


# Submodules kept float (none). The late head's `fusion` block once had to be: int8, it made the decoder fail
# in XNNPACK at run time ("Propagating input shapes failed", CALL_DELEGATE 0x1). The cause was int8 leaking
# out of it into the reshapes after it, which `scoped_quantizer` now stops; with nothing kept float the
# decoder runs (tests/test_executorch.py). The list stays as the place to keep a block float by name.
FLOAT_SUBMODULES: tuple[str, ...] = ()


def quantized_submodules(model: Any) -> list[str]:
    """Names (as torch.export records them under the split wrapper) of the modules the quantizer annotates."""
    return [f"model.{name}" for name, _ in model.named_children() if name not in FLOAT_SUBMODULES]


def inside_modules(module_names: Sequence[str]) -> Callable[[Any], bool]:
    """A node filter: True for an FX node that torch.export recorded inside one of `module_names` or below it.

    By prefix, not by exact name: torchao's `get_module_name_filter` looks for the name itself in the node's
    `nn_module_stack`, and torch.export records only modules whose `__call__` ran. The split wrappers call
    `model.encode(...)` / `model.decode(...)`, and HRNet calls its stages' methods, so a conv's stack reads
    "model.feature_extractor.conv1" without "model.feature_extractor": filtered by exact name, no conv was
    annotated and the "int8" programs were float but for their concatenations.
    """
    prefixes = tuple(module_names)

    def recorded_inside(node: Any) -> bool:
        for path, _ in node.meta.get("nn_module_stack", {}).values():
            path = path.removeprefix("L['self'].")
            if any(path == m or path.startswith(m + ".") for m in prefixes):
                return True
        return False

    def inside(node: Any) -> bool:
        # Weights (and graph inputs) carry no module stack; the conv annotators test them with the conv, so
        # they count as inside where every op reading them is.
        if node.op in ("get_attr", "placeholder"):
            return bool(node.users) and all(recorded_inside(user) for user in node.users)
        return recorded_inside(node)

    return inside


def scoped_quantizer(module_names: Sequence[str], config: Any) -> Any:
    """An XNNPACKQuantizer that annotates exactly the nodes inside `module_names` (see `inside_modules`).

    Beyond the module filter: XNNPACK's `cat` annotator ignores every filter (each torch.cat becomes int8, the
    top-level click rasteriser's included: 0.19 logit error on the tiny decoder with nothing else quantised),
    and `propagate_annotation` carries int8 from a module's last op into the reshapes and transposes after it.
    This subclass drops every annotation on a node outside the modules after both ran, so those ops stay float
    as the module docstring says.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    inside = inside_modules(module_names)

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
                    max_feeds: int = MAX_FEEDS) -> Any:
    """The PT2E-quantised GraphModule of one split graph (same inputs and outputs as `module`)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeclick.model.split import model_graph_specs
    from edgeclick.runtimes.executorch import dense

    quantizer = scoped_quantizer(quantized_submodules(model), get_symmetric_quantization_config(is_per_channel=True))
    captured = torch.export.export(module, example, strict=False).module()
    prepared = prepare_pt2e(captured, quantizer)
    names = model_graph_specs(model)[graph].input_names()
    with torch.no_grad():
        for feeds in _calibration_feeds(data, graph, max_feeds):
            prepared(*[dense(feeds[n]) for n in names])
    return convert_pt2e(prepared)


def quantize_executorch_artifact(artifact_dir: str | Path, data: CalibrationData, out_dir: str | Path, *,
                                 graphs: Sequence[str] = (contract.ENCODER, contract.DECODER), overwrite: bool = False,
                                 max_feeds: int = MAX_FEEDS) -> Path:
    """Write an int8 copy of the fp32 ExecuTorch artifact `artifact_dir` to `out_dir` (atomically); return it.

    data: calibration feeds recorded at the artifact's size. graphs: which graphs to quantise; the others
    are copied fp32. The manifest is the source's with precision "int8", new hashes, the lowering facts,
    the calibration in options and the values against PyTorch (export/validation.py; int8 gates).
    """
    from edgeclick.export.executorch import example_inputs, graph_filename, lower_graph, program_metadata
    from edgeclick.export.validation import check_values
    from edgeclick.model.checkpoint import load_checkpoint
    from edgeclick.model.base import use_rasteriser
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
    # The fp32 program's rasteriser (artifacts from before the option drew with "scatter").
    use_rasteriser(model, src.options.get("rasteriser", "scatter"))
    size = (int(src.size[0]), int(src.size[1]))
    examples = example_inputs(model, size)
    facts = dict(src.metadata.get("graphs", {}))
    with publishing(out) as staging:
        files: dict[str, Path] = {}
        for graph in (contract.ENCODER, contract.DECODER):
            dst = staging / graph_filename(graph)
            if graph in graphs:
                module, example = examples[graph]
                quantized = quantize_module(model, graph, module, example, data, max_feeds)
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
            f"click rasteriser ({model.rasteriser}), pixel shuffle) and the submodules {list(FLOAT_SUBMODULES)}", "source": str(src.root), "data": data.meta}}
        write_manifest(dataclasses.replace(
            src, root=staging, name=out.name, precision=PRECISION, files=file_entries(staging, files), options=options,
            metadata={**src.metadata, "graphs": facts}, validation=values,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds")))
    read_manifest(out)  # hashes and contract as a runtime will check them
    return out
