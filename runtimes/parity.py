"""Parity of an exported backend with the PyTorch reference, click by click, over simulated sessions.

    report = run_parity(TorchBackend(model, input_size=(640, 960)), OrtBackend(artifact_dir),
                        samples, clicks=10, precision="fp32")
    write_parity_report(report, "reports/parity/w18s_late")   # parity_report.py: report.md, parity.json, worst.png
    report.passed, report.failures

For every sample two Sessions run side by side, one per backend, on the same image (so both go through
the contract's preprocessing). RITM's clicker places each click on the *reference's* error, and the same
click goes to both sessions; each session feeds its own previous mask back, as a deployed app would, so
per-click numbers include drift that compounds over clicks (stricter than feeding the reference's mask to
both). Per click we compare the decoder logits in model space (the tensor the backend returned, before
the letterbox is undone) and the thresholded masks at the image's size (what the user sees). Then the
candidate runs a click session of its own (clicks from its own errors) so NoC can be compared: that is
the accuracy a user of the exported model gets.

The gates come from `contract.TOLERANCES`; which fields gate which precision is `contract.GATED`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgeclick import contract
from edgeclick.clicks import Click, Clicker
from edgeclick.data.sample import Sample
from edgeclick.metrics import MAX_CLICKS, boundary_iou, iou, noc
from edgeclick.preprocess import Letterbox
from edgeclick.render import pct

from .backend import Backend
from .session import Session

NOC_THRESHOLDS: tuple[float, ...] = (0.85, 0.90)
"""IoU thresholds of the NoC comparison between the reference and the candidate."""



class RecordingBackend:
    """A Backend that forwards to `inner` and keeps a copy of the last decoder logits.

    `last_logits` is 1×1×H×W float32 in model space (the letterboxed input, padding included): what the
    backend itself computed, before the Session crops and resizes it back to the image.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.contract_hash = inner.contract_hash
        self.input_size = inner.input_size
        self.graphs = inner.graphs
        self.last_logits: np.ndarray | None = None

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.inner.run(graph, feeds)
        if graph == contract.DECODER:
            # Copied: a backend may hand out a view of a buffer it reuses on the next run.
            self.last_logits = np.array(outputs[contract.LOGITS], dtype=np.float32, copy=True)
        return outputs


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClickParity:
    """Reference vs candidate after one click of the shared session.

    Attributes:
        sample: sample name.
        click: 1-based click index within the sample.
        x, y, positive: the click, in image pixels (x column, y row).
        max_abs_logit / mean_abs_logit: max / mean |Δlogit| over the 1×1×H×W model-space logits.
        mask_iou: IoU of the two masks thresholded at contract.PROB_THRESHOLD, at the image's size.
        boundary_iou: Boundary IoU of the same two masks.
        reference_iou / candidate_iou: each mask's IoU with the ground truth.
        reference_logit_absmax: max |logit| of the reference (the scale |Δlogit| is read against).
        reference_area: fraction of the image's pixels in the reference mask (0 or 1: the mask IoU is
            trivially perfect when both sides agree on an empty or full mask, as untrained models give).
    """

    sample: str
    click: int
    x: float
    y: float
    positive: bool
    max_abs_logit: float
    mean_abs_logit: float
    mask_iou: float
    boundary_iou: float
    reference_iou: float
    candidate_iou: float
    reference_logit_absmax: float
    reference_area: float

    @property
    def where(self) -> str:
        return f"sample {self.sample!r} click {self.click}"


@dataclass
class SampleParity:
    """One sample: the shared-click comparison and both sides' own click sessions.

    Attributes:
        name: sample name.
        clicks: per-click comparison of the shared session.
        reference_ious: K IoU with the ground truth of the reference's own session (it is the shared one:
            the clicks come from the reference's errors).
        candidate_ious: K IoU with the ground truth of the candidate's own session (its own clicks).
        noc_cap: NoC given to a sample that never reaches a threshold (RITM's 20, or K when larger).
    """

    name: str
    clicks: list[ClickParity]
    reference_ious: list[float]
    candidate_ious: list[float]
    noc_cap: int = MAX_CLICKS

    def noc(self, side: str, threshold: float) -> int:
        """NoC@threshold of side "reference" or "candidate"."""
        ious = self.reference_ious if side == "reference" else self.candidate_ious
        return int(noc(np.array([ious], dtype=np.float64).reshape(1, -1), threshold, self.noc_cap)[0])

    def noc_difference(self, threshold: float) -> int:
        """Candidate NoC minus reference NoC (positive: the exported model needs more clicks)."""
        return self.noc("candidate", threshold) - self.noc("reference", threshold)


@dataclass(frozen=True)
class GateResult:
    """One contract gate applied to all clicks.

    Attributes:
        name: the `contract.Tolerance` field ("max_abs_logit", "min_mask_iou_per_click", "min_mean_mask_iou").
        threshold: the tolerance.
        value: the worst observed value (max |Δlogit|, min mask IoU or mean mask IoU).
        passed: value within the tolerance (NaN never passes).
        where: the offending click for per-click gates ("sample 'x' click 3"), "" for the mean.
        failing: number of clicks outside the tolerance (per-click gates), of `total`.
        total: number of clicks compared.
    """

    name: str
    threshold: float
    value: float
    passed: bool
    where: str
    failing: int
    total: int

    def describe(self, precision: str) -> str:
        what = {"max_abs_logit": "max |Δlogit|", "min_mask_iou_per_click": "mask IoU",
                "min_mean_mask_iou": "mean mask IoU"}[self.name]
        op = "≤" if self.name == "max_abs_logit" else "≥"
        verdict = "passed" if self.passed else "FAILED"
        text = f"{precision} gate {self.name} {verdict}: {what} {self.value:.6g} (needs {op} {self.threshold:g})"
        if self.where:
            text += f", worst at {self.where}"
        if self.failing:
            text += f"; {self.failing} of {self.total} clicks outside the tolerance"
        return text


@dataclass
class Disagreement:
    """The click where the two masks disagree most, kept for the picture.

    Attributes:
        sample / click: where it happened (1-based click).
        mask_iou / max_abs_logit: its numbers.
        image: h×w×3 uint8 sample image.
        reference_mask / candidate_mask: h×w bool thresholded masks.
        abs_logit: h'×w' float32 |Δlogit| over the letterboxed image region of the model input (padding cropped).
        clicks: the clicks so far, in image pixels.
    """

    sample: str
    click: int
    mask_iou: float
    max_abs_logit: float
    image: np.ndarray
    reference_mask: np.ndarray
    candidate_mask: np.ndarray
    abs_logit: np.ndarray
    clicks: list[Click]

    def worse_than(self, other: "Disagreement | None") -> bool:
        if other is None:
            return True
        return (self.mask_iou, -self.max_abs_logit) < (other.mask_iou, -other.max_abs_logit)


@dataclass
class ParityReport:
    """Everything `run_parity` measured, and the gate verdicts.

    Attributes:
        reference / candidate: backend names.
        precision: "fp32", "fp16" or "int8": selects the tolerance and the gates.
        tolerance: contract.TOLERANCES[precision].
        input_size: model input (H, W) both backends ran at (None: each image's own padded size).
        samples: per-sample results.
        gates: the gated tolerance fields, in contract.GATED order.
        worst: the click with the lowest mask IoU (ties: larger |Δlogit|), None without clicks.
        settings: free-form description of the run (artifact, checkpoint, data), copied into the files.
    """

    reference: str
    candidate: str
    precision: str
    tolerance: contract.Tolerance
    input_size: tuple[int, int] | None
    samples: list[SampleParity]
    gates: list[GateResult]
    worst: Disagreement | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def clicks(self) -> list[ClickParity]:
        return [c for s in self.samples for c in s.clicks]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failures(self) -> list[str]:
        """One line per failed gate, naming the worst sample and click."""
        return [g.describe(self.precision) for g in self.gates if not g.passed]

    def summary(self) -> dict[str, Any]:
        """Aggregates over all clicks and samples (plain data)."""
        clicks = self.clicks
        out: dict[str, Any] = {"n_samples": len(self.samples), "n_clicks": len(clicks)}
        if clicks:
            out.update(
                max_abs_logit=float(max(c.max_abs_logit for c in clicks)),
                mean_abs_logit=float(np.mean([c.mean_abs_logit for c in clicks])),
                min_mask_iou=float(min(c.mask_iou for c in clicks)),
                mean_mask_iou=float(np.mean([c.mask_iou for c in clicks])),
                min_boundary_iou=float(min(c.boundary_iou for c in clicks)),
                mean_boundary_iou=float(np.mean([c.boundary_iou for c in clicks])),
                reference_logit_absmax=float(max(c.reference_logit_absmax for c in clicks)),
                mean_reference_area=float(np.mean([c.reference_area for c in clicks])),
                trivial_masks=sum(c.reference_area in (0.0, 1.0) for c in clicks),
            )
        for t in NOC_THRESHOLDS:
            key = pct(t)
            if self.samples:
                out[f"noc{key}_reference"] = float(np.mean([s.noc("reference", t) for s in self.samples]))
                out[f"noc{key}_candidate"] = float(np.mean([s.noc("candidate", t) for s in self.samples]))
                out[f"noc{key}_difference"] = float(np.mean([s.noc_difference(t) for s in self.samples]))
        return out

    def per_click_index(self) -> list[dict[str, float]]:
        """Aggregates per click index k (over samples): shows whether disagreement grows with clicks."""
        by_k: dict[int, list[ClickParity]] = {}
        for c in self.clicks:
            by_k.setdefault(c.click, []).append(c)
        return [
            {
                "click": k,
                "max_abs_logit": float(max(c.max_abs_logit for c in cs)),
                "mean_abs_logit": float(np.mean([c.mean_abs_logit for c in cs])),
                "mean_mask_iou": float(np.mean([c.mask_iou for c in cs])),
                "min_mask_iou": float(min(c.mask_iou for c in cs)),
                "mean_boundary_iou": float(np.mean([c.boundary_iou for c in cs])),
            }
            for k, cs in sorted(by_k.items())
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "precision": self.precision,
            "passed": self.passed,
            "failures": self.failures,
            "tolerance": asdict(self.tolerance),
            "gated": list(contract.GATED[self.precision]),
            "input_size": list(self.input_size) if self.input_size else None,
            "prob_threshold": contract.PROB_THRESHOLD,
            "noc_thresholds": list(NOC_THRESHOLDS),
            "settings": self.settings,
            "gates": [asdict(g) for g in self.gates],
            "summary": self.summary(),
            "per_click_index": self.per_click_index(),
            "worst": None if self.worst is None else {
                "sample": self.worst.sample, "click": self.worst.click,
                "mask_iou": self.worst.mask_iou, "max_abs_logit": self.worst.max_abs_logit,
            },
            "samples": [
                {
                    "name": s.name,
                    "noc_cap": s.noc_cap,
                    "noc": {pct(t): {"reference": s.noc("reference", t), "candidate": s.noc("candidate", t),
                                      "difference": s.noc_difference(t)} for t in NOC_THRESHOLDS},
                    "reference_ious": s.reference_ious,
                    "candidate_ious": s.candidate_ious,
                    "per_click": [asdict(c) for c in s.clicks],
                }
                for s in self.samples
            ],
        }


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------


def evaluate_gates(clicks: Sequence[ClickParity], precision: str) -> list[GateResult]:
    """Apply the contract's gates for `precision` to per-click results.

    Raises:
        ValueError: unknown precision.
    """
    if precision not in contract.GATED:
        raise ValueError(f"unknown precision {precision!r}; the contract has tolerances for {sorted(contract.GATED)}")
    tol = contract.TOLERANCES[precision]
    total = len(clicks)
    gates: list[GateResult] = []
    for name in contract.GATED[precision]:
        threshold = float(getattr(tol, name))
        if not clicks:  # nothing compared proves nothing
            gates.append(GateResult(name, threshold, math.nan, False, "no clicks were compared", 0, 0))
            continue
        if name == "max_abs_logit":
            worst = max(clicks, key=lambda c: (math.isnan(c.max_abs_logit), c.max_abs_logit))
            # `not <=` so that NaN fails.
            failing = sum(not (c.max_abs_logit <= threshold) for c in clicks)
            gates.append(GateResult(name, threshold, worst.max_abs_logit, failing == 0, worst.where, failing, total))
        elif name == "min_mask_iou_per_click":
            worst = min(clicks, key=lambda c: c.mask_iou)
            failing = sum(not (c.mask_iou >= threshold) for c in clicks)
            gates.append(GateResult(name, threshold, worst.mask_iou, failing == 0, worst.where, failing, total))
        else:
            mean = float(np.mean([c.mask_iou for c in clicks]))
            gates.append(GateResult(name, threshold, mean, mean >= threshold, "", 0, total))
    return gates


def _sample_parity(
    sample: Sample,
    ref: tuple[Session, RecordingBackend],
    cand: tuple[Session, RecordingBackend],
    clicks: int,
) -> tuple[SampleParity, Disagreement | None]:
    """Shared-click session on one sample, then the candidate's own session; see the module docstring."""
    (ref_session, ref_rec), (cand_session, cand_rec) = ref, cand
    gt = sample.gt
    ref_session.set_image(sample.image)
    cand_session.set_image(sample.image)
    letterbox = Letterbox.fit(gt.shape, ref_rec.input_size)
    rh, rw = letterbox.resized

    clicker = Clicker(gt)
    ref_pred = np.zeros(gt.shape, dtype=bool)
    records: list[ClickParity] = []
    worst: Disagreement | None = None
    for k in range(1, clicks + 1):
        click = clicker.make_next_click(ref_pred)
        ref_prob = ref_session.click(click.x, click.y, click.positive)
        cand_prob = cand_session.click(click.x, click.y, click.positive)
        assert ref_rec.last_logits is not None and cand_rec.last_logits is not None
        if ref_rec.last_logits.shape != cand_rec.last_logits.shape:
            raise ValueError(f"{sample.name}: reference logits {ref_rec.last_logits.shape} and candidate logits "
                             f"{cand_rec.last_logits.shape} differ in shape; build both at the same input size")
        abs_logit = np.abs(ref_rec.last_logits.astype(np.float64) - cand_rec.last_logits)
        ref_pred = ref_prob > contract.PROB_THRESHOLD
        cand_pred = cand_prob > contract.PROB_THRESHOLD
        ref_as_gt = ref_pred.astype(np.int8)  # the reference mask plays the ground truth (no ignore pixels)
        record = ClickParity(
            sample=sample.name, click=k, x=float(click.x), y=float(click.y), positive=bool(click.positive),
            max_abs_logit=float(abs_logit.max()), mean_abs_logit=float(abs_logit.mean()),
            mask_iou=iou(cand_pred, ref_as_gt), boundary_iou=boundary_iou(cand_pred, ref_as_gt),
            reference_iou=iou(ref_pred, gt), candidate_iou=iou(cand_pred, gt),
            reference_logit_absmax=float(np.abs(ref_rec.last_logits).max()), reference_area=float(ref_pred.mean()),
        )
        records.append(record)
        here = Disagreement(sample.name, k, record.mask_iou, record.max_abs_logit, sample.image, ref_pred,
                            cand_pred, abs_logit[0, 0, :rh, :rw].astype(np.float32), list(clicker.clicks))
        if here.worse_than(worst):
            worst = here

    # The candidate's own session: reset() keeps the encoder features, so the image is not encoded again.
    cand_session.reset()
    own = Clicker(gt)
    cand_own_pred = np.zeros(gt.shape, dtype=bool)
    candidate_ious: list[float] = []
    for _ in range(clicks):
        click = own.make_next_click(cand_own_pred)
        cand_own_pred = cand_session.click(click.x, click.y, click.positive) > contract.PROB_THRESHOLD
        candidate_ious.append(iou(cand_own_pred, gt))

    result = SampleParity(sample.name, records, [r.reference_iou for r in records], candidate_ious,
                          noc_cap=max(MAX_CLICKS, clicks))
    return result, worst


def run_parity(
    reference: Backend,
    candidate: Backend,
    samples: Iterable[Sample],
    clicks: int,
    precision: str,
    *,
    settings: dict[str, Any] | None = None,
    on_sample: Callable[[SampleParity], None] | None = None,
) -> ParityReport:
    """Compare `candidate` with `reference` over simulated click sessions and apply the contract's gates.

    Args:
        reference: the PyTorch reference (e.g. TorchBackend over the artifact's source checkpoint), at the
            candidate's input size so both see the same letterboxed pixels.
        candidate: the exported backend.
        samples: real images with ground truth; each is letterboxed by the Session.
        clicks: clicks per sample (≤ contract.NUM_CLICKS: the Session refuses more).
        precision: "fp32" | "fp16" | "int8" (the artifact's), selects tolerance and gates.
        settings: copied into the report.
        on_sample: called after each sample (progress).

    Raises:
        ValueError: unknown precision, bad click count, or backends at different input sizes.
    """
    if precision not in contract.GATED:
        raise ValueError(f"unknown precision {precision!r}; the contract has tolerances for {sorted(contract.GATED)}")
    if not 1 <= clicks <= contract.NUM_CLICKS:
        raise ValueError(f"clicks must be in 1..{contract.NUM_CLICKS} (the contract's click rows), got {clicks}")
    if reference.input_size != candidate.input_size:
        raise ValueError(f"reference runs at input size {reference.input_size}, candidate {candidate.name!r} at "
                         f"{candidate.input_size}; build the reference at the candidate's size so both see the "
                         "same preprocessing")
    ref_rec, cand_rec = RecordingBackend(reference), RecordingBackend(candidate)
    ref = (Session(ref_rec), ref_rec)
    cand = (Session(cand_rec), cand_rec)
    results: list[SampleParity] = []
    worst: Disagreement | None = None
    for sample in samples:
        result, sample_worst = _sample_parity(sample, ref, cand, clicks)
        results.append(result)
        if sample_worst is not None and sample_worst.worse_than(worst):
            worst = sample_worst
        if on_sample is not None:
            on_sample(result)
    clicks_done = [c for s in results for c in s.clicks]
    return ParityReport(reference.name, candidate.name, precision, contract.TOLERANCES[precision],
                        candidate.input_size, results, evaluate_gates(clicks_done, precision), worst,
                        dict(settings or {}))
