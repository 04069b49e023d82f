"""The browser parity bundle: what `edgeclick parity ARTIFACT --data DIR --web-reference OUT` writes.

The page's parity mode (web/js/parity.js) replays it through onnxruntime-web. Per sample the bundle holds
the decoded image as PNG (so the browser's JPEG decoder cannot differ from Pillow's), the RITM clicker's
click sequence (placed on the PyTorch reference's own errors, as runtimes/parity.py does), and per click
the reference's model-space logits and its thresholded mask at the image's size. The letterboxed model
input Python made is included too, so the page can report how far its own letterbox is from Python's.

    OUT/bundle.json
    OUT/images/<i>.png                    h×w RGB  (keys: samples[].png, .model_u8, .steps[].logits_f32, .mask_u8)
    OUT/model/<i>.u8                      H×W×3 uint8: Python's letterboxed model input
    OUT/ref/<i>_<k>.logits.f32            H×W float32 little-endian: PyTorch logits after click k (model space)
    OUT/ref/<i>_<k>.mask.u8               h×w uint8 0/1: PyTorch mask after click k (prob > threshold)
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edgeclick import contract
from edgeclick.clicks import Clicker
from edgeclick.data.sample import Sample
from edgeclick.io import write_bytes_atomic, write_json_atomic
from edgeclick.preprocess import Letterbox

from .backend import Backend
from .parity import RecordingBackend
from .session import Session

BUNDLE_NAME = "bundle.json"
BUNDLE_FORMAT = 1


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_web_reference(reference: Backend, samples: Iterable[Sample], clicks: int, out: str | Path, *,
                        artifact: dict[str, Any]) -> Path:
    """Run the reference's click sessions and write the bundle; returns OUT/bundle.json.

    Args:
        reference: the PyTorch reference at the artifact's input size.
        samples: images with ground truth (the clicker needs it).
        clicks: clicks per sample, 1..contract.NUM_CLICKS.
        out: bundle folder (created).
        artifact: manifest facts recorded in the bundle (name, precision, size) so the page can refuse a
            bundle made for another artifact.

    Raises:
        ValueError: a click count outside 1..NUM_CLICKS or a reference without a fixed input size.
    """
    if not 1 <= clicks <= contract.NUM_CLICKS:
        raise ValueError(f"clicks must be in 1..{contract.NUM_CLICKS} (the contract's click rows), got {clicks}")
    if reference.input_size is None:
        raise ValueError("the web reference needs a fixed input size (the artifact's)")
    root = Path(out)
    recorder = RecordingBackend(reference)
    session = Session(recorder)
    entries = []
    for i, sample in enumerate(samples):
        stem = f"{i:03d}"
        session.set_image(sample.image)
        letterbox = Letterbox.fit(sample.gt.shape, reference.input_size)
        write_bytes_atomic(root / "images" / f"{stem}.png", _png(sample.image))
        write_bytes_atomic(root / "model" / f"{stem}.u8", letterbox.image(sample.image).tobytes())
        clicker = Clicker(sample.gt)
        pred = np.zeros(sample.gt.shape, dtype=bool)
        steps = []
        for k in range(1, clicks + 1):
            click = clicker.make_next_click(pred)
            prob = session.click(click.x, click.y, click.positive)
            pred = prob > contract.PROB_THRESHOLD
            assert recorder.last_logits is not None
            logits_path = f"ref/{stem}_{k:02d}.logits.f32"
            mask_path = f"ref/{stem}_{k:02d}.mask.u8"
            write_bytes_atomic(root / logits_path, recorder.last_logits.astype("<f4").tobytes())
            write_bytes_atomic(root / mask_path, pred.astype(np.uint8).tobytes())
            steps.append({"x": float(click.x), "y": float(click.y), "positive": bool(click.positive),
                          "logits_f32": logits_path, "mask_u8": mask_path, "area": float(pred.mean())})
        entries.append({"name": sample.name, "png": f"images/{stem}.png", "model_u8": f"model/{stem}.u8",
                        "size": list(sample.gt.shape), "resized": list(letterbox.resized), "steps": steps})
    bundle = {"format": BUNDLE_FORMAT, "contract_hash": contract.contract_hash(), "reference": reference.name,
              "artifact": artifact, "input_size": list(reference.input_size), "threshold": contract.PROB_THRESHOLD,
              "samples": entries}
    return write_json_atomic(root / BUNDLE_NAME, bundle)


def bundle_files(root: str | Path) -> list[str]:
    """The bundle's relative file paths (bundle.json first), as its index lists them; each checked to exist
    inside the folder so the server can serve exactly these.

    Raises:
        ValueError: a listed path that escapes the folder or does not exist.
    """
    root = Path(root)
    data = json.loads((root / BUNDLE_NAME).read_text())
    rels = [BUNDLE_NAME]
    for sample in data["samples"]:
        rels += [sample["png"], sample["model_u8"]]
        for step in sample["steps"]:
            rels += [step["logits_f32"], step["mask_u8"]]
    for rel in rels:
        path = root / rel
        if not path.resolve().is_relative_to(root.resolve()) or not path.is_file():
            raise ValueError(f"{root}: bundle file {rel} is missing or outside the bundle; rewrite the bundle")
    return rels
