"""Calibration inputs for post-training quantisation, recorded from simulated RITM click sessions.

    data = collect_calibration_data("ckpt.pt", samples, input_size=(640, 960), seed=0)
    data.save("cache/calib.npz"); data = CalibrationData.load("cache/calib.npz")
    reader = data.reader(contract.DECODER)     # an onnxruntime.quantization.CalibrationDataReader

Each sample is segmented by a torch reference Session driven by the RITM Clicker (click 1..N, the
previous mask fed back), and every feed the Session hands its backend is recorded: the encoder's
letterboxed uint8 image once per sample, and per click the decoder's click rows and prev mask. The
encoder outputs a decoder feed needs are stored once per sample and joined back by `sample_index`.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from edgeclick.runtimes.backend import Backend
from edgeclick.runtimes.session import Session

from edgeclick import contract
from edgeclick.clicks import Clicker
from edgeclick.data.sample import Sample
from edgeclick.io import atomic_write

_META_KEY = "__meta__"


@dataclass
class CalibrationData:
    """Recorded graph feeds (S samples, K decoder feeds).

    Attributes:
        image: S×H×W×3 uint8 letterboxed encoder inputs (contract.IMAGE, batch axis dropped).
        features: encoder output name → S×C×h×w float32 (what the decoder got for each sample).
        clicks: K×N×3 float32 click rows (contract.CLICKS, batch axis dropped).
        prev_mask: K×1×H×W float32 probabilities in [0, 1] (contract.PREV_MASK, batch axis dropped).
        sample_index: K int64, which sample (row of `image` / `features`) each decoder feed belongs to.
        click_index: K int64, 1-based click number of each decoder feed (1: all-zero prev mask).
        meta: seed, input size, sample names, counts before subsampling.
    """

    image: np.ndarray
    features: dict[str, np.ndarray]
    clicks: np.ndarray
    prev_mask: np.ndarray
    sample_index: np.ndarray
    click_index: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of decoder feeds K."""
        return int(self.clicks.shape[0])

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[2])

    # -- feeds ---------------------------------------------------------------------------------------
    def encoder_feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """{contract.IMAGE: 1×H×W×3 uint8} per sample."""
        for i in range(self.image.shape[0]):
            yield {contract.IMAGE: self.image[i : i + 1]}

    def decoder_feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """{features..., contract.CLICKS: 1×N×3, contract.PREV_MASK: 1×1×H×W} per recorded click."""
        for k in range(len(self)):
            s = int(self.sample_index[k])
            feeds = {name: arr[s : s + 1] for name, arr in self.features.items()}
            feeds[contract.CLICKS] = self.clicks[k : k + 1]
            feeds[contract.PREV_MASK] = self.prev_mask[k : k + 1]
            yield feeds

    def feeds(self, graph: str) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of `graph` (contract.ENCODER or contract.DECODER)."""
        if graph == contract.ENCODER:
            return self.encoder_feeds()
        if graph == contract.DECODER:
            return self.decoder_feeds()
        raise ValueError(f"unknown graph {graph!r}; expected {contract.ENCODER!r} or {contract.DECODER!r}")

    def reader(self, graph: str, input_names: Sequence[str] | None = None) -> "CalibrationReader":
        """An onnxruntime CalibrationDataReader over `graph`'s feeds (restricted to `input_names` if given)."""
        return CalibrationReader(self, graph, input_names)

    # -- cache ---------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write everything to one .npz (atomically; uncompressed, the arrays are float noise)."""
        arrays: dict[str, np.ndarray] = {
            contract.IMAGE: self.image, contract.CLICKS: self.clicks, contract.PREV_MASK: self.prev_mask,
            "sample_index": self.sample_index, "click_index": self.click_index,
            **{f"features/{name}": arr for name, arr in self.features.items()},
            _META_KEY: np.array(json.dumps(self.meta, default=str)),
        }

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationData":
        """Read a cache written by `save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            features = {key.split("/", 1)[1]: z[key] for key in z.files if key.startswith("features/")}
            return cls(image=z[contract.IMAGE], features=features, clicks=z[contract.CLICKS], prev_mask=z[contract.PREV_MASK],
                       sample_index=z["sample_index"], click_index=z["click_index"], meta=json.loads(str(z[_META_KEY])))


try:  # onnxruntime is an export/runtime dependency; keep this module importable without it
    from onnxruntime.quantization import CalibrationDataReader as _ReaderBase
except ImportError:  # pragma: no cover
    _ReaderBase = object  # type: ignore[assignment,misc]


class CalibrationReader(_ReaderBase):  # type: ignore[misc,valid-type]
    """onnxruntime.quantization.CalibrationDataReader over one graph's recorded feeds."""

    def __init__(self, data: CalibrationData, graph: str, input_names: Sequence[str] | None = None) -> None:
        self.data = data
        self.graph = graph
        self.input_names = None if input_names is None else list(input_names)
        self._it: Iterator[dict[str, np.ndarray]] = data.feeds(graph)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Feed only items [start_index, end_index) next (onnxruntime's strided calibration calls this)."""
        self._it = itertools.islice(self.data.feeds(self.graph), start_index, end_index)

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds = next(self._it, None)
        if feeds is None or self.input_names is None:
            return feeds
        return {name: feeds[name] for name in self.input_names}

    def rewind(self) -> None:
        self._it = self.data.feeds(self.graph)

    def __len__(self) -> int:
        return self.data.image.shape[0] if self.graph == contract.ENCODER else len(self.data)


class _Recorder:
    """A Backend that forwards to `inner` and keeps a copy of every feed (and encoder output) it sees."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = f"recording({inner.name})"
        self.contract_hash = inner.contract_hash
        self.input_size = inner.input_size
        self.graphs = inner.graphs
        self.calls: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.inner.run(graph, feeds)
        self.calls.append((graph, {k: np.array(v, copy=True) for k, v in feeds.items()},
                           {k: np.array(v, copy=True) for k, v in out.items()} if graph == contract.ENCODER else {}))
        return out


def _reference_backend(reference: str | Path | Backend, input_size: tuple[int, int] | None) -> Backend:
    """A torch reference backend: from a checkpoint file, an artifact dir (its manifest's checkpoint) or as given."""
    from edgeclick.runtimes.torch_ref import TorchBackend

    if not isinstance(reference, (str, Path)):
        return reference
    path = Path(reference)
    if path.is_dir():
        from edgeclick.manifest import read_manifest

        manifest = read_manifest(path, verify_files=False)
        size = input_size or manifest.size
        return TorchBackend.from_checkpoint(manifest.checkpoint["path"], size)
    if input_size is None:
        raise ValueError("input_size is required when calibrating from a checkpoint (an artifact dir brings its own)")
    return TorchBackend.from_checkpoint(path, input_size)


def collect_calibration_data(reference: str | Path | Backend, samples: Sequence[Sample], *,
                             input_size: tuple[int, int] | None = None, clicks_per_sample: int = 20,
                             max_decoder_samples: int = 300, seed: int = 0) -> CalibrationData:
    """Record encoder/decoder feeds of simulated RITM sessions over a torch reference.

    reference: an edgeclick checkpoint, an exported artifact dir (its manifest's checkpoint and size), or
        a Backend (used as is; its input_size must be fixed).
    input_size: model input (H, W), multiples of 32 (required for a checkpoint).
    clicks_per_sample: clicks 1..n per sample (n <= contract.NUM_CLICKS), each after the previous
        prediction (sigmoid > contract.PROB_THRESHOLD) and with it fed back as prev mask.
    max_decoder_samples: keep at most this many decoder feeds, a seeded uniform subsample (order kept).
    Deterministic for a given seed (the reference runs eagerly on CPU, the clicker is deterministic).
    """
    if not 1 <= clicks_per_sample <= contract.NUM_CLICKS:
        raise ValueError(f"clicks_per_sample must be in [1, {contract.NUM_CLICKS}], got {clicks_per_sample}")
    if max_decoder_samples < 1:
        raise ValueError(f"max_decoder_samples must be >= 1, got {max_decoder_samples}")
    if not samples:
        raise ValueError("no samples to calibrate on")
    backend = _reference_backend(reference, input_size)
    if backend.input_size is None:
        raise ValueError("the reference backend needs a fixed input_size: calibration records one model input size")
    recorder = _Recorder(backend)
    session = Session(recorder)
    images: list[np.ndarray] = []
    features: dict[str, list[np.ndarray]] = {}
    clicks: list[np.ndarray] = []
    prevs: list[np.ndarray] = []
    sample_index: list[int] = []
    click_index: list[int] = []
    for s, sample in enumerate(samples):
        recorder.calls.clear()
        session.set_image(sample.image)
        clicker = Clicker(sample.gt)
        pred = np.zeros(sample.gt.shape, dtype=bool)
        for _ in range(clicks_per_sample):
            click = clicker.make_next_click(pred)
            pred = session.click(click.x, click.y, click.positive) > contract.PROB_THRESHOLD
        (graph, enc_feeds, enc_out), *dec_calls = recorder.calls
        assert graph == contract.ENCODER and len(dec_calls) == clicks_per_sample
        images.append(enc_feeds[contract.IMAGE][0])
        for name, arr in enc_out.items():
            features.setdefault(name, []).append(arr[0])
        for n, (_, feeds, _) in enumerate(dec_calls, start=1):
            clicks.append(feeds[contract.CLICKS][0])
            prevs.append(feeds[contract.PREV_MASK][0])
            sample_index.append(s)
            click_index.append(n)
    total = len(clicks)
    keep = np.arange(total)
    if total > max_decoder_samples:
        keep = np.sort(np.random.default_rng(seed).choice(total, size=max_decoder_samples, replace=False))
    return CalibrationData(
        image=np.stack(images), features={k: np.stack(v) for k, v in features.items()},
        clicks=np.stack(clicks)[keep], prev_mask=np.stack(prevs)[keep],
        sample_index=np.asarray(sample_index, dtype=np.int64)[keep], click_index=np.asarray(click_index, dtype=np.int64)[keep],
        meta={"seed": seed, "input_size": list(backend.input_size), "clicks_per_sample": clicks_per_sample,
              "max_decoder_samples": max_decoder_samples, "decoder_feeds_recorded": total,
              "samples": [s.name for s in samples], "reference": backend.name},
    )
