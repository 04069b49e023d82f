"""Training configuration: nested dataclasses loaded from YAML, with dotted `key=value` overrides.

    cfg = load_config("train/configs/tiny_smoke.yaml", ["optim.lr=1e-4", "loss.boundary=0.1"])
    cfg.to_yaml()   # the resolved config, written next to the checkpoints and embedded in the weights

A file may start from another with `extends: ../reference_lora.yaml` (relative to the file) and
change only some keys (mappings merge key by key). Every level rejects unknown keys and names the
known ones. Values of overrides are parsed as YAML
(`data.crop_size=[320,480]`, `adapter=null`, `lora.rank=8`). Strings that look like floats (YAML 1.1
reads `1e-4` as a string) are converted where the field is a float.

Units: learning rates per optimizer step; steps are optimizer steps (= batches, no accumulation);
`data.batch_size`-like quantities are per process (the global batch is batch_size × devices × nodes).
"""
from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from edgeclick.model import model_config
from edgeclick.model.config import ConvAdapterConfig, LoRAConfig, ModelConfig
from edgeclick.train.data import DataConfig


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key, the problem and the known keys."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (RITM: NFL 1.0 on the main output, BCE 0.4 on the aux output).

    boundary: weight of the boundary loss (Kervadec et al.) on the main output; the paper uses 0.1.
    aux_bce applies only to models that return AUX_LOGITS (early fusion, with or without conv adapter).
    """

    nfl: float = 1.0
    aux_bce: float = 0.4
    boundary: float = 0.0


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to `min_lr_ratio · lr` at the last step.

    lr: peak learning rate; weight_decay: AdamW decoupled decay; warmup_steps: optimizer steps of
    linear warm-up from 0; grad_clip: max global gradient norm (None = off).
    """

    lr: float = 5e-4
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float | None = None


@dataclass(frozen=True)
class TrainerConfig:
    """Where and how Lightning runs. CLI flags --devices / --num-nodes / --accelerator override these.

    devices × num_nodes > 1 uses DDP (gloo on CPU, NCCL on GPU). precision: "32-true", or on GPU
    "16-mixed" / "bf16-mixed". sync_batchnorm: BN statistics over all ranks (base runs under DDP).
    threads: torch intra-op threads per process (0 = torch's default, all cores); with several CPU
    processes give each cores / processes, oversubscribed OpenMP threads slow CPU training severalfold.
    channels_last: model and batches in channels-last memory layout (faster convolutions on GPUs with
    tensor cores, under 16-/bf16-mixed precision). max_minutes: stop after this much wall time (Lightning's
    max_time), whatever max_steps says; the final weights are written as at max_steps.
    """

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    precision: str = "32-true"
    sync_batchnorm: bool = False
    find_unused_parameters: bool = False
    threads: int = 0
    num_workers: int = 0
    log_every: int = 10
    channels_last: bool = False
    max_minutes: float | None = None


@dataclass(frozen=True)
class ValConfig:
    """Cheap in-training validation with the RITM clicker (see edgeclick.train.validate).

    samples: how many val items are evaluated (the first ones of the val split; 0 disables validation);
    max_clicks: click budget per sample, also the NoC cap (the protocol uses 20);
    every: validate every this many optimizer steps; batch_size: samples clicked in parallel.
    """

    samples: int = 16
    max_clicks: int = 20
    every: int = 200
    batch_size: int = 4


@dataclass(frozen=True)
class TrainConfig:
    """One training run, base or adapter.

    model / fusion: a registered model name (edgeclick.model.ARCHS or alias) and "early" | "late".
    adapter: the conv adapter (ConvAdapterConfig) or None; lora: ConvLoRA (LoRAConfig) or None.
    base_checkpoint: edgeclick checkpoint of the trained base; required for adapter runs (adapter or
        lora set), where the base is frozen; optional for base runs (initial weights).
    train_first_conv: also train the base's first stem conv (the paper does for the conv adapter).
    max_num_next_clicks: iterative training: 0..this many clicks simulated without gradient (RITM: 3).
    batch_size: per process. max_steps: optimizer steps (-1: use max_epochs). early_stopping_patience:
        validations without a better val/noc90 before stopping (0 = off).
    checkpoint_every: optimizer steps between writes of the resumable out_dir/last.ckpt.
    record_samples: write out_dir/trace/rank{r}.json (dataset indices seen, parameter digest) for
        checking data sharding and replica equality under DDP.
    from_early: build the run's late-fusion model from base_checkpoint, an early-fusion checkpoint (a path
        or a published name): its backbone and, where shapes fit, its OCR head carry over
        (edgeclick.model.convert); the click encoder and region head start fresh. LoRA / the conv adapter
        may wrap the late model (variants b, c); the run saves a full checkpoint, not an adapter file.
    freeze_encoder: the click-free encoder (backbone + feature projection) does not train and keeps its
        BatchNorm statistics; only the decoder (and LoRA / adapter tensors) train.
    cache_encoder: compute each training crop's encoder output once and reuse it every epoch (crops are
        then fixed per item; clicks, simulated clicks and previous masks are still drawn fresh every
        step). Needs freeze_encoder and an encoder that does not train (no LoRA, no conv adapter).
    click_scale_init: initial |scale| of the click branch's ScaleLayer for a base trained from scratch
        (no base_checkpoint); None keeps the model's own (RITM: 0.05). RITM's 0.05 protects an
        ImageNet-pretrained backbone from the new click features; from scratch it only delays learning,
        because Adam moves |scale| by about lr per step (0.05 → 0.5 takes ~450 steps at lr 1e-3). 1.0
        is the from-scratch recipe (measured: tests/test_train_learning.py, docs/training.md).
    """

    model: str = "hrnet18s"
    fusion: str = "early"
    adapter: ConvAdapterConfig | None = None
    lora: LoRAConfig | None = None
    base_checkpoint: str | None = None
    train_first_conv: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    max_num_next_clicks: int = 3
    batch_size: int = 4
    max_steps: int = 1000
    max_epochs: int = -1
    early_stopping_patience: int = 0
    checkpoint_every: int = 100
    seed: int = 0
    out_dir: str = "runs/default"
    record_samples: bool = False
    click_scale_init: float | None = None
    from_early: bool = False
    freeze_encoder: bool = False
    cache_encoder: bool = False

    def __post_init__(self) -> None:
        if self.is_adapter_run and not self.base_checkpoint:
            raise ConfigError("adapter runs (adapter or lora set) need base_checkpoint: the trained base "
                              "edgeclick checkpoint the adapters are trained on")
        if self.train_first_conv and self.adapter is None:
            raise ConfigError("train_first_conv applies to the conv adapter (the paper's setting); set adapter too")
        if self.max_steps <= 0 and self.max_epochs <= 0:
            raise ConfigError("set max_steps > 0 or max_epochs > 0")
        if self.click_scale_init is not None and (self.base_checkpoint or self.click_scale_init <= 0):
            raise ConfigError("click_scale_init sets a fresh base's click-branch scale: it must be > 0 and "
                              "cannot be combined with base_checkpoint (whose weights already hold a scale)")
        if self.from_early and (self.fusion != "late" or not self.base_checkpoint):
            raise ConfigError("from_early builds a late model from an early checkpoint: set fusion: late and "
                              "base_checkpoint (a path or a published name)")
        if self.freeze_encoder and self.fusion != "late":
            raise ConfigError("freeze_encoder applies to late fusion (the early encoder holds only the first conv)")
        if self.cache_encoder and (not self.freeze_encoder or self.lora is not None or self.adapter is not None):
            raise ConfigError("cache_encoder needs an encoder that does not train: set freeze_encoder: true, "
                              "lora: null and adapter: null")
        if self.batch_size < 1 or self.max_num_next_clicks < 0:
            raise ConfigError("batch_size must be >= 1 and max_num_next_clicks >= 0")
        self.model_config()  # unknown model name / fusion fail here, at load time

    @property
    def is_adapter_run(self) -> bool:
        """True when only adapter tensors train on a frozen base of the same fusion (from_early runs are not)."""
        return (self.adapter is not None or self.lora is not None) and not self.from_early

    def model_config(self) -> ModelConfig:
        """The ModelConfig of the trained model (adapters included)."""
        return model_config(self.model, self.fusion, adapter=self.adapter, lora=self.lora)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples) for YAML and checkpoints."""
        return _plain(asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _build(cls, data, "")


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    """(inner type, allows None) of `X | None` / Optional[X]; other hints unchanged."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) != len(typing.get_args(hint))
    return hint, False


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Bring a YAML value to the field's type: nested dataclasses, tuples, float strings."""
    inner, optional = _strip_optional(hint)
    if value is None:
        if optional or inner is Any:
            return None
        raise ConfigError(f"{key}: null is not allowed here")
    if is_dataclass(inner):
        if value is True:  # `adapter: true` → defaults
            return inner()
        if isinstance(value, inner):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {[f.name for f in fields(inner)]}, got {value!r}")
        return _build(inner, value, key + ".")
    origin = typing.get_origin(inner)
    if origin is tuple or inner is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, key) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v, key) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if inner is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from exc
    if inner is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if inner in (int, float, str, bool) and not isinstance(value, inner):
        raise ConfigError(f"{key}: expected {inner.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass `cls` from a dict, rejecting unknown keys with the list of known ones."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; known keys at {where}: {known}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from exc


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted `a.b.c=value` overrides (value parsed as YAML) to a nested dict; returns a new dict.

    An intermediate that is missing or null (e.g. `adapter: null` then `adapter.sobel=true`) becomes a
    mapping; key validity is checked when the dict is built into a TrainConfig.
    """
    out = _plain(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=1e-4")
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
    return out


EXTENDS_KEY = "extends"
"""Top-level YAML key naming another config file (relative to this one) that this file modifies."""


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update` applied: mappings merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping a YAML config file describes, with its `extends:` chain resolved."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular 'extends' chain {[str(p) for p in _seen]}")
    loaded = yaml.safe_load(path.read_text())
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    data = dict(loaded or {})
    parent = data.pop(EXTENDS_KEY, None)
    if parent is None:
        return data
    return deep_merge(read_yaml_config(path.parent / parent, (*_seen, path)), data)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (None: defaults; `extends: other.yaml` supported), apply overrides, validate."""
    data = read_yaml_config(path) if path is not None else {}
    return TrainConfig.from_dict(apply_overrides(data, overrides))


MODEL_DEFINING_KEYS: tuple[str, ...] = ("model", "fusion", "adapter", "lora", "base_checkpoint", "train_first_conv")
"""Keys a resumed run must keep: they change which tensors exist or what they start from."""


def diff_configs(old: TrainConfig, new: TrainConfig, keys: Sequence[str] = MODEL_DEFINING_KEYS) -> list[str]:
    """`key: old → new` for the given top-level keys that differ."""
    a, b = old.to_dict(), new.to_dict()
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


__all__ = [
    "ConfigError", "LossWeights", "MODEL_DEFINING_KEYS", "OptimConfig", "TrainConfig", "TrainerConfig", "ValConfig",
    "apply_overrides", "deep_merge", "diff_configs", "load_config", "read_yaml_config",
]
