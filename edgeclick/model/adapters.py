"""The paper's conv adapter around a frozen base, and the freezing helpers for adapter training.

Layout (input at 2× the base resolution, H×W):

    image ─┬─ normalise (+ Sobel) ─ down_image ─┐                                  (stride 2, k=4)
    clicks, prev_mask ─ disks at H×W ─ down_clicks ┘ sum = d: B×(3+S)×H/2×W/2
    d[:, :3]  → base image (initialised to an anti-aliased 2× average of the normalised image)
    d[:, 3:]  → skip features (LeakyReLU)
    base(d[:, :3], clicks/2, avgpool(prev_mask)) → base logits B×1×H/2×W/2
    logits = bilinear_up(base logits) + up(cat(base logits, skip))             (transposed conv, k=4, s=2)

`down_clicks` and `up` start at zero, so an untrained adapter reproduces the base run on the
downsampled image. `down_image` + `down_clicks` is one conv over cat(image, clicks) written as two, which
is what lets the early-fusion encoder hold the image part alone.
"""
from __future__ import annotations

import fnmatch

import torch
import torch.nn.functional as F
from torch import nn

from edgeclick import contract

from .config import ConvAdapterConfig
from .base import AUX_LOGITS, ClickModel, scale_clicks, upsample
from .ritm import EarlyFusionModel

_BINOMIAL_4 = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8.0  # separable anti-aliasing kernel for k=4, s=2, p=1


def replicate_pad1(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×C×(H+2)×(W+2), edge rows / columns repeated: F.pad(x, (1,) * 4, mode="replicate").

    Written with slices and cat because coremltools (9.0, torch 2.13 trace) rejects the traced replicate
    pad ("Padding size 8 is not supported for 4D input tensor"); ONNX and TensorRT take either form.
    """
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)


class Sobel(nn.Module):
    """Gradient magnitude of the image's luminance: B×3×H×W in [0,1] → B×1×H×W."""

    def __init__(self) -> None:
        super().__init__()
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernel", torch.stack([gx, gx.t()]).unsqueeze(1), persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image01: torch.Tensor) -> torch.Tensor:
        gray = (image01 * self.luma).sum(dim=1, keepdim=True)
        grad = F.conv2d(replicate_pad1(gray), self.kernel)
        return torch.sqrt(grad.pow(2).sum(dim=1, keepdim=True) + 1e-12)


class ConvAdapterModel(ClickModel):
    """A base model (early or late fusion) run at half resolution between a downsample conv and a
    transposed conv. Input and output at full resolution; clicks in full-resolution pixels."""

    def __init__(self, base: ClickModel, adapter: ConvAdapterConfig) -> None:
        super().__init__(base.config)
        self.base = base
        self.adapter = adapter
        self.sobel = Sobel() if adapter.sobel else None
        out = 3 + adapter.skip_channels
        self.down_image = nn.Conv2d(3 + int(adapter.sobel), out, kernel_size=4, stride=2, padding=1)
        self.down_clicks = nn.Conv2d(3, out, kernel_size=4, stride=2, padding=1, bias=False)
        self.up = nn.ConvTranspose2d(1 + (adapter.skip_channels if adapter.skip else 0), 1, kernel_size=4, stride=2, padding=1)
        self.skip_act = nn.LeakyReLU(negative_slope=0.2)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        self.down_image.weight[:3].zero_()
        self.down_image.bias.zero_()
        blur = torch.outer(_BINOMIAL_4, _BINOMIAL_4)
        for c in range(3):
            self.down_image.weight[c, c] = blur
        nn.init.kaiming_normal_(self.down_image.weight[3:], a=0.2)
        nn.init.zeros_(self.down_clicks.weight)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    @property
    def is_early(self) -> bool:
        return isinstance(self.base, EarlyFusionModel)

    def _image_part(self, image01: torch.Tensor) -> torch.Tensor:
        """Image (+ Sobel) part of the downsample conv: B×3×H×W → B×(3+S)×H/2×W/2."""
        x = self.normalize(image01)
        if self.sobel is not None:
            x = torch.cat([x, self.sobel(image01)], dim=1)
        return self.down_image(x)

    def encode(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        down = self._image_part(image01)
        if self.is_early:  # the base's input depends on clicks through down_clicks: keep it in the decoder
            return {contract.DOWN_IMAGE: down}
        feats = self.base.encode_normalized(down[:, :3])
        return {contract.FEATURES: feats[contract.FEATURES], contract.SKIP_IMAGE: down[:, 3:]}

    def decode(self, features: dict[str, torch.Tensor], clicks: torch.Tensor, prev_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        size = prev_mask.shape[-2:]
        maps = self.click_maps(clicks, prev_mask, radius=self.config.click_radius * 2)
        half_mask = F.avg_pool2d(prev_mask, kernel_size=2)
        half_clicks = scale_clicks(clicks, 0.5)
        if self.is_early:
            down = features[contract.DOWN_IMAGE] + self.down_clicks(maps)
            base_out = self.base.decode(self.base.encode_normalized(down[:, :3]), half_clicks, half_mask)
            skip = down[:, 3:]
        else:
            base_feats = {contract.FEATURES: features[contract.FEATURES]}
            base_out = self.base.decode(base_feats, half_clicks, half_mask)
            # Late fusion: clicks reach only the skip channels, so convolve for those alone (the same conv's
            # rows 3:). Measured in onnxruntime at 640x960: 19 output channels ran as two blocks of 16, so
            # this halves the decoder's largest conv and the layout reorder after it.
            skip = features[contract.SKIP_IMAGE] + F.conv2d(maps, self.down_clicks.weight[3:], None, stride=2, padding=1)
        base_logits = base_out[contract.LOGITS]
        up_in = torch.cat([base_logits, self.skip_act(skip)], dim=1) if self.adapter.skip else base_logits
        out = {contract.LOGITS: upsample(base_logits, size) + self.up(up_in)}
        if AUX_LOGITS in base_out:
            out[AUX_LOGITS] = upsample(base_out[AUX_LOGITS], size)
        return out


class SubPixelUp(nn.Module):
    """The conv adapter's transposed conv (kernel 4, stride 2, pad 1, one output channel) as a 3×3 convolution
    to 4 channels, one per output phase, and a pixel shuffle: the same numbers (up to float summation order).

    For export only (`use_subpixel_up`): NNAPI and Core ML's NeuralNetwork EPs refuse ConvTranspose, and
    XNNPACK ran this one-channel ConvTranspose slowly (the late_conv_w18s decoder at 256×384, 1 thread:
    8.3 ms per click with it, 4.7 ms as this).

    Transposed conv: output row o = 2i − 1 + k for input row i and kernel row k. For o = 2m + a (phase a) and
    i = m + d (d ∈ −1, 0, 1: the 3×3 tap d + 1), k = a + 1 − 2d; taps with k outside 0..3 are zero. Columns
    alike; the phase (a, b) is output channel 2a + b, which pixel_shuffle places at (2m + a, 2n + b).
    """

    def __init__(self, up: nn.ConvTranspose2d) -> None:
        super().__init__()
        if (up.kernel_size, up.stride, up.padding, up.out_channels, up.groups) != ((4, 4), (2, 2), (1, 1), 1, 1):
            raise ValueError(f"SubPixelUp takes ConvTranspose2d(k=4, s=2, p=1) to one channel, got {up}")
        weight = up.weight.detach()  # Cin×1×4×4
        conv = torch.zeros(4, weight.shape[0], 3, 3, dtype=weight.dtype)
        for a in (0, 1):
            for b in (0, 1):
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        kr, kc = a + 1 - 2 * dr, b + 1 - 2 * dc
                        if 0 <= kr < 4 and 0 <= kc < 4:
                            conv[2 * a + b, :, dr + 1, dc + 1] = weight[:, 0, kr, kc]
        self.weight = nn.Parameter(conv, requires_grad=False)
        bias = up.bias.detach() if up.bias is not None else torch.zeros(1, dtype=weight.dtype)
        self.bias = nn.Parameter(bias.repeat(4), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×Cin×h×w → B×1×2h×2w."""
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=1), 2)


def use_subpixel_up(model: nn.Module) -> nn.Module:
    """Replace the transposed conv of every conv adapter in `model` by its SubPixelUp (in place; returns
    `model`). An export-time change: the module holds a copy of the trained weights, so a model changed so is
    not saved or trained."""
    for module in model.modules():
        if isinstance(module, ConvAdapterModel) and isinstance(module.up, nn.ConvTranspose2d):
            module.up = SubPixelUp(module.up)
    return model


ADAPTER_PATTERNS: tuple[str, ...] = ("down_image.*", "down_clicks.*", "up.*", "*lora_A", "*lora_B")
FIRST_CONV = "base.feature_extractor.conv1.weight"


def freeze_base(model: nn.Module, *, train_first_conv: bool = False) -> list[str]:
    """Freeze everything but adapter tensors (LoRA A/B, conv adapter); return the names that train.

    train_first_conv: also train the base's first stem conv (the paper does so for the conv adapter).
    BatchNorm statistics of the frozen base are the caller's business: put the base in eval mode.
    """
    trainable = []
    for name, param in model.named_parameters():
        train = any(fnmatch.fnmatchcase(name, p) for p in ADAPTER_PATTERNS) or (train_first_conv and name == FIRST_CONV)
        param.requires_grad_(train)
        if train:
            trainable.append(name)
    if not trainable:
        raise ValueError("freeze_base found no adapter tensors: add LoRA (apply_lora) or wrap the base in ConvAdapterModel first")
    return trainable


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that will receive gradients."""
    return [n for n, p in model.named_parameters() if p.requires_grad]
