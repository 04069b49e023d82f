"""The single I/O contract of edgeclick's exported graphs.

Every graph name, tensor name, dtype, shape, variable axis, TensorRT profile, CoreML input type, the
preprocessing rule, the click rows' layout and labels, and the parity tolerances and gates live here, and
nowhere else. The disk radius the decoder draws around each click is not here: it is a property of the
model (`ModelConfig.click_radius`, which `import-ritm` reads from a RITM file), recorded with the model
config in every artifact, so the hash below covers only what is the same for every model. Exporters,
calibrators, runtimes and tests read them from this module; artifacts carry `CONTRACT_VERSION` and
`contract_hash()` in their metadata and a runtime refuses an artifact whose hash differs.

Shapes are written with symbols: "H", "W" (model input size, multiples of `PAD_MULTIPLE`), "N"
(`NUM_CLICKS`) and channel counts that depend on the model config (see `encoder_outputs`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

CONTRACT_VERSION = "1.2.0"  # 1.2: the late decoder gained its global OCR head (older late graphs cannot run it)

# Graph names.
ENCODER = "encoder"
DECODER = "decoder"

# Tensor names.
IMAGE = "image"
CLICKS = "clicks"
PREV_MASK = "prev_mask"
LOGITS = "logits"
STEM = "stem"  # early fusion: stem conv output
DOWN_IMAGE = "down_image"  # early fusion + conv adapter: image part of the downsample conv
FEATURES = "features"  # late fusion: projected backbone features
SKIP_IMAGE = "skip_image"  # late fusion + conv adapter: image part of the adapter's skip features

# Click rows: (x, y, label) in model-input pixels, padded to NUM_CLICKS rows (built by clicks.click_rows).
NUM_CLICKS = 24
LABEL_POSITIVE = 1
LABEL_NEGATIVE = 0
LABEL_PADDING = -1

# Preprocessing: resize so the image fits the model input keeping its aspect ratio (longest side
# limited), pad bottom/right with zeros; model input sides are multiples of PAD_MULTIPLE.
PAD_MULTIPLE = 32
PAD_VALUE = 0
DEFAULT_SIZE = (640, 960)  # H, W
PROB_THRESHOLD = 0.49  # RITM's evaluation threshold on sigmoid(logits)

# Keys under which every artifact embeds the contract (ONNX metadata_props, CoreML user-defined
# metadata, the JSON sidecar of a TensorRT engine, manifest.json).
META_CONTRACT_VERSION = "edgeclick.contract_version"
META_CONTRACT_HASH = "edgeclick.contract_hash"
META_MODEL_CONFIG = "edgeclick.model_config"  # JSON of ModelConfig.to_dict()
META_GRAPH = "edgeclick.graph"  # "encoder" or "decoder"

# Dynamic-shape bounds (H, W) for TensorRT optimisation profiles.
DYNAMIC_MIN = (320, 320)
DYNAMIC_MAX = (1536, 1536)


@dataclass(frozen=True)
class Tolerance:
    """Parity gates between an exported graph and PyTorch."""

    max_abs_logit: float
    min_mask_iou_per_click: float
    min_mean_mask_iou: float


# fp16 and int8 are judged on masks, not logits: the error of a logit scales with its magnitude (fp16
# spacing is 0.06 near 100, where the mask is certain anyway), so |Δlogit| is reported but not gated.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_logit=1e-3, min_mask_iou_per_click=0.999, min_mean_mask_iou=0.999),
    "fp16": Tolerance(max_abs_logit=float("inf"), min_mask_iou_per_click=0.95, min_mean_mask_iou=0.995),
    "int8": Tolerance(max_abs_logit=float("inf"), min_mask_iou_per_click=0.0, min_mean_mask_iou=0.97),
}

GATED: dict[str, tuple[str, ...]] = {
    # fp32 must be numerically the same graph: every click, both the logits and the mask.
    "fp32": ("max_abs_logit", "min_mask_iou_per_click"),
    # Reduced precision is allowed local disagreement; what must hold is the mask on average.
    "fp16": ("min_mean_mask_iou",),
    "int8": ("min_mean_mask_iou",),
}
"""Which `Tolerance` fields are gates for each precision (parity, export checks); the others are reported only."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output.

    shape: ints or symbols ("H", "W", "H/4", "N"); dynamic: axis index → symbol for axes that may vary
    when the graph is exported with dynamic H/W (N never varies: every backend sees static click rows).
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    dynamic: tuple[tuple[int, str], ...] = ()

    def resolve(self, height: int, width: int) -> tuple[int, ...]:
        """Concrete shape for a model input of height×width pixels."""
        env = {"H": height, "W": width, "N": NUM_CLICKS}

        def value(dim: int | str) -> int:
            if isinstance(dim, int):
                return dim
            if "/" in dim:
                sym, div = dim.split("/")
                return -(-env[sym] // int(div))  # ceil: stride-2 convs with padding 1 round up
            return env[dim]

        return tuple(value(d) for d in self.shape)


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def _spatial(name: str, channels: int, stride: int) -> TensorSpec:
    h, w = ("H", "W") if stride == 1 else (f"H/{stride}", f"W/{stride}")
    return TensorSpec(name, "float32", (1, channels, h, w), ((2, h), (3, w)))


def encoder_outputs(fusion: str, adapter: bool, *, late_channels: int, skip_channels: int) -> tuple[TensorSpec, ...]:
    """What the encoder hands the decoder, per fusion mode and conv adapter (input stride in the name)."""
    if fusion == "early":
        if adapter:
            return (_spatial(DOWN_IMAGE, 3 + skip_channels, 2),)
        return (_spatial(STEM, 64, 2),)
    if fusion == "late":
        if adapter:  # the base runs at half resolution, so its stride-4 features are at 1/8
            return (_spatial(FEATURES, late_channels, 8), _spatial(SKIP_IMAGE, skip_channels, 2))
        return (_spatial(FEATURES, late_channels, 4),)
    raise ValueError(f"unknown fusion {fusion!r}; expected 'early' or 'late'")


IMAGE_SPEC = TensorSpec(IMAGE, "uint8", (1, "H", "W", 3), ((1, "H"), (2, "W")))
CLICKS_SPEC = TensorSpec(CLICKS, "float32", (1, "N", 3))
PREV_MASK_SPEC = TensorSpec(PREV_MASK, "float32", (1, 1, "H", "W"), ((2, "H"), (3, "W")))
LOGITS_SPEC = TensorSpec(LOGITS, "float32", (1, 1, "H", "W"), ((2, "H"), (3, "W")))


def graph_specs(fusion: str, adapter: bool, *, late_channels: int = 32, skip_channels: int = 16) -> dict[str, GraphSpec]:
    """Encoder and decoder specs for one model layout."""
    feats = encoder_outputs(fusion, adapter, late_channels=late_channels, skip_channels=skip_channels)
    return {
        ENCODER: GraphSpec(ENCODER, (IMAGE_SPEC,), feats),
        DECODER: GraphSpec(DECODER, feats + (CLICKS_SPEC, PREV_MASK_SPEC), (LOGITS_SPEC,)),
    }


def check_size(height: int, width: int) -> None:
    """Model input sizes must be positive multiples of PAD_MULTIPLE."""
    if height <= 0 or width <= 0 or height % PAD_MULTIPLE or width % PAD_MULTIPLE:
        raise ValueError(
            f"model input size {height}x{width} is not a multiple of {PAD_MULTIPLE}; "
            f"use e.g. {max(1, round(height / PAD_MULTIPLE)) * PAD_MULTIPLE}x{max(1, round(width / PAD_MULTIPLE)) * PAD_MULTIPLE}"
        )


def tensorrt_profile(spec: TensorSpec, size: tuple[int, int], dynamic: bool) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes for a TensorRT optimisation profile of one input."""
    opt = spec.resolve(*size)
    if not dynamic or not spec.dynamic:
        return opt, opt, opt
    # The bounds widen to include the export size, so min <= opt <= max always holds.
    low = (min(DYNAMIC_MIN[0], size[0]), min(DYNAMIC_MIN[1], size[1]))
    high = (max(DYNAMIC_MAX[0], size[0]), max(DYNAMIC_MAX[1], size[1]))
    return spec.resolve(*low), opt, spec.resolve(*high)


def coreml_input_type(spec: TensorSpec) -> dict[str, Any]:
    """How CoreML sees an input: the encoder's uint8 image becomes an RGB image input, the rest tensors.

    The image input is declared at the model size with enumerated sizes; normalisation stays in the graph
    (scale 1/255, bias 0), so the same weights serve every backend.
    """
    if spec.name == IMAGE:
        return {"kind": "image", "color_layout": "RGB", "scale": 1.0 / 255.0, "bias": [0.0, 0.0, 0.0]}
    return {"kind": "tensor", "dtype": spec.dtype}


def _canonical() -> dict[str, Any]:
    return {
        "version": CONTRACT_VERSION,
        "tensors": [asdict(t) for t in (IMAGE_SPEC, CLICKS_SPEC, PREV_MASK_SPEC, LOGITS_SPEC)],
        "features": {
            f"{fusion}/{'adapter' if a else 'base'}": [asdict(t) for t in encoder_outputs(fusion, a, late_channels=0, skip_channels=0)]
            for fusion in ("early", "late")
            for a in (False, True)
        },
        "clicks": [NUM_CLICKS, LABEL_POSITIVE, LABEL_NEGATIVE, LABEL_PADDING],
        "preprocess": [PAD_MULTIPLE, PAD_VALUE, "fit-longest-side", "pad-bottom-right"],
        "threshold": PROB_THRESHOLD,
        "dynamic": [DYNAMIC_MIN, DYNAMIC_MAX],
        "tolerances": {k: asdict(v) for k, v in TOLERANCES.items()},
        "gated": {k: list(v) for k, v in GATED.items()},
    }


def contract_hash() -> str:
    """sha256 of the canonical contract; any change to names, shapes, encoding or gates changes it."""
    blob = json.dumps(_canonical(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def describe() -> dict[str, Any]:
    """The contract as plain data (for `edgeclick contract` and artifact manifests)."""
    return {"hash": contract_hash(), **_canonical()}


class ContractMismatch(RuntimeError):
    """An artifact built against another version of the I/O contract."""


def check_contract(artifact_hash: str, where: str) -> None:
    """Refuse an artifact whose contract hash is not this code's (`where` names it in the message)."""
    if artifact_hash != contract_hash():
        raise ContractMismatch(
            f"{where} was built for I/O contract {artifact_hash[:12]}…, this edgeclick speaks "
            f"{contract_hash()[:12]}… (version {CONTRACT_VERSION}); re-export it with this version"
        )
