"""Argument types shared by every command line (`edgeclick`, `python -m edgeclick.*`): one parser per value."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from edgeclick import contract
from edgeclick.errors import UsageError, one_line

T = TypeVar("T")

POSITIVE = ("+", "1", "pos", "positive")


def arg_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type=` from a parser that raises ValueError with a one-line message: argparse then prints
    that message (an ArgumentTypeError) instead of its generic "invalid value"."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = getattr(parse, "__name__", "value")
    convert.__doc__ = parse.__doc__
    return convert
NEGATIVE = ("-", "0", "neg", "negative")


def parse_size(text: str) -> tuple[int, int]:
    """'640x960' → (640, 960): height × width in pixels."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HEIGHTxWIDTH, e.g. 640x960") from exc
    try:
        contract.check_size(h, w)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return h, w


def parse_click(text: str) -> tuple[float, float, bool]:
    """'120,80,+' → (120.0, 80.0, True): x (column) and y (row) in image pixels, + positive / - negative."""
    parts = [p.strip() for p in text.split(",")]
    example = "e.g. --click 120,80,+ (positive) or --click 300,40,- (negative)"
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"click {text!r} must be X,Y,+ or X,Y,- ({example})")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"click {text!r}: X and Y must be numbers ({example})") from None
    sign = parts[2].lower()
    if sign not in POSITIVE + NEGATIVE:
        raise argparse.ArgumentTypeError(f"click {text!r}: the label must be + or - ({example})")
    return x, y, sign in POSITIVE


def read_image_arg(path: Path, what: str = "input image") -> Any:
    """H×W×3 uint8 RGB from an image file, or a UsageError naming the file, the problem and the fix."""
    from PIL import Image

    from edgeclick.data.imread import read_rgb

    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder; pass an image file (PNG, JPEG, ...)")
    if not path.is_file():
        raise UsageError(f"{what} {path}: no such file")
    if path.stat().st_size == 0:
        raise UsageError(f"{what} {path} is empty (0 bytes); pass an image file (PNG, JPEG, ...)")
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning becomes the error below, not a second line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return read_rgb(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"{what} {path} is too large for Pillow's safety limit ({exc}); downscale it first") from None
    except Image.UnidentifiedImageError:
        raise UsageError(f"{what} {path} is not an image Pillow can read; pass a PNG, JPEG, BMP, TIFF or WebP file") from None
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow: truncated data, broken headers
        raise UsageError(f"{what} {path} is damaged or truncated ({one_line(str(exc))}); re-save or re-download it") from None
