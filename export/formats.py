"""The format table: every export target, the options it accepts, what it needs, and its exporter.

One table drives the CLI, the wrapper (`export/run.py`) and the tests; each format's options come from its
dataclass in `export/options.py` (the single source of names, defaults and checks). An exporter is a plain function
`export_xxx(request: ExportRequest) -> ExportResult` named by a dotted path and imported only when that
format is exported, so importing this module pulls in no conversion tool (onnx, coremltools, tensorrt).

    fmt = FORMATS["onnx"]
    options = resolve_options(fmt, {"opset": "18"})   # → {"opset": 18, "simplify": True, ...}
    result = load_exporter(fmt)(ExportRequest(...))
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeclick import contract

from .options import PRECISIONS, CoreMLOptions, ExecuTorchOptions, FormatOptions, OnnxOptions, TensorRTOptions

if TYPE_CHECKING:
    from edgeclick.model.base import ClickModel

ALL = "all"  # the CLI target that exports every format


class MissingRequirement(RuntimeError):
    """A format's requirement (a tool, a GPU, an OS) is absent.

    An exporter raises it after writing whatever it could (e.g. TensorRT-ready ONNX and the trtexec line
    that builds the engine elsewhere); the wrapper then keeps those files under a manifest marked
    `"complete": false`. `result` may describe the files written; without it the wrapper lists the
    staging directory.
    """

    def __init__(self, message: str, result: "ExportResult | None" = None) -> None:
        super().__init__(message)
        self.result = result
        self.artifact: Path | None = None  # set by the wrapper when it kept an incomplete artifact


class ExportValidationError(RuntimeError):
    """An exported graph differs from the contract (names, dtypes, shapes) or from PyTorch (values)."""


@dataclass(frozen=True)
class ExportRequest:
    """Everything an exporter needs; built and checked by the wrapper.

    checkpoint: the source edgeclick checkpoint (for provenance only: `model` is already loaded).
    model: eval mode, float32, LoRA merged (a model holding ConvLoRA modules is refused).
    size: model input (H, W) in pixels, multiples of contract.PAD_MULTIPLE; with `dynamic`, the
        optimisation / validation size.
    precision: one of PRECISIONS.
    dynamic: export dynamic H/W axes (only for formats with `Format.dynamic`).
    options: the format's options with defaults filled in (see `resolve_options`).
    work_dir: staging directory; the exporter writes every file of the artifact here.
    """

    checkpoint: Path
    model: "ClickModel"
    size: tuple[int, int]
    precision: str
    dynamic: bool
    options: dict[str, Any]
    work_dir: Path

    def __post_init__(self) -> None:
        contract.check_size(*self.size)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        check_exportable(self.model)


@dataclass
class ExportResult:
    """What an exporter produced.

    files: role → path inside `work_dir` (roles contract.ENCODER / contract.DECODER for the graphs,
        any other name for sidecars such as a build script).
    metadata: tool versions ("tools": {name: version}) and format facts (opset, op counts, ...).
    validation: what was checked after export and the numbers (e.g. max |Δlogit| vs torch).
    """

    files: dict[str, Path]
    metadata: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    """One export target.

    options_type: the format's options dataclass (export/options.py); `options` lists its fields with their
        defaults, and any other option is an error, not silently ignored.
    needs: human-readable requirements, shown by `edgeclick export --help` and in MissingRequirement.
    exporter: "module:function", imported lazily by `load_exporter`.
    """

    name: str
    suffix: str
    options_type: type[FormatOptions]
    precisions: tuple[str, ...]
    dynamic: bool
    needs: tuple[str, ...]
    exporter: str

    @property
    def options(self) -> dict[str, Any]:
        """Accepted option → default."""
        return self.options_type.defaults()


FORMATS: dict[str, Format] = {
    "onnx": Format(
        name="onnx",
        suffix=".onnx",
        options_type=OnnxOptions,
        precisions=PRECISIONS,
        dynamic=True,
        needs=("onnx", "onnxruntime", "onnxsim"),
        exporter="edgeclick.export.onnx:export_onnx",
    ),
    "trt": Format(
        name="trt",
        suffix=".engine",
        options_type=TensorRTOptions,
        precisions=PRECISIONS,
        dynamic=True,
        needs=("tensorrt>=10", "NVIDIA GPU"),
        exporter="edgeclick.export.tensorrt:export_tensorrt",
    ),
    "coreml": Format(
        name="coreml",
        suffix=".mlpackage",
        options_type=CoreMLOptions,  # dynamic = enumerated sizes (encoder; decoder from iOS 18)
        precisions=PRECISIONS,
        dynamic=True,
        needs=("coremltools==9.0", "macOS for prediction"),
        exporter="edgeclick.export.coreml:export_coreml",
    ),
    "executorch": Format(
        name="executorch",
        suffix=".pte",
        options_type=ExecuTorchOptions,
        precisions=("fp32",),  # int8: `edgeclick calibrate --target executorch` (XNNPACK PT2E, calibration/executorch.py)
        dynamic=False,
        needs=("executorch==1.5.1 (pip install -e .[executorch])",),
        exporter="edgeclick.export.executorch:export_executorch",
    ),
}


def get_format(name: str) -> Format:
    """The table entry for `name`, or a ValueError listing the known formats."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown export format {name!r}; known: {sorted(FORMATS)} (or {ALL!r})") from None


def formats_for(target: str) -> list[Format]:
    """The formats a CLI target names: one format, or every format for ALL."""
    return list(FORMATS.values()) if target == ALL else [get_format(target)]


def resolve_options(fmt: Format, given: dict[str, Any] | None) -> dict[str, Any]:
    """The format's defaults updated with `given` (CLI text coerced); an option it does not accept is an error."""
    return fmt.options_type.resolve(given)


def check_request(fmt: Format, precision: str, dynamic: bool) -> None:
    """Refuse a precision or dynamic shapes the format does not support (ValueError naming the fix)."""
    if precision not in fmt.precisions:
        raise ValueError(f"format {fmt.name!r} supports precisions {list(fmt.precisions)}, not {precision!r}")
    if dynamic and not fmt.dynamic:
        raise ValueError(f"format {fmt.name!r} does not support dynamic H/W; export it at a fixed --size without --dynamic")


def check_exportable(model: Any) -> None:
    """Refuse a model that still holds ConvLoRA modules: exported graphs carry plain merged convs."""
    from edgeclick.model.lora import ConvLoRA

    lora = [name for name, module in model.named_modules() if isinstance(module, ConvLoRA)]
    if lora:
        raise ValueError(
            f"the model holds {len(lora)} unmerged ConvLoRA modules (e.g. {lora[0]!r}); merge them first: "
            "edgeclick.model.merge_lora(model) then save_checkpoint (the training issue's merge step), and export the merged checkpoint"
        )


def load_exporter(fmt: Format) -> Callable[[ExportRequest], ExportResult]:
    """Import the format's exporter function; a missing module is reported as MissingRequirement."""
    module_name, _, func_name = fmt.exporter.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise MissingRequirement(f"format {fmt.name!r}: exporter module {module_name} is not installed") from exc
        raise MissingRequirement(f"format {fmt.name!r} needs {', '.join(fmt.needs)}: cannot import {exc.name!r}") from exc
    return getattr(module, func_name)
