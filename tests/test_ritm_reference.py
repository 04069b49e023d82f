"""edgeclick's RITM importer against RITM's own forward pass, live.

Runs only when RITM_ROOT points at a directory holding RITM's `isegm` package (a checkout of
SamsungLabs/ritm_interactive_segmentation, or any copy of its model code). For each of RITM's
COCO+LVIS HRNet-OCR configs the test builds RITM's HRNetModel, gives every parameter and buffer a
realistic random value, saves it the way RITM's trainer does ({'state_dict', 'config'}), imports it
with edgeclick, and compares both logit maps on the same image, previous mask and clicks.

Nothing from RITM is vendored here: RITM's code is only imported from RITM_ROOT.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

SKIP_REASON = ("RITM_ROOT not set: point it at a checkout of SamsungLabs/ritm_interactive_segmentation "
               "to compare against RITM's own forward pass")

_COMMON = dict(with_aux_output=True, use_leaky_relu=True, use_rgb_conv=False,
               use_disks=True, norm_radius=5, with_prev_mask=True)
# As in RITM's models/iter_mask/hrnet{18s,18,32}_cocolvis_itermask_3p.py
CONFIGS = {
    "hrnet18s": dict(width=18, ocr_width=48, small=True, **_COMMON),
    "hrnet18": dict(width=18, ocr_width=64, small=False, **_COMMON),
    "hrnet32": dict(width=32, ocr_width=128, small=False, **_COMMON),
}
SEEDS = {"hrnet18s": 11, "hrnet18": 12, "hrnet32": 13}
# RITM's ScaleLayer multiplies by |scale|; one config stores a negative value to check the abs().
SCALE_VALUES = {"hrnet18s": 0.05, "hrnet18": -0.06, "hrnet32": 0.08}
SIZE = (100, 150)  # odd sizes: strides 2/4/8/16/32 round up (50, 25, 13, 7, 4 rows)


@pytest.fixture
def ritm(monkeypatch):
    """RITM's isegm package from RITM_ROOT (skips when unset)."""
    root = os.environ.get("RITM_ROOT")
    if not root:
        pytest.skip(SKIP_REASON)
    if not os.path.isdir(os.path.join(root, "isegm")):
        pytest.skip(f"RITM_ROOT={root!r} has no isegm/ package")
    # RITM predates numpy 1.24 and uses the removed aliases (np.int in hrnet_ocr.py).
    for name, alias in (("int", int), ("float", float), ("bool", bool)):
        if not hasattr(np, name):
            monkeypatch.setattr(np, name, alias, raising=False)
    monkeypatch.syspath_prepend(root)  # sys.path.insert(0, RITM_ROOT), undone after the test
    from isegm.model.is_hrnet_model import HRNetModel
    from isegm.model.ops import ScaleLayer
    return HRNetModel, ScaleLayer


def ritm_points(h: int, w: int) -> torch.Tensor:
    """RITM points 1×8×3 (y, x, click index): rows 0-3 positive, 4-7 negative, (-1,-1,-1) = none.
    Clicks sit on every image border: y=0, x=W-1, y=H-1."""
    pos = [(0, 17, 0), (h // 2, w - 1, 2), (h // 3, w // 3, 3), (-1, -1, -1)]
    neg = [(h - 1, 5, 1), (25, w // 2 + 7, 4), (-1, -1, -1), (-1, -1, -1)]
    return torch.tensor([pos + neg], dtype=torch.float32)


def randomize(model: nn.Module, scale_layer_cls: type, gen: torch.Generator, scale_value: float) -> None:
    """Realistic random weights for every parameter and buffer of a RITM HRNetModel.

    Convs N(0, 1/fan_in) (bias N(0, 0.05)); BN gamma U(0.5, 1.5), beta N(0, 0.1); ScaleLayer a fixed
    value. BN running stats are measured on random inputs (one train-mode pass, cumulative average)
    and then perturbed (mean += 0.1·N(0,1)·std, var /= U(0.75, 1.25)), so eval-mode activations stay
    O(1) through the whole net and the logits are neither flat nor huge.
    """
    covered, bns = set(), []
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        with torch.no_grad():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 1.0 / math.sqrt(m.weight[0].numel()), generator=gen)
                covered.add(prefix + "weight")
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.05, generator=gen)
                    covered.add(prefix + "bias")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
                bns.append(m)
                covered.update(prefix + k for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
            elif isinstance(m, scale_layer_cls):
                m.scale.fill_(scale_value)
                covered.add(prefix + "scale")
    missing = set(model.state_dict()) - covered
    assert not missing, f"randomiser missed {sorted(missing)}"

    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
    model.train()
    h, w = 96, 128
    x = torch.cat([torch.rand(2, 3, h, w, generator=gen), torch.rand(2, 1, h, w, generator=gen)], 1)
    with torch.no_grad():
        model(x, ritm_points(h, w).repeat(2, 1, 1))
    model.eval()
    with torch.no_grad():
        for m in bns:
            m.momentum = 0.1
            std = m.running_var.clamp_min(1e-6).sqrt()
            m.running_mean.add_(0.1 * std * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.div_(0.75 + 0.5 * torch.rand(m.running_var.shape, generator=gen))
            m.num_batches_tracked.fill_(int(torch.randint(100, 100_000, (1,), generator=gen)))


@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # raised inside RITM's DistMaps
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_ritm(name, ritm, tmp_path):
    HRNetModel, ScaleLayer = ritm
    from edgeclick.model.ritm_compat import load_ritm_checkpoint, ritm_points_to_clicks

    torch.manual_seed(SEEDS[name])
    gen = torch.Generator().manual_seed(SEEDS[name])
    ritm_model = HRNetModel(**CONFIGS[name])
    randomize(ritm_model, ScaleLayer, gen, SCALE_VALUES[name])
    ritm_model.eval()
    path = tmp_path / f"{name}.pth"
    torch.save({"state_dict": ritm_model.state_dict(), "config": ritm_model._config}, path)  # RITM's save_checkpoint

    h, w = SIZE
    image = torch.rand(1, 3, h, w, generator=gen)
    prev_mask = torch.rand(1, 1, h, w, generator=gen)
    points = ritm_points(h, w)
    with torch.no_grad():
        ref = ritm_model(torch.cat([image, prev_mask], 1), points)
    for key in ("instances", "instances_aux"):  # the comparison means something only if these vary
        assert torch.isfinite(ref[key]).all() and ref[key].std() > 0.1, (key, ref[key].std())

    model = load_ritm_checkpoint(path)
    assert not model.training
    with torch.no_grad():
        out = model(image, ritm_points_to_clicks(points), prev_mask)

    assert out["logits"].shape == ref["instances"].shape
    assert out["aux_logits"].shape == ref["instances_aux"].shape
    torch.testing.assert_close(out["logits"], ref["instances"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["aux_logits"], ref["instances_aux"], rtol=1e-5, atol=1e-5)
