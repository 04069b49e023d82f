"""Pillow-based readers that turn any image or mask file into the arrays `Sample` needs.

Nothing here applies EXIF orientation: every benchmark mask was drawn on the pixel grid as
stored in the file (PNG/BMP masks carry no orientation tag), so rotating the photo alone would
misalign it with its mask. The header size check in the loaders relies on the same convention.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
"""File name endings (lower-cased) that the loaders treat as images or masks."""

# Modes Pillow uses for single-channel images deeper than 8 bits (16-bit PNG/TIFF open as these).
_WIDE_GRAY_MODES: frozenset[str] = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def is_image_file(path: Path) -> bool:
    """True for a visible regular file whose suffix is in `IMAGE_SUFFIXES` (case-insensitive)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; Pillow decodes no pixel data for this.

    Raises whatever Pillow raises for an unreadable header (`PIL.UnidentifiedImageError`, `OSError`).
    """
    with Image.open(path) as im:
        return im.size


def _wide_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 16-bit-range integers (H×W, any int dtype) to H×W uint8 with rounding (65535 → 255)."""
    # Mode "I" is 32-bit; clip first so stray out-of-range values saturate instead of wrapping.
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to H×W×3 uint8 RGB.

    Grayscale, palette, 1-bit, CMYK and RGBA inputs are converted with Pillow (alpha is dropped,
    as OpenCV's `imread` does, so colours match RITM's loader); 16-bit grayscale is scaled to 8 bits.
    """
    with Image.open(path) as im:
        if im.mode in _WIDE_GRAY_MODES:
            gray = _wide_to_uint8(np.array(im))
            return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        # np.array (not asarray): Pillow hands out read-only buffers, callers may want to write.
        # Skipping convert() for RGB saves a full-image copy per sample.
        return np.array(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def read_intensity(path: Path) -> np.ndarray:
    """Decode a binary/trimap mask file to H×W uint8 intensities (0 background … 255 object).

    Colour and palette masks take the maximum over R, G, B, so a mask drawn in any non-black
    colour reads as non-zero (a luminance conversion would turn pure red into 76); 16-bit masks
    are scaled to 8 bits; an alpha channel is ignored.
    """
    with Image.open(path) as im:
        if im.mode in _WIDE_GRAY_MODES:
            return _wide_to_uint8(np.array(im))
        if im.mode == "L":
            return np.array(im, dtype=np.uint8)
        if im.mode == "LA":
            return np.array(im.getchannel("L"), dtype=np.uint8)
        if im.mode == "1":
            return np.array(im.convert("L"), dtype=np.uint8)
        return np.array(im.convert("RGB"), dtype=np.uint8).max(axis=2)


def read_label_map(path: Path) -> np.ndarray:
    """Decode an instance-id PNG (palette or 8/16-bit grayscale) to H×W int32 raw ids.

    Palette PNGs (PASCAL VOC `SegmentationObject`) are read as palette indices, not colours.

    Raises:
        ValueError: for colour or other modes whose pixel values are not ids.
    """
    with Image.open(path) as im:
        if im.mode in ("P", "L") or im.mode in _WIDE_GRAY_MODES:
            return np.array(im).astype(np.int32)
        raise ValueError(f"instance map must be a palette or grayscale image, got mode {im.mode!r}")
