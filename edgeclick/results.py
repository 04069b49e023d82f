"""What an evaluation produces: per-sample click records, worst-sample previews, the whole run.

Plain data shared by `edgeclick.evaluate` (which fills it) and `edgeclick.report` (which writes it), so
neither imports the other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from edgeclick.clicks import Click
from edgeclick.data.sample import Sample
from edgeclick.metrics import THRESHOLDS, Summary, summarize


@dataclass
class SampleResult:
    """Per-click record of one sample.

    Attributes:
        index: position of the sample in the (limited) dataset, for a stable order across shards.
        name: sample name.
        clicks: the simulated clicks, in order.
        iou / biou: IoU / Boundary IoU after each click.
        seconds: wall time of each `predict` call (s).
        set_image_seconds: wall time of `set_image` (s).
    """

    index: int
    name: str
    clicks: list[Click]
    iou: list[float]
    biou: list[float]
    seconds: list[float]
    set_image_seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; clicks as [x, y, positive]."""
        record = asdict(self)
        record.update(clicks=[[c.x, c.y, bool(c.positive)] for c in self.clicks])
        return record


@dataclass
class Preview:
    """Downscaled picture of a sample's final state, for the worst-samples grid.

    Attributes:
        name: sample name.
        final_iou: IoU after the last click.
        image: h×w×3 uint8 thumbnail.
        mask: h×w bool final prediction.
        gt: h×w int8 ground truth.
        clicks: clicks in thumbnail pixels.
    """

    name: str
    final_iou: float
    image: np.ndarray
    mask: np.ndarray
    gt: np.ndarray
    clicks: list[Click]


def make_preview(sample: Sample, mask: np.ndarray, clicks: Sequence[Click], final_iou: float, size: int = 256) -> Preview:
    """Thumbnail (long side ≤ `size` px) of the H×W×3 image, the H×W bool mask, the gt and the clicks."""
    h, w = sample.gt.shape
    scale = min(1.0, size / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    image = np.asarray(Image.fromarray(sample.image).resize((tw, th), Image.BILINEAR))
    thumb_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((tw, th), Image.NEAREST)) > 127
    gt = np.asarray(Image.fromarray(sample.gt.view(np.uint8)).resize((tw, th), Image.NEAREST)).view(np.int8)
    sx, sy = tw / w, th / h
    return Preview(
        name=sample.name,
        final_iou=final_iou,
        image=image,
        mask=thumb_mask,
        gt=gt,
        clicks=[Click((c.x + 0.5) * sx - 0.5, (c.y + 0.5) * sy - 0.5, c.positive) for c in clicks],
    )



@dataclass
class EvalRun:
    """Results of evaluating a set of samples.

    Attributes:
        results: per-sample records sorted by index.
        previews: the worst samples (lowest final IoU), worst first.
        wall_seconds: wall time of the whole run (s).
        max_clicks: click budget K of the run.
        skipped: (file, reason) the dataset skipped, from every rank (filled by `evaluate_dataset`).
    """

    results: list[SampleResult]
    previews: list[Preview]
    wall_seconds: float
    max_clicks: int
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ious(self) -> np.ndarray:
        """N×K IoU per sample and click."""
        return np.array([r.iou for r in self.results], dtype=np.float64).reshape(len(self.results), -1)

    @property
    def bious(self) -> np.ndarray:
        """N×K Boundary IoU per sample and click."""
        return np.array([r.biou for r in self.results], dtype=np.float64).reshape(len(self.results), -1)

    @property
    def model_seconds(self) -> float:
        """Time spent in set_image and predict over all samples (s)."""
        return float(sum(sum(r.seconds) + r.set_image_seconds for r in self.results))

    def summary(self, thresholds: Sequence[float] = THRESHOLDS) -> Summary:
        """NoC / NoF / mIoU curves; seconds per click counts set_image and predict time."""
        if not self.results:
            raise ValueError("no samples were evaluated")
        return summarize(self.ious, self.bious, self.model_seconds, thresholds, self.max_clicks)


def keep_worst(previews: list[Preview], new: Iterable[Preview], k: int) -> list[Preview]:
    """The k previews with the lowest final IoU (ties by name), worst first."""
    return sorted([*previews, *new], key=lambda p: (p.final_iou, p.name))[:k]
