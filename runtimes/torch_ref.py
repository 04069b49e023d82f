"""The PyTorch reference backend: the split model run eagerly, the anchor every other backend is compared to."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeclick import contract
from edgeclick.model.base import ClickModel
from edgeclick.model.split import Decoder, Encoder, model_graph_specs

from .backend import check_feeds


class TorchBackend:
    """Backend protocol over a ClickModel (float32, eval mode, no grad)."""

    name = "torch"

    def __init__(self, model: ClickModel, input_size: tuple[int, int] | None = None, device: str = "cpu") -> None:
        if input_size is not None:
            contract.check_size(*input_size)
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.input_size = input_size
        self.contract_hash = contract.contract_hash()
        self.graphs = model_graph_specs(model)
        self._modules = {contract.ENCODER: Encoder(self.model), contract.DECODER: Decoder(self.model)}

    @classmethod
    def from_checkpoint(cls, path: str | Path, input_size: tuple[int, int] | None = None, device: str = "cpu") -> "TorchBackend":
        from edgeclick.model.checkpoint import load_checkpoint

        return cls(load_checkpoint(path), input_size, device)

    @torch.inference_mode()
    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.graphs[graph]
        check_feeds(spec, feeds)
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device) for name in spec.input_names()]
        outputs = self._modules[graph](*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {name: out.float().cpu().numpy() for name, out in zip(spec.output_names(), outputs)}
