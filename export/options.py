"""Every export format's options, one dataclass per format: names, defaults, types, checks.

The dataclasses are the single source: the format table (`formats.FORMATS`) lists their fields as the
options each format accepts, the CLI's `--option KEY=VALUE` text is brought to each field's type here, and
every exporter reads its options through `from_dict`. Adding an option is one field (and its check in
`validate`); adding a format is one class here and one row in the table.

This module imports no conversion tool (onnx, coremltools, tensorrt), so the table stays cheap to import.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from edgeclick import contract

PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
"""What an export writes; int8 comes from calibration (explicit Q/DQ), never from an exporter."""
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")

_O = TypeVar("_O", bound="FormatOptions")


def parse_flag(name: str, value: Any) -> bool:
    """A boolean option, also from CLI text ("true"/"false", "1"/"0", "yes"/"no", "on"/"off")."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in TRUE + FALSE:
            raise ValueError(f"option {name}={value!r}: expected a boolean (true or false)")
        return text in TRUE
    return bool(value)


def coerce_option(name: str, value: Any, default: Any) -> Any:
    """Bring CLI text to the default's type ("18" → 18 for an int option); other values pass unchanged."""
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        return parse_flag(name, value)
    try:
        return type(default)(value.strip())
    except ValueError:
        raise ValueError(f"option {name}={value!r}: expected {type(default).__name__} like {default!r}") from None


@dataclass(frozen=True)
class FormatOptions:
    """Base of the per-format option dataclasses (subclasses add fields with defaults and `validate`)."""

    format_name: ClassVar[str] = "?"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Option name → default, in field order (what the format table shows)."""
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def resolve(cls, given: dict[str, Any] | None) -> dict[str, Any]:
        """The defaults updated with `given`, CLI text coerced to each option's type; an option the format
        does not accept is an error naming the accepted ones (with their defaults)."""
        given = dict(given or {})
        defaults = cls.defaults()
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            accepted = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "none"
            raise ValueError(f"format {cls.format_name!r} does not accept option(s) {unknown}; accepted: {accepted}")
        return {k: coerce_option(k, given.get(k, default), default) for k, default in defaults.items()}

    @classmethod
    def from_dict(cls: type[_O], options: dict[str, Any] | None) -> _O:
        """Resolved and validated options (ValueError naming the option and what it accepts)."""
        opts = cls(**cls.resolve(options))
        return opts.validate()

    def validate(self: _O) -> _O:
        """Range and value checks; returns the options, normalised where a field has several spellings."""
        return self


def check_rasteriser(name: str) -> None:
    """ValueError unless `name` is a click rasteriser of edgeclick/model/disks.py."""
    from edgeclick.model.disks import RASTERISERS

    if name not in RASTERISERS:
        raise ValueError(f"option rasteriser={name!r}: choose one of {', '.join(RASTERISERS)}")


@dataclass(frozen=True)
class OnnxOptions(FormatOptions):
    """Options of the "onnx" format.

    opset: ONNX opset. simplify: run onnxsim on both graphs.
    exporter: "torchscript" (compact graphs, stable names, dynamic axes) or "dynamo" (static only).
    rasteriser: how the decoder draws click disks (edgeclick/model/disks.py): "scatter" (fastest in desktop
        onnxruntime and WASM) or "broadcast" (only ops ORT Mobile's NNAPI and Core ML EPs take: for phones).
    mobile_rewrites: write ops those EPs refuse as equal ones they take (export/onnx_rewrites.py; the conv
        adapter's ConvTranspose as edgeclick.model.adapters.SubPixelUp).
    """

    format_name: ClassVar[str] = "onnx"
    opset: int = 17
    simplify: bool = True
    exporter: str = "torchscript"
    rasteriser: str = "scatter"
    mobile_rewrites: bool = True

    def validate(self) -> OnnxOptions:
        check_rasteriser(self.rasteriser)
        return self


TIMING_CACHE = "timing.cache"
MAX_OPTIMIZATION_LEVEL = 5


@dataclass(frozen=True)
class TensorRTOptions(FormatOptions):
    """Options of the "trt" format.

    opset: ONNX opset of the TensorRT-ready graphs.
    workspace_gb: builder workspace pool limit in GiB (trtexec --memPoolSize=workspace:<MiB>M).
    device: CUDA device index that builds and validates the engines.
    optimization_level: builder optimisation level 0–5 (TensorRT's default 3; higher searches longer).
    timing_cache: timing cache file, loaded before and saved after each build (None: work_dir/timing.cache).
    tf32: allow TF32 for fp32 layers (faster on Ampere+, but can break the fp32 parity gate of 1e-3).
    strongly_typed: TensorRT 10.x: a strongly typed network (precision exactly as in the ONNX, as 11.x
        always does); False: weak typing with BuilderFlag.FP16 for fp16. Ignored on 11.x.
    """

    format_name: ClassVar[str] = "trt"
    opset: int = 17
    workspace_gb: float = 4.0
    device: int = 0
    optimization_level: int = 3
    timing_cache: str | None = None
    tf32: bool = False
    strongly_typed: bool = True

    def validate(self) -> TensorRTOptions:
        if not isinstance(self.workspace_gb, (int, float)) or isinstance(self.workspace_gb, bool) or self.workspace_gb <= 0:
            raise ValueError(f"workspace_gb must be a positive number (GiB), got {self.workspace_gb!r}")
        level = self.optimization_level
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= MAX_OPTIMIZATION_LEVEL:
            raise ValueError(f"optimization_level must be an integer in 0..{MAX_OPTIMIZATION_LEVEL}, got {level!r}")
        if not isinstance(self.device, int) or self.device < 0:
            raise ValueError(f"device must be a CUDA device index >= 0, got {self.device!r}")
        if not isinstance(self.tf32, bool) or not isinstance(self.strongly_typed, bool):
            raise ValueError("tf32 and strongly_typed must be booleans")
        return self

    @property
    def workspace_mib(self) -> int:
        return max(1, round(self.workspace_gb * 1024))

    def cache_file(self, work_dir: Path) -> Path:
        return Path(self.timing_cache) if self.timing_cache else work_dir / TIMING_CACHE


DEFAULT_COREML_TARGET = "iOS17"


@dataclass(frozen=True)
class CoreMLOptions(FormatOptions):
    """Options of the "coreml" format.

    minimum_deployment_target: "iOS17" (= "macOS14"), "iOS18" / "macOS15" (decoder enumerated too),
        or "iOS16" / "macOS13".
    enumerated_sizes: extra model input sizes (H, W) for a dynamic export, e.g. "512x512,640x960" or
        [[512, 512], [640, 960]]; None: coreml.STANDARD_SIZES. Refused without dynamic (it would be ignored).
    numeric_check: evaluate the converted programs on Linux and compare with torch (20–40 s at 640×960
        for hrnet18s on a 2-core CPU).
    fp32_clicks: in an fp16 export, keep the decoder's click-coordinate arithmetic in fp32 (see
        `coreml.fp16_op_selector`); no effect on fp32 exports.
    """

    format_name: ClassVar[str] = "coreml"
    minimum_deployment_target: str = DEFAULT_COREML_TARGET
    enumerated_sizes: tuple[tuple[int, int], ...] | None = None
    numeric_check: bool = True
    fp32_clicks: bool = True

    def validate(self) -> CoreMLOptions:
        from .coreml_checks import TARGETS  # imports the model config (torch); only when options are checked

        if self.minimum_deployment_target not in TARGETS:
            raise ValueError(f"minimum_deployment_target {self.minimum_deployment_target!r} is not one of {list(TARGETS)}")
        sizes = None if self.enumerated_sizes is None else parse_sizes(self.enumerated_sizes)
        return CoreMLOptions(self.minimum_deployment_target, sizes, parse_flag("numeric_check", self.numeric_check),
                             parse_flag("fp32_clicks", self.fp32_clicks))


def parse_sizes(value: str | Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """"512x512,640x960" or [[512, 512], [640, 960]] → ((512, 512), (640, 960)), each a multiple of 32."""
    if isinstance(value, str):
        try:
            pairs = [tuple(int(v) for v in item.lower().split("x")) for item in value.replace(" ", "").split(",") if item]
        except ValueError:
            raise ValueError(f"enumerated_sizes {value!r}: expected HxW[,HxW...], e.g. 512x512,640x960") from None
    else:
        pairs = [tuple(int(v) for v in item) for item in value]
    sizes: list[tuple[int, int]] = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"enumerated_sizes: {pair} is not an (H, W) pair")
        contract.check_size(*pair)
        sizes.append((pair[0], pair[1]))
    return tuple(sizes)


EXECUTORCH_PARTITIONERS: tuple[str, ...] = ("xnnpack", "coreml")


@dataclass(frozen=True)
class ExecuTorchOptions(FormatOptions):
    """Options of the "executorch" format.

    partitioner: "xnnpack" (CPU kernels, the same on phones and x86: run and validated here) or "coreml"
        (ExecuTorch's Core ML delegate for iOS / macOS: lowered here, run only on Apple devices, so the
        artifact is kept with `complete: false`).
    rasteriser: how the decoder draws click disks (edgeclick/model/disks.py): "broadcast" (every op delegated
        to XNNPACK: 0.2 ms against scatter's 1.7 ms at 256×384) or "scatter".
    """

    format_name: ClassVar[str] = "executorch"
    partitioner: str = "xnnpack"
    rasteriser: str = "broadcast"

    def validate(self) -> ExecuTorchOptions:
        if self.partitioner not in EXECUTORCH_PARTITIONERS:
            raise ValueError(f"partitioner {self.partitioner!r} is not one of {list(EXECUTORCH_PARTITIONERS)}")
        check_rasteriser(self.rasteriser)
        return self
