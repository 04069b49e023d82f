"""Interactive session: `set_image` runs the encoder once, each `click` runs the decoder once.

    session = Session(TorchBackend(model, input_size=(640, 960)))
    session.set_image(rgb)                 # H×W×3 uint8
    prob = session.click(120, 80, True)    # H×W float32 probabilities at the image's own size
    session.undo(); session.reset()

Works unchanged over any Backend (torch, onnxruntime, TensorRT, CoreML).

Threads: a Session is one user's state (image features, click history). Give each user, or thread, its own
Session; they may share one backend (torch and onnxruntime run concurrently, TensorRT and CoreML serialise
behind a lock). A Session used from two threads at once raises instead of mixing the two users' clicks.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from edgeclick import contract
from edgeclick.clicks import Click, click_rows
from edgeclick.preprocess import Letterbox

from .backend import Backend, check_contract


# Above this an image is refused before any copy: the letterbox's float copy alone would take gigabytes.
MAX_SOURCE_PIXELS = 100_000_000


class InputError(ValueError):
    """Bad input to a Session; the message names the problem and the fix."""


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Bring an image to H×W×3 uint8 RGB, converting what converts unambiguously and rejecting the rest.

    Grayscale (H×W or H×W×1) is replicated to RGB; RGBA drops alpha; uint16 is scaled to 8 bits.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise InputError(f"image must be H×W×3 (RGB), H×W×4 (RGBA) or H×W (grayscale); got shape {image.shape}")
    if image.shape[0] * image.shape[1] > MAX_SOURCE_PIXELS:
        raise InputError(f"image of {image.shape[1]}×{image.shape[0]} pixels exceeds {MAX_SOURCE_PIXELS / 1e6:.0f} MP; "
                         "downscale it first (the model sees at most its input size anyway)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"image dtype {image.dtype} is not supported: pass uint8 (or uint16); "
                         "for float images in [0, 1] use (img * 255).round().astype(np.uint8)")
    channels = image.shape[2]
    if channels == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 4:
        image = image[..., :3]
    elif channels != 3:
        raise InputError(f"image has {channels} channels; expected 1 (gray), 3 (RGB) or 4 (RGBA)")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"image of size {image.shape[:2]} is too small; pass at least 2×2 pixels")
    return np.ascontiguousarray(image)


@dataclass
class _Step:
    clicks: list[Click]
    model_prob: np.ndarray  # 1×1×H×W probabilities in model space (fed back as prev_mask)
    prob: np.ndarray  # h×w at the image's own size


def check_probabilities(prev_mask: np.ndarray) -> None:
    """InputError unless every value of `prev_mask` is a finite probability in [0, 1]."""
    if not np.isfinite(prev_mask).all():
        raise InputError("prev_mask contains NaN or inf; pass probabilities in [0, 1] (or None before the first click)")
    if prev_mask.min() < 0 or prev_mask.max() > 1:
        raise InputError(f"prev_mask values span [{prev_mask.min():.3g}, {prev_mask.max():.3g}]; pass probabilities in [0, 1]")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))).astype(np.float32)


_F = TypeVar("_F", bound=Callable[..., Any])


def _exclusive(method: _F) -> _F:
    """Refuse a second thread entering a Session while one is inside (its history would interleave)."""

    @functools.wraps(method)
    def guarded(self: "Session", *args: Any, **kwargs: Any) -> Any:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this Session is in use by another thread; give each thread its own Session "
                               "(Sessions may share one backend)")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy.release()

    return guarded  # type: ignore[return-value]


class Session:
    """Click-by-click segmentation of one image at a time over a Backend (one user; see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        check_contract(backend.contract_hash, f"backend {backend.name!r}")
        self.backend = backend
        self._busy = threading.Lock()
        self._letterbox: Letterbox | None = None
        self._features: dict[str, np.ndarray] | None = None
        self._history: list[_Step] = []

    # -- image ---------------------------------------------------------------------------------------
    @_exclusive
    def set_image(self, image: np.ndarray) -> None:
        """Run the encoder on `image` (H×W×3 uint8 RGB; gray/RGBA/uint16 converted) and forget all clicks."""
        rgb = to_rgb_uint8(image)
        self._letterbox = Letterbox.fit(rgb.shape[:2], self.backend.input_size)
        model_image = self._letterbox.image(rgb)[None]
        self._features = self.backend.run(contract.ENCODER, {contract.IMAGE: model_image})
        self._history = []

    @property
    def image_size(self) -> tuple[int, int]:
        return self._require_image().source

    # -- clicks --------------------------------------------------------------------------------------
    @property
    def clicks(self) -> list[Click]:
        return list(self._history[-1].clicks) if self._history else []

    @property
    def probability(self) -> np.ndarray | None:
        """The current mask probabilities at the image's size, or None before the first click."""
        return self._history[-1].prob if self._history else None

    @_exclusive
    def click(self, x: float, y: float, positive: bool) -> np.ndarray:
        """Add a click at pixel (x=column, y=row) and return the new H×W probabilities."""
        clicks = self.clicks + [Click(float(x), float(y), bool(positive))]
        prev = self._history[-1].model_prob if self._history else None
        model_prob, prob = self._decode(clicks, prev)
        self._history.append(_Step(clicks, model_prob, prob))
        return prob

    @_exclusive
    def undo(self) -> np.ndarray | None:
        """Remove the last click; return the probabilities before it (None when no click is left)."""
        if self._history:
            self._history.pop()
        return self.probability

    @_exclusive
    def reset(self) -> None:
        """Forget all clicks (the image and its encoder features stay)."""
        self._history = []

    @_exclusive
    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray:
        """Decode `clicks` with `prev_mask` (H×W probabilities at the image's size, None = zeros) without
        touching the click history; returns H×W probabilities. This is what the evaluator drives."""
        lb = self._require_image()
        model_prev = None
        if prev_mask is not None:
            prev_mask = np.asarray(prev_mask, dtype=np.float32)
            if prev_mask.shape != lb.source:
                raise InputError(f"prev_mask shape {prev_mask.shape} differs from the image's {lb.source}")
            check_probabilities(prev_mask)  # here: Letterbox.mask clamps, which would hide a wrong input
            model_prev = lb.mask(prev_mask)
        return self._decode(list(clicks), model_prev)[1]

    # -- internals -----------------------------------------------------------------------------------
    def _require_image(self) -> Letterbox:
        if self._letterbox is None or self._features is None:
            raise InputError("no image: call set_image(rgb) before clicking")
        return self._letterbox

    def _click_rows(self, clicks: list[Click]) -> np.ndarray:
        lb = self._require_image()
        if len(clicks) > contract.NUM_CLICKS:
            raise InputError(f"{len(clicks)} clicks exceed the contract's {contract.NUM_CLICKS}; undo() or reset() first")
        h, w = lb.source
        for c in clicks:
            if not (np.isfinite(c.x) and np.isfinite(c.y) and 0 <= c.x <= w - 1 and 0 <= c.y <= h - 1):
                raise InputError(f"click ({c.x}, {c.y}) is outside the {w}×{h} image (x in [0, {w - 1}], y in [0, {h - 1}])")
        points = lb.points(np.array([[c.x, c.y] for c in clicks], dtype=np.float64).reshape(-1, 2))
        return click_rows([(x, y, c.positive) for (x, y), c in zip(points, clicks)])

    def _decode(self, clicks: list[Click], model_prev: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        lb = self._require_image()
        rows = self._click_rows(clicks)
        if model_prev is None:
            model_prev = np.zeros((1, 1, *lb.target), dtype=np.float32)
        else:
            check_probabilities(model_prev)
        assert self._features is not None
        feeds = {**self._features, contract.CLICKS: rows, contract.PREV_MASK: model_prev}
        logits = self.backend.run(contract.DECODER, feeds)[contract.LOGITS]
        # Resize logits, not probabilities, back to the image: sharper, and what RITM does.
        return sigmoid(logits), sigmoid(lb.unmap(logits))


def open_session(checkpoint: str | Path, *, input_size: tuple[int, int] | None = None, device: str = "cpu",
                 power: str | None = None) -> Session:
    """A torch-reference Session over an edgeclick checkpoint (input_size None: each image's own size), or
    a Session over an exported artifact when `checkpoint` is an artifact folder (any format, its own runtime;
    `segment` and `evaluate` take both). An artifact exported at a fixed size refuses another input_size.

    power: power profile (runtimes/power.py; None: the default): torch's threads and, if torch is not
    imported yet, the OpenMP wait policy — both process-wide; for an artifact, its runtime's knobs."""
    from edgeclick.manifest import MANIFEST_NAME

    from .power import get_profile

    if Path(checkpoint).is_dir() and (Path(checkpoint) / MANIFEST_NAME).is_file():
        session = open_artifact_session(checkpoint, power=power)
        fixed = session.backend.input_size
        if input_size is not None and fixed is not None and tuple(input_size) != tuple(fixed):
            raise InputError(f"{checkpoint} was exported for {fixed[0]}x{fixed[1]}; drop --size or pass {fixed[0]}x{fixed[1]}")
        return session
    from .torch_ref import TorchBackend

    return Session(TorchBackend.from_checkpoint(checkpoint, input_size, device, power=get_profile(power)))


def open_artifact_session(artifact_dir: str | Path, *, threads: "int | dict[str, int] | None" = None,
                          power: str | None = None, **kwargs: Any) -> Session:
    """A Session over an exported artifact; `threads` is one count or per graph, e.g. {"encoder": 2,
    "decoder": 1} (onnxruntime; backends without thread control refuse the keyword); `power` a power
    profile name (runtimes/power.py; None: the default) for backends with such knobs."""
    from .artifact import open_backend

    return Session(open_backend(artifact_dir, threads=threads, power=power, **kwargs))
