"""Model configuration: a plain dataclass that is saved inside every checkpoint and rebuilt from it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Fusion = Literal["early", "late"]
FUSIONS: tuple[str, ...] = ("early", "late")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LoRAConfig:
    """ConvLoRA on the base convs whose qualified names match any of `targets` (fnmatch patterns).

    ΔW = (B @ A).view(Cout, Cin, k, k) · alpha / rank with A ∈ R^{(r·k)×(Cin·k)}, B ∈ R^{(Cout·k)×(r·k)}.
    """

    rank: int = 4
    alpha: float = 4.0
    targets: tuple[str, ...] = ("*stage*.branches.*.conv*",)
    kernel_sizes: tuple[int, ...] = (3,)

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if not self.targets:
            raise ValueError("LoRA needs at least one target pattern, e.g. '*stage*.branches.*.conv*'")


@dataclass(frozen=True)
class ConvAdapterConfig:
    """The paper's conv adapter: stride-2 downsample conv → frozen base at half resolution → transposed conv.

    skip: feed `skip_channels` features of the downsample conv to the transposed conv.
    sobel: concatenate the Sobel gradient magnitude of the image to the downsample conv's input.
    """

    skip: bool = True
    sobel: bool = False
    skip_channels: int = 16


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; travels with the weights.

    width / ocr_width / small: HRNet-OCR variant (RITM's HRNetModel arguments).
    click_radius: disk radius in pixels at the base model's resolution (RITM: 5).
    late_channels: channel width of the late-fusion decoder (the registry sets 2·ocr_width for late models,
        the width of RITM's OCR head, so an early checkpoint's head weights fit).
    """

    arch: str
    width: int
    ocr_width: int
    small: bool
    fusion: str = "early"
    click_radius: int = 5
    use_leaky_relu: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    late_channels: int = 32
    adapter: ConvAdapterConfig | None = None
    lora: LoRAConfig | None = None

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")

    @property
    def input_scale(self) -> int:
        """Model input resolution / base resolution: 2 with the conv adapter, else 1."""
        return 2 if self.adapter is not None else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists instead of tuples) for YAML/JSON and checkpoints."""
        def plain(v: Any) -> Any:
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        if d.get("adapter") is not None:
            d["adapter"] = ConvAdapterConfig(**d["adapter"])
        if d.get("lora") is not None:
            lora = dict(d["lora"])
            lora["targets"] = tuple(lora.get("targets", LoRAConfig.targets))
            lora["kernel_sizes"] = tuple(lora.get("kernel_sizes", LoRAConfig.kernel_sizes))
            d["lora"] = LoRAConfig(**lora)
        return cls(**d)


