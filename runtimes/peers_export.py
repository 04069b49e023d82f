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

import importlib
import json
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

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


def import_torchvision_tolerantly() -> None:
    """Import torchvision even when its compiled ops do not match this torch (e.g. PyPI's CUDA torchvision
    next to a CPU torch: `operator torchvision::nms does not exist`).

    The peers import torchvision only for image-resize helpers and NMS of their automatic mask generator,
    neither of which the model build or export calls; torchvision's meta registrations for its missing
    compiled ops are skipped instead of aborting the import.
    """
    import torch

    try:
        import torchvision  # noqa: F401
        return
    except (RuntimeError, OSError) as exc:
        if "torchvision" not in str(exc) and "libc10" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    original = torch.library.register_fake

    def tolerant(op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(op, str) and op.startswith("torchvision::") and not args and kwargs.get("func") is None:
            return lambda fn: fn  # the decorator form, for an op whose kernel library did not load
        return original(op, *args, **kwargs)

    torch.library.register_fake = tolerant  # type: ignore[assignment]
    try:
        import torchvision  # noqa: F401,F811
    finally:
        torch.library.register_fake = original  # type: ignore[assignment]


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_peer(spec: PeerSpec, seed: int = 0) -> Any:
    """The peer's Sam model from its own builder, random weights (checkpoint=None), eval mode."""
    import torch

    import_torchvision_tolerantly()
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
