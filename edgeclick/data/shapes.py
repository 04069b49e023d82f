"""Binary shape motifs for synthetic objects: smooth parts and thin parts (1–4 px wide).

Every `draw_*` function writes `value` (default 1) into `mask`, an H×W uint8 array modified in place,
without anti-aliasing: the mask is the ground truth, so a pixel either belongs to the object or does not.
Points are (x, y) pixel coordinates (x the column, pixel centres on integers); lengths and widths are
pixels. Drawing clips at the array border, so motifs may run off the canvas.

Stroke width is geometric: a pixel belongs to a stroke of width w ≥ 2 when its centre lies within
w/2 of the centre line (minus 1e-6, so that a stroke aligned exactly with the pixel grid is not one
pixel too wide), i.e. a cross-section of a w-px stroke holds w pixels. cv2's `thickness` cannot be used
for thin parts: thickness 2 draws 3 px, thickness 3 and 4 draw 5 px. Width 1 is cv2's 8-connected
one-pixel line, which never breaks up.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

THIN_WIDTHS: tuple[int, ...] = (1, 2, 3, 4)
"""Stroke widths in pixels that count as thin parts."""

_PIECE: float = 4.0
"""Longest centre-line piece rasterised at once (px); bounds the window each piece is tested in."""


def _int_points(points: np.ndarray) -> np.ndarray:
    """K×2 float (x, y) → K×1×2 int32, the layout cv2's polygon functions take."""
    return np.rint(points).astype(np.int32).reshape(-1, 1, 2)


def blob_outline(rng: np.random.Generator, center: tuple[float, float], radius: float, roughness: float = 0.25,
                 n: int = 72) -> np.ndarray:
    """Closed smooth random outline: radius·(1 + Σ_k a_k cos(kθ + φ_k)), k = 2..5. Returns n×2 (x, y)."""
    theta = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    k = np.arange(2, 6)[:, None]
    amp = rng.uniform(0.0, roughness, size=(4, 1)) / k  # higher harmonics weaker: smooth, not spiky
    r = radius * (1.0 + (amp * np.cos(k * theta + rng.uniform(0, 2 * math.pi, size=(4, 1)))).sum(axis=0))
    aspect = rng.uniform(0.6, 1.0)
    rot = rng.uniform(0, 2 * math.pi)
    x, y = r * np.cos(theta), aspect * r * np.sin(theta)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], axis=1)


def draw_polygon(mask: np.ndarray, points: np.ndarray, value: int = 1) -> None:
    """Fill the closed polygon with vertices `points` (K×2 float, x y)."""
    cv2.fillPoly(mask, [_int_points(points)], value, lineType=cv2.LINE_8)


def draw_blob(mask: np.ndarray, rng: np.random.Generator, center: tuple[float, float], radius: float,
              value: int = 1) -> None:
    """A filled smooth random blob of about `radius` pixels."""
    draw_polygon(mask, blob_outline(rng, center, radius), value)


def ellipse_points(center: tuple[float, float], axes: tuple[float, float], angle_deg: float, n: int = 0) -> np.ndarray:
    """n points (x, y) on an ellipse outline, counter-clockwise (n = 0: about one per 3 px of perimeter)."""
    if n <= 0:
        n = max(12, int(2 * math.pi * max(axes) / 3))
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    a = math.radians(angle_deg)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    return np.stack([center[0] + x * math.cos(a) - y * math.sin(a), center[1] + x * math.sin(a) + y * math.cos(a)], axis=1)


def draw_ellipse(mask: np.ndarray, center: tuple[float, float], axes: tuple[float, float], angle_deg: float,
                 value: int = 1, thickness: int = -1) -> None:
    """A filled ellipse (thickness -1) or an elliptic ring whose outline is `thickness` px wide (`draw_stroke`)."""
    if thickness > 0:
        draw_stroke(mask, ellipse_points(center, axes, angle_deg), thickness, value, closed=True)
        return
    c = (int(round(center[0])), int(round(center[1])))
    ax = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
    cv2.ellipse(mask, c, ax, angle_deg, 0, 360, value, thickness=-1, lineType=cv2.LINE_8)


def random_polygon(rng: np.random.Generator, center: tuple[float, float], radius: float, n_vertices: int) -> np.ndarray:
    """A star-shaped random polygon (sorted angles, radii 0.5–1 × radius): n_vertices×2 (x, y)."""
    theta = np.sort(rng.uniform(0, 2 * math.pi, size=n_vertices))
    r = radius * rng.uniform(0.5, 1.0, size=n_vertices)
    return np.stack([center[0] + r * np.cos(theta), center[1] + r * np.sin(theta)], axis=1)


def curve(rng: np.random.Generator, start: tuple[float, float], angle: float, length: float, bend: float = 1.0,
          step: float = 6.0) -> np.ndarray:
    """A smooth random path: heading drifts with integrated noise (a wire, a leg, a branch).

    Args:
        start: (x, y) of the first point.
        angle: initial heading in radians (0 = +x).
        length: arc length in pixels.
        bend: total expected heading change in radians over the path.
        step: segment length in pixels.

    Returns:
        K×2 float (x, y), K ≥ 2.
    """
    n = max(2, int(length / step) + 1)
    # Curvature is itself a random walk, so the heading changes smoothly rather than zig-zagging.
    curvature = np.cumsum(rng.normal(0.0, 1.0, size=n - 1))
    curvature *= bend / max(1e-6, float(np.abs(curvature).sum()))
    heading = angle + np.cumsum(curvature)
    seg = length / (n - 1)
    xy = np.empty((n, 2))
    xy[0] = start
    xy[1:, 0] = start[0] + np.cumsum(seg * np.cos(heading))
    xy[1:, 1] = start[1] + np.cumsum(seg * np.sin(heading))
    return xy


def _resample(points: np.ndarray, closed: bool) -> np.ndarray:
    """The polyline through `points` (K×2) with extra vertices so no piece is longer than `_PIECE` px."""
    pts = np.asarray(points, dtype=np.float64)
    if closed:
        pts = np.vstack([pts, pts[:1]])
    d = np.diff(pts, axis=0)
    n = np.maximum(1, np.ceil(np.hypot(d[:, 0], d[:, 1]) / _PIECE)).astype(np.int64)
    seg = np.repeat(np.arange(len(d)), n)
    frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    return np.vstack([pts[seg] + frac[:, None] * d[seg], pts[-1:]])


def draw_stroke(mask: np.ndarray, points: np.ndarray, width: float, value: int = 1, closed: bool = False) -> None:
    """A polyline through `points` (K×2 float, x y) of `width` pixels (see the module docstring).

    Widths ≥ 2 are rasterised as the union of capsules around short centre-line pieces, all pieces at
    once: each piece tests the pixel centres of a small window around it.
    """
    if int(round(width)) <= 1:
        pts = np.rint(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(mask, [pts], closed, value, thickness=1, lineType=cv2.LINE_8)
        return
    pts = _resample(points, closed).astype(np.float32)
    r = np.float32(width / 2 - 1e-6)
    a, b = pts[:-1], pts[1:]
    lo = np.floor(np.minimum(a, b) - r).astype(np.int64)  # K×2 window corner
    side = int(math.ceil(_PIECE + 2 * r)) + 2
    offsets = np.arange(side)
    px = (lo[:, 0, None, None] + offsets[None, None, :])  # K×1×S
    py = (lo[:, 1, None, None] + offsets[None, :, None])  # K×S×1
    d = b - a
    length2 = np.maximum((d * d).sum(axis=1), np.float32(1e-12))
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = d[:, 0, None, None], d[:, 1, None, None]
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / length2[:, None, None], 0.0, 1.0)
    ex, ey = px - (ax + t * dx), py - (ay + t * dy)
    h, w = mask.shape
    inside = (ex * ex + ey * ey <= r * r) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
    k, iy, ix = np.nonzero(inside)
    mask[py[k, iy, 0], px[k, 0, ix]] = value


def draw_tree(mask: np.ndarray, rng: np.random.Generator, root: tuple[float, float], angle: float, length: float,
              width: float, depth: int, thin: np.ndarray | None = None, leaves: bool = False) -> None:
    """A branching tree: each branch forks into 2–3 shorter, thinner ones down to 1 px twigs.

    Branches thinner than 5 px are also drawn into `thin` (when given), so callers can texture twigs
    apart from the trunk. `leaves` puts small ellipses on some twig ends (smooth parts).
    """
    stack = [(root, angle, length, width, depth)]
    while stack:
        start, heading, size, w, level = stack.pop()
        path = curve(rng, start, heading, size, bend=rng.uniform(0.1, 0.5), step=max(3.0, size / 6))
        wi = max(1, int(round(w)))
        draw_stroke(mask, path, wi)
        if thin is not None and wi <= THIN_WIDTHS[-1]:
            draw_stroke(thin, path, wi)
        end = (float(path[-1, 0]), float(path[-1, 1]))
        if level <= 0 or size < 10:
            if leaves and rng.random() < 0.5:
                draw_ellipse(mask, end, (rng.uniform(3, 9), rng.uniform(2, 5)), math.degrees(heading))
            continue
        for _ in range(int(rng.integers(2, 4))):
            stack.append((end, heading + rng.uniform(-0.8, 0.8), size * rng.uniform(0.55, 0.8),
                          w * rng.uniform(0.5, 0.75), level - 1))


def draw_wheel(mask: np.ndarray, rng: np.random.Generator, center: tuple[float, float], radius: float,
               thin: np.ndarray | None = None) -> None:
    """A wheel: a rim (ring), a hub (disk) and 6–36 thin spokes; spokes (and thin rims) also go to `thin`."""
    rim = int(rng.integers(2, 9))
    draw_ellipse(mask, center, (radius, radius), 0.0, thickness=rim)
    hub = radius * rng.uniform(0.06, 0.15)
    draw_ellipse(mask, center, (hub, hub), 0.0)
    n = int(rng.integers(6, 37))
    spoke = int(rng.choice(THIN_WIDTHS[:2]))
    phase = rng.uniform(0, 2 * math.pi)
    for a in phase + np.arange(n) * 2 * math.pi / n:
        end = (center[0] + radius * math.cos(a), center[1] + radius * math.sin(a))
        pts = np.array([center, end])
        draw_stroke(mask, pts, spoke)
        if thin is not None:
            draw_stroke(thin, pts, spoke)
    if thin is not None and rim <= THIN_WIDTHS[-1]:
        draw_ellipse(thin, center, (radius, radius), 0.0, thickness=rim)


def lace_pattern(rng: np.random.Generator, shape: tuple[int, int], period: float, bar: int) -> np.ndarray:
    """A periodic net of bars `bar` px wide: thin everywhere, like lace, mesh, chain-link or chain mail.

    One of: a square mesh (two families of parallel bars at 90°), a rhombic mesh (60–80°), a triangular
    lattice (three families at 60°), or touching rings on a square lattice. Bars are bands
    |distance to the bar's centre line| < bar/2 at a random angle and offset (generic position, so a band
    holds `bar` pixels across, and a 1 px band stays connected).

    Returns:
        H×W bool, True where material is.
    """
    h, w = shape
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    p = np.float32(period)
    half = np.float32(bar / 2)
    theta = rng.uniform(0, math.pi)
    kind = int(rng.integers(4))
    if kind == 3:  # touching rings (chain mail): each cell's ring reaches just past the cell's edge
        c, s = math.cos(theta), math.sin(theta)
        u = np.mod(xs * np.float32(c) + ys * np.float32(s) + np.float32(rng.uniform(0, period)), p) - p / 2
        v = np.mod(-xs * np.float32(s) + ys * np.float32(c) + np.float32(rng.uniform(0, period)), p) - p / 2
        radius = p / 2 - half / 2
        return np.abs(np.sqrt(u * u + v * v) - radius) < half
    angles = {0: (0.0, math.pi / 2), 1: (0.0, math.radians(rng.uniform(60, 80))),
              2: (0.0, math.pi / 3, 2 * math.pi / 3)}[kind]
    material = np.zeros((h, w), dtype=bool)
    for a in angles:
        u = xs * np.float32(math.cos(theta + a)) + ys * np.float32(math.sin(theta + a)) + np.float32(rng.uniform(0, period))
        material |= np.abs(u - p * np.rint(u / p)) < half
    return material


def cut_holes(mask: np.ndarray, rng: np.random.Generator, count: int, radius: float) -> None:
    """Punch up to `count` holes (disks, ellipses or polygons) strictly inside the object of `mask`."""
    margin = int(radius) + 3
    inner = cv2.erode(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    ys, xs = np.nonzero(inner)
    if ys.size == 0:
        return
    for i in rng.integers(0, ys.size, size=count):
        center = (float(xs[i]), float(ys[i]))
        r = radius * rng.uniform(0.4, 1.0)
        kind = rng.integers(3)
        if kind == 0:
            draw_ellipse(mask, center, (r, r), 0.0, value=0)
        elif kind == 1:
            draw_ellipse(mask, center, (r, r * rng.uniform(0.3, 1.0)), rng.uniform(0, 180), value=0)
        else:
            draw_polygon(mask, random_polygon(rng, center, r, int(rng.integers(3, 7))), value=0)
