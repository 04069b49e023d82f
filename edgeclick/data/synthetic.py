"""Synthetic high-resolution training samples: objects with thin parts on photos, with exact masks.

The paper's subject is thin structures at high resolution (wires, spokes, twigs, lace), which COCO-style
polygon masks cannot teach. `generate` draws one object per image from templates that mix smooth parts
(blobs, ellipses, polygons) with thin ones (1–4 px strokes, branching trees, wheel spokes, lace-like
periodic patterns, rings, holes), textures it with patches of real photos (or procedural noise),
and composites it over a background photo crop (or a procedural scene) that may hold distractor
objects and thin clutter lines which are *not* the object.

"Exact" mask: the object's binary mask is rasterised first (no anti-aliasing, see `shapes`) and is the ground
truth by definition; the image is then made from it with an opacity `alpha = soft_alpha(mask)`, so
`gt == (alpha > 0.5)` at every pixel, alpha is 0 farther than one pixel (8-neighbourhood) from the
object, and wherever alpha is 0 the image equals the background composite bit for bit. The object's
footprint in the image and its mask therefore agree to the pixel; only the 1-px anti-aliased edge mixes
colours. `copy_paste` applies the same rule to real objects cut out with their own masks.

Speed, one cv2 thread, CPU time per sample (measured while developing, 2-core machine under load):
about 30–50 ms at 1024 px (p90 ≲ 85 ms) and 90–125 ms at 2048 px; `tests/test_synthetic.py` guards
against regressions with a generous bound.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edgeclick.data import shapes
from edgeclick.data.imread import is_image_file, read_rgb
from edgeclick.data.sample import Sample
from edgeclick.data.textures import (
    add_noise,
    noise_texture,
    paste,
    photo_patch,
    random_color,
    soft_alpha,
    tint,
)

MAX_SIZE: int = 2048
"""Largest supported long side in pixels."""

ASPECTS: tuple[float, ...] = (1.0, 4 / 3, 3 / 2, 16 / 9)
"""Canvas aspect ratios (long side / short side); orientation is random."""

PhotoSource = Callable[[np.random.Generator], np.ndarray]
"""Draws one H×W×3 uint8 RGB photo with the given generator (textures and backgrounds)."""

Template = Callable[[np.random.Generator, np.ndarray, np.ndarray], None]
"""Draws an object into (mask, thin), both h×w uint8; `thin` marks the 1–4 px parts for texturing."""


@dataclass(frozen=True)
class Layers:
    """A generated sample with the layers it was composited from (for tests and debugging).

    Attributes:
        sample: the image and its exact mask.
        background: H×W×3 uint8, everything under the object (photo or procedural scene, distractors,
            clutter, noise).
        alpha: H×W float32 opacity of the object; `sample.gt == (alpha > 0.5)`.
    """

    sample: Sample
    background: np.ndarray
    alpha: np.ndarray


# --- object templates: each fills an h×w box, thin parts drawn 1–4 px wide ------------------------------

def _creature(rng: np.random.Generator, mask: np.ndarray, thin: np.ndarray) -> None:
    """A body blob (and maybe a head) with 4–12 thin legs/antennae curving outward."""
    h, w = mask.shape
    s = min(h, w)
    c = (w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65))
    r = s * rng.uniform(0.1, 0.22)
    shapes.draw_blob(mask, rng, c, r)
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * math.pi)
        head = (c[0] + 1.1 * r * math.cos(a), c[1] + 1.1 * r * math.sin(a))
        shapes.draw_ellipse(mask, head, (r * rng.uniform(0.3, 0.6), r * rng.uniform(0.3, 0.6)), rng.uniform(0, 180))
    for _ in range(int(rng.integers(4, 13))):
        a = rng.uniform(0, 2 * math.pi)
        start = (c[0] + 0.5 * r * math.cos(a), c[1] + 0.5 * r * math.sin(a))
        path = shapes.curve(rng, start, a + rng.uniform(-0.4, 0.4), s * rng.uniform(0.2, 0.5), bend=rng.uniform(0.2, 2.0))
        width = int(rng.choice(shapes.THIN_WIDTHS))
        shapes.draw_stroke(mask, path, width)
        shapes.draw_stroke(thin, path, width)


def _plant(rng: np.random.Generator, mask: np.ndarray, thin: np.ndarray) -> None:
    """A tree from the bottom of the box: a trunk forking down to 1 px twigs, sometimes with leaves."""
    h, w = mask.shape
    root = (w * rng.uniform(0.35, 0.65), h * rng.uniform(0.9, 0.99))
    shapes.draw_tree(mask, rng, root, -math.pi / 2 + rng.uniform(-0.3, 0.3), h * rng.uniform(0.2, 0.32),
                     rng.uniform(4, 14), int(rng.integers(3, 7)), thin=thin, leaves=bool(rng.random() < 0.4))


def _lace(rng: np.random.Generator, mask: np.ndarray, thin: np.ndarray) -> None:
    """A region (ellipse, rectangle or blob) filled with a periodic net of thin bars, in a solid frame."""
    h, w = mask.shape
    region = np.zeros_like(mask)
    c = (w / 2, h / 2)
    kind = rng.integers(3)
    if kind == 0:
        shapes.draw_ellipse(region, c, (w * rng.uniform(0.3, 0.48), h * rng.uniform(0.3, 0.48)), 0.0)
    elif kind == 1:
        x0, y0 = int(w * rng.uniform(0.02, 0.2)), int(h * rng.uniform(0.02, 0.2))
        region[y0:h - y0, x0:w - x0] = 1
    else:
        shapes.draw_blob(region, rng, c, min(h, w) * rng.uniform(0.3, 0.45))
    bar = int(rng.choice(shapes.THIN_WIDTHS))
    net = shapes.lace_pattern(rng, (h, w), rng.uniform(max(12, 6 * bar), 48), bar) & (region > 0)
    frame_w = int(rng.integers(2, 10))
    frame = (region > 0) & ~cv2.erode(region, np.ones((2 * frame_w + 1,) * 2, np.uint8)).astype(bool)
    mask[net | frame] = 1
    thin[net & ~frame] = 1
    if rng.random() < 0.4:  # a handle: a fan, a racket, a sieve
        a = rng.uniform(0, 2 * math.pi)
        start = (c[0] + 0.3 * w * math.cos(a), c[1] + 0.3 * h * math.sin(a))
        shapes.draw_stroke(mask, shapes.curve(rng, start, a, min(h, w) * 0.4, bend=0.2), int(rng.integers(4, 12)))


def _wheels(rng: np.random.Generator, mask: np.ndarray, thin: np.ndarray) -> None:
    """One wheel, or two joined by a frame of bars (a bicycle)."""
    h, w = mask.shape
    s = min(h, w)
    if rng.random() < 0.5:
        shapes.draw_wheel(mask, rng, (w / 2, h / 2), s * rng.uniform(0.3, 0.46), thin=thin)
        return
    r = min(w / 4.4, h / 2.4) * rng.uniform(0.8, 1.0)
    y = h - r - 2
    left, right = (r + 2, y), (w - r - 2, y)
    for c in (left, right):
        shapes.draw_wheel(mask, rng, c, r, thin=thin)
    top = (w / 2 + rng.uniform(-0.2, 0.2) * w, y - r * rng.uniform(0.8, 1.3))
    bar = int(rng.integers(3, 9))
    for a, b in ((left, top), (top, right), (left, (w / 2, y)), ((w / 2, y), top), ((w / 2, y), right)):
        shapes.draw_stroke(mask, np.array([a, b]), bar)
    handle = (right[0] - r * 0.3, top[1] - r * 0.4)
    shapes.draw_stroke(mask, np.array([right, handle, (handle[0] - r * 0.4, handle[1])]), max(2, bar - 2))


def _cable(rng: np.random.Generator, mask: np.ndarray, thin: np.ndarray) -> None:
    """A smooth device (ellipse, polygon or blob) with 1–3 long thin wires, sometimes with plugs."""
    h, w = mask.shape
    s = min(h, w)
    c = (w * rng.uniform(0.25, 0.75), h * rng.uniform(0.25, 0.75))
    r = s * rng.uniform(0.1, 0.22)
    kind = rng.integers(3)
    if kind == 0:
        shapes.draw_ellipse(mask, c, (r, r * rng.uniform(0.4, 1.0)), rng.uniform(0, 180))
    elif kind == 1:
        shapes.draw_polygon(mask, shapes.random_polygon(rng, c, r, int(rng.integers(3, 8))))
    else:
        shapes.draw_blob(mask, rng, c, r)
    for _ in range(int(rng.integers(1, 4))):
        a = rng.uniform(0, 2 * math.pi)
        path = shapes.curve(rng, c, a, max(h, w) * rng.uniform(0.4, 1.0), bend=rng.uniform(0.5, 4.0))
        width = int(rng.choice(shapes.THIN_WIDTHS[:3]))
        shapes.draw_stroke(mask, path, width)
        shapes.draw_stroke(thin, path, width)
        if rng.random() < 0.5:
            end = path[-1]
            heading = math.atan2(path[-1, 1] - path[-2, 1], path[-1, 0] - path[-2, 0])
            plug = np.array([[0, -1], [3, -1], [3, 1], [0, 1]], dtype=np.float64) * s * rng.uniform(0.01, 0.03)
            rot = np.array([[math.cos(heading), -math.sin(heading)], [math.sin(heading), math.cos(heading)]])
            shapes.draw_polygon(mask, plug @ rot.T + end)


def _holed(rng: np.random.Generator, mask: np.ndarray, thin: np.ndarray) -> None:
    """A smooth body with holes, a ring handle, and sometimes a chain of thin rings."""
    h, w = mask.shape
    s = min(h, w)
    c = (w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6))
    r = s * rng.uniform(0.2, 0.35)
    if rng.random() < 0.5:
        shapes.draw_blob(mask, rng, c, r)
    else:
        shapes.draw_polygon(mask, shapes.random_polygon(rng, c, r, int(rng.integers(5, 10))))
    shapes.cut_holes(mask, rng, int(rng.integers(2, 9)), s * rng.uniform(0.02, 0.08))
    a = rng.uniform(0, 2 * math.pi)
    ring_r = s * rng.uniform(0.06, 0.14)
    ring_c = (c[0] + (r * 0.8 + ring_r) * math.cos(a), c[1] + (r * 0.8 + ring_r) * math.sin(a))
    ring_axes, ring_angle = (ring_r, ring_r * rng.uniform(0.6, 1.0)), rng.uniform(0, 180)
    ring_w = int(rng.choice(shapes.THIN_WIDTHS))
    shapes.draw_ellipse(mask, ring_c, ring_axes, ring_angle, thickness=ring_w)
    shapes.draw_ellipse(thin, ring_c, ring_axes, ring_angle, thickness=ring_w)
    if rng.random() < 0.6:  # a chain of small rings hanging from the handle
        link = s * rng.uniform(0.015, 0.04)
        width = int(rng.choice(shapes.THIN_WIDTHS))
        heading = a + rng.uniform(-0.5, 0.5)
        p = np.array(ring_c, dtype=np.float64)
        for i in range(int(rng.integers(4, 15))):
            p = p + 1.5 * link * np.array([math.cos(heading), math.sin(heading)])
            heading += rng.normal(0, 0.15)
            axes = (link, link * 0.6)
            shapes.draw_ellipse(mask, (p[0], p[1]), axes, math.degrees(heading) + 90 * (i % 2), thickness=width)
            shapes.draw_ellipse(thin, (p[0], p[1]), axes, math.degrees(heading) + 90 * (i % 2), thickness=width)


TEMPLATES: dict[str, Template] = {
    "creature": _creature,
    "plant": _plant,
    "lace": _lace,
    "wheels": _wheels,
    "cable": _cable,
    "holed": _holed,
}


def _attach_strokes(rng: np.random.Generator, mask: np.ndarray, thin: np.ndarray) -> None:
    """Extra thin strokes starting on the object (whiskers, wires, stems) so any template can gain some."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return
    s = min(mask.shape)
    for i in rng.integers(0, ys.size, size=int(rng.integers(1, 5))):
        path = shapes.curve(rng, (float(xs[i]), float(ys[i])), rng.uniform(0, 2 * math.pi), s * rng.uniform(0.15, 0.4),
                            bend=rng.uniform(0.2, 2.0))
        width = int(rng.choice(shapes.THIN_WIDTHS))
        shapes.draw_stroke(mask, path, width)
        shapes.draw_stroke(thin, path, width)


def draw_object(rng: np.random.Generator, height: int, width: int, template: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise one object into an height×width box.

    Returns:
        (mask, thin): height×width uint8 {0, 1}; `thin` ⊂ `mask` marks thin parts (textured apart).
    """
    mask = np.zeros((height, width), np.uint8)
    thin = np.zeros((height, width), np.uint8)
    names = list(TEMPLATES)
    name = template if template is not None else names[int(rng.integers(len(names)))]
    TEMPLATES[name](rng, mask, thin)
    if rng.random() < 0.3:
        _attach_strokes(rng, mask, thin)
    if not mask.any():  # a template drawn entirely off its box (very rare): fall back to a blob
        shapes.draw_blob(mask, rng, (width / 2, height / 2), min(height, width) / 4)
    thin &= mask
    return mask, thin


# --- textures and compositing ----------------------------------------------------------------------------

def _contrasting_color(rng: np.random.Generator, reference: np.ndarray, min_distance: float = 80.0) -> np.ndarray:
    """A random colour, mirrored (255 - c) when it lies too close to `reference` (mean RGB, float (3,))."""
    color = random_color(rng)
    if float(np.linalg.norm(color - reference)) < min_distance:
        color = 255.0 - color
    return color


def _texture(rng: np.random.Generator, height: int, width: int, textures: Sequence[np.ndarray] | None,
             reference: np.ndarray, strength: tuple[float, float]) -> np.ndarray:
    """height×width×3 uint8: a photo patch (or noise) tinted toward a colour that contrasts with `reference`."""
    if textures and rng.random() < 0.8:
        base = photo_patch(rng, textures[int(rng.integers(len(textures)))], height, width)
    else:
        base = noise_texture(rng, height, width, scale=rng.uniform(8, 128))
    return tint(rng, base, _contrasting_color(rng, reference), strength)


def _place(rng: np.random.Generator, canvas: np.ndarray, frac: tuple[float, float],
           textures: Sequence[np.ndarray] | None, noise_sigma: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Draw an object in a random box of `frac` × the canvas and composite it onto `canvas` (in place).

    Returns:
        (mask, alpha, (top, left)): the object's mask and opacity over its box grown by one pixel on every
        side (clipped to the canvas), and that region's top-left corner in canvas pixels.
    """
    H, W = canvas.shape[:2]
    h = max(8, int(H * rng.uniform(*frac)))
    w = max(8, int(W * rng.uniform(*frac)))
    top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    mask, thin = draw_object(rng, h, w)
    # One pixel of margin so the anti-aliased halo has room; the margin is cut where it leaves the canvas.
    t0, l0 = max(0, top - 1), max(0, left - 1)
    t1, l1 = min(H, top + h + 1), min(W, left + w + 1)
    region = np.zeros((t1 - t0, l1 - l0), np.uint8)
    region[top - t0:top - t0 + h, left - l0:left - l0 + w] = mask
    thin_region = np.zeros_like(region)
    thin_region[top - t0:top - t0 + h, left - l0:left - l0 + w] = thin
    alpha = soft_alpha(region)
    reference = canvas[t0:t1:8, l0:l1:8].reshape(-1, 3).mean(axis=0).astype(np.float32)  # subsampled: a colour hint
    rh, rw = region.shape
    fg = _texture(rng, rh, rw, textures, reference, (0.25, 0.75))
    if thin_region.any() and rng.random() < 0.6:  # thin parts of another material: metal wire, dark twigs
        wire = _texture(rng, rh, rw, textures, reference, (0.5, 0.95))
        near_thin = cv2.dilate(thin_region, np.ones((3, 3), np.uint8))  # the halo too
        cv2.copyTo(wire, near_thin, fg)
    if noise_sigma > 0:
        fg = add_noise(rng, fg, noise_sigma)
    paste(canvas, fg, alpha, t0, l0)
    return region, alpha, (t0, l0)


def _clutter(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Thin lines in the background (cables, branches, cracks) that are NOT the object: hard negatives."""
    H, W = canvas.shape[:2]
    for _ in range(int(rng.integers(1, 7))):
        start = (rng.uniform(0, W), rng.uniform(0, H))
        path = shapes.curve(rng, start, rng.uniform(0, 2 * math.pi), max(H, W) * rng.uniform(0.2, 0.8),
                            bend=rng.uniform(0.1, 3.0))
        color = tuple(float(c) for c in random_color(rng))
        cv2.polylines(canvas, [np.rint(path).astype(np.int32).reshape(-1, 1, 2)], False, color,
                      thickness=int(rng.choice(shapes.THIN_WIDTHS)), lineType=cv2.LINE_AA)


def _procedural_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A scene-like background: large-scale noise with a few flat-coloured shapes."""
    canvas = noise_texture(rng, height, width, scale=rng.uniform(64, 512))
    s = min(height, width)
    for _ in range(int(rng.integers(2, 7))):
        c = (rng.uniform(0, width), rng.uniform(0, height))
        pts = shapes.blob_outline(rng, c, s * rng.uniform(0.05, 0.3)) if rng.random() < 0.5 else \
            shapes.random_polygon(rng, c, s * rng.uniform(0.05, 0.3), int(rng.integers(3, 8)))
        color = tuple(float(v) for v in random_color(rng))
        cv2.fillPoly(canvas, [np.rint(pts).astype(np.int32).reshape(-1, 1, 2)], color, lineType=cv2.LINE_AA)
    return canvas


def _canvas_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(H, W) with long side `size` and a random aspect ratio and orientation."""
    short = int(round(size / ASPECTS[int(rng.integers(len(ASPECTS)))]))
    return (size, short) if rng.random() < 0.3 else (short, size)


def generate_layers(rng: np.random.Generator, size: int = 1024, textures: Sequence[np.ndarray] | None = None,
                    backgrounds: Sequence[np.ndarray] | None = None) -> Layers:
    """`generate`, also returning the background composite and the object's opacity."""
    if not 32 <= size <= MAX_SIZE:
        raise ValueError(f"size must be in [32, {MAX_SIZE}], got {size}")
    H, W = _canvas_shape(rng, size)
    if backgrounds and rng.random() < 0.85:
        canvas = photo_patch(rng, backgrounds[int(rng.integers(len(backgrounds)))], H, W, zoom=(1.0, 1.5))
    else:
        canvas = _procedural_background(rng, H, W)
    noise_sigma = float(rng.uniform(1.0, 5.0)) if rng.random() < 0.5 else 0.0
    if noise_sigma > 0:
        canvas = add_noise(rng, canvas, noise_sigma)
    if rng.random() < 0.5:
        _clutter(rng, canvas)
    for _ in range(int(rng.integers(0, 3))):  # distractors: other objects with thin parts, not in the mask
        _place(rng, canvas, (0.15, 0.4), textures, noise_sigma)
    background = canvas.copy()
    region, region_alpha, (top, left) = _place(rng, canvas, (0.45, 0.95), textures, noise_sigma)
    gt = np.zeros((H, W), np.int8)
    alpha = np.zeros((H, W), np.float32)
    rh, rw = region.shape
    gt[top:top + rh, left:left + rw] = region
    alpha[top:top + rh, left:left + rw] = region_alpha
    return Layers(Sample("synthetic", canvas, gt), background, alpha)


def generate(rng: np.random.Generator, size: int = 1024, textures: Sequence[np.ndarray] | None = None,
             backgrounds: Sequence[np.ndarray] | None = None) -> Sample:
    """One synthetic sample: an object with thin parts on a photo, with its exact mask.

    Args:
        rng: the only source of randomness (same state → same sample).
        size: long side in pixels (32..2048); the short side follows a random aspect ratio in `ASPECTS`.
        textures: photos (H×W×3 uint8) whose random patches texture the objects; procedural noise if None.
        backgrounds: photos to crop the background from; a procedural scene if None.

    Returns:
        Sample named "synthetic": image H×W×3 uint8, gt H×W int8 in {0, 1} (no ignore pixels).
    """
    return generate_layers(rng, size, textures, backgrounds).sample


# --- photo sources and the dataset ----------------------------------------------------------------------

PHOTO_SUBDIRS: tuple[str, ...] = ("img", "images", "im", "data_GT", "JPEGImages")
"""Sub-folders searched for photos when a photo folder holds none itself (dataset layouts)."""


class FolderPhotos:
    """Photos from a folder: image files directly in it, else in its first `PHOTO_SUBDIRS` sub-folder with any.

    Mask folders (gt/, masks/) are never read: only the named image folders are searched.
    """

    def __init__(self, folder: str | Path) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"photo folder not found: {root}")
        candidates = [root] + [root / d for d in PHOTO_SUBDIRS if (root / d).is_dir()]
        self.paths: list[Path] = []
        for folder_ in candidates:
            self.paths = sorted(p for p in folder_.iterdir() if is_image_file(p))
            if self.paths:
                break
        if not self.paths:
            raise FileNotFoundError(f"no photos in {root} or its {'/'.join(PHOTO_SUBDIRS)} sub-folders")

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        """Decode one photo chosen with `rng`: H×W×3 uint8 RGB."""
        return read_rgb(self.paths[int(rng.integers(len(self.paths)))])


def generate_with_photos(rng: np.random.Generator, size: int, photos: PhotoSource | None) -> Sample:
    """`generate` with one texture photo and one background photo drawn from `photos` (procedural if None)."""
    if photos is None:
        return generate(rng, size)
    return generate(rng, size, textures=[photos(rng)], backgrounds=[photos(rng)])


class SyntheticDataset:
    """`n` synthetic samples; sample i is the same on every access (its generator is seeded by (seed, i)).

    Args:
        n: number of samples.
        size: long side in pixels.
        seed: dataset seed.
        photo_dir: folder of photos for textures and backgrounds (e.g. `$EDGECLICK_DATA/coco_mval_dev`,
            see `FolderPhotos`); procedural textures when None.
        photos: any `PhotoSource` instead of a folder (e.g. only a training split's photos).
    """

    def __init__(self, n: int, size: int = 1024, seed: int = 0, photo_dir: str | Path | None = None, *,
                 photos: PhotoSource | None = None) -> None:
        if photos is not None and photo_dir is not None:
            raise ValueError("pass photo_dir or photos, not both")
        self.n = n
        self.size = size
        self.seed = seed
        self.photos: PhotoSource | None = FolderPhotos(photo_dir) if photo_dir is not None else photos

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} synthetic samples")
        index %= self.n
        rng = np.random.default_rng([self.seed, index])
        return replace(generate_with_photos(rng, self.size, self.photos), name=f"synthetic{self.seed}_{index:06d}")

    def __iter__(self) -> Iterator[Sample]:
        for i in range(self.n):
            yield self[i]


# --- copy-paste of real objects ---------------------------------------------------------------------------

def copy_paste(objects: Sequence[Sample], backgrounds: Sequence[np.ndarray], rng: np.random.Generator,
               scale_range: tuple[float, float] = (0.25, 0.9)) -> Sample:
    """A real object cut out with its own mask and pasted onto another photo, mask exact.

    The object's bounding box (gt == 1; ignore pixels count as not object) is resized so its long side is
    `scale_range` × the background's short side (shrunk further if it would not fit), flipped with
    probability 0.5, and placed at a random position fully inside the background. The pasted mask is the
    bilinear resize of the object's mask thresholded at 0.5; the image is composited with `soft_alpha` of it, so the
    same exactness as `generate` holds (pixels the object does not reach keep the background's values).

    Args:
        objects: samples to cut objects from (one is drawn).
        backgrounds: H×W×3 uint8 photos (one is drawn; it is copied, not modified).
        rng: the only source of randomness.
        scale_range: object long side relative to the background's short side.

    Returns:
        Sample named "paste_<object name>" with the background's size, gt int8 {0, 1}.
    """
    obj = objects[int(rng.integers(len(objects)))]
    canvas = np.array(backgrounds[int(rng.integers(len(backgrounds)))], dtype=np.uint8, copy=True)
    H, W = canvas.shape[:2]
    ys, xs = np.nonzero(obj.gt == 1)
    if ys.size == 0:
        raise ValueError(f"{obj.name}: no object pixels to paste")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = obj.image[y0:y1, x0:x1]
    mask = (obj.gt[y0:y1, x0:x1] == 1).astype(np.uint8)
    ch, cw = mask.shape
    scale = rng.uniform(*scale_range) * min(H, W) / max(ch, cw)
    scale = min(scale, (H - 2) / ch, (W - 2) / cw)  # fits with its one-pixel halo
    h, w = max(1, int(round(ch * scale))), max(1, int(round(cw * scale)))
    crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    # Bilinear then > 0.5 rather than nearest: enlarged polygon masks get smooth edges instead of
    # staircases; the result is the new mask by definition, so exactness is unaffected.
    mask = (cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.uint8)
    if not mask.any():  # a sliver shrunk to nothing: keep its centre pixel so the sample has an object
        mask[h // 2, w // 2] = 1
    if rng.random() < 0.5:
        crop, mask = crop[:, ::-1], mask[:, ::-1]
    top = int(rng.integers(1, H - h))  # 1..H-h-1: room for the halo on both sides
    left = int(rng.integers(1, W - w))
    region = np.pad(mask, 1)
    src = cv2.copyMakeBorder(np.ascontiguousarray(crop), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    paste(canvas, src, soft_alpha(region), top - 1, left - 1)
    gt = np.zeros((H, W), np.int8)
    gt[top - 1:top + h + 1, left - 1:left + w + 1] = region
    return Sample(f"paste_{obj.name}", canvas, gt)
