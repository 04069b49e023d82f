"""`edgeclick parity`'s report files: parity.json, report.md (gates, per-click and per-sample tables) and
worst.png (the worst disagreement: both masks, their difference, |Δlogit|).

The measuring is `parity.py`; this module only renders a `ParityReport`.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeclick import contract
from edgeclick.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgeclick.render import pct, png_bytes

from .parity import NOC_THRESHOLDS, Disagreement, ParityReport


def plot_disagreement(worst: Disagreement | None, title: str = "") -> bytes:
    """PNG: image + reference mask, image + candidate mask, mask difference, |Δlogit| heat map."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), dpi=100)
    if worst is None:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no clicks were compared", ha="center", va="center")
        return png_bytes(fig)
    axes = fig.subplots(1, 4)
    for ax, mask, name, color in ((axes[0], worst.reference_mask, "PyTorch", (0.1, 0.4, 1.0, 0.5)),
                                  (axes[1], worst.candidate_mask, "exported", (1.0, 0.5, 0.0, 0.5))):
        ax.imshow(worst.image)
        overlay = np.zeros((*mask.shape, 4), dtype=np.float32)
        overlay[mask] = color
        ax.imshow(overlay)
        for positive, c in ((True, "lime"), (False, "red")):
            pts = np.array([(k.x, k.y) for k in worst.clicks if k.positive == positive], dtype=np.float64).reshape(-1, 2)
            ax.scatter(pts[:, 0], pts[:, 1], s=18, c=c, edgecolors="white", linewidths=0.5)
        ax.set_title(f"{name} mask", fontsize=9)
    # A faded gray copy of the image under the difference keeps a small disagreement locatable.
    gray = worst.image.astype(np.float32).mean(axis=2, keepdims=True)
    diff = np.repeat(150 + gray * (80 / 255), 3, axis=2).astype(np.uint8)
    diff[worst.reference_mask & worst.candidate_mask] = (120, 120, 120)
    diff[worst.reference_mask & ~worst.candidate_mask] = (30, 90, 255)  # PyTorch only
    diff[~worst.reference_mask & worst.candidate_mask] = (255, 120, 0)  # exported only
    axes[2].imshow(diff)
    n_diff = int(np.count_nonzero(worst.reference_mask ^ worst.candidate_mask))
    axes[2].set_title(f"difference: {n_diff} px\nblue PyTorch only, orange exported only", fontsize=8)
    im = axes[3].imshow(worst.abs_logit, cmap="magma")
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.04)
    axes[3].set_title("|Δlogit| (model input, padding cropped)", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{title} worst click: sample {worst.sample!r} click {worst.click}, mask IoU {worst.mask_iou:.4f}, "
                 f"max |Δlogit| {worst.max_abs_logit:.3g}", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


def _markdown(report: ParityReport) -> str:
    s = report.summary()
    verdict = "PASS" if report.passed else "FAIL"
    lines = [
        f"# Parity: {report.candidate} vs {report.reference} ({report.precision}) — {verdict}",
        "",
        f"{s['n_samples']} samples × {s['n_clicks'] // max(1, s['n_samples'])} clicks; model input "
        f"{'x'.join(map(str, report.input_size)) if report.input_size else 'native (padded to 32)'}; "
        f"masks thresholded at p > {contract.PROB_THRESHOLD}. Clicks come from the PyTorch session's errors and go "
        "to both sessions; each session feeds its own previous mask back.",
        "",
        "## Gates (contract.TOLERANCES)",
        "",
        "| gate | tolerance | observed | worst at | verdict |",
        "|---|---:|---:|---|---|",
    ]
    for g in report.gates:
        lines.append(f"| {g.name} | {g.threshold:g} | {g.value:.6g} | {g.where or '-'} | {'pass' if g.passed else '**FAIL**'} |")
    ungated = [k for k in asdict(report.tolerance) if k not in contract.GATED[report.precision]]
    lines += ["", f"Not gated at {report.precision} (reported only): {', '.join(ungated) or '-'}."]
    if report.failures:
        lines += ["", *[f"- {f}" for f in report.failures]]
    if s["n_clicks"]:
        lines += [
            "",
            "## Summary",
            "",
            f"- max |Δlogit| {s['max_abs_logit']:.6g}, mean |Δlogit| {s['mean_abs_logit']:.6g} "
            f"(max |PyTorch logit| {s['reference_logit_absmax']:.4g})",
            f"- mask IoU: mean {s['mean_mask_iou']:.6f}, min {s['min_mask_iou']:.6f}",
            f"- Boundary IoU: mean {s['mean_boundary_iou']:.6f}, min {s['min_boundary_iou']:.6f}",
        ]
        lines.append(f"- PyTorch mask covers {100 * s['mean_reference_area']:.1f}% of the image on average")
        if s["trivial_masks"]:
            lines.append(f"- **{s['trivial_masks']} of {s['n_clicks']} clicks have an empty or full PyTorch mask**: there the "
                         "mask IoU is trivially 1 when both agree (an untrained model?), so |Δlogit| is the telling number")
        for t in NOC_THRESHOLDS:
            k = pct(t)
            lines.append(f"- NoC@{k}: PyTorch {s[f'noc{k}_reference']:.2f}, exported {s[f'noc{k}_candidate']:.2f}, "
                         f"mean difference {s[f'noc{k}_difference']:+.2f}")
        lines += ["", "## Per click index", "", "| click | max abs Δlogit | mean abs Δlogit | mean mask IoU | min mask IoU | mean Boundary IoU |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in report.per_click_index():
            lines.append(f"| {r['click']} | {r['max_abs_logit']:.3g} | {r['mean_abs_logit']:.3g} | {r['mean_mask_iou']:.6f} "
                         f"| {r['min_mask_iou']:.6f} | {r['mean_boundary_iou']:.6f} |")
    header = "| sample | " + " | ".join(f"NoC@{pct(t)} torch / exported (Δ)" for t in NOC_THRESHOLDS) + " | min mask IoU | max abs Δlogit |"
    lines += ["", "## Per sample", "", header, "|---|" + "---|" * (len(NOC_THRESHOLDS) + 2)]
    for smp in report.samples:
        nocs = " | ".join(f"{smp.noc('reference', t)} / {smp.noc('candidate', t)} ({smp.noc_difference(t):+d})" for t in NOC_THRESHOLDS)
        min_iou = min((c.mask_iou for c in smp.clicks), default=float("nan"))
        max_dl = max((c.max_abs_logit for c in smp.clicks), default=float("nan"))
        lines.append(f"| {smp.name} | {nocs} | {min_iou:.6f} | {max_dl:.3g} |")
    if report.worst is not None:
        lines += ["", f"NoC counts a sample that never reaches the threshold as {report.samples[0].noc_cap} (RITM's cap).",
                  "", f"## Worst disagreement: sample {report.worst.sample!r}, click {report.worst.click}", "",
                  "![worst disagreement](worst.png)"]
    if report.settings:
        lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items())]
    return "\n".join(lines) + "\n"


def write_parity_report(report: ParityReport, out_dir: str | Path) -> dict[str, Path]:
    """Write parity.json, report.md and worst.png into `out_dir` (created); return kind → path."""
    out = Path(out_dir)
    return {
        "json": write_json_atomic(out / "parity.json", report.to_json()),
        "report": write_text_atomic(out / "report.md", _markdown(report)),
        "worst": write_bytes_atomic(out / "worst.png", plot_disagreement(report.worst, report.candidate)),
    }
