"""Every registered config × fusion mode × adapter: shapes, finiteness, RITM structure, golden logits."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeclick import contract
from edgeclick.model import ARCHS, EarlyFusionModel, LateFusionModel, create_model, list_models, model_config
from edgeclick.model.adapters import ConvAdapterModel
from edgeclick.model.config import FUSIONS, ModelConfig
from edgeclick.model.base import use_rasteriser
from edgeclick.model.disks import RASTERISERS, click_disks

from .helpers import click_rows, randomize_

GOLDEN = Path(__file__).parent / "golden"
H, W = 64, 96


@pytest.mark.parametrize("adapter", [None, "conv"])
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("name", list_models())
def test_forward_shapes(name: str, fusion: str, adapter: str | None) -> None:
    torch.manual_seed(0)
    model = create_model(name, fusion=fusion, adapter=adapter).eval()
    clicks = click_rows([(10, 20, 1), (60, 40, 0)])
    with torch.no_grad():
        out = model(torch.rand(1, 3, H, W), clicks, torch.zeros(1, 1, H, W))
    assert out[contract.LOGITS].shape == (1, 1, H, W)
    assert torch.isfinite(out[contract.LOGITS]).all()
    assert ("aux_logits" in out) == (fusion == "early")
    assert isinstance(model, ConvAdapterModel) == (adapter == "conv")
    base = model.base if isinstance(model, ConvAdapterModel) else model
    assert isinstance(base, EarlyFusionModel if fusion == "early" else LateFusionModel)


@pytest.mark.parametrize("name", [n for n in list_models() if n != "tiny"])
def test_ritm_state_dict_layout(name: str) -> None:
    """Key names and shapes RITM checkpoints use (isegm HRNetModel), spot-checked per variant."""
    width, ocr, small = ARCHS[name]
    sd = create_model(name).state_dict()
    assert sd["maps_transform.0.weight"].shape == (16, 3, 1, 1)
    assert sd["maps_transform.2.weight"].shape == (64, 16, 3, 3)
    assert sd["maps_transform.3.scale"].shape == (1,)
    assert sd["feature_extractor.conv1.weight"].shape == (64, 3, 3, 3)
    assert sd["feature_extractor.layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["feature_extractor.stage4.0.branches.3.0.conv1.weight"].shape == (8 * width, 8 * width, 3, 3)
    assert sd["feature_extractor.transition3.3.0.0.weight"].shape == (8 * width, 4 * width, 3, 3)
    assert sd["feature_extractor.stage3.0.fuse_layers.2.0.1.0.weight"].shape == (4 * width, width, 3, 3)
    assert sd["feature_extractor.ocr_distri_head.object_context_block.f_pixel.1.0.running_var"].shape == (ocr,)
    assert sd["feature_extractor.ocr_distri_head.conv_bn_dropout.0.weight"].shape == (2 * ocr, 4 * ocr, 1, 1)
    assert sd["feature_extractor.aux_head.3.weight"].shape == (1, 15 * width, 1, 1)
    assert sd["feature_extractor.cls_head.weight"].shape == (1, 2 * ocr, 1, 1)
    n_stage3 = 3 if small else 4
    n_stage4 = 2 if small else 3
    assert f"feature_extractor.stage3.{n_stage3 - 1}.branches.0.0.conv1.weight" in sd
    assert f"feature_extractor.stage3.{n_stage3}.branches.0.0.conv1.weight" not in sd
    assert f"feature_extractor.stage4.{n_stage4 - 1}.fuse_layers.3.0.2.0.weight" in sd
    assert f"feature_extractor.stage4.{n_stage4}.branches.0.0.conv1.weight" not in sd
    blocks = 2 if small else 4
    assert f"feature_extractor.layer1.{blocks - 1}.conv3.weight" in sd and f"feature_extractor.layer1.{blocks}.conv1.weight" not in sd


def test_config_round_trip() -> None:
    cfg = model_config("hrnet18s", fusion="late", adapter={"skip": True, "sobel": True}, lora={"rank": 2, "targets": ["*conv1"]})
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown model 'hrnet99'"):
        create_model("hrnet99")
    with pytest.raises(ValueError, match="fusion must be one of"):
        create_model("tiny", fusion="middle")


def test_click_disks_match_brute_force() -> None:
    clicks = click_rows([(3, 4, 1), (9.5, 2, 0), (0, 0, 1), (50, 50, -1)], n=6)
    maps = click_disks(clicks, 12, 16, radius=5)
    ref = torch.zeros(2, 12, 16)
    for x, y, label in clicks[0].tolist():
        if label < 0:
            continue
        for i in range(12):
            for j in range(16):
                if (i - y) ** 2 + (j - x) ** 2 <= 25:
                    ref[0 if label == 1 else 1, i, j] = 1
    assert torch.equal(maps[0], ref)
    assert maps[0, 0, 4, 8] == 1  # distance exactly 5 is inside (RITM: <= r²)
    assert maps[0, 1].sum() > 0 and maps[0, 0].sum() > 0


def test_conv_adapter_starts_as_base_on_downsampled_image() -> None:
    """Zero-initialised click/up paths: adapter(image) == upsample(base(avg-downsampled image))."""
    torch.manual_seed(0)
    model = create_model("tiny", adapter="conv").eval()
    image = torch.rand(1, 3, H, W)
    clicks = click_rows([(20, 30, 1)])
    prev = torch.zeros(1, 1, H, W)
    with torch.no_grad():
        out = model(image, clicks, prev)[contract.LOGITS]
        x = model.down_image(model.normalize(image))[:, :3]
        base = model.base.decode(model.base.encode_normalized(x), torch.cat([clicks[..., :2] / 2, clicks[..., 2:]], -1),
                                 torch.zeros(1, 1, H // 2, W // 2))[contract.LOGITS]
        expected = torch.nn.functional.interpolate(base, size=(H, W), mode="bilinear", align_corners=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_golden_logits_tiny(fusion: str) -> None:
    """Stored outputs of the tiny config guard against silent architecture changes."""
    golden = torch.load(GOLDEN / f"tiny_{fusion}.pt", weights_only=True)
    model = randomize_(create_model("tiny", fusion=fusion), seed=1)
    with torch.no_grad():
        out = model(golden["image"], golden["clicks"], golden["prev_mask"])[contract.LOGITS]
    # The stored logits hold one CPU's rounding; the late head's attention moves them by up to 2.6e-4 under
    # ATEN_CPU_CAPABILITY=default: the contract's fp32 logit gate, not a tighter one.
    torch.testing.assert_close(out, golden[contract.LOGITS], rtol=0.0, atol=contract.TOLERANCES["fp32"].max_abs_logit)


@pytest.mark.parametrize("radius,scale", [(5.0, 1.0), (10.0, 1.0), (5.0, 0.5), (2.5, 1.0)])
def test_click_disks_equal_naive_formula_on_random_float_clicks(radius: float, scale: float) -> None:
    """The matmul rasteriser must equal RITM's all-pairs test bit for bit, including off-grid clicks."""
    g = torch.Generator().manual_seed(int(radius * 10))
    h, w = 40, 56
    clicks = torch.cat([torch.rand(2, 24, 1, generator=g) * (w / scale + 10) - 5,
                        torch.rand(2, 24, 1, generator=g) * (h / scale + 10) - 5,
                        torch.randint(-1, 2, (2, 24, 1), generator=g).float()], dim=-1)
    x, y, label = (clicks[..., i, None, None] for i in range(3))
    rows = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    inside = (rows - y * scale) ** 2 + (cols - x * scale) ** 2 <= radius**2
    naive = torch.stack([(inside & (label == 1)).any(1), (inside & (label == 0)).any(1)], 1).float()
    assert torch.equal(click_disks(clicks, h, w, radius, scale), naive)
    assert naive.sum() > 0


# (radius, scale) of every map a model draws: early full resolution; late half resolution; the conv adapter's
# full-resolution r = 10 maps and its base's maps (clicks halved, then halved again).
MODEL_MAPS = [(5.0, 1.0), (2.5, 0.5), (10.0, 1.0), (2.5, 0.25)]


@pytest.mark.parametrize("radius,scale", MODEL_MAPS)
def test_broadcast_rasteriser_equals_scatter_on_pixel_clicks(radius: float, scale: float) -> None:
    """On pixel-grid clicks (the clicker's, the page's, every recorded session) both formulations draw the same
    maps bit for bit, including clicks on and beyond the border and padding rows."""
    g = torch.Generator().manual_seed(int(radius * 100 * scale))
    h, w = 48, 64
    big_h, big_w = int(h / scale), int(w / scale)
    xs = torch.randint(-6, big_w + 6, (3, 24, 1), generator=g).float()
    ys = torch.randint(-6, big_h + 6, (3, 24, 1), generator=g).float()
    labels = torch.randint(-1, 2, (3, 24, 1), generator=g).float()
    clicks = torch.cat([xs, ys, labels], dim=-1)
    clicks[2, 5:] = contract.LABEL_PADDING  # a padded row set, as click_rows writes it
    scatter = click_disks(clicks, h, w, radius, scale, "scatter")
    assert torch.equal(click_disks(clicks, h, w, radius, scale, "broadcast"), scatter)
    assert scatter[:, 0].sum() > 0 and scatter[:, 1].sum() > 0


def test_broadcast_rasteriser_on_off_grid_clicks() -> None:
    """Off the pixel grid (the Session's letterbox puts most clicks there) "broadcast" still equals RITM's test
    bit for bit, also for pixels one float32 spacing inside and outside a disk edge."""
    import numpy as np

    g = torch.Generator().manual_seed(3)
    for h, w, radius, scale in ((40, 56, 2.5, 0.5), (64, 96, 10.0, 1.0), (16, 24, 2.5, 0.25)):
        clicks = torch.cat([torch.rand(4, 24, 1, generator=g) * w / scale, torch.rand(4, 24, 1, generator=g) * h / scale,
                            torch.randint(-1, 2, (4, 24, 1), generator=g).float()], dim=-1)
        # Pixel (row 5, col 5) with d² the float32 just above r² for click 0 and exactly r² for click 1
        # (dy = 0, so d² = dx², and x is chosen so that dx² rounds to that value).
        r2 = np.float32(radius**2)
        for k, target in enumerate((np.nextafter(r2, np.float32(np.inf)), r2)):
            dx = np.float32(np.sqrt(np.float64(target)))
            while np.float32(dx * dx) < target:
                dx = np.nextafter(dx, np.float32(np.inf))
            while np.float32(dx * dx) > target:
                dx = np.nextafter(dx, np.float32(0))
            clicks[k, 0] = torch.tensor([(5.0 + float(dx)) / scale, 5.0 / scale, 1.0])
        exact = click_disks(clicks, h, w, radius, scale, "scatter")
        broadcast = click_disks(clicks, h, w, radius, scale, "broadcast")
        assert torch.equal(broadcast, exact)
        assert exact.sum() > 0


def test_subpixel_up_equals_the_transposed_conv_and_replaces_it_for_export() -> None:
    from edgeclick.model.adapters import SubPixelUp, use_subpixel_up

    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(17, 1, kernel_size=4, stride=2, padding=1)
    x = torch.randn(2, 17, 10, 14)
    with torch.no_grad():
        assert torch.allclose(SubPixelUp(up)(x), up(x), atol=1e-5)  # borders included (zero padding on both)
    with pytest.raises(ValueError, match="SubPixelUp takes ConvTranspose2d"):
        SubPixelUp(torch.nn.ConvTranspose2d(17, 2, kernel_size=4, stride=2, padding=1))

    model = randomize_(create_model("tiny", fusion="late", adapter="conv"), seed=1).eval()
    image = torch.rand(1, 3, 64, 96)
    clicks = torch.tensor([[[40.0, 30.0, 1.0], [10.0, 12.0, 0.0]] + [[0.0, 0.0, -1.0]] * 22])
    prev = torch.zeros(1, 1, 64, 96)
    with torch.no_grad():
        before = model.decode(model.encode(image), clicks, prev)[contract.LOGITS]
        assert use_subpixel_up(model) is model and isinstance(model.up, SubPixelUp)
        after = model.decode(model.encode(image), clicks, prev)[contract.LOGITS]
    assert isinstance(model, ConvAdapterModel) and torch.allclose(before, after, atol=1e-5)


def test_use_rasteriser_reaches_the_adapter_base_and_refuses_unknown_names() -> None:
    model = create_model("tiny", fusion="late", adapter="conv")
    assert use_rasteriser(model, "broadcast") is model
    assert model.rasteriser == model.base.rasteriser == "broadcast"
    with pytest.raises(ValueError, match="unknown click rasteriser 'nope'; choose one of scatter, broadcast"):
        use_rasteriser(model, "nope")
    with pytest.raises(ValueError, match="unknown click rasteriser"):
        click_disks(torch.zeros(1, 24, 3), 8, 8, 5.0, rasteriser="nope")
    assert set(RASTERISERS) == {"scatter", "broadcast"}


def test_sobel_replicate_pad_and_coreml_conversion() -> None:
    """The Sobel input's replicate padding equals F.pad's and converts to CoreML (the traced F.pad
    replicate did not: "Padding size 8 is not supported for 4D input tensor", seen in `make demo`)."""
    import torch.nn.functional as F

    from edgeclick.model.adapters import Sobel, replicate_pad1

    x = torch.randn(2, 1, 7, 9)
    assert torch.equal(replicate_pad1(x), F.pad(x, (1, 1, 1, 1), mode="replicate"))
    ct = pytest.importorskip("coremltools")
    traced = torch.jit.trace(Sobel().eval(), torch.rand(1, 3, 32, 48))
    ct.convert(traced, inputs=[ct.TensorType(name="x", shape=(1, 3, 32, 48))], convert_to="mlprogram",
               minimum_deployment_target=ct.target.iOS17)


def test_late_adapter_decoder_convolves_clicks_for_skip_channels_only() -> None:
    """The late decoder convolves clicks with down_clicks' rows 3: alone; equal (1e-5) to the whole conv's."""
    model = randomize_(create_model("tiny", fusion="late", adapter="conv"), seed=2).eval()
    image = torch.rand(1, 3, H, W)
    clicks = click_rows([(20, 30, 1), (70.5, 10, 0), (0, 63, 1)])
    prev = torch.rand(1, 1, H, W)
    with torch.no_grad():
        feats = model.encode(image)
        got = model.decode(feats, clicks, prev)[contract.LOGITS]
        # the former formulation: the whole 3 + S channel conv, then its skip channels
        maps = model.click_maps(clicks, prev, radius=model.config.click_radius * 2)
        skip = feats[contract.SKIP_IMAGE] + model.down_clicks(maps)[:, 3:]
        base = model.base.decode({contract.FEATURES: feats[contract.FEATURES]},
                                 torch.cat([clicks[..., :2] / 2, clicks[..., 2:]], -1),
                                 torch.nn.functional.avg_pool2d(prev, 2))[contract.LOGITS]
        up_in = torch.cat([base, model.skip_act(skip)], dim=1)
        want = torch.nn.functional.interpolate(base, size=(H, W), mode="bilinear", align_corners=True) + model.up(up_in)
    assert model.down_clicks.weight[3:].abs().sum() > 0 and model.up.weight.abs().sum() > 0
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
