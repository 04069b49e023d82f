"""Click rows → binary positive / negative disk maps, in two formulations with the same maps on pixel clicks.

A pixel (row i, col j) is inside the disk of click (x, y) when (i − y)² + (j − x)² ≤ r² — RITM's DistMaps
with use_disks=True. `click_disks(..., rasteriser=NAME)` picks one of `RASTERISERS`; exporters choose per
target (`export/options.py`, option `rasteriser`) and record the choice in the manifest:

- "scatter" (the default; desktop onnxruntime, WASM, TensorRT, CoreML, training): broadcast arithmetic over
  (click, row) pairs, one scatter-add and one prefix sum. Evaluated with RITM's own float operations, so the
  maps are bit-identical to RITM's for every click, on or off the pixel grid. On a row i a disk covers one run
  of columns [lo, hi]: lo and hi come from x ∓ √(r² − (i − y)²) and are then settled by RITM's own test on the
  neighbouring columns (√ rounding can move a run end by one). Each run adds +1 at lo and −1 at hi + 1 of a
  per-row difference array; a prefix sum along the row counts the disks covering each pixel (sums of ±1 are
  exact in float32), and `> 0` is the OR. Its comparisons, Where and ScatterElements are ops that the phone
  accelerators' delegates refuse (ORT Mobile's NNAPI / Core ML EPs, ExecuTorch's XNNPACK), so a decoder that
  contains it is cut into many partitions with CPU fallbacks between them.
- "broadcast" (ExecuTorch's default; `--option rasteriser=broadcast` for ORT Mobile): every click against every
  pixel with Sub / Mul / Add / Clip and one batched matmul, all ops those delegates take. RITM's test
  d² = dy² + dx² ≤ r² becomes clamp((r²⁺ − d²)·S, 0, 1), where r²⁺ is the next float32 above r² and
  S = 1 / (that spacing), a power of two (`broadcast_sharpness`): a pixel inside has r²⁺ − d² ≥ the spacing, so
  1; one outside has d² ≥ r²⁺, so 0. S scales exactly, so d²·S is computed as dy²·S + dx²·S with the same
  rounding as RITM's d², and the maps equal "scatter" bit for bit for every click, on or off the pixel grid
  (tested; the Session's letterbox puts most clicks off the grid). It evaluates in float32: the fp16 ONNX
  keeps the rasteriser float32, and ExecuTorch's int8 leaves it float. It costs N×h×w work where "scatter"
  costs N×h plus one pass.

Measured (one thread, the rasteriser alone, `edgeclick/model/disks.py` history; late model maps at half
resolution): 256×384 onnxruntime scatter 0.20 ms / broadcast 0.43 ms, ExecuTorch 1.66 / 0.21 ms; 640×960
onnxruntime 0.9 / 2.1 ms, ExecuTorch 6.6 / 1.4 ms; the conv adapter's full-resolution r = 10 maps at 640×960
onnxruntime 3.0 / 7.8 ms. Hence scatter on desktop onnxruntime, broadcast on ExecuTorch and phones.
An earlier formulation — a one-hot row matrix times per-click spans, an N·K-deep matmul (K = ⌊2r⌋ + 1 rows
per click) — cost 1.24 GFLOP at r = 10, more than the rest of the late + adapter decoder together.
"""
from __future__ import annotations

import torch

from edgeclick.contract import LABEL_NEGATIVE, LABEL_PADDING, LABEL_POSITIVE

DEFAULT_RASTERISER = "scatter"
# "broadcast" builds its label indicators from the label values themselves (see broadcast_disks).
assert (LABEL_POSITIVE, LABEL_NEGATIVE, LABEL_PADDING) == (1, 0, -1), "broadcast_disks assumes labels 1 / 0 / -1"


def click_disks(clicks: torch.Tensor, height: int, width: int, radius: float, scale: float = 1.0,
                rasteriser: str = DEFAULT_RASTERISER) -> torch.Tensor:
    """Rasterise click rows into binary positive / negative disk maps.

    Args:
        clicks: B×N×3 rows (x, y, label) in input pixels; label 1 positive, 0 negative, -1 padding.
        height, width: size of the output maps in pixels (after `scale`).
        radius: disk radius in output pixels.
        scale: factor from click coordinates to output pixels (0.5 for a half-resolution map).
        rasteriser: a key of RASTERISERS (see the module docstring).

    Returns:
        B×2×height×width float maps: channel 0 positive, channel 1 negative, values in {0, 1} (see the module
        docstring for "broadcast" and off-grid clicks).
    """
    if rasteriser not in RASTERISERS:
        raise ValueError(f"unknown click rasteriser {rasteriser!r}; choose one of {', '.join(RASTERISERS)}")
    return RASTERISERS[rasteriser](clicks, height, width, radius, scale)


def scatter_disks(clicks: torch.Tensor, height: int, width: int, radius: float, scale: float = 1.0) -> torch.Tensor:
    """The "scatter" formulation of `click_disks` (same arguments and result)."""
    dtype = clicks.dtype
    b, n = clicks.shape[:2]
    r2 = radius**2
    x = (clicks[..., 0] * scale).unsqueeze(1)  # B×1×N
    y = (clicks[..., 1] * scale).unsqueeze(1)
    label = clicks[..., 2]
    rows = torch.arange(height, dtype=dtype, device=clicks.device).view(1, height, 1)
    dy2 = (rows - y) ** 2  # B×H×N, as RITM computes it

    def inside(col: torch.Tensor) -> torch.Tensor:  # RITM's test, same float operations, on B×H×N columns
        return dy2 + (col - x) ** 2 <= r2

    half = torch.sqrt(torch.clamp(r2 - dy2, min=0.0))
    lo0, hi0 = torch.ceil(x - half), torch.floor(x + half)
    lo = torch.where(inside(lo0 - 1), lo0 - 1, torch.where(inside(lo0), lo0, lo0 + 1))
    hi = torch.where(inside(hi0 + 1), hi0 + 1, torch.where(inside(hi0), hi0, hi0 - 1))
    # The last column as a tensor: a traced size stays a size (a Python float would freeze it at export).
    last = torch.zeros((), dtype=dtype, device=clicks.device) + (width - 1)
    lo, hi = torch.clamp(lo, min=0.0), torch.minimum(hi, last)
    run = inside(lo) & inside(hi) & (lo <= hi)  # B×H×N: this click's disk covers [lo, hi] on this row
    is_label = torch.stack([label == LABEL_POSITIVE, label == LABEL_NEGATIVE], dim=1).unsqueeze(2)  # B×2×1×N
    ones = (run.unsqueeze(1) & is_label).to(dtype)  # B×2×H×N
    # Start and end marks of every run; an empty run adds 0 at an in-range column. Tensors stay ≤ 4-D (CoreML).
    index = torch.cat([torch.minimum(lo, last + 1), torch.clamp(torch.minimum(hi + 1, last + 1), min=0.0)], dim=2)
    index = index.unsqueeze(1).expand(b, 2, height, 2 * n).long()  # B×2×H×2N
    marks = torch.cat([ones, -ones], dim=3)
    # The row with its one extra end-mark column, in whole blocks: ⌈(W + 1) / P⌉ written with non-negative
    # operands only (traced sizes export as ONNX Div, which truncates where Python floors).
    blocks = (width + PREFIX_BLOCK) // PREFIX_BLOCK
    # The zeros derive from the (always finite) labels so that no exporter folds a B×2×H×L constant into the graph.
    base = (clicks[:, :1, 2:] * 0).unsqueeze(-1).expand(b, 2, height, blocks * PREFIX_BLOCK)
    diff = torch.scatter_add(base, 3, index, marks)  # B×2×H×L
    return (row_prefix_sum(diff.reshape(b * 2, height, blocks, PREFIX_BLOCK))
            .reshape(b, 2, height, blocks * PREFIX_BLOCK)[..., :width] > 0).to(dtype)


PREFIX_BLOCK = 32


def broadcast_sharpness(r2: float) -> tuple[float, float]:
    """(r²⁺, S) of the "broadcast" step for the float32 r²: the next float32 above it and 1 / their spacing."""
    import numpy as np

    r2_32 = np.float32(r2)
    spacing = np.spacing(r2_32)  # a power of two, so S = 1 / spacing is one too (exact products)
    return float(r2_32 + spacing), float(np.float32(1.0) / spacing)


def broadcast_disks(clicks: torch.Tensor, height: int, width: int, radius: float, scale: float = 1.0) -> torch.Tensor:
    """The "broadcast" formulation of `click_disks` (same arguments and result; see the module docstring).

    Only Slice, Reshape, Sub, Pow, Mul, Add, Clip, Concat, Transpose and one batched MatMul: no comparisons, Where,
    Gather, Neg, Unsqueeze or scatter, which NNAPI / Core ML EPs refuse, and `bmm` rather than `matmul`, whose
    batch broadcast ExecuTorch lowers to two full-size expand copies outside XNNPACK.
    """
    b, n = clicks.shape[:2]
    x = (clicks[..., 0:1] * scale).reshape(b, n, 1, 1)
    y = (clicks[..., 1:2] * scale).reshape(b, n, 1, 1)
    label = clicks[..., 2:3]  # B×N×1, values in {1, 0, -1}
    rows = torch.arange(height, dtype=clicks.dtype, device=clicks.device).view(1, 1, height, 1)
    cols = torch.arange(width, dtype=clicks.dtype, device=clicks.device).view(1, 1, 1, width)
    r2_above, sharpness = broadcast_sharpness(radius**2)
    # d²·S as RITM's dy² + dx², each term scaled by the power of two S (exact): one broadcast Add builds the
    # full-size B×N×h×w tensor from the B×N×h×1 row and B×N×1×w column parts.
    d2_scaled = (rows - y) ** 2 * sharpness + (cols - x) ** 2 * sharpness
    inside = torch.clamp(r2_above * sharpness - d2_scaled, 0.0, 1.0)  # B×N×h×w, exactly 0 or 1
    # Label indicators from products only (label² is 1 for ±1, 0 for 0): positive (l² + l)/2, negative 1 − l².
    square = label * label
    weights = torch.cat([(square + label) * 0.5, 1.0 - square], dim=2).transpose(1, 2)  # B×2×N
    counts = torch.bmm(weights, inside.reshape(b, n, height * width))  # B×2×(h·w): disks covering each pixel
    return torch.clamp(counts, 0.0, 1.0).reshape(b, 2, height, width)


RASTERISERS = {"scatter": scatter_disks, "broadcast": broadcast_disks}


def row_prefix_sum(x: torch.Tensor) -> torch.Tensor:
    """Inclusive prefix sums along rows split in blocks: B×H×A×P (a row of A·P values) → same shape.

    Two small matmuls (within each P-block by a P×P triangle, then the block totals by an A×A one) instead of
    a CumSum, which onnxruntime runs element by element (6.3 ms on the 2×640×992 difference rows at 1 thread
    against ~1 ms here). Exact for the small integers counted here (float32 sums of ±1).
    """
    p, a = x.shape[-1], x.shape[-2]
    within = torch.matmul(x, torch.triu(torch.ones(p, p, dtype=x.dtype, device=x.device)))  # inclusive, per block
    before = torch.triu(torch.ones(a, a, dtype=x.dtype, device=x.device), diagonal=1)  # strictly earlier blocks
    offsets = torch.matmul(within[..., -1].unsqueeze(-2), before).transpose(-1, -2)  # B×H×A×1
    return within + offsets
