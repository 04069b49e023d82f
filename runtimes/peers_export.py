"""Build a SAM-family peer from its own PyPI package with random weights and export it to ONNX.

    art = export_peer("sam-vit-b", Path("artifacts/peers"))     # → artifacts/peers/sam-vit-b/{encoder,decoder}.onnx

Speed does not depend on the weights, so the model is built with checkpoint=None and a seeded init. The
decoder is exported as the peer's own `scripts/export_onnx_model.py` does it: its `SamOnnxModel` wrapper
with return_single_mask=True (no stability score, no extra metrics), opset 17, inputs image_embeddings,
point_coords / point_labels (dynamic number of points), mask_input, has_mask_input, orig_im_size, outputs
masks, iou_predictions, low_res_masks. SAM's script exports no encoder; the encoder graph here is the
model's `image_encoder` traced on its fixed 1×3×S×S input (what exporters of SAM encoders do), with SAM's
resize / normalisation / padding left to the runtime (runtimes/peers.py). The TorchScript exporter and
embedded weights, as edgeclick's own ONNX export uses. An artifact is written to a staging folder and
renamed, so a folder that exists is complete; an existing one is reused when its peer.json matches.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

try:  # torch is there whenever a peer is built; this module must still import without it
    from torch import nn
except ImportError:  # pragma: no cover
    nn = None  # type: ignore[assignment]

from .peers import (
    DECODER_FILE,
    ENCODER_FILE,
    PEER_EMBEDDINGS,
    PEER_META,
    PEER_PIXELS,
    PeerSpec,
    require_peer,
)

OPSET = 17  # segment-anything's export script default
EXPORT_VERSION = 1  # bump when the export changes, so cached peer artifacts are rebuilt


def _stand_in(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name, "edgeclick stand-in for an import-time helper the peers never call here")
    module.__path__ = []  # a package, so submodules resolve
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _not_here(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("edgeclick's peer export stands in for this torchvision helper (image resizing / NMS of "
                       "SAM's predictor and mask generator), which the model build and ONNX export never call")


class _DropPath(nn.Module if nn is not None else object):  # type: ignore[misc]
    """timm's DropPath at inference: the identity (MobileSAM builds it with drop rate 0)."""

    def __init__(self, drop_prob: float | None = None) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Any) -> Any:
        if self.training and self.drop_prob:
            raise RuntimeError("the DropPath stand-in is for inference and export only")
        return x


def _to_2tuple(x: Any) -> tuple[Any, Any]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)  # type: ignore[return-value]


def _stand_ins(needs_timm: bool) -> dict[str, types.ModuleType]:
    """Modules to stand in for, by name: torchvision's when it does not import, timm's (MobileSAM) likewise."""
    import torch

    out: dict[str, types.ModuleType] = {}
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):  # absent, or a CUDA build next to a CPU torch
        out.update({
            "torchvision": _stand_in("torchvision"),
            "torchvision.transforms": _stand_in("torchvision.transforms"),
            "torchvision.transforms.functional": _stand_in("torchvision.transforms.functional", resize=_not_here,
                                                           to_pil_image=_not_here),
            "torchvision.ops": _stand_in("torchvision.ops"),
            "torchvision.ops.boxes": _stand_in("torchvision.ops.boxes", batched_nms=_not_here, box_area=_not_here),
        })
    if needs_timm:
        try:
            import timm.models.layers  # noqa: F401
            import timm.models.registry  # noqa: F401
        except (ImportError, RuntimeError, OSError):
            out.update({
                "timm": _stand_in("timm"),
                "timm.models": _stand_in("timm.models"),
                "timm.models.layers": _stand_in("timm.models.layers", DropPath=_DropPath, to_2tuple=_to_2tuple,
                                                trunc_normal_=torch.nn.init.trunc_normal_),
                "timm.models.registry": _stand_in("timm.models.registry", register_model=lambda fn: fn),
            })
    return out


@contextlib.contextmanager
def peer_imports(spec: PeerSpec) -> Iterator[list[str]]:
    """Make the peer's package importable without torchvision / timm, yielding the stood-in module names.

    The peers import torchvision at package import for helpers they do not call to build or export a model
    (ResizeLongestSide's PIL resize, the mask generator's NMS), and MobileSAM imports timm for DropPath
    (identity at inference), to_2tuple, trunc_normal_ and register_model. PyPI's torchvision is a CUDA build
    that does not import next to this project's CPU torch, and once installed it breaks lightning's import, so
    the `peers` extra installs neither: where they do not import, small stand-ins are put in sys.modules for
    the duration of the build and export, then removed (the peer's modules keep what they bound).
    """
    stand_ins = _stand_ins(needs_timm=spec.module == "mobile_sam")
    saved = {name: sys.modules.get(name) for name in stand_ins}
    for name in list(sys.modules):  # a half-imported torchvision must not shadow the stand-ins
        if name.split(".")[0] in {n.split(".")[0] for n in stand_ins} and name not in stand_ins:
            saved.setdefault(name, sys.modules.pop(name))
    sys.modules.update(stand_ins)
    try:
        yield sorted(stand_ins)
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
        for name, module in saved.items():
            if module is not None:
                sys.modules[name] = module


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_peer(spec: PeerSpec, seed: int = 0) -> Any:
    """The peer's Sam model from its own builder, random weights (checkpoint=None), eval mode."""
    import torch

    with peer_imports(spec):
        torch.manual_seed(seed)
        return _resolve(spec.builder)(checkpoint=None).eval()


def package_version(spec: PeerSpec) -> str:
    try:
        return metadata.version(spec.package)
    except metadata.PackageNotFoundError:
        return "unknown"


def export_model(model: Any, spec: PeerSpec, out_dir: Path, *, encoder_size: int, seed: int = 0) -> Path:
    """Export `model` (a Sam from the peer's package) to out_dir/{encoder,decoder}.onnx + peer.json, atomically.

    encoder_size: the image encoder's square input S (1024 for the real models; tests pass small models).
    """
    import onnx
    import torch

    with peer_imports(spec):
        onnx_wrapper = _resolve(spec.onnx_wrapper)
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            torch.onnx.export(model.image_encoder, (torch.randn(1, 3, encoder_size, encoder_size),),
                              str(staging / ENCODER_FILE), input_names=[PEER_PIXELS], output_names=[PEER_EMBEDDINGS],
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
            decoder = onnx_wrapper(model=model, return_single_mask=True, use_stability_score=False,
                                   return_extra_metrics=False)
            embed_dim = model.prompt_encoder.embed_dim
            embed_size = tuple(model.prompt_encoder.image_embedding_size)
            mask_input_size = [4 * x for x in embed_size]
            # segment-anything's scripts/export_onnx_model.py, verbatim in inputs, names and dynamic axes.
            dummy = {
                PEER_EMBEDDINGS: torch.randn(1, embed_dim, *embed_size, dtype=torch.float),
                "point_coords": torch.randint(low=0, high=encoder_size, size=(1, 5, 2), dtype=torch.float),
                "point_labels": torch.randint(low=0, high=4, size=(1, 5), dtype=torch.float),
                "mask_input": torch.randn(1, 1, *mask_input_size, dtype=torch.float),
                "has_mask_input": torch.tensor([1], dtype=torch.float),
                "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
            }
            torch.onnx.export(decoder, tuple(dummy.values()), str(staging / DECODER_FILE), export_params=True,
                              opset_version=OPSET, do_constant_folding=True, input_names=list(dummy),
                              output_names=["masks", "iou_predictions", "low_res_masks"],
                              dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                              dynamo=False)
        for name in (ENCODER_FILE, DECODER_FILE):
            onnx.checker.check_model(str(staging / name))
        params = sum(p.numel() for p in model.parameters())
        encoder_params = sum(p.numel() for p in model.image_encoder.parameters())
        meta = {"peer": spec.name, "package": spec.package, "package_version": package_version(spec),
                "paper": spec.paper, "encoder_size": encoder_size, "mask_input_size": mask_input_size,
                "embedding": [embed_dim, *embed_size], "parameters": params, "encoder_parameters": encoder_params,
                "weights": f"random (torch seed {seed}); speed does not depend on them", "opset": OPSET,
                "export_version": EXPORT_VERSION, "seed": seed, "torch": torch.__version__,
                "export": "decoder: the package's SamOnnxModel(return_single_mask=True) as in its export script; "
                          "encoder: image_encoder on 1x3xSxS"}
        (staging / PEER_META).write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def export_peer(name: str, root: Path, *, seed: int = 0, log: Any = None) -> Path:
    """root/<name>/ holding the peer's ONNX graphs; reused when an earlier export of the same package
    version, seed and export version is there.

    Raises:
        PeersNotInstalled: the peer's package is missing (one line naming `pip install -e .[peers]`).
    """
    spec = require_peer(name)
    out = Path(root) / name
    meta_path = out / PEER_META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        wanted = (spec.name, package_version(spec), EXPORT_VERSION, seed)
        if (meta.get("peer"), meta.get("package_version"), meta.get("export_version"), meta.get("seed")) == wanted:
            return out
    if log:
        log(f"peer {name}: building {spec.package} {package_version(spec)} with random weights and exporting to ONNX")
    return export_model(build_peer(spec, seed), spec, out, encoder_size=spec.encoder_size, seed=seed)
