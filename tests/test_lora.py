"""ConvLoRA: ΔW formula, zero start, merge equality, freezing."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeclick import contract
from edgeclick.model import LoRAConfig, apply_lora, create_model, merge_lora
from edgeclick.model.adapters import FIRST_CONV, freeze_base, trainable_parameter_names
from edgeclick.model.lora import ConvLoRA, lora_targets

from .helpers import click_rows, randomize_

H, W = 64, 96


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, H, W, generator=g), click_rows([(10, 20, 1), (70, 30, 0)]), torch.rand(1, 1, H, W, generator=g)


def test_delta_weight_formula() -> None:
    conv = nn.Conv2d(5, 7, kernel_size=3, padding=1)
    lora = ConvLoRA(conv, rank=2, alpha=6.0)
    assert lora.lora_A.shape == (2 * 3, 5 * 3) and lora.lora_B.shape == (7 * 3, 2 * 3)
    assert torch.count_nonzero(lora.delta_weight()) == 0  # B starts at zero
    with torch.no_grad():
        lora.lora_B.normal_()
    expected = (lora.lora_B @ lora.lora_A).view(7, 5, 3, 3) * 3.0
    torch.testing.assert_close(lora.delta_weight(), expected)
    x = torch.randn(1, 5, 8, 8)
    torch.testing.assert_close(lora(x), nn.functional.conv2d(x, conv.weight + expected, conv.bias, padding=1))


def test_targets_and_errors() -> None:
    model = create_model("tiny")
    names = lora_targets(model, LoRAConfig())
    assert names and all(".branches." in n and model.get_submodule(n).kernel_size == (3, 3) for n in names)
    with pytest.raises(ValueError, match="match no conv"):
        apply_lora(create_model("tiny"), LoRAConfig(targets=("nothing.*",)))
    with pytest.raises(ValueError, match="rank must be"):
        LoRAConfig(rank=0)


@pytest.mark.parametrize("fusion", ["early", "late"])
@pytest.mark.parametrize("adapter", [None, "conv"])
def test_merge_equals_unmerged(fusion: str, adapter: str | None) -> None:
    lora = LoRAConfig(rank=2, alpha=4.0, targets=("*conv*", "*fuse_layers*"), kernel_sizes=(1, 3))
    model = randomize_(create_model("tiny", fusion=fusion, adapter=adapter, lora=lora), seed=2)
    assert any(isinstance(m, ConvLoRA) for m in model.modules())
    image, clicks, prev = _inputs()
    merged = merge_lora(model).eval()
    assert not any(isinstance(m, ConvLoRA) for m in merged.modules())
    assert merged.config.lora is None
    assert not any("lora_" in k for k in merged.state_dict())
    with torch.no_grad():
        before = model(image, clicks, prev)[contract.LOGITS]
        after = merged(image, clicks, prev)[contract.LOGITS]
    assert before.abs().max() > 0.1  # non-trivial logits, so equality means something
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    # the merged state dict loads into a plain model of the same config
    plain = create_model("tiny", fusion=fusion, adapter=adapter)
    plain.load_state_dict(merged.state_dict())


def test_lora_changes_output_only_after_training_step() -> None:
    model = create_model("tiny", lora=LoRAConfig(rank=2)).eval()
    base_model = create_model("tiny").eval()
    state = {k.replace(".conv.weight", ".weight").replace(".conv.bias", ".bias"): v for k, v in model.state_dict().items() if "lora_" not in k}
    base_model.load_state_dict(state)
    image, clicks, prev = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(image, clicks, prev)[contract.LOGITS], base_model(image, clicks, prev)[contract.LOGITS])


def test_freeze_base_lists_exactly_the_adapter_tensors() -> None:
    model = create_model("tiny", adapter="conv", lora=LoRAConfig(rank=2))
    trainable = freeze_base(model)
    assert trainable == trainable_parameter_names(model)
    assert all(("lora_" in n) or n.split(".")[0] in ("down_image", "down_clicks", "up") for n in trainable)
    assert {"down_image.weight", "down_image.bias", "down_clicks.weight", "up.weight", "up.bias"} <= set(trainable)
    assert any(n.endswith("lora_A") for n in trainable) and any(n.endswith("lora_B") for n in trainable)
    assert FIRST_CONV not in trainable
    assert FIRST_CONV in freeze_base(model, train_first_conv=True)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert "base.maps_transform.0.weight" in frozen
    with pytest.raises(ValueError, match="no adapter tensors"):
        freeze_base(create_model("tiny"))
