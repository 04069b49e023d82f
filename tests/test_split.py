"""Encoder/Decoder split: equality with the unsplit model and names/shapes from the contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeclick import contract
from edgeclick.model import create_model, list_models
from edgeclick.model.config import FUSIONS
from edgeclick.model.split import model_graph_specs, split_model

from .helpers import click_rows, randomize_

H, W = 64, 96


@pytest.mark.parametrize("adapter", [None, "conv"])
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("name", list_models())
def test_split_equals_unsplit(name: str, fusion: str, adapter: str | None, image_u8: np.ndarray) -> None:
    model = randomize_(create_model(name, fusion=fusion, adapter=adapter), seed=7)
    encoder, decoder = split_model(model)
    specs = model_graph_specs(model)
    image = torch.from_numpy(image_u8)[None]
    clicks = click_rows([(40, 30, 1), (10, 5, 0), (90, 60, 1)])
    prev = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = encoder(image)
        logits = decoder(*features, clicks, prev)
        reference = model(image.permute(0, 3, 1, 2).float() / 255.0, clicks, prev)[contract.LOGITS]
    assert len(features) == len(specs[contract.ENCODER].outputs)
    for tensor, spec in zip(features, specs[contract.ENCODER].outputs):
        assert tuple(tensor.shape) == spec.resolve(H, W), spec.name
    assert tuple(logits.shape) == contract.LOGITS_SPEC.resolve(H, W)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)
    assert reference.std() > 1e-3


def test_decoder_uses_clicks_and_prev_mask(image_u8: np.ndarray) -> None:
    model = randomize_(create_model("tiny", fusion="late"), seed=7)
    encoder, decoder = split_model(model)
    with torch.no_grad():
        feats = encoder(torch.from_numpy(image_u8)[None])
        a = decoder(*feats, click_rows([(40, 30, 1)]), torch.zeros(1, 1, H, W))
        b = decoder(*feats, click_rows([(40, 30, 0)]), torch.zeros(1, 1, H, W))
        c = decoder(*feats, click_rows([(40, 30, 1)]), torch.ones(1, 1, H, W))
        padded = decoder(*feats, click_rows([(40, 30, 1), (-1, -1, -1)]), torch.zeros(1, 1, H, W))
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    assert torch.equal(a, padded)
