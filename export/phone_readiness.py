"""Phone readiness of an ONNX artifact: ONNX Runtime Mobile's own usability checker and the ORT format.

    edgeclick phone-readiness artifacts/m-late-640x960-fp32-onnx [--out reports/phone-readiness/NAME]
    report = phone_readiness("artifacts/m-late-640x960-fp32-onnx", out_dir)   # readiness.json / .md, *.ort

Per graph (encoder, decoder):
1. onnxruntime's mobile usability checker (`onnxruntime.tools.mobile_helpers.usability_checker`, what
   `python -m onnxruntime.tools.check_onnx_model_mobile_usability` runs), in process: the graph optimised
   at ORT's BASIC level, shapes inferred, then the partitions the NNAPI EP (Android) and the CoreML EP (iOS;
   MLProgram and NeuralNetwork) would take, the nodes each refuses and why (operator not in the EP's list,
   an input of dynamic shape, a tensor rank above the EP's limit), the checker's caveats and its verdict.
   The checker's own log is kept verbatim. The per-node reasons apply the checker's criteria node by node.
2. Conversion to the ORT format (`onnxruntime.tools.convert_onnx_models_to_ort`, optimisation style
   "Runtime": the graph is kept at BASIC level, which NNAPI / CoreML EPs partition; CPU-only fusions are
   recorded to be replayed), then the .ort files are loaded by onnxruntime and run on the contract's
   reference inputs beside the .onnx files, gated by contract.TOLERANCES[the artifact's precision].

The goal per graph is one NNAPI partition and one CoreML partition over static shapes; where a node
prevents it, the report names it. What this does not do: run NNAPI or CoreML (no phone here); the
partitions are the checker's prediction from operator lists, not a measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeclick import contract
from edgeclick.io import publishing, write_json_atomic, write_text_atomic

EPS: dict[str, str] = {
    "NNAPI": "nnapi_supported_ops.md",
    "CoreML MLProgram": "coreml_supported_mlprogram_ops.md",
    "CoreML NeuralNetwork": "coreml_supported_neuralnetwork_ops.md",
}
"""EP → the checker's supported-operator list (shipped with onnxruntime's Python package)."""
COREML_MAX_RANK = 5  # the checker's CoreML limit (NNAPI: none)


@dataclass
class EpPartitions:
    """One EP's partitioning of one graph, as onnxruntime's checker predicts it.

    nodes / supported: node counts of the BASIC-optimised graph; partitions: how many EP subgraphs;
    partition_sizes: nodes per partition; suitability: the checker's verdict (YES / MAYBE / NO);
    refused: one entry per node the EP does not take, {"node", "op", "reason"}; caveats: what the checker
    says it did not verify.
    """

    ep: str
    nodes: int
    supported: int
    partitions: int
    partition_sizes: list[int]
    suitability: str
    unsupported_ops: list[str]
    refused: list[dict[str, str]]
    caveats: list[str]

    @property
    def single_partition(self) -> bool:
        """One partition over every node, and no node refused by a constraint the checker leaves unchecked."""
        return self.partitions == 1 and self.supported == self.nodes and not self.refused


@dataclass
class GraphReadiness:
    """Readiness of one graph: the shapes, each EP's partitions, the ORT-format copy and its values."""

    graph: str
    onnx: str
    dynamic_inputs: list[str]
    dynamic_values: int
    eps: dict[str, EpPartitions]
    checker_log: list[str]
    ort_file: str | None = None
    ort_bytes: int | None = None
    ort_loads: bool = False
    values: dict[str, Any] = field(default_factory=dict)


def _checker_modules() -> tuple[Any, Any]:
    from onnxruntime.tools import onnx_model_utils
    from onnxruntime.tools.mobile_helpers import usability_checker

    return usability_checker, onnx_model_utils


DCR_ONLY_EPS = ("NNAPI", "CoreML NeuralNetwork")
"""EPs whose documented DepthToSpace constraint is "only DCR mode" (the checker lists it as an unchecked caveat)."""


def _refusals(model: Any, checker: Any, max_rank: int, ep: str = "") -> list[dict[str, str]]:
    """Every node the EP refuses, with the checker's criterion that refuses it (first that applies), and the
    nodes that break a documented EP constraint the checker only lists as a caveat (DepthToSpace's mode)."""
    from onnxruntime.tools.onnx_model_utils import is_fixed_size_tensor

    from .onnx_rewrites import depth_to_space_mode

    graph = model.graph
    values = {v.name: v for v in (*graph.input, *graph.output, *graph.value_info)}
    initializers = {i.name for i in graph.initializer}
    refused = []
    for node in graph.node:
        reason = None
        if not checker.is_op_supported(node):
            reason = "operator not supported by this EP"
        else:
            # The checker's test: an input is fixed when it is an initializer or a value of fixed inferred shape.
            dynamic = [i for i in node.input if i not in initializers and not (i in values and is_fixed_size_tensor(values[i]))]
            ranks = [i for i in node.input if i in values and values[i].type.HasField("tensor_type")
                     and len(values[i].type.tensor_type.shape.dim) > max_rank]
            if dynamic and dynamic[0] == "":
                reason = ("an omitted optional input ('') counts as a value of unknown shape for the checker "
                          "(every real input has a fixed shape)")
            elif dynamic:
                reason = f"input {dynamic[0]!r} has a dynamic shape"
            elif ranks:
                reason = f"input {ranks[0]!r} has rank > {max_rank}"
            elif node.op_type == "DepthToSpace" and ep in DCR_ONLY_EPS and depth_to_space_mode(node) != "DCR":
                reason = (f"mode {depth_to_space_mode(node)}: this EP takes DCR only (a caveat the checker does not check; the "
                          "exporter writes DCR where the two modes agree, a single output channel)")
        if reason:
            refused.append({"node": node.name or f"<{node.op_type}>", "op": node.op_type, "reason": reason})
    return refused


def check_graph(path: Path, graph: str) -> GraphReadiness:
    """Run onnxruntime's mobile usability checker on one .onnx file (in process; its log captured)."""
    import tempfile

    usability_checker, utils = _checker_modules()
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(f"edgeclick.phone_readiness.{graph}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    script_dir = Path(usability_checker.__file__).parent
    try:
        with tempfile.TemporaryDirectory() as tmp:
            optimized = Path(tmp) / path.name
            utils.optimize_model(path, optimized, use_external_initializers=True)  # what analyze_model checks
            model = utils.ModelProtoWithShapeInfo(optimized).model_with_shape_info
            with contextlib.redirect_stdout(io.StringIO()):
                usability_checker.checker(optimized.resolve(strict=True), logger)  # the checker's own verdict, logged
            dynamic_inputs, dynamic_values = usability_checker.check_shapes(model.graph)
            eps = {}
            for ep, ops_file in EPS.items():
                max_rank = 999 if ep == "NNAPI" else COREML_MAX_RANK
                checker = usability_checker._SupportedOpsChecker(script_dir / ops_file)
                info = usability_checker.check_partitioning(model.graph, checker, True, max_rank)
                eps[ep] = EpPartitions(
                    ep=ep, nodes=info.num_nodes, supported=info.num_supported_nodes, partitions=info.num_partitions,
                    partition_sizes=[len(g) for g in info.supported_groups], suitability=info.suitability().name,
                    unsupported_ops=sorted(info.unsupported_ops), refused=_refusals(model, checker, max_rank, ep),
                    caveats=sorted(checker.get_caveats()))
    finally:
        logger.removeHandler(handler)
    return GraphReadiness(graph=graph, onnx=str(path), dynamic_inputs=[i.name for i in dynamic_inputs],
                          dynamic_values=int(dynamic_values), eps=eps, checker_log=records)


def convert_to_ort(path: Path, out_dir: Path) -> Path:
    """`path` (.onnx) → out_dir/<stem>.ort with onnxruntime's converter (style Runtime; see module docstring)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile_dir() as tmp:
        src = tmp / path.name
        shutil.copy2(path, src)  # the converter converts a file's folder; keep the artifact untouched
        with contextlib.redirect_stdout(io.StringIO()):
            convert_onnx_models_to_ort(src, output_dir=tmp, optimization_styles=[OptimizationStyle.Runtime])
        produced = sorted(tmp.glob(f"{path.stem}*.ort"))
        if not produced:
            raise RuntimeError(f"{path}: onnxruntime's converter wrote no .ort file")
        dest = out_dir / f"{path.stem}.ort"
        shutil.move(str(produced[0]), dest)
    return dest


@contextlib.contextmanager
def tempfile_dir() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def compare_ort_format(manifest: Any, ort_files: dict[str, Path]) -> dict[str, Any]:
    """The .ort graphs against the .onnx graphs on the contract's reference inputs (end to end).

    Gates as parity does for the artifact's precision (contract.GATED over contract.TOLERANCES): max |Δlogit|
    and the thresholded mask's IoU; the encoder outputs' max |Δ| is reported.
    """
    from edgeclick.runtimes.artifact import graph_specs_from_manifest
    from edgeclick.runtimes.ort import OrtBackend

    from .validation import reference_feeds

    specs = graph_specs_from_manifest(manifest)
    size = tuple(manifest.size)
    onnx_backend = OrtBackend(manifest.root, threads=1)
    ort_backend = OrtBackend.from_files(ort_files, specs, None if manifest.dynamic else size, threads=1)
    feeds = reference_feeds(size)  # type: ignore[arg-type]
    results = []
    for backend in (onnx_backend, ort_backend):
        features = backend.run(contract.ENCODER, {contract.IMAGE: feeds[contract.IMAGE]})
        logits = backend.run(contract.DECODER, {**features, contract.CLICKS: feeds[contract.CLICKS],
                                                contract.PREV_MASK: feeds[contract.PREV_MASK]})[contract.LOGITS]
        results.append((features, logits))
    (f_onnx, l_onnx), (f_ort, l_ort) = results
    threshold = float(np.log(contract.PROB_THRESHOLD / (1 - contract.PROB_THRESHOLD)))
    a, b = l_onnx > threshold, l_ort > threshold
    union = np.logical_or(a, b).sum()
    iou = 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
    tol = contract.TOLERANCES[manifest.precision]
    gated = contract.GATED[manifest.precision]
    max_abs = float(np.abs(l_onnx - l_ort).max())
    checks = {"max_abs_logit": max_abs <= tol.max_abs_logit, "min_mask_iou_per_click": iou >= tol.min_mask_iou_per_click,
              "min_mean_mask_iou": iou >= tol.min_mean_mask_iou}
    return {"reference": ".onnx in onnxruntime (CPU)", "inputs": "contract reference feeds (export/validation.py)",
            "encoder_max_abs": {k: float(np.abs(f_onnx[k] - f_ort[k]).max()) for k in f_onnx},
            "max_abs_logit": max_abs, "mask_iou": iou, "precision": manifest.precision, "gates": list(gated),
            "passed": all(checks[g] for g in gated)}


def phone_readiness(artifact_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Check both graphs of an ONNX artifact, convert them to .ort and verify those; write the report.

    out_dir receives readiness.json, readiness.md, encoder.ort and decoder.ort (published as one folder,
    atomically). Returns the report as written to readiness.json.
    """
    from edgeclick.manifest import read_manifest

    manifest = read_manifest(artifact_dir)
    if manifest.format != "onnx":
        raise ValueError(f"{manifest.root}: a {manifest.format!r} artifact; phone readiness checks ONNX artifacts "
                         "(export one with `edgeclick export --target onnx`)")
    out = Path(out_dir)
    with publishing(out) as staging:
        graphs: dict[str, GraphReadiness] = {}
        ort_files: dict[str, Path] = {}
        for graph in (contract.ENCODER, contract.DECODER):
            graphs[graph] = check_graph(manifest.path(graph), graph)
            ort_files[graph] = convert_to_ort(manifest.path(graph), staging)
        values = compare_ort_format(manifest, ort_files)  # loading them is part of it
        for graph, readiness in graphs.items():
            readiness.ort_file, readiness.ort_bytes, readiness.ort_loads = ort_files[graph].name, ort_files[graph].stat().st_size, True
        report = {"artifact": str(manifest.root), "size": list(manifest.size), "dynamic": manifest.dynamic,
                  "precision": manifest.precision, "model": manifest.model.get("arch"), "fusion": manifest.model.get("fusion"),
                  "onnxruntime": _ort_version(), "graphs": {g: _as_json(r) for g, r in graphs.items()},
                  "rasteriser": manifest.options.get("rasteriser", "scatter"),
                  "ort_format_values": values, "goal": goal_summary(graphs)}
        write_json_atomic(staging / "readiness.json", report)
        write_text_atomic(staging / "readiness.md", markdown(report))
    return report


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _as_json(readiness: GraphReadiness) -> dict[str, Any]:
    data = asdict(readiness)
    for ep, parts in readiness.eps.items():
        data["eps"][ep]["single_partition"] = parts.single_partition
    return data


def goal_summary(graphs: dict[str, GraphReadiness]) -> dict[str, Any]:
    """Per graph and EP: met (one partition over every node, static shapes), else the op types that break it."""
    summary: dict[str, Any] = {}
    for graph, r in graphs.items():
        for ep, parts in r.eps.items():
            blockers = sorted({f"{x['op']} ({x['reason']})" for x in parts.refused})
            summary[f"{graph} / {ep}"] = {"met": parts.single_partition and not r.dynamic_inputs,
                                          "partitions": parts.partitions, "blockers": blockers}
    return summary


def markdown(report: dict[str, Any]) -> str:
    """readiness.md: the goal table, then each graph's partitions, refused nodes, .ort values and checker log."""
    v = report["ort_format_values"]
    lines = [f"# Phone readiness — {Path(report['artifact']).name}", "",
             f"onnxruntime {report['onnxruntime']}'s mobile usability checker on the BASIC-optimised graphs "
             f"({report['size'][0]}×{report['size'][1]}, {'dynamic' if report['dynamic'] else 'static'} shapes, "
             f"{report['precision']}). Partitions are the checker's prediction from the EPs' operator lists; "
             "nothing here ran on NNAPI or Core ML.", "",
             "| graph / EP | single partition | partitions | nodes taken | what prevents it |", "|---|---|---:|---:|---|"]
    for key, goal in report["goal"].items():
        graph, ep = key.split(" / ")
        parts = report["graphs"][graph]["eps"][ep]
        lines.append(f"| {key} | {'yes' if goal['met'] else 'no'} | {goal['partitions']} | {parts['supported']}/{parts['nodes']} "
                     f"| {'; '.join(goal['blockers']) or '-'} |")
    if report.get("rasteriser") == "scatter" and not report["goal"][f"{contract.DECODER} / NNAPI"]["met"]:
        lines += ["", RASTERISER_HINT]
    lines += ["", f"ORT format (.ort, optimisation style Runtime): loads in onnxruntime; end to end against the .onnx "
              f"max |Δlogit| {v['max_abs_logit']:.3g}, mask IoU {v['mask_iou']:.6f}, gates {v['gates']} "
              f"({v['precision']}): {'pass' if v['passed'] else 'FAIL'}.", ""]
    for graph, r in report["graphs"].items():
        lines += [f"## {graph}", "", f"Dynamic inputs: {r['dynamic_inputs'] or 'none'}; values of dynamic shape: "
                  f"{r['dynamic_values']}. ORT format: `{r['ort_file']}` ({r['ort_bytes'] / 1e6:.1f} MB).", ""]
        for ep, parts in r["eps"].items():
            lines.append(f"- **{ep}**: {parts['partitions']} partition(s) {parts['partition_sizes']}, "
                         f"{parts['supported']}/{parts['nodes']} nodes, checker verdict {parts['suitability']}.")
            for x in parts["refused"][:20]:
                lines.append(f"  - refused `{x['node']}` ({x['op']}): {x['reason']}")
            if len(parts["refused"]) > 20:
                lines.append(f"  - … {len(parts['refused']) - 20} more (readiness.json)")
            if parts["caveats"]:
                lines.append(f"  - caveats not checked by the checker: {'; '.join(parts['caveats'])}")
        lines += ["", "<details><summary>checker log</summary>", "", "```", *r["checker_log"], "```", "", "</details>", ""]
    return "\n".join(lines)


RASTERISER_HINT = ("The decoder draws click disks with the \"scatter\" rasteriser (comparisons, Where, ScatterElements: "
                   "the fastest on a desktop CPU). For a phone, export with `--option rasteriser=broadcast`: the same "
                   "maps for pixel clicks, from ops both EPs take (edgeclick/model/disks.py).")


def run_cli(args: argparse.Namespace) -> int:
    """Handler of `edgeclick phone-readiness`."""
    out = args.out or Path("reports") / "phone-readiness" / Path(args.artifact).name
    report = phone_readiness(args.artifact, out)
    for key, goal in report["goal"].items():
        state = "single partition" if goal["met"] else f"{goal['partitions']} partitions; blocked by {', '.join(goal['blockers']) or 'shapes'}"
        print(f"{key}: {state}")
    if report["rasteriser"] == "scatter" and not report["goal"][f"{contract.DECODER} / NNAPI"]["met"]:
        print(RASTERISER_HINT)
    values = report["ort_format_values"]
    print(f".ort vs .onnx: max |Δlogit| {values['max_abs_logit']:.3g}, mask IoU {values['mask_iou']:.6f} "
          f"({'pass' if values['passed'] else 'FAIL'})")
    print(f"report: {out / 'readiness.md'}")
    return 0 if values["passed"] else 1


def register_cli(subparsers: Any) -> None:
    """Add the `phone-readiness` subcommand."""
    p = subparsers.add_parser(
        "phone-readiness", help="ONNX Runtime Mobile readiness of an ONNX artifact: NNAPI / CoreML EP partitions, .ort files",
        description="Run onnxruntime's mobile usability checker on the encoder and decoder (NNAPI and CoreML EP "
                    "partitions, refused nodes and why), convert both to the ORT format, load the .ort files and "
                    "compare them with the .onnx files within the contract's tolerances. Exit 1 when they differ.")
    p.add_argument("artifact", type=Path, metavar="ARTIFACT_DIR", help="an ONNX artifact (edgeclick export --target onnx)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/phone-readiness/<artifact name>)")
    p.set_defaults(func=run_cli)

