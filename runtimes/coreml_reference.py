"""A Backend over a CoreML artifact that runs anywhere: its MIL programs evaluated with torch kernels.

    backend = MilReferenceBackend("artifacts/w18s-late-640x960-fp16-coreml-palette6")
    session = Session(backend); session.set_image(rgb); session.click(120, 80, True)

This is NOT Core ML. It reads each package's MIL program back (`runtimes.mil_reference.MILReference`) and
evaluates it op by op on the CPU: fp16 op outputs rounded to fp16, compressed weights (constexpr ops)
decompressed exactly as coremltools defines them. It checks what conversion and compression decided —
ops, parameters, the image input's scale, fp16 / int8 / palettized weight values — on Linux, where Core
ML cannot predict. It does not reproduce Core ML's kernels, the Neural Engine's arithmetic or its op
placement, and its speed means nothing (a slow reference evaluator): for those, `CoreMLBackend` on a Mac.

The artifact is checked as `CoreMLBackend` checks it (`runtimes.coreml.read_artifact`: contract hash,
graph names, model config, sizes), so a Session refuses the same artifacts either way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeclick import contract

from .coreml import check_package_feeds, read_artifact

NAME = "mil-reference"
"""Backend.name: says in reports that the numbers come from the MIL reference evaluator, not Core ML."""


class MilReferenceBackend:
    """Backend protocol over an exported (or compressed) CoreML artifact, evaluated with
    `runtimes.mil_reference` on any OS.

    Feeds and outputs are the contract's: the encoder takes uint8 1×H×W×3 RGB (handed to the program as
    the float 0..255 NCHW pixels Core ML gives an image input; the program's own first op scales them by
    1/255), the decoder the encoder outputs, clicks 1×N×3 and prev_mask 1×1×H×W; outputs float32.
    Loading decompresses every compressed weight once (seconds for an HRNet-W18 on a CPU).
    """

    name = NAME

    def __init__(self, artifact_dir: str | Path) -> None:
        self.artifact = read_artifact(artifact_dir)
        self.contract_hash = self.artifact.packages[contract.ENCODER].metadata[contract.META_CONTRACT_HASH]
        self.input_size: tuple[int, int] | None = self.artifact.input_size
        self.graphs = self.artifact.graphs
        self._run = mil_runner({graph: package.path for graph, package in self.artifact.packages.items()})

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` (contract.ENCODER / contract.DECODER) on contract-named feeds; outputs float32 by name."""
        spec = self.graphs[graph]
        check_package_feeds(self.artifact, graph, feeds)
        outputs = self._run(graph, {name: feeds[name] for name in spec.input_names()})
        return {name: np.asarray(outputs[name], dtype=np.float32) for name in spec.output_names()}


__all__ = ["NAME", "MilReferenceBackend"]


def mil_runner(packages: dict[str, Path]) -> Any:
    """A `run(graph, feeds)` over the MIL programs of saved packages (mil_reference), with the contract's
    feeds: the encoder's uint8 1×H×W×3 image becomes the float 0..255 NCHW pixels Core ML gives the program."""
    from .mil_reference import MILReference

    refs = {graph: MILReference(path) for graph, path in packages.items()}

    def run(graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph == contract.ENCODER:
            feeds = {contract.IMAGE: feeds[contract.IMAGE].transpose(0, 3, 1, 2).astype(np.float32)}
        return refs[graph].run(feeds)

    return run
