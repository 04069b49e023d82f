"""Textures and compositing for synthetic images: photo patches, procedural noise, soft-edged pasting.

Images are H×W×3 uint8 RGB. The compositing rule is what makes synthetic masks exact: `soft_alpha`
turns a binary mask into an opacity with `mask == (alpha > 0.5)` at every pixel and alpha == 0 beyond
the mask's 8-neighbourhood, and `paste` changes no pixel where alpha is 0.
"""
from __future__ import annotations

import cv2
import numpy as np


def random_color(rng: np.random.Generator) -> np.ndarray:
    """One RGB colour, float32 (3,), values 0–255."""
    return rng.uniform(0, 255, size=3).astype(np.float32)


def noise_texture(rng: np.random.Generator, height: int, width: int, scale: float | None = None) -> np.ndarray:
    """Procedural texture: 2–3 octaves of smooth colour noise around a random base colour.

    Each octave is a small random array upsampled bilinearly; octaves are summed at a quarter of the
    target's resolution (finest feature ≥ 8 px, so nothing is lost) and the sum is upsampled once.
    `scale` is the feature size of the coarsest octave in pixels.

    Returns:
        height×width×3 uint8.
    """
    scale = scale if scale is not None else rng.uniform(16, 256)
    lh, lw = max(2, height // 4), max(2, width // 4)
    base = random_color(rng)
    out = np.empty((lh, lw, 3), np.float32)
    out[:] = base
    amplitude = rng.uniform(20, 90)
    for octave in range(int(rng.integers(2, 4))):
        cell = max(8.0, scale / 2**octave)
        small = rng.normal(0.0, 1.0, size=(max(2, int(height / cell) + 2), max(2, int(width / cell) + 2), 3))
        if rng.random() < 0.6:  # correlated channels: mostly brightness texture, like real materials
            small[:] = small[..., :1]
        out += (amplitude / 2**octave) * cv2.resize(small.astype(np.float32), (lw, lh), interpolation=cv2.INTER_LINEAR)
    low = np.clip(out, 0, 255).astype(np.uint8)
    return cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)


def photo_patch(rng: np.random.Generator, photo: np.ndarray, height: int, width: int,
                zoom: tuple[float, float] = (1.0, 2.5)) -> np.ndarray:
    """A random crop of `photo` resized to height×width (magnified by up to `zoom`), uint8."""
    ph, pw = photo.shape[:2]
    z = rng.uniform(*zoom)
    # The crop keeps the target's aspect ratio and is as large as the photo allows at zoom z.
    fit = min(ph / height, pw / width)
    ch = max(2, min(ph, int(round(height * fit / z))))
    cw = max(2, min(pw, int(round(width * fit / z))))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if ch > height else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=interp)


def tint(rng: np.random.Generator, texture: np.ndarray, color: np.ndarray, strength: tuple[float, float]) -> np.ndarray:
    """Blend `texture` (H×W×3 uint8) toward `color` (3,) by a random weight in `strength`; uint8."""
    k = rng.uniform(*strength)
    # One affine colour transform (saturating) instead of float temporaries: out = (1-k)·texture + k·color.
    matrix = np.hstack([np.eye(3) * (1.0 - k), (k * np.asarray(color, np.float64)).reshape(3, 1)])
    return cv2.transform(texture, matrix.astype(np.float32))


NOISE_TILE: int = 256
"""Side of the noise tile that `add_noise` repeats (sensor noise needs no long-range randomness)."""


def add_noise(rng: np.random.Generator, img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian sensor noise of `sigma` grey levels on an H×W×3 uint8 image; returns a new uint8 image.

    A 256×256 noise tile repeated from a random offset: the repetition is invisible at sensor-noise
    amplitude and costs a fraction of drawing one normal variate per pixel.
    """
    h, w = img.shape[:2]
    tile = np.rint(rng.standard_normal((NOISE_TILE, NOISE_TILE, 3), dtype=np.float32) * sigma).astype(np.int16)
    dy, dx = (int(v) for v in rng.integers(0, NOISE_TILE, size=2))
    reps = (-(-(h + dy) // NOISE_TILE), -(-(w + dx) // NOISE_TILE), 1)
    noise = np.ascontiguousarray(np.tile(tile, reps)[dy:dy + h, dx:dx + w])
    # Saturating uint8 + int16 → uint8 in one pass (same values as clip(img + noise, 0, 255)).
    return cv2.add(img, noise, dtype=cv2.CV_8U)


def soft_alpha(mask: np.ndarray) -> np.ndarray:
    """Opacity of an object with binary `mask` (H×W, nonzero = object) whose edge is anti-aliased.

    alpha = (mask + box3x3(mask)) / 2 with zeros outside the array. On object pixels the box mean
    includes the pixel itself (≥ 1/9), so alpha > 0.5; off the object the box mean is < 1, so alpha < 0.5
    — thresholding alpha at 0.5 gives back the mask exactly. Alpha is 0 beyond the 8-neighbourhood of the
    object and 1 inside it; a 1 px line gets about 2/3 opacity with a 1/6 halo, like an anti-aliased line.

    Returns:
        H×W float32 in [0, 1].
    """
    m = (mask > 0).astype(np.float32)
    box = cv2.blur(m, (3, 3), borderType=cv2.BORDER_CONSTANT)
    return 0.5 * (m + box)


def paste(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, top: int, left: int) -> None:
    """dst[region] = dst·(1 - alpha) + src·alpha, rounded; pixels with alpha == 0 stay bit-identical.

    Args:
        dst: H×W×3 uint8, modified in place.
        src: h×w×3 uint8, placed with its top-left corner at (top, left) (must lie inside dst).
        alpha: h×w float32 opacity.
    """
    h, w = alpha.shape
    region = dst[top:top + h, left:left + w]
    # cv2.blendLinear computes (w1·a + w2·b) / (w1 + w2) with saturating rounding, so weights (1, 0)
    # return `a` exactly (a test checks it); it avoids four full-size float temporaries.
    region[:] = cv2.blendLinear(np.ascontiguousarray(region), np.ascontiguousarray(src),
                                np.ascontiguousarray(1.0 - alpha), np.ascontiguousarray(alpha))
