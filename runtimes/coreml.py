"""CoreML backend: the exported encoder / decoder `.mlpackage` pair, run by Core ML on macOS.

    backend = CoreMLBackend("artifacts/w18s_late_coreml", compute_units="CPU_AND_NE")
    session = Session(backend); session.set_image(rgb); session.click(120, 80, True)

Reading a package's spec and metadata works on any OS (`read_artifact`, the contract check); prediction
needs the Core ML framework, so constructing `CoreMLBackend` anywhere but macOS raises RuntimeError.
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeclick import contract
from edgeclick.model.config import ModelConfig

from .backend import ContractMismatch, check_contract, check_feeds

PACKAGE_SUFFIX = ".mlpackage"
COMPUTE_UNITS: tuple[str, ...] = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
METADATA_KEYS: tuple[str, ...] = (contract.META_CONTRACT_VERSION, contract.META_CONTRACT_HASH,
                                  contract.META_MODEL_CONFIG, contract.META_GRAPH)


def package_path(artifact_dir: str | Path, graph: str) -> Path:
    """Where the exporter writes `graph`'s package: <artifact_dir>/<graph>.mlpackage."""
    return Path(artifact_dir) / f"{graph}{PACKAGE_SUFFIX}"


def graph_specs_for_config(config: ModelConfig) -> dict[str, contract.GraphSpec]:
    """The contract's encoder/decoder specs for a model config (what split.model_graph_specs gives for
    the model itself, without building it)."""
    widths: dict[str, int] = {"late_channels": config.late_channels}
    if config.adapter is not None:
        widths["skip_channels"] = config.adapter.skip_channels
    return contract.graph_specs(config.fusion, config.adapter is not None, **widths)


def spec_sizes(spec: Any, graph: str) -> list[tuple[int, int]]:
    """Model input sizes (H, W) a package accepts, default first, read from its spec.

    The encoder's image input carries them (fixed size or enumerated sizes); the decoder's prev_mask
    input (1×1×H×W) does.
    """
    name = contract.IMAGE if graph == contract.ENCODER else contract.PREV_MASK
    feature = next((f for f in spec.description.input if f.name == name), None)
    if feature is None:
        raise ContractMismatch(f"{graph} package has no input {name!r}")
    kind = feature.type.WhichOneof("Type")
    if kind == "imageType":
        image = feature.type.imageType
        sizes = [(int(image.height), int(image.width))]
        if image.WhichOneof("SizeFlexibility") == "enumeratedSizes":
            sizes += [(int(s.height), int(s.width)) for s in image.enumeratedSizes.sizes]
    elif kind == "multiArrayType":
        array = feature.type.multiArrayType
        sizes = [tuple(int(d) for d in array.shape[2:4])]  # type: ignore[misc]
        if array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            sizes += [tuple(int(d) for d in s.shape[2:4]) for s in array.enumeratedShapes.shapes]  # type: ignore[misc]
    else:
        raise ContractMismatch(f"{graph} input {name!r} is a {kind}, not an image or a multi-array")
    return list(dict.fromkeys(sizes))  # keep order, drop the default's repeat


@dataclass(frozen=True)
class CoreMLPackage:
    """One saved graph as its spec declares it (read without loading the model; any OS)."""

    graph: str
    path: Path
    metadata: dict[str, str]
    config: ModelConfig
    sizes: list[tuple[int, int]]  # accepted model input sizes (H, W), default first


def read_package(path: str | Path, graph: str) -> CoreMLPackage:
    """Read `path`'s spec and user-defined metadata and refuse it unless it is `graph` for this code's I/O
    contract (ContractMismatch naming what differs)."""
    import coremltools as ct

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no CoreML package (export one with `edgeclick export --target coreml`)")
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    metadata = dict(spec.description.metadata.userDefined)
    check_package_metadata(metadata, graph, str(path))
    config = ModelConfig.from_dict(json.loads(metadata[contract.META_MODEL_CONFIG]))
    return CoreMLPackage(graph, path, metadata, config, spec_sizes(spec, graph))


def check_package_metadata(metadata: dict[str, str], graph: str, where: str) -> None:
    """Refuse a package whose embedded contract hash is not this code's, or that is another graph."""
    missing = [k for k in METADATA_KEYS if k not in metadata]
    if missing:
        raise ContractMismatch(f"{where} carries no edgeclick metadata {missing}; re-export it with `edgeclick export`")
    check_contract(metadata[contract.META_CONTRACT_HASH], where)
    if metadata[contract.META_GRAPH] != graph:
        raise ContractMismatch(f"{where} holds the {metadata[contract.META_GRAPH]!r} graph, expected {graph!r}")


@dataclass(frozen=True)
class CoreMLArtifact:
    """Both packages of one export, checked against the contract and against each other."""

    packages: dict[str, CoreMLPackage]
    config: ModelConfig
    graphs: dict[str, contract.GraphSpec]

    @property
    def input_size(self) -> tuple[int, int]:
        """The size both graphs accept by default (the export size)."""
        return self.packages[contract.DECODER].sizes[0]


def read_artifact(artifact_dir: str | Path) -> CoreMLArtifact:
    """Read and check <artifact_dir>/{encoder,decoder}.mlpackage (any OS; nothing is compiled)."""
    packages = {g: read_package(package_path(artifact_dir, g), g) for g in (contract.ENCODER, contract.DECODER)}
    enc, dec = packages[contract.ENCODER], packages[contract.DECODER]
    if enc.config != dec.config:
        raise ContractMismatch(f"{artifact_dir}: encoder and decoder come from different models ({enc.config} vs {dec.config})")
    if dec.sizes[0] not in enc.sizes:
        raise ContractMismatch(f"{artifact_dir}: the decoder's size {dec.sizes[0]} is not among the encoder's {enc.sizes}")
    return CoreMLArtifact(packages, enc.config, graph_specs_for_config(enc.config))


def require_macos() -> None:
    """Core ML prediction exists only on macOS; say so plainly everywhere else."""
    if sys.platform != "darwin":
        raise RuntimeError(
            f"CoreML prediction needs macOS (Core ML framework); this is {sys.platform}. Export and the spec "
            "checks run here (`edgeclick export --target coreml`); run the artifact on a Mac, or use the onnx "
            "format with onnxruntime on this machine"
        )


def check_package_feeds(artifact: "CoreMLArtifact", graph: str, feeds: dict[str, np.ndarray]) -> tuple[int, int]:
    """The feeds' model input size (H, W), checked against the contract and the sizes `graph`'s package accepts."""
    size = check_feeds(artifact.graphs[graph], feeds)
    accepted = artifact.packages[graph].sizes
    if size not in accepted:
        raise ValueError(f"{graph}: model input {size[0]}x{size[1]} is not one this package accepts {accepted}; "
                         "letterbox to the artifact's input_size (Session does)")
    return size


class CoreMLBackend:
    """Backend protocol over an exported CoreML artifact, predicting with Core ML (macOS only).

    compute_units: "ALL" (Neural Engine, GPU and CPU as Core ML decides), "CPU_ONLY", "CPU_AND_GPU",
    "CPU_AND_NE". The encoder's uint8 1×H×W×3 image feed becomes an RGB pixel buffer (PIL image) for the
    package's image input, which scales it by 1/255 inside the model.
    """

    name = "coreml"

    def __init__(self, artifact_dir: str | Path, compute_units: str = "ALL") -> None:
        if compute_units not in COMPUTE_UNITS:
            raise ValueError(f"compute_units {compute_units!r} is not one of {list(COMPUTE_UNITS)}")
        require_macos()
        import coremltools as ct

        self.artifact = read_artifact(artifact_dir)
        self.compute_units = compute_units
        self.contract_hash = self.artifact.packages[contract.ENCODER].metadata[contract.META_CONTRACT_HASH]
        self.input_size: tuple[int, int] | None = self.artifact.input_size
        self.graphs = self.artifact.graphs
        units = getattr(ct.ComputeUnit, compute_units)
        self._models = {g: ct.models.MLModel(str(p.path), compute_units=units) for g, p in self.artifact.packages.items()}
        self._run_lock = threading.Lock()  # MLModel.predict from several threads is not verified here: serialise

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` (contract.ENCODER / contract.DECODER) on contract-named feeds; outputs float32 by name."""
        spec = self.graphs[graph]
        check_package_feeds(self.artifact, graph, feeds)
        if graph == contract.ENCODER:
            from PIL import Image

            inputs: dict[str, Any] = {contract.IMAGE: Image.fromarray(np.ascontiguousarray(feeds[contract.IMAGE][0]))}
        else:
            inputs = {name: np.ascontiguousarray(feeds[name], dtype=np.float32) for name in spec.input_names()}
        with self._run_lock:
            outputs = self._models[graph].predict(inputs)
        return {name: np.asarray(outputs[name], dtype=np.float32) for name in spec.output_names()}
