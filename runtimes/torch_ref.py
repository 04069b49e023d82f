"""The PyTorch reference backend: the split model run eagerly, the anchor every other backend is compared to.

A power profile (runtimes/power.py) sets torch's thread count and, when given before torch is imported, the
OpenMP wait policy; both are process-wide. Without one the process's settings are left as they are (the
backend also serves training, evaluation and calibration code that set their own).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeclick import contract
from edgeclick.model.base import ClickModel
from edgeclick.model.split import Decoder, Encoder, model_graph_specs

from .backend import check_feeds
from .power import PowerProfile, apply_torch


class TorchBackend:
    """Backend protocol over a ClickModel (float32, eval mode, no grad).

    power: a power profile name; when given, torch's threads (process-wide) follow it (module docstring).
    """

    name = "torch"

    def __init__(self, model: ClickModel, input_size: tuple[int, int] | None = None, device: str = "cpu",
                 power: "str | PowerProfile | None" = None) -> None:
        if input_size is not None:
            contract.check_size(*input_size)
        self.threads = apply_torch(power) if power is not None else torch.get_num_threads()
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.input_size = input_size
        self.contract_hash = contract.contract_hash()
        self.graphs = model_graph_specs(model)
        self._modules = {contract.ENCODER: Encoder(self.model), contract.DECODER: Decoder(self.model)}

    @classmethod
    def from_checkpoint(cls, path: str | Path, input_size: tuple[int, int] | None = None, device: str = "cpu",
                        power: "str | PowerProfile | None" = None) -> "TorchBackend":
        from edgeclick.model.checkpoint import load_checkpoint

        return cls(load_checkpoint(path), input_size, device, power)

    @torch.inference_mode()
    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.graphs[graph]
        check_feeds(spec, feeds)
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device) for name in spec.input_names()]
        outputs = self._modules[graph](*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {name: out.float().cpu().numpy() for name, out in zip(spec.output_names(), outputs)}
