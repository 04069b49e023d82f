"""Compressed CoreML variants of a CoreML artifact (coremltools.optimize.coreml), normally the fp16 export.

    art = compress_coreml_artifact("artifacts/m-late-640x960-fp16-coreml", "artifacts/m-late-640x960-palette6-coreml",
                                   "palette6")
    backend = MilReferenceBackend(art)     # any OS: the MIL reference evaluator (runtimes.coreml_reference)
    backend = CoreMLBackend(art)           # macOS: Core ML itself (runtimes.coreml, unchanged)

Schemes (`SCHEMES`):

    w8        8-bit weights: linear_quantize_weights, OpLinearQuantizerConfig(linear_symmetric, int8,
              per_channel) → constexpr_affine_dequantize (iOS 16/17 targets) or
              constexpr_blockwise_shift_scale (iOS 18). About half the fp16 weight bytes.
    palette6  6-bit palettized weights: palettize_weights, OpPalettizerConfig(kmeans, nbits=6, per_tensor
              LUT of 64 fp16 values; k-means by scikit-learn) → constexpr_lut_to_dense.
    palette4  the same with 4 bits (16 values).
    w8a8      int8 activations, then w8 weights: linear_quantize_activations inserts quantize/dequantize
              pairs around conv / pool / add, with ranges calibrated on `CalibrationData` feeds. The
              calibration predicts every sample with Core ML, so it runs on macOS only; elsewhere it raises
              CoreMLCalibrationUnavailable before any work.

The weight-only schemes run on any OS and change only how weights are stored: Core ML decompresses them
to the program's compute type (fp16) at load or on the fly, so activations and the manifest's precision
stay the source's; w8a8's manifest says "int8".

What is compressed: the constant weight of each conv / conv_transpose / linear / matmul with more than
`weight_threshold` elements (default DEFAULT_WEIGHT_THRESHOLD = 2048, coremltools' own default). Every
other constant stays as exported — in particular the decoder's click arithmetic (its fp32 coordinate grids
are rank-1 `arange`s, which coremltools never compresses anyway, and they feed sub / equal, not a weight
op), so compression cannot move a click disk. Measured on the registered models: at 2048, 0.06–0.31% of
the weight elements of the HRNet-W18s / W18 / W32 encoders (and early-fusion decoders) stay fp16, while
the late-fusion decoder (7 convs, 4.0k weights, 8 KB, the graph that runs per click) and the early-fusion
encoder (one 2k-weight conv) stay fp16 entirely: compressing them would save a few kilobytes.

The result is a new artifact (same "coreml" format, same sizes and contract metadata — restored on the
packages if coremltools dropped it — plus META_COMPRESSION), staged next to `out_dir` and renamed into
place only when complete. Its manifest's options["calibration"] records the scheme, nbits, mode,
weight_threshold, the source and per-graph package / weight-file bytes before and after; its
validation["weights"] the decompressed weights' error against the source's (relative RMS, max |Δ|).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from edgeclick.manifest import (
    Manifest,
    file_entries,
    read_manifest,
    write_manifest,
)
from edgeclick.runtimes.coreml import package_path, read_artifact

from edgeclick import contract
from edgeclick.io import publishing
from edgeclick.log import quiet_bars

from .data import CalibrationData

GRAPHS: tuple[str, ...] = (contract.ENCODER, contract.DECODER)
DEFAULT_WEIGHT_THRESHOLD = 2048
"""Weights with more elements than this are compressed (see the module docstring for what it leaves)."""
WEIGHT_OPS: tuple[str, ...] = ("conv", "conv_transpose", "linear", "matmul")
"""Op types whose constant inputs count as weights; constants feeding anything else are never compressed."""
META_COMPRESSION = "edgeclick.compression"
"""user_defined_metadata key on compressed packages: JSON of the scheme's record."""
WEIGHT_FILE = Path("Data") / "com.apple.CoreML" / "weights" / "weight.bin"
"""Where an .mlpackage keeps its weights (what compression shrinks)."""
_W8_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")  # iOS 16/17 · iOS 18
_PALETTE_OPS = ("constexpr_lut_to_dense",)


class CoreMLCalibrationUnavailable(RuntimeError):
    """An activation-calibrated scheme (w8a8) asked for where Core ML cannot predict (not macOS)."""


@dataclass(frozen=True)
class Scheme:
    """One compression recipe.

    method: "linear" (linear_quantize_weights) or "palettize" (palettize_weights).
    nbits / mode / granularity: the coremltools weight config. activations: int8 activations first
    (linear_quantize_activations, needs calibration data and macOS).
    constexpr_ops: the op types the compressed weights appear as (any one, by deployment target).
    """

    name: str
    method: str
    nbits: int
    mode: str
    granularity: str
    constexpr_ops: tuple[str, ...]
    activations: bool = False

    def record(self, weight_threshold: int) -> dict[str, Any]:
        """The scheme as the manifest and package metadata record it."""
        record: dict[str, Any] = {"scheme": self.name, "method": self.method, "nbits": self.nbits, "mode": self.mode,
                                  "granularity": self.granularity, "weight_threshold": weight_threshold,
                                  "weight_ops": list(WEIGHT_OPS)}
        if self.activations:
            record["activations"] = {"nbits": 8, "dtype": "int8", "mode": "linear_symmetric"}
        return record


SCHEMES: dict[str, Scheme] = {
    "w8": Scheme("w8", "linear", 8, "linear_symmetric", "per_channel", _W8_OPS),
    "palette6": Scheme("palette6", "palettize", 6, "kmeans", "per_tensor", _PALETTE_OPS),
    "palette4": Scheme("palette4", "palettize", 4, "kmeans", "per_tensor", _PALETTE_OPS),
    "w8a8": Scheme("w8a8", "linear", 8, "linear_symmetric", "per_channel", _W8_OPS, activations=True),
}


def get_scheme(name: str) -> Scheme:
    """The registered scheme `name`, or a ValueError listing them."""
    if name not in SCHEMES:
        raise ValueError(f"unknown CoreML compression scheme {name!r}; choose one of {list(SCHEMES)}")
    return SCHEMES[name]


# -- argument checks -----------------------------------------------------------------------------------

def source_manifest(artifact_dir: str | Path) -> Manifest:
    """The source artifact's manifest (files verified), refused unless it is a complete, uncompressed
    CoreML artifact."""
    src = read_manifest(artifact_dir)
    if src.format != "coreml":
        raise ValueError(f"{src.root}: a {src.format!r} artifact; CoreML compression takes a CoreML artifact "
                         "(export one with `edgeclick export --target coreml --precision fp16`)")
    if not src.complete:
        raise ValueError(f"{src.root}: incomplete CoreML artifact ({src.missing}); re-export it")
    if "calibration" in src.options:
        done = src.options["calibration"].get("scheme", src.options["calibration"])
        raise ValueError(f"{src.root}: already compressed ({done}); compress the uncompressed export instead "
                         "(its compressed weights cannot be compressed again)")
    return src


def check_data(scheme: Scheme, data: CalibrationData | None, src: Manifest) -> None:
    """Calibration data is required by activation schemes, at the artifact's size, and refused by the
    others (it would be ignored)."""
    if not scheme.activations:
        if data is not None:
            raise ValueError(f"scheme {scheme.name!r} compresses weights only and takes no calibration data; drop data= "
                             "(only w8a8 calibrates activations)")
        return
    if data is None:
        raise ValueError(f"scheme {scheme.name!r} calibrates int8 activation ranges on recorded click sessions: pass "
                         "data=CalibrationData (calibration.data.collect_calibration_data, or CalibrationData.load)")
    if tuple(data.input_size) != tuple(src.size):
        raise ValueError(f"calibration data is {data.input_size[0]}x{data.input_size[1]}, the artifact {src.size[0]}x"
                         f"{src.size[1]}; collect it at the artifact's size")


def check_weight_threshold(weight_threshold: int) -> int:
    """The threshold (weight elements) as an int, or a ValueError."""
    if isinstance(weight_threshold, bool) or not isinstance(weight_threshold, (int, np.integer)) or weight_threshold < 0:
        raise ValueError(f"weight_threshold must be an int >= 0 (weight elements), got {weight_threshold!r}")
    return int(weight_threshold)


def require_coreml_prediction(scheme: Scheme) -> None:
    """Raise CoreMLCalibrationUnavailable unless Core ML can predict here (macOS)."""
    if sys.platform == "darwin":
        return
    raise CoreMLCalibrationUnavailable(
        f"scheme {scheme.name!r} calibrates activation ranges by running the source packages with Core ML "
        f"(coremltools' linear_quantize_activations predicts every sample), and Core ML prediction needs macOS; "
        f"this is {sys.platform}. Here: save the calibration data (data.save('calib.npz')). On a Mac with edgeclick "
        "installed: edgeclick.calibration.coreml.compress_coreml_artifact(SRC, OUT, 'w8a8', "
        "data=CalibrationData.load('calib.npz')). "
        "The weight-only schemes w8 / palette6 / palette4 run on this machine."
    )


# -- one package -------------------------------------------------------------------------------------------

def optimization_config(scheme: Scheme, weight_threshold: int) -> Any:
    """The coremltools OptimizationConfig compressing WEIGHT_OPS' weights only (no global config, so a
    constant feeding any other op keeps its type and value)."""
    import coremltools.optimize as cto

    if scheme.method == "linear":
        op_config: Any = cto.coreml.OpLinearQuantizerConfig(mode=scheme.mode, dtype=f"int{scheme.nbits}",
                                                            granularity=scheme.granularity, weight_threshold=weight_threshold)
    else:
        op_config = cto.coreml.OpPalettizerConfig(mode=scheme.mode, nbits=scheme.nbits, granularity=scheme.granularity,
                                                  weight_threshold=weight_threshold)
    return cto.coreml.OptimizationConfig(op_type_configs={op_type: op_config for op_type in WEIGHT_OPS})


def activation_samples(graph: str, data: CalibrationData) -> list[dict[str, Any]]:
    """`graph`'s recorded feeds as MLModel.predict takes them: the encoder's image as an RGB PIL image
    (the package's image input), the decoder's tensors float32 by contract name."""
    if graph == contract.ENCODER:
        from PIL import Image

        return [{contract.IMAGE: Image.fromarray(np.ascontiguousarray(f[contract.IMAGE][0]))} for f in data.encoder_feeds()]
    return [{name: np.ascontiguousarray(v, dtype=np.float32) for name, v in f.items()} for f in data.decoder_feeds()]


def click_only_ops(package: Path) -> list[str]:
    """Names of the ops computed from the click rows alone (coordinates, distances, comparisons): the ops
    the exporter keeps fp32 (export.coreml.fp16_op_selector), kept float by activation quantisation too.
    Why: int8 squared distances would move every disk boundary; and with fp32 clicks coremltools 9 cannot
    even build the pair — its quantize of the fp32 `dx² + dy²` add gets an fp16 scale and fails type
    checking (measured on the tiny late decoder)."""
    from edgeclick.export.coreml import fp16_op_selector
    from edgeclick.runtimes.mil_reference import load_program

    selector = fp16_op_selector()
    ops = [op for op in load_program(package).functions["main"].operations if op.op_type != "const"]
    return [op.name for op in ops if not selector(op)]


def quantize_activations(mlmodel: Any, package: Path, graph: str, data: CalibrationData) -> Any:
    """int8 activations (macOS): coremltools.optimize.coreml.linear_quantize_activations calibrated on
    `graph`'s recorded feeds, click-only ops excluded. `mlmodel` must be loaded (not skip_model_load).

    coremltools 9 keeps `optimize.coreml.experimental.linear_quantize_activations` only as a deprecated
    alias of this function (deprecated since 8.3), so the supported name is used.
    """
    import coremltools.optimize as cto

    op_config = cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
    config = cto.coreml.OptimizationConfig(global_config=op_config,
                                           op_name_configs={name: None for name in click_only_ops(package)})
    return cto.coreml.linear_quantize_activations(mlmodel, config, activation_samples(graph, data))


def compress_package(src: Path, dst: Path, scheme: Scheme, weight_threshold: int, *, graph: str,
                     data: CalibrationData | None = None) -> None:
    """Write the compressed copy of package `src` to `dst` (an .mlpackage path), metadata kept."""
    import coremltools as ct
    import coremltools.optimize as cto

    from edgeclick.export.coreml import COREMLTOOLS_BARS

    if scheme.activations:
        # Calibration predicts with Core ML: load the model (CPU only, so the ranges do not depend on
        # where Core ML places ops).
        mlmodel = ct.models.MLModel(str(src), compute_units=ct.ComputeUnit.CPU_ONLY)
        mlmodel = quantize_activations(mlmodel, src, graph, data)  # type: ignore[arg-type]
    else:
        mlmodel = ct.models.MLModel(str(src), skip_model_load=True)
    source_metadata = dict(mlmodel.user_defined_metadata)
    compress = cto.coreml.linear_quantize_weights if scheme.method == "linear" else cto.coreml.palettize_weights
    with quiet_bars(*COREMLTOOLS_BARS):
        compressed = compress(mlmodel, optimization_config(scheme, weight_threshold))
    restore_metadata(compressed, source_metadata)
    compressed.user_defined_metadata[META_COMPRESSION] = json.dumps(scheme.record(weight_threshold), sort_keys=True)
    compressed.save(str(dst))


def restore_metadata(mlmodel: Any, metadata: dict[str, str]) -> list[str]:
    """Put back every source metadata entry the compressed model lost or changed; return their keys.
    (coremltools 9 keeps them — `_apply_graph_pass` passes the model description through — but the
    contract check depends on them, so this does not rely on it.)"""
    restored = [k for k, v in metadata.items() if mlmodel.user_defined_metadata.get(k) != v]
    for key in restored:
        mlmodel.user_defined_metadata[key] = metadata[key]
    return restored


# -- facts about the result ---------------------------------------------------------------------------------

def tree_bytes(path: Path) -> int:
    """Total size of the files under `path` (a package directory), in bytes."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _weight_inputs(function: Any) -> dict[tuple[str, str], Any]:
    """(consumer op name, input key) → the var feeding it, for WEIGHT_OPS' rank > 1 constant or constexpr
    inputs (weights; biases are rank 1 and never compressed)."""
    found: dict[tuple[str, str], Any] = {}
    for op in function.operations:
        if op.op_type not in WEIGHT_OPS:
            continue
        for key, var in op.inputs.items():
            producer = getattr(var, "op", None)
            if producer is not None and (producer.op_type == "const" or producer.op_type.startswith("constexpr_")) \
                    and var.rank > 1:
                found[(op.name, key)] = var
    return found


def compressible_weights(program: Any, weight_threshold: int) -> int:
    """How many WEIGHT_OPS weights of a source program have more than `weight_threshold` elements (what
    the config asks coremltools to compress)."""
    return sum(var.op.op_type == "const" and int(np.prod(var.shape)) > weight_threshold
               for var in _weight_inputs(program.functions["main"]).values())


def weight_facts(src_program: Any, dst_program: Any, scheme: Scheme, where: str) -> dict[str, Any]:
    """Compressed vs kept weights of one graph (MIL programs before / after) and the decompressed
    weights' error against the source's.

    Returns {"compressed": n, "kept": n, "kept_elements": n, "constexpr_ops": {type: n},
    "rel_rmse": ‖w' − w‖ / ‖w‖ over the compressed weights, "max_abs": max |w' − w|, "unmatched": n
    compressed weights whose consumer op has no same-named op in the source (left out of the errors)}.
    Raises RuntimeError if a weight is stored with an op the scheme does not emit.
    """
    from edgeclick.export.coreml_checks import op_counts
    from edgeclick.runtimes.mil_reference import materialize_constexpr

    src_fn, dst_fn = src_program.functions["main"], dst_program.functions["main"]
    counts = {k: v for k, v in op_counts(dst_program).items() if k.startswith("constexpr_")}
    unexpected = sorted(set(counts) - set(scheme.constexpr_ops))
    if unexpected:
        raise RuntimeError(f"{where}: {scheme.name} left weight ops {unexpected}, expected {list(scheme.constexpr_ops)}")
    constants = materialize_constexpr(dst_fn)
    src_weights = _weight_inputs(src_fn)
    compressed = kept = kept_elements = unmatched = 0
    err_sq = ref_sq = max_abs = 0.0
    for key, var in _weight_inputs(dst_fn).items():
        if var.op.op_type == "const":
            kept += 1
            kept_elements += int(np.prod(var.shape))
            continue
        compressed += 1
        if key not in src_weights:  # coremltools' re-run pipeline renamed or fused the consumer
            unmatched += 1
            continue
        ref = np.asarray(src_weights[key].val, dtype=np.float64)
        diff = constants[var.name].numpy().astype(np.float64) - ref
        err_sq, ref_sq = err_sq + float((diff ** 2).sum()), ref_sq + float((ref ** 2).sum())
        max_abs = max(max_abs, float(np.abs(diff).max()))
    return {"compressed": compressed, "kept": kept, "kept_elements": kept_elements, "constexpr_ops": counts,
            "rel_rmse": (err_sq / ref_sq) ** 0.5 if ref_sq else 0.0, "max_abs": max_abs, "unmatched": unmatched}


def size_facts(src_package: Path, dst_package: Path) -> dict[str, Any]:
    """Package and weight-file bytes before and after, and their ratios (after / before)."""
    before, after = tree_bytes(src_package), tree_bytes(dst_package)
    w_before, w_after = ((p / WEIGHT_FILE).stat().st_size if (p / WEIGHT_FILE).is_file() else 0
                         for p in (src_package, dst_package))
    return {"package_bytes_before": before, "package_bytes_after": after, "package_ratio": round(after / before, 4),
            "weight_bytes_before": w_before, "weight_bytes_after": w_after,
            "weight_ratio": round(w_after / w_before, 4) if w_before else None}


def check_compressed(src: Manifest, staging: Path, programs: dict[str, Any], precision: str) -> dict[str, Any]:
    """The exporter's contract checks (coreml_checks.check_package) on each compressed package (`programs`:
    their MIL programs by graph), and the pair read as a runtime reads it (read_artifact).
    Raises ExportValidationError / ContractMismatch."""
    import coremltools as ct
    from edgeclick.export.coreml_checks import TARGETS, check_package

    source = read_artifact(src.root)
    target = TARGETS[src.metadata.get("minimum_deployment_target", src.options.get("minimum_deployment_target", "iOS17"))]
    facts: dict[str, Any] = {}
    for graph, program in programs.items():
        package = ct.models.MLModel(str(package_path(staging, graph)), skip_model_load=True)
        found = check_package(package, program, source.graphs[graph], source.packages[graph].sizes, source.config,
                              target, precision)
        facts[graph] = {k: v for k, v in found.items() if k != "ops"}
    read_artifact(staging)
    return facts


# -- the artifact ----------------------------------------------------------------------------------------------

def compress_coreml_artifact(artifact_dir: str | Path, out_dir: str | Path, scheme: str, *,
                             data: CalibrationData | None = None, weight_threshold: int = DEFAULT_WEIGHT_THRESHOLD,
                             overwrite: bool = False) -> Path:
    """Write the `scheme`-compressed copy of the CoreML artifact `artifact_dir` to `out_dir`; return `out_dir`.

    scheme: a SCHEMES key ("w8", "palette6", "palette4", "w8a8").
    data: recorded click-session feeds at the artifact's size; required by w8a8, refused by the others.
    weight_threshold: compress WEIGHT_OPS weights with more elements than this (see the module docstring).
    overwrite: replace a non-empty `out_dir` (only once the new artifact is complete).
    Raises ValueError (bad scheme, source, data or threshold; nothing to compress), FileExistsError,
    CoreMLCalibrationUnavailable (w8a8 off macOS), MissingRequirement (no coremltools / scikit-learn),
    ManifestError / ContractMismatch for a broken source. On any failure nothing is left at `out_dir`
    (an existing one is untouched).
    """
    chosen = get_scheme(scheme)
    src = source_manifest(artifact_dir)
    check_data(chosen, data, src)
    threshold = check_weight_threshold(weight_threshold)
    if chosen.activations:
        require_coreml_prediction(chosen)
    ct = _require_tools(chosen)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True)")
    from edgeclick.runtimes.mil_reference import load_program

    src_programs = {graph: load_program(src.path(graph)) for graph in GRAPHS}
    candidates = {graph: compressible_weights(program, threshold) for graph, program in src_programs.items()}
    if not any(candidates.values()):
        raise ValueError(f"{scheme}: no {'/'.join(WEIGHT_OPS)} weight of {src.root} has more than weight_threshold="
                         f"{threshold} elements, so nothing would be compressed; lower weight_threshold")
    with publishing(out) as staging:
        t0 = time.perf_counter()
        result = _compress_graphs(src, staging, chosen, threshold, data, src_programs, candidates)
        record = {**chosen.record(threshold), "source": str(src.root), "source_precision": src.precision,
                  "sizes": result["sizes"], "seconds": round(time.perf_counter() - t0, 2)}
        if data is not None:
            record["data"] = data.meta
        write_manifest(_manifest(src, staging, out.name, chosen, result, record, ct.__version__))
    read_manifest(out)  # hashes and contract as a runtime will check them
    return out


def _require_tools(scheme: Scheme) -> Any:
    """coremltools (and scikit-learn for the k-means palettizer), or MissingRequirement naming the install."""
    from edgeclick.export.coreml import require_coremltools
    from edgeclick.export.formats import MissingRequirement

    ct = require_coremltools()
    if scheme.method == "palettize":
        try:
            import sklearn  # noqa: F401 - a presence check
        except ImportError as exc:
            raise MissingRequirement(f"{scheme.name} palettizes with k-means, which coremltools runs with scikit-learn "
                                     f"(pip install scikit-learn): {exc}") from exc
    return ct


def _compress_graphs(src: Manifest, staging: Path, scheme: Scheme, threshold: int, data: CalibrationData | None,
                     src_programs: dict[str, Any], candidates: dict[str, int]) -> dict[str, Any]:
    """Compress both packages into `staging` and check them; returns {"files", "sizes", "weights", "ops",
    "spec"} by graph (see size_facts, weight_facts, check_compressed)."""
    from edgeclick.export.coreml_checks import op_counts
    from edgeclick.runtimes.mil_reference import load_program

    result: dict[str, dict[str, Any]] = {"files": {}, "sizes": {}, "weights": {}, "ops": {}}
    programs: dict[str, Any] = {}
    for graph in GRAPHS:
        dst = package_path(staging, graph)
        compress_package(src.path(graph), dst, scheme, threshold, graph=graph, data=data)
        programs[graph] = load_program(dst)
        result["files"][graph] = Path(dst.name)
        result["sizes"][graph] = size_facts(src.path(graph), dst)
        result["weights"][graph] = {"candidates": candidates[graph],
                                    **weight_facts(src_programs[graph], programs[graph], scheme, str(dst))}
        result["ops"][graph] = op_counts(programs[graph])
    result["spec"] = check_compressed(src, staging, programs, src.precision)
    return result


def _manifest(src: Manifest, staging: Path, name: str, scheme: Scheme, result: dict[str, Any],
              record: dict[str, Any], coremltools_version: str) -> Manifest:
    """The source's manifest for the compressed artifact staged in `staging`: new files and hashes, the
    precision (int8 only for activation schemes), op counts, the calibration record and the checks."""
    tools = {**src.tools, "coremltools": coremltools_version}
    if scheme.method == "palettize":
        import sklearn

        tools["scikit-learn"] = sklearn.__version__  # the palettizer's k-means
    return dataclasses.replace(
        src, root=staging, name=name, precision="int8" if scheme.activations else src.precision,
        files=file_entries(staging, result["files"]), tools=tools, metadata={**src.metadata, "ops": result["ops"]},
        options={**src.options, "calibration": record},
        validation={"spec": result["spec"], "weights": result["weights"],
                    "numeric": "not run here: runtimes.coreml_reference.MilReferenceBackend evaluates this artifact on any OS",
                    "prediction": "not run: Core ML prediction needs macOS"},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


__all__ = [
    "DEFAULT_WEIGHT_THRESHOLD",
    "META_COMPRESSION",
    "SCHEMES",
    "WEIGHT_OPS",
    "CoreMLCalibrationUnavailable",
    "Scheme",
    "compress_coreml_artifact",
    "get_scheme",
]
